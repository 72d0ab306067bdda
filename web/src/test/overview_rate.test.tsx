// The overview's readings-per-second panel: the sum of the online
// gateways' rates (each from its agent's last two heartbeats).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen } from '@testing-library/react';
import { fx, json, me, mockApi, renderAt, Route } from './util';
import { Overview } from '../pages/Overview';

afterEach(() => {
  vi.unstubAllGlobals();
});

const P = '/api/v1/orgs/rw/projects/north';
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });

function serve(gateways: ReturnType<typeof fx.gatewaySummary>[]) {
  mockApi((m, u) => {
    if (m !== 'GET') return undefined;
    if (u.pathname === `${P}/gateways`) return json(gateways);
    if (u.pathname === `${P}/rollout`) return json([]);
    if (u.pathname === `${P}/clusters`) return json([]);
    if (u.pathname === `${P}/alerts/active`) return json([]);
    return undefined;
  });
}

describe('overview: readings per second', () => {
  it('adds up the online gateways and leaves offline ones out', async () => {
    serve([
      fx.gatewaySummary({ id: 'a', name: 'intake', online: true, last_heartbeat: '2026-12-07T20:00:00Z', readings_per_sec: 1000.4 }),
      fx.gatewaySummary({ id: 'b', name: 'filters', online: true, last_heartbeat: '2026-12-07T20:00:00Z', readings_per_sec: 250 }),
      fx.gatewaySummary({ id: 'c', name: 'clear-well', online: false, last_heartbeat: '2026-12-07T19:00:00Z', readings_per_sec: 9999 }),
    ]);
    renderAt('/o/rw/p/north', <Route path="/o/:org/p/:project" element={<Overview />} />, viewer);
    expect(await screen.findByTestId('readings-rate')).toHaveTextContent('1,250');
  });

  it('shows a dash until an agent has sent two heartbeats', async () => {
    serve([fx.gatewaySummary({ id: 'a', name: 'intake', online: true, last_heartbeat: '2026-12-07T20:00:00Z', readings_per_sec: null })]);
    renderAt('/o/rw/p/north', <Route path="/o/:org/p/:project" element={<Overview />} />, viewer);
    expect(await screen.findByText('of 1')).toBeInTheDocument();
    expect(screen.getByTestId('readings-rate')).toHaveTextContent('—');
  });
});
