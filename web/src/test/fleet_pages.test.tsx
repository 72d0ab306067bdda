// The fleet pages of issue 23: gateway templates (made from a gateway,
// applied to many), batch changes with a result per gateway, the rollout
// view and the fleet events, as a user sees them.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, problem, renderAt, Route } from './util';
import { TemplateDetail, TemplateList, templateFromSpec } from '../pages/Templates';
import { BatchChanges } from '../pages/BatchChanges';
import { Rollout, ROLLOUT_REFRESH_MS } from '../pages/Rollout';
import { FleetEvents } from '../pages/FleetEvents';
import { Layout } from '../Layout';
import type { Schemas } from '../api/http';

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

const editor = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-editor' }] });
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const P = '/api/v1/orgs/rw/projects/north';
const T = '2026-01-01T00:00:00Z';

const spec = {
  site: { name: 'North pump station' },
  mode: 'external',
  clusterRef: 'plant-broker',
  devices: [{ name: 'pumps', adapter: 'simulator', groups: [{ name: 'main', intervalMs: 1000, tags: [{ name: 'flow' }, { name: 'pressure' }] }] }],
  pipelines: [],
  uplink: { lingerMs: 50 },
};
const template = (p: Partial<Schemas['Template']> = {}): Schemas['Template'] => ({ id: 't1', name: 'pump-station', title: 'Pump station', description: 'Two pumps', spec: templateFromSpec(spec), created_at: T, updated_at: T, ...p });
const summaries = [fx.gatewaySummary({ name: 'north-pump', site: { name: 'North' } }), fx.gatewaySummary({ id: 'g2', name: 'south-pump' }), fx.gatewaySummary({ id: 'g3', name: 'east-pump' })];

/** The project's gateways and rollout, plus `extra` for the route under test. */
function api(extra: (m: string, u: URL, body: unknown) => Response | undefined) {
  return mockApi((m, u, body) => {
    const r = extra(m, u, body);
    if (r) return r;
    if (u.pathname === `${P}/gateways` && m === 'GET') return json(summaries);
    if (u.pathname === `${P}/rollout`) return json([]);
    if (u.pathname === `${P}/clusters`) return json([]);
    return undefined;
  });
}

const batchAnswer: Schemas['BatchResponse'] = {
  updated: 1,
  unchanged: 0,
  failed: 1,
  items: [
    { gateway: 'north-pump', result: 'updated', version: 3, status: 200, errors: [] },
    { gateway: 'south-pump', result: 'failed', status: 422, detail: 'invalid fields', errors: [{ field: 'spec.devices[0].name', message: 'must be unique' }] },
  ],
};

async function pickAndApply(names: string[], comment: string) {
  for (const n of names) await userEvent.click(screen.getByRole('checkbox', { name: n }));
  await userEvent.type(screen.getByLabelText('Why'), comment);
  await userEvent.click(screen.getByRole('button', { name: `Apply to ${names.length} gateways` }));
  const dlg = screen.getByRole('dialog');
  expect(dlg).toHaveTextContent(names.join(', '));
  await userEvent.click(within(dlg).getByRole('button', { name: 'Apply' }));
}

function resultRows() {
  return within(screen.getByRole('table', { name: 'Results per gateway' })).getAllByRole('row').slice(1).map((r) => within(r).getAllByRole('cell').map((c) => c.textContent));
}

describe('gateway templates', () => {
  const routes = (
    <>
      <Route path="/o/:org/p/:project/templates" element={<TemplateList />} />
      <Route path="/o/:org/p/:project/templates/:template" element={<TemplateDetail />} />
    </>
  );

  it('are made from a gateway’s devices, rules and uplink, not its site or cluster', async () => {
    const posts: unknown[] = [];
    api((m, u, body) => {
      if (u.pathname === `${P}/gateway-templates` && m === 'GET') return json([]);
      if (u.pathname === `${P}/gateways/south-pump`) return json(fx.gateway({ name: 'south-pump', spec }));
      if (u.pathname === `${P}/gateway-templates` && m === 'POST') {
        posts.push(body);
        return (body as { name: string }).name === 'taken' ? problem(409, 'conflict', 'a template with this name exists in the project', [{ field: 'name', message: 'a template with this name exists in the project' }]) : json(template(), 201);
      }
      if (u.pathname === `${P}/gateway-templates/pump-station`) return json(template());
      return undefined;
    });
    renderAt('/o/rw/p/north/templates', routes, editor);
    expect(await screen.findByText('No templates yet')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'New template' }));
    const dlg = screen.getByRole('dialog');
    await userEvent.selectOptions(await within(dlg).findByLabelText('From gateway'), 'south-pump');
    await userEvent.type(within(dlg).getByLabelText('Name'), 'taken');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Create template' }));
    await waitFor(() => expect(within(dlg).getByLabelText('Name')).toHaveAccessibleDescription(/^a template with this name exists in the project/));
    await userEvent.clear(within(dlg).getByLabelText('Name'));
    await userEvent.type(within(dlg).getByLabelText('Name'), 'pump-station');
    await userEvent.type(within(dlg).getByLabelText('Title'), 'Pump station');
    await userEvent.type(within(dlg).getByLabelText('Description'), 'Two pumps');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Create template' }));
    expect(await screen.findByRole('heading', { name: 'Pump station' })).toBeInTheDocument();
    expect(posts[1]).toEqual({ name: 'pump-station', title: 'Pump station', description: 'Two pumps', spec: { devices: spec.devices, pipelines: [], uplink: { lingerMs: 50 } } });
    expect(screen.getByRole('region', { name: 'What the template sets' })).toHaveTextContent('Sets: 1 device (2 tags), 0 rules, uplink settings.');
  });

  it('is applied to the gateways picked; each shows changed or refused and why', async () => {
    const batches: unknown[] = [];
    api((_m, u, body) => {
      if (u.pathname === `${P}/gateway-templates/pump-station`) return json(template());
      if (u.pathname === `${P}/gateways:batch`) return (batches.push(body), json(batchAnswer));
      return undefined;
    });
    renderAt('/o/rw/p/north/templates/pump-station', routes, editor);
    const apply = await screen.findByRole('region', { name: 'Apply to gateways' });
    expect(await within(apply).findByRole('checkbox', { name: 'north-pump' })).not.toBeChecked();
    expect(within(apply).getByRole('button', { name: 'Apply to 0 gateways' })).toBeDisabled();
    await pickAndApply(['north-pump', 'south-pump'], 'same pumps everywhere');
    expect(await screen.findByTestId('batch-summary')).toHaveTextContent('1 changed, 0 unchanged, 1 refused.');
    expect(resultRows()).toEqual([
      ['north-pump', 'Changed', 'now config v3'],
      ['south-pump', 'Refused', 'spec.devices[0].name: must be unique'],
    ]);
    expect(batches).toEqual([{ template: 'pump-station', gateways: ['north-pump', 'south-pump'], comment: 'same pumps everywhere' }]);
  });

  it('is deleted after typing its name', async () => {
    const deletes: string[] = [];
    api((m, u) => {
      if (u.pathname === `${P}/gateway-templates/pump-station` && m === 'DELETE') return (deletes.push(u.pathname), new Response(null, { status: 204 }));
      if (u.pathname === `${P}/gateway-templates/pump-station`) return json(template());
      if (u.pathname === `${P}/gateway-templates`) return json([]);
      return undefined;
    });
    renderAt('/o/rw/p/north/templates/pump-station', routes, editor);
    await userEvent.click(await screen.findByRole('button', { name: 'Delete template' }));
    const dlg = screen.getByRole('dialog');
    await userEvent.type(within(dlg).getByLabelText(/Type/), 'pump-station');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Delete template' }));
    expect(await screen.findByText('No templates yet')).toBeInTheDocument();
    expect(deletes).toHaveLength(1);
  });

  it('a viewer sees templates but no button to make, apply or delete one', async () => {
    api((_m, u) => {
      if (u.pathname === `${P}/gateway-templates`) return json([template()]);
      if (u.pathname === `${P}/gateway-templates/pump-station`) return json(template());
      return undefined;
    });
    const { unmount } = renderAt('/o/rw/p/north/templates', routes, viewer);
    const row = await screen.findByRole('row', { name: /pump-station/ });
    expect(row).toHaveTextContent('1 device (2 tags), 0 rules, uplink settings');
    expect(screen.queryByRole('button', { name: 'New template' })).toBeNull();
    unmount();
    renderAt('/o/rw/p/north/templates/pump-station', routes, viewer);
    await screen.findByRole('heading', { name: 'Pump station' });
    expect(screen.getByText('You can view this template; your role does not allow applying it.')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Delete template' })).toBeNull();
    expect(screen.queryByRole('checkbox')).toBeNull();
  });
});

describe('batch changes', () => {
  const routes = <Route path="/o/:org/p/:project/batch" element={<BatchChanges />} />;

  it('sets an agent version on the gateways picked and shows each one’s result', async () => {
    const batches: unknown[] = [];
    api((_m, u, body) => {
      if (u.pathname === `${P}/gateway-templates`) return json([]);
      if (u.pathname === `${P}/gateways:batch`) {
        batches.push(body);
        return json({ updated: 1, unchanged: 1, failed: 0, items: [{ gateway: 'north-pump', result: 'updated', version: 5, status: 200, errors: [] }, { gateway: 'east-pump', result: 'unchanged', status: 200, errors: [] }] });
      }
      return undefined;
    });
    renderAt('/o/rw/p/north/batch', routes, editor);
    const version = await screen.findByLabelText('Agent version');
    await userEvent.type(version, '0.5');
    expect(version).toHaveAccessibleDescription(/^a version like 1\.2\.3/);
    await userEvent.type(version, '.0');
    expect(version).not.toHaveAttribute('aria-invalid');
    await screen.findByRole('checkbox', { name: 'east-pump' });
    await pickAndApply(['north-pump', 'east-pump'], 'agent 0.5.0');
    await screen.findByTestId('batch-summary');
    expect(resultRows()).toEqual([
      ['north-pump', 'Changed', 'now config v5'],
      ['east-pump', 'Unchanged', 'already had this configuration'],
    ]);
    expect(batches).toEqual([{ merge_patch: { agentVersion: '0.5.0' }, gateways: ['north-pump', 'east-pump'], comment: 'agent 0.5.0' }]);
  });

  it('a merge patch must be a JSON object; the api’s objection shows beside it', async () => {
    api((_m, u) => {
      if (u.pathname === `${P}/gateway-templates`) return json([]);
      if (u.pathname === `${P}/gateways:batch`) return problem(422, 'validation', 'invalid fields', [{ field: 'merge_patch', message: 'must be an object' }]);
      return undefined;
    });
    renderAt('/o/rw/p/north/batch', routes, editor);
    await userEvent.selectOptions(await screen.findByLabelText('Change'), 'JSON merge patch');
    const patch = screen.getByLabelText('Merge patch (JSON)');
    await userEvent.click(patch);
    await userEvent.paste('{"uplink": ');
    expect(patch).toHaveAccessibleDescription(/^Not JSON/);
    await userEvent.clear(patch);
    await userEvent.paste('[1]');
    expect(patch).toHaveAccessibleDescription(/^Must be a JSON object/);
    await userEvent.clear(patch);
    await userEvent.paste('{"uplink": {"lingerMs": 100}}');
    expect(patch).not.toHaveAttribute('aria-invalid');
    await pickAndApply(['north-pump', 'south-pump'], 'linger');
    await waitFor(() => expect(screen.getByLabelText('Merge patch (JSON)')).toHaveAccessibleDescription(/^must be an object/));
    expect(screen.queryByRole('table', { name: 'Results per gateway' })).toBeNull();
  });

  it('is not offered to a viewer: no navigation entry, no form', async () => {
    api((_m, u) => {
      if (u.pathname === '/api/v1/orgs') return json([{ id: 'o1', slug: 'rw', name: 'Riverside', created_at: T, updated_at: T }]);
      if (u.pathname === '/api/v1/orgs/rw/projects') return json([]);
      return undefined;
    });
    const layout = (who: typeof viewer) => renderAt('/o/rw/p/north/batch', <Route element={<Layout />}><Route path="/o/:org/p/:project/batch" element={<BatchChanges />} /></Route>, who);
    const v = layout(viewer);
    const nav = screen.getByRole('navigation', { name: 'Main' });
    for (const l of ['Gateway templates', 'Rollout', 'Fleet events']) expect(within(nav).getByRole('link', { name: l })).toBeInTheDocument();
    expect(within(nav).queryByRole('link', { name: 'Batch changes' })).toBeNull();
    expect(screen.getByText('Your role does not allow changing gateways.')).toBeInTheDocument();
    expect(screen.queryByRole('checkbox')).toBeNull();
    v.unmount();
    layout(editor);
    expect(within(screen.getByRole('navigation', { name: 'Main' })).getByRole('link', { name: 'Batch changes' })).toHaveAttribute('href', '/o/rw/p/north/batch');
  });
});

describe('the rollout view', () => {
  it('shows each gateway’s wanted and running bundle, its state and refusals, refreshing', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let rows = [
      fx.rollout({ gateway: 'north-pump', config_version: 4, desired_version: 6, applied_version: 6, up_to_date: true, online: true, last_heartbeat: new Date().toISOString(), agent_version: '0.4.1', agent_hostname: 'ipc-north' }),
      fx.rollout({ gateway: 'south-pump', config_version: 3, desired_version: 5, applied_version: 4, up_to_date: false, online: true, last_heartbeat: new Date().toISOString(), last_error: 'signature does not verify with the pinned key' }),
      fx.rollout({ gateway: 'east-pump', config_version: 1, desired_version: 1, applied_version: null, up_to_date: false }),
      fx.rollout({ gateway: 'west-pump', config_version: 2, desired_version: 2, applied_version: 1, up_to_date: false, online: false, last_heartbeat: '2026-01-01T00:00:00Z' }),
    ];
    api((_m, u) => (u.pathname === `${P}/rollout` ? json(rows) : undefined));
    renderAt('/o/rw/p/north/rollout', <Route path="/o/:org/p/:project/rollout" element={<Rollout />} />, viewer);
    const table = await screen.findByRole('table', { name: 'Rollout' });
    const cells = () => within(table).getAllByRole('row').slice(1).map((r) => within(r).getAllByRole('cell').slice(0, 7).map((c) => c.textContent));
    expect(cells()).toEqual([
      ['north-pump', 'Online', 'v4', 'v6', 'v6', 'Up to date', ''],
      ['south-pump', 'Online', 'v3', 'v5', 'v4', 'Refused', 'signature does not verify with the pinned key'],
      ['east-pump', 'Not enrolled yet', 'v1', 'v1', '—', 'Waiting for the agent', ''],
      ['west-pump', 'Offline', 'v2', 'v2', 'v1', 'Behind (offline)', ''],
    ]);
    expect(screen.getByTestId('rollout-summary')).toHaveTextContent('1 of 4 gateways run the bundle they should; 1 refused one.');
    // The agent takes the next bundle: the page shows it on its next refresh.
    rows = rows.map((r) => (r.gateway === 'south-pump' ? { ...r, desired_version: 6, applied_version: 6, up_to_date: true, last_error: null } : r));
    await act(async () => { await vi.advanceTimersByTimeAsync(ROLLOUT_REFRESH_MS); });
    await waitFor(() => expect(cells()[1]).toEqual(['south-pump', 'Online', 'v3', 'v6', 'v6', 'Up to date', '']));
    expect(screen.getByTestId('rollout-summary')).toHaveTextContent('2 of 4 gateways run the bundle they should.');
  });
});

describe('fleet events', () => {
  const ev = (i: number, p: Partial<Schemas['FleetEvent']> = {}): Schemas['FleetEvent'] => ({ id: `e${i}`, org_id: 'o', project_id: 'p', gateway_id: 'g', gateway: 'north-pump', kind: 'gateway_offline', at: new Date(Date.UTC(2026, 0, 1, 12, 0, 60 - i)).toISOString(), ...p });
  const gap = ev(0, { kind: 'data_gap', gap: { seq_from: 120, seq_to: 180, reason: 'not-retained', detected_at: T, ts_from: null, ts_to: null } });

  it('lists events newest first with a data gap’s frames and reason, filtered and paged', async () => {
    const calls = api((_m, u) => {
      if (u.pathname !== `${P}/fleet-events`) return undefined;
      const kind = u.searchParams.get('kind');
      if (kind === 'data_gap') return json([gap]);
      return json([gap, ...Array.from({ length: 29 }, (_, i) => ev(i + 1, { kind: i % 2 ? 'gateway_online' : 'gateway_offline' }))]);
    });
    renderAt('/o/rw/p/north/fleet-events', <Route path="/o/:org/p/:project/fleet-events" element={<FleetEvents />} />, viewer);
    const table = await screen.findByRole('table', { name: 'Fleet events' });
    const rows = () => within(table).getAllByRole('row').slice(1);
    expect(rows()).toHaveLength(25);
    expect(rows()[0]).toHaveTextContent('north-pumpReadings lost61 frames (seq 120–180): the agent no longer held them');
    expect(rows()[1]).toHaveTextContent('Went offline');
    expect(rows()[2]).toHaveTextContent('Came online');
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    await waitFor(() => expect(within(screen.getByRole('table', { name: 'Fleet events' })).getAllByRole('row')).toHaveLength(6));
    await userEvent.selectOptions(screen.getByLabelText('Event'), 'Readings lost');
    await waitFor(() => expect(within(screen.getByRole('table', { name: 'Fleet events' })).getAllByRole('row')).toHaveLength(2));
    expect(calls.map((c) => c.path).filter((p) => p.includes('fleet-events')).at(-1)).toBe(`${P}/fleet-events?kind=data_gap&limit=100`);
  });

  it('says so when nothing matches the filter', async () => {
    api((_m, u) => (u.pathname === `${P}/fleet-events` ? json([]) : u.pathname === `${P}/rollout` ? json([fx.rollout({ gateway: 'north-pump' })]) : undefined));
    renderAt('/o/rw/p/north/fleet-events', <Route path="/o/:org/p/:project/fleet-events" element={<FleetEvents />} />, viewer);
    await screen.findByText('No fleet events');
    await screen.findByRole('option', { name: 'north-pump' });
    await userEvent.selectOptions(screen.getByLabelText('Gateway'), 'north-pump');
    expect(await screen.findByText('None match the filter.')).toBeInTheDocument();
  });
});
