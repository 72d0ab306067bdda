// Issue 20 on the gateway page: the agent's replay fields and the broker's
// "nobody subscribes" warning, the gateway's recorded data gaps, and a gap
// on the readings chart (a shaded, labelled band, the line broken).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, renderAt, Route } from './util';
import { GatewayDetail } from '../pages/Gateways';
import type { Schemas } from '../api/http';

afterEach(() => {
  vi.unstubAllGlobals();
});

const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const P = '/api/v1/orgs/rw/projects/north';
const detail = <Route path="/o/:org/p/:project/gateways/:gateway/:tab?" element={<GatewayDetail />} />;

const gap: Schemas['DataGapInfo'] = { seq_from: 100, seq_to: 149, ts_from: '2026-01-01T00:01:30Z', ts_to: '2026-01-01T00:02:10Z', detected_at: '2026-01-01T00:03:00Z', reason: 'not-retained' };

function gapEvent(p: Partial<Schemas['FleetEvent']> = {}): Schemas['FleetEvent'] {
  return { id: 'e1', org_id: 'o', project_id: 'p', gateway_id: 'g1', gateway: 'north-pump', kind: 'data_gap', at: new Date(Date.now() - 120_000).toISOString(), gap, ...p };
}

function api(g: Schemas['Gateway'], events: Schemas['FleetEvent'][], series?: Schemas['Series'], status?: () => Schemas['GatewayDataGaps']) {
  return mockApi((_m, u) => {
    if (u.pathname === `${P}/gateways/north-pump/data-gaps` && status) return json(status());
    if (u.pathname === `${P}/gateways/north-pump`) return json(g);
    if (u.pathname === `${P}/rollout`) return json([fx.rollout({ gateway: 'north-pump', online: true, last_heartbeat: g.last_heartbeat })]);
    if (u.pathname === `${P}/clusters`) return json([]);
    if (u.pathname === `${P}/fleet-events`) return json(events);
    if (u.pathname === `${P}/gateways/north-pump/series` && series) return json(series);
    return undefined;
  });
}

describe('keep, detect, replay on the gateway page', () => {
  it('warns when the broker says nothing subscribes, and shows what the agent keeps for replays', async () => {
    const at = new Date(Date.now() - 5_000).toISOString();
    const calls = api(
      fx.gateway({ online: true, last_heartbeat: at, agent_status: { devices: [], waitingForSubscriber: true, retainedFrames: 12345, lastAckedSeq: 98765, replays: 2 } }),
      [gapEvent({ id: 'e2' }), gapEvent({ id: 'e1', gap: { ...gap, seq_from: 10, seq_to: 19 } })],
    );
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const report = await screen.findByRole('region', { name: 'Agent report' });
    expect(report).toHaveTextContent("The broker says nothing subscribes to this gateway's readings; the agent holds them and retries.");
    expect(within(report).getByLabelText('Kept for replay')).toHaveTextContent(`${(12345).toLocaleString()}acknowledged frames on disk the historian can ask for again; 2 replays answered`);
    expect(within(report).getByLabelText('Last acknowledged seq')).toHaveTextContent('Last acknowledged seq98765the newest frame the broker accepted');
    const gaps = await screen.findByRole('region', { name: 'Data gaps' });
    await waitFor(() => expect(gaps).toHaveTextContent('2 ranges of readings lost for good. Last: seq 100–149 (50 frames, the agent no longer held them), recorded 2 min ago'));
    expect(calls.some((c) => c.path === `${P}/fleet-events?gateway=north-pump&kind=data_gap&limit=100`)).toBe(true);
  });

  it('no warning while something subscribes; no gaps said plainly', async () => {
    api(fx.gateway({ online: true, last_heartbeat: new Date().toISOString(), agent_status: { devices: [], waitingForSubscriber: false } }), []);
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const report = await screen.findByRole('region', { name: 'Agent report' });
    expect(report).not.toHaveTextContent('nothing subscribes');
    expect(await screen.findByRole('region', { name: 'Data gaps' })).toHaveTextContent('No data gaps recorded');
  });

  it('the readings chart shows a gap as a labelled gap, not as data', async () => {
    const config = { devices: [{ name: 'pump-1', adapter: 'modbusTcp', modbus: { host: '10.0.0.5' }, groups: [{ name: 'fast', intervalMs: 1000, tags: [{ name: 'level', address: '1!400001', dataType: 'float32' }] }] }] };
    const points = [0, 1, 2, 3].map((m) => ({ t: `2026-01-01T00:0${m}:00Z`, avg: m, count: 6 }));
    api(fx.gateway({ spec: config } as Partial<Schemas['Gateway']>), [], { gateway: 'north-pump', from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:05:00Z', mode: 'buckets', step_seconds: 60, raw_limit: 2000, series: [{ device: 'pump-1', tag: 'level', points, readings: [] }], gaps: [gap] });
    renderAt('/o/rw/p/north/gateways/north-pump/readings', detail, viewer);
    const chart = await screen.findByTestId('chart');
    // Four buckets and one break across the gap.
    expect(chart).toHaveAttribute('data-points', '5');
    expect(chart).toHaveAttribute('data-gaps', '1');
    expect(screen.getByRole('list', { name: 'Data gaps' })).toHaveTextContent(/Data gap: seq 100–149 lost \(50 frames, not-retained\): between .* and .*\. Not interpolated/);
  });

  it('warns of the gaps being replayed now, next to the recorded ones, and refreshes with the page', async () => {
    const since = '2026-01-01T00:01:40Z';
    const open: Schemas['OpenGap'][] = [
      { seq_from: 300, seq_to: 300, frames: 1, since, replay_requests: 1, last_request_at: new Date(Date.now() - 30_000).toISOString() },
      { seq_from: 500, seq_to: 519, frames: 20, since, replay_requests: 3, last_request_at: null },
    ];
    let status: Schemas['GatewayDataGaps'] = { historian: true, open, recorded: [{ ...gap, frames: 50 }] };
    const calls = api(fx.gateway({ online: true, last_heartbeat: new Date().toISOString() }), [gapEvent()], undefined, () => status);
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
      const card = await screen.findByRole('region', { name: 'Data gaps' });
      const list = await within(card).findByRole('list', { name: 'Open gaps' });
      const items = within(list).getAllByRole('listitem');
      expect(items[0]).toHaveTextContent(/^Replaying 1 missing frame \(seq 300\) since .+, 1 request \(the last 30 s ago\)\.$/);
      expect(items[1]).toHaveTextContent(/^Replaying 20 missing frames \(seq 500–519\) since .+, 3 requests\.$/);
      expect(items[1]).toHaveTextContent(new Date(since).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }));
      // A warning (they may still arrive), apart from the readings lost for good.
      expect(list.closest('.notice')).toHaveClass('warn');
      expect(card).toHaveTextContent('1 range of readings lost for good. Last: seq 100–149 (50 frames, the agent no longer held them)');
      expect(calls.some((c) => c.path === `${P}/gateways/north-pump/data-gaps`)).toBe(true);

      // The historian got them: gone at the page's next refresh.
      status = { historian: true, open: [], recorded: [] };
      await act(() => vi.advanceTimersByTimeAsync(10_500));
      await waitFor(() => expect(within(card).queryByRole('list', { name: 'Open gaps' })).toBeNull());
      expect(card).toHaveTextContent('1 range of readings lost for good');
    } finally {
      vi.useRealTimers();
    }
  });

  it('says plainly when nothing is missing, and when the api reads no historian', async () => {
    let status: Schemas['GatewayDataGaps'] = { historian: true, open: [], recorded: [] };
    api(fx.gateway({ online: true, last_heartbeat: new Date().toISOString() }), [], undefined, () => status);
    const { unmount } = renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const card = await screen.findByRole('region', { name: 'Data gaps' });
    await waitFor(() => expect(card).toHaveTextContent('No data gaps recorded: every frame the agent sent reached the historian'));
    expect(within(card).queryByRole('list', { name: 'Open gaps' })).toBeNull();
    expect(within(card).queryByRole('alert')).toBeNull();
    unmount();

    status = { historian: false, open: [], recorded: [] };
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const none = await screen.findByRole('region', { name: 'Data gaps' });
    await waitFor(() => expect(none).toHaveTextContent('Data gaps are not tracked: the api reads no historian database (WEIR_HISTORIAN_URL).'));
  });
});

describe('readings chart: a custom range', () => {
  const config = { devices: [{ name: 'pump-1', adapter: 'modbusTcp', modbus: { host: '10.0.0.5' }, groups: [{ name: 'fast', intervalMs: 1000, tags: [{ name: 'level', address: '1!400001', dataType: 'float32', unit: 'm', decimals: 2 }] }] }] };
  const series: Schemas['Series'] = { gateway: 'north-pump', from: '2026-01-01T00:00:00Z', to: '2026-01-01T06:00:00Z', mode: 'buckets', step_seconds: 60, raw_limit: 2000, series: [{ device: 'pump-1', tag: 'level', unit: 'm', decimals: 2, points: [{ t: '2026-01-01T00:00:00Z', avg: 1.5, count: 60 }], readings: [] }], gaps: [] };

  it('asks for the chosen window without a step, and refuses an inverted one beside the fields', async () => {
    const calls = api(fx.gateway({ spec: config } as Partial<Schemas['Gateway']>), [], series);
    renderAt('/o/rw/p/north/gateways/north-pump/readings', detail, viewer);
    await screen.findByTestId('chart');
    await userEvent.selectOptions(screen.getByLabelText('Range'), 'Custom range');
    const from = screen.getByLabelText('From');
    const to = screen.getByLabelText('To');
    fireEvent.change(from, { target: { value: '2026-01-01T00:00' } });
    fireEvent.change(to, { target: { value: '2026-01-01T06:00' } });
    const want = (u: string) => u.includes(`from=${encodeURIComponent(new Date('2026-01-01T00:00').toISOString())}`) && u.includes(`to=${encodeURIComponent(new Date('2026-01-01T06:00').toISOString())}`);
    await waitFor(() => expect(calls.some((c) => c.path.includes('/series?') && want(c.path))).toBe(true));
    expect(calls.filter((c) => c.path.includes('/series?') && want(c.path)).every((c) => !c.path.includes('step='))).toBe(true);
    const before = calls.length;
    fireEvent.change(from, { target: { value: '2026-01-01T07:00' } });
    expect(await screen.findByText('“From” must be before “To”.')).toHaveAttribute('role', 'alert');
    await new Promise((r) => setTimeout(r, 50));
    expect(calls.slice(before).some((c) => c.path.includes('/series?'))).toBe(false);
  });
});
