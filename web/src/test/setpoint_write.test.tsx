// Setpoint writes from the Latest values table: who sees the Write button,
// the value checked against the tag's type and limits before anything is
// sent, the confirmation with old and new value, and the agent's verdict.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { json, me, mockApi, problem, renderAt, Route } from './util';
import { LatestTable, LatestValues } from '../pages/LatestValues';
import { parseSetpoint } from '../pages/SetpointWrite';
import type { LatestValues as Latest, TagLatest } from '../api/types';
import type { Gateway } from '../api/types';

afterEach(() => {
  vi.unstubAllGlobals();
});

const P = '/api/v1/orgs/rw/projects/north';
const NOW = Date.parse('2026-01-01T12:00:00Z');

function tag(p: Partial<TagLatest>): TagLatest {
  return { name: 't', data_type: 'float32', unit: null, decimals: null, writable: false, write_min: null, write_max: null, ts: new Date(NOW - 2000).toISOString(), value: null, value_text: null, error: null, ...p };
}

const dose = tag({ name: 'dose_sp', unit: 'mg/L', decimals: 2, value: 2.5, writable: true, write_min: 0, write_max: 5 });
const data: Latest = {
  gateway: 'skid-1',
  version: 3,
  devices: [{ name: 'skid', tags: [dose, tag({ name: 'flow', unit: 'm3/h', value: 3.5 })] }],
};

const operator = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-operator' }] });
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const gw = { name: 'skid-1', agent_status: null } as unknown as Gateway;

function page(user = operator, answer: (body: unknown) => Response = () => json({})) {
  const calls = mockApi((m, u, body) => {
    if (m === 'GET' && u.pathname === `${P}/gateways/skid-1/latest`) return json(data);
    if (m === 'POST' && u.pathname === `${P}/gateways/skid-1/writes`) return answer(body);
    return undefined;
  });
  renderAt('/o/rw/p/north/gateways/skid-1', <Route path="/o/:org/p/:project/gateways/:gateway" element={<LatestValues g={gw} />} />, user);
  return calls;
}

describe('setpoint writes', () => {
  it('checks the typed value against the tag before anything is sent', () => {
    expect(parseSetpoint(dose, '3.25')).toEqual({ value: 3.25 });
    expect(parseSetpoint(dose, '5.5').error).toBe("at most 5 (the tag's writeMax)");
    expect(parseSetpoint(dose, '-1').error).toBe("at least 0 (the tag's writeMin)");
    expect(parseSetpoint(dose, 'abc').error).toBe('enter a number');
    expect(parseSetpoint({ data_type: 'uint16', write_min: null, write_max: null }, '1.5').error).toBe('a uint16 tag takes a whole number');
    expect(parseSetpoint({ data_type: 'bool', write_min: null, write_max: null }, 'true')).toEqual({ value: true });
    expect(parseSetpoint({ data_type: 'string', write_min: null, write_max: null }, 'auto')).toEqual({ value: 'auto' });
  });

  it('offers Write only on writable tags, and only to those who may operate', () => {
    const { unmount } = render(<LatestTable data={data} agent={null} now={NOW} onWrite={() => {}} />);
    expect(screen.getByRole('button', { name: 'Write skid/dose_sp' })).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Write skid/flow' })).toBeNull();
    unmount();
    render(<LatestTable data={data} agent={null} now={NOW} />);
    expect(screen.queryByRole('button', { name: /^Write / })).toBeNull();
  });

  it('is not offered to a viewer', async () => {
    page(viewer);
    await screen.findByRole('table', { name: 'Latest values' });
    expect(screen.queryByRole('button', { name: /^Write / })).toBeNull();
  });

  it('confirms old and new value, sends the write with the comment, and reports the agent’s answer', async () => {
    const calls = page(operator, (body) => json({ device: 'skid', tag: 'dose_sp', value: (body as { value: number }).value, old_value: null, ok: true, error: null, correlation_id: 'c1', answered_in_ms: 12 }));
    await userEvent.click(await screen.findByRole('button', { name: 'Write skid/dose_sp' }));
    const dlg = screen.getByRole('dialog');
    expect(within(dlg).getByTestId('write-old')).toHaveTextContent('2.50 mg/L');
    const input = within(dlg).getByLabelText('New value');
    await userEvent.type(input, '7');
    expect(within(dlg).getByText("at most 5 (the tag's writeMax)")).toBeInTheDocument();
    expect(within(dlg).getByRole('button', { name: 'Review' })).toBeDisabled();
    await userEvent.clear(input);
    await userEvent.type(input, '3.25');
    await userEvent.type(within(dlg).getByLabelText('Comment'), 'storm');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Review' }));
    expect(within(dlg).getByTestId('write-confirm')).toHaveTextContent('Change skid/dose_sp from 2.50 mg/L to 3.25 mg/L?');
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0);
    await userEvent.click(within(dlg).getByRole('button', { name: 'Write 3.25 mg/L' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.body)).toEqual([{ device: 'skid', tag: 'dose_sp', value: 3.25, comment: 'storm' }]);
    expect(await screen.findByText(/skid\/dose_sp is now 3.25 mg\/L: the agent confirmed in 12 ms/)).toBeInTheDocument();
  });

  it('shows the agent’s refusal, and an api refusal beside the value', async () => {
    let n = 0;
    page(operator, () =>
      ++n === 1
        ? json({ device: 'skid', tag: 'dose_sp', value: 1, old_value: null, ok: false, error: 'Modbus exception: IllegalDataAddress', correlation_id: 'c2', answered_in_ms: 9 })
        : problem(409, 'write-refused', "1 is above the tag's writeMax 0.5", [{ field: 'value', message: "1 is above the tag's writeMax 0.5 (tag 'dose_sp')" }]),
    );
    await userEvent.click(await screen.findByRole('button', { name: 'Write skid/dose_sp' }));
    const dlg = screen.getByRole('dialog');
    await userEvent.type(within(dlg).getByLabelText('New value'), '1');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Review' }));
    await userEvent.click(within(dlg).getByRole('button', { name: 'Write 1.00 mg/L' }));
    expect(await within(dlg).findByText('The agent did not write it: Modbus exception: IllegalDataAddress')).toBeInTheDocument();
    await userEvent.click(within(dlg).getByRole('button', { name: 'Write 1.00 mg/L' }));
    const field = await within(dlg).findByLabelText('New value');
    await waitFor(() => expect(field).toHaveAttribute('aria-invalid', 'true'));
    expect(within(dlg).getByText("1 is above the tag's writeMax 0.5 (tag 'dose_sp')")).toBeInTheDocument();
  });
});
