// Alarm acknowledgement and shelving (issue 23) on Alerts → Active and
// History: who may act, what is sent, how acknowledged and shelved alerts
// read, and shelved ones behind a toggle with their count.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { json, me, mockApi, problem, renderAt, Route } from './util';
import { Alerts } from '../pages/Alerts';
import { shelveUntil, MAX_SHELVE_HOURS } from '../pages/AlertsActive';
import type { Schemas } from '../api/http';

afterEach(() => vi.unstubAllGlobals());

const P = '/api/v1/orgs/rw/projects/north/alerts';
const T = '2026-01-01T00:00:00Z';
const editor = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-editor' }] });
const operator = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-operator' }] });
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });

const alert = (p: Partial<Schemas['ActiveAlert']> = {}): Schemas['ActiveAlert'] => ({
  rule_id: 'r1',
  series: 'ps-1/tank-1/level',
  state: 'firing',
  status: 'active',
  silenced_by: [],
  labels: { alertname: 'Level high', device: 'tank-1' },
  summary: 'ps-1/tank-1/level is 7 m (limit 5 m)',
  value: 7,
  value_text: '7 m',
  since: T,
  fired_at: T,
  acknowledgement: null,
  ...p,
});
const shelved = alert({
  series: 'ps-1/tank-2/level',
  summary: 'ps-1/tank-2/level is 9 m (limit 5 m)',
  status: 'shelved',
  acknowledgement: { rule_id: 'r1', series: 'ps-1/tank-2/level', by: 'op@rw.example', at: T, comment: 'sensor swap', shelve_until: '2026-01-01T08:00:00Z' },
});

function page(user = editor, answer: Schemas['ActiveAlert'][] = [alert(), shelved]) {
  const calls = mockApi((m, u, body) => {
    if (u.pathname === `${P}/active`) return json(answer);
    if (u.pathname === `${P}/acknowledgements` && m === 'POST') {
      const b = body as Schemas['Acknowledge'];
      if (b.shelve_until && Date.parse(b.shelve_until) - Date.now() > MAX_SHELVE_HOURS * 3600_000) {
        return problem(422, 'validation', 'invalid fields: shelve_until', [{ field: 'shelve_until', message: 'at most 30 days ahead (2592000 seconds)' }]);
      }
      return json({ ...b, by: 'pm@riverside.example', at: T, shelve_until: b.shelve_until ?? null }, 201);
    }
    return undefined;
  });
  renderAt('/o/rw/p/north/alerts/active', <Route path="/o/:org/p/:project/alerts/:tab" element={<Alerts />} />, user);
  return calls;
}

const rows = async () => within(await screen.findByRole('table', { name: 'Active alerts' })).getAllByRole('row').slice(1);

describe('acknowledging and shelving alerts', () => {
  it('asks the api for shelved alerts too, hides them behind a toggle that counts them', async () => {
    const calls = page();
    expect(await rows()).toHaveLength(1);
    expect(calls.find((c) => c.path.startsWith(`${P}/active`))?.path).toBe(`${P}/active?include_shelved=true`);
    const toggle = screen.getByRole('checkbox', { name: 'Show 1 shelved' });
    await userEvent.click(toggle);
    await waitFor(async () => expect(await rows()).toHaveLength(2));
    const row = (await rows())[1];
    expect(row).toHaveTextContent('firing, shelved');
    expect(row).toHaveTextContent('Shelved until');
    expect(row).toHaveTextContent('by op@rw.example: sensor swap');
  });

  it('an operator acknowledges with a comment', async () => {
    const calls = page(operator);
    const [row] = await rows();
    await userEvent.click(within(row).getByRole('button', { name: 'Acknowledge' }));
    const dlg = screen.getByRole('dialog');
    expect(within(dlg).getByRole('button', { name: 'Acknowledge' })).toBeDisabled();
    await userEvent.type(within(dlg).getByLabelText('Comment'), 'crew on the way');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Acknowledge' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true));
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.path).toBe(`${P}/acknowledgements`);
    expect(post.body).toEqual({ rule_id: 'r1', series: 'ps-1/tank-1/level', comment: 'crew on the way' });
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(calls.filter((c) => c.path.startsWith(`${P}/active`)).length).toBeGreaterThan(1);
  });

  it('an acknowledged alert reads who, when and why, and offers only Shelve', async () => {
    page(editor, [alert({ status: 'acknowledged', acknowledgement: { rule_id: 'r1', series: 'ps-1/tank-1/level', by: 'op@rw.example', at: T, comment: 'crew on the way', shelve_until: null } })]);
    const [row] = await rows();
    expect(row).toHaveTextContent('firing, acknowledged');
    expect(row).toHaveTextContent('Acknowledged by op@rw.example at');
    expect(row).toHaveTextContent('crew on the way');
    expect(within(row).queryByRole('button', { name: 'Acknowledge' })).toBeNull();
    expect(within(row).getByRole('button', { name: 'Shelve' })).toBeInTheDocument();
  });

  it('shelves for some hours as an absolute time, and shows the api’s objection beside the field', async () => {
    const calls = page();
    const [row] = await rows();
    await userEvent.click(within(row).getByRole('button', { name: 'Shelve' }));
    const dlg = screen.getByRole('dialog');
    const hours = within(dlg).getByLabelText('Shelve for (hours)');
    await userEvent.clear(hours);
    await userEvent.type(hours, '2');
    await userEvent.type(within(dlg).getByLabelText('Comment'), 'sensor swap');
    const before = Date.now();
    await userEvent.click(within(dlg).getByRole('button', { name: 'Shelve' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true));
    const body = calls.find((c) => c.method === 'POST')!.body as Schemas['Acknowledge'];
    const until = Date.parse(body.shelve_until!);
    expect(until - before).toBeGreaterThanOrEqual(2 * 3600_000 - 1000);
    expect(until - Date.now()).toBeLessThanOrEqual(2 * 3600_000);
    expect(body.comment).toBe('sensor swap');

    // 31 days: the api refuses, the field says why.
    await userEvent.click(within((await rows())[0]).getByRole('button', { name: 'Shelve' }));
    const again = screen.getByRole('dialog');
    const h2 = within(again).getByLabelText('Shelve for (hours)');
    await userEvent.clear(h2);
    await userEvent.type(h2, String(31 * 24));
    await userEvent.type(within(again).getByLabelText('Comment'), 'long');
    await userEvent.click(within(again).getByRole('button', { name: 'Shelve' }));
    expect(await within(again).findByLabelText('Shelve for (hours)')).toHaveAccessibleDescription(/at most 30 days ahead/);
  });

  it('a viewer sees the state but no Acknowledge or Shelve', async () => {
    page(viewer);
    const [row] = await rows();
    expect(row).toHaveTextContent('firing');
    expect(screen.queryByRole('button', { name: 'Acknowledge' })).toBeNull();
    expect(screen.queryByRole('button', { name: 'Shelve' })).toBeNull();
  });

  it('the history shows acknowledgements and shelves with who and why', async () => {
    const h = (p: Partial<Schemas['HistoryEntry']>): Schemas['HistoryEntry'] => ({ id: p.id ?? 'h', rule_id: 'r1', rule_name: 'Level high', series: 'ps-1/tank-1/level', from: 'firing', to: 'firing', at: T, value: 7, value_text: '7 m', summary: 's', labels: {}, event: 'transition', by: null, comment: null, shelve_until: null, ...p });
    mockApi((_m, u) =>
      u.pathname === `${P}/history`
        ? json([
            h({ id: 'a', event: 'shelved', by: 'op@rw.example', comment: 'sensor swap', shelve_until: '2026-01-01T08:00:00Z' }),
            h({ id: 'b', event: 'acknowledged', by: 'op@rw.example', comment: 'crew on the way' }),
            h({ id: 'c', from: 'pending', to: 'firing' }),
          ])
        : undefined,
    );
    renderAt('/o/rw/p/north/alerts/history', <Route path="/o/:org/p/:project/alerts/:tab" element={<Alerts />} />, editor);
    const table = await screen.findByRole('table', { name: 'Alert history' });
    const r = within(table).getAllByRole('row').slice(1);
    expect(r[0]).toHaveTextContent(/shelved by op@rw\.example until .*: sensor swap/);
    expect(r[1]).toHaveTextContent('acknowledged by op@rw.example: crew on the way');
    expect(r[2]).toHaveTextContent('pending → firing');
  });

  it('shelveUntil counts hours from now', () => {
    expect(shelveUntil(2, Date.parse(T))).toBe('2026-01-01T02:00:00.000Z');
  });
});
