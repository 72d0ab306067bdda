// A cluster's page: the broker's connection and message figures (an
// adopted broker's $SYS, a managed cluster's per-node connections), Probe
// now, listeners with their TLS, the connection limit, and the transfer to
// another project (offered to those who may change the project).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, renderAt, Route } from './util';
import { ClusterDetail } from '../pages/Clusters';
import { fmtUptime } from '../pages/ClusterFigures';

afterEach(() => {
  vi.unstubAllGlobals();
});

const P = '/api/v1/orgs/rw/projects/north';
const admin = me({ memberships: [{ org: 'rw', project: null, role: 'org-admin' }] });
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const T = '2026-12-07T22:00:00Z';

const adopted = (broker: Record<string, unknown> | null) =>
  fx.cluster({
    backend: 'external', auth_mode: 'password', agent_identities: 'dynamicSecurity', url: 'mqtts://broker.plant.example:8883', endpoints: ['mqtts://broker.plant.example:8883'],
    health: { checked_at: T, reachable: true, rtt_ms: 2.5, error: null, broker: broker as never },
  });

const figures = { clients_connected: 14, messages_received: 120345, messages_sent: 240690, messages_received_per_min: 61.5, messages_sent_per_min: 123, uptime_secs: 93784, version: 'mosquitto version 2.0.21' };

function page(user = admin, first = adopted(figures), after = adopted({ ...figures, clients_connected: 15 })) {
  const calls = mockApi((m, u, body) => {
    if (m === 'GET' && u.pathname === `${P}/clusters/plant-broker`) return json(first);
    if (m === 'POST' && u.pathname === `${P}/clusters/plant-broker/probe`) return json(after);
    if (m === 'GET' && u.pathname === '/api/v1/orgs/rw/projects') return json([{ slug: 'north', name: 'North' }, { slug: 'south', name: 'South' }].map((p) => ({ id: p.slug, org: 'rw', created_at: T, ...p })));
    if (m === 'POST' && u.pathname === `${P}/clusters/plant-broker/transfer`) return json(fx.cluster({ project: (body as { project: string }).project }));
    return undefined;
  });
  renderAt(
    '/o/rw/p/north/clusters/plant-broker',
    <>
      <Route path="/o/:org/p/:project/clusters/:cluster" element={<ClusterDetail />} />
      <Route path="/o/rw/p/south/clusters/plant-broker" element={<p>south’s cluster page</p>} />
    </>,
    user,
  );
  return calls;
}

const cells = (name: string) =>
  within(screen.getByRole('table', { name })).getAllByRole('row').map((r) => [...r.querySelectorAll('th,td')].map((c) => c.textContent));

describe('cluster page', () => {
  it('shows an adopted broker’s $SYS figures, its TLS listener and who sets its limits', async () => {
    page();
    await screen.findByRole('table', { name: 'Broker figures' });
    expect(cells('Broker figures')).toEqual([
      ['Clients connected', '14'],
      ['Messages received', '120,345 (61.5/min)'],
      ['Messages sent', '240,690 (123.0/min)'],
      ['Broker up for', '1 d 2 h'],
      ['Broker version', 'mosquitto version 2.0.21'],
    ]);
    expect(cells('Listeners')[1]).toEqual(['broker.plant.example', 'mqtts', '8883', 'TLS, checked against the system’s trusted CAs']);
    expect(screen.getByTestId('connection-limit')).toHaveTextContent('Weir does not manage them on an adopted broker');
  });

  it('probes now and shows the new figures', async () => {
    const calls = page();
    await screen.findByRole('table', { name: 'Broker figures' });
    await userEvent.click(screen.getByRole('button', { name: 'Probe now' }));
    await waitFor(() => expect(cells('Broker figures')[0]).toEqual(['Clients connected', '15']));
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.path)).toEqual([`${P}/clusters/plant-broker/probe`]);
  });

  it('shows a managed cluster’s connections per node, its listeners and its quota', async () => {
    const managed = fx.cluster({
      spec: { version: '5.8.6', replicas: 2, listeners: [{ name: 'mqtt', protocol: 'tcp', port: 1883 }, { name: 'mqtts', protocol: 'tls', port: 8883, tlsSecretRef: 'plant-tls' }] },
      status: { phase: 'Ready', nodes: [{ name: 'emqx-0', status: 'running', connections: 120 }, { name: 'emqx-1', status: 'running', connections: 80 }], connectionLimit: { tenantQuota: 1000, tenantNodes: 4, perListener: 125, clusterMax: 500 } },
    });
    page(admin, managed, managed);
    await screen.findByRole('table', { name: 'Broker figures' });
    expect(cells('Broker figures')).toEqual([['Connections', '200 on 2 nodes'], ['  emqx-0', '120 connections'], ['  emqx-1', '80 connections']]);
    expect(cells('Listeners').slice(1)).toEqual([['mqtt', 'tcp', '1883', 'none (plain text)'], ['mqtts', 'tls', '8883', 'TLS, certificate from plant-tls']]);
    expect(screen.getByTestId('connection-limit')).toHaveTextContent('At most 500 connections (125 per listener on each node), from the tenant’s quota of 1,000 shared by 4 nodes.');
  });

  it('transfers the cluster to another project and goes to its page there', async () => {
    const calls = page();
    await userEvent.click(await screen.findByRole('button', { name: 'Transfer to another project…' }));
    const dlg = screen.getByRole('dialog');
    await waitFor(() => expect(within(dlg).getByLabelText('Project')).toHaveValue('south'));
    await userEvent.click(within(dlg).getByRole('button', { name: 'Transfer to south' }));
    expect(await screen.findByText('south’s cluster page')).toBeInTheDocument();
    expect(calls.find((c) => c.path.endsWith('/transfer'))?.body).toEqual({ project: 'south' });
  });

  it('offers no transfer to a viewer, who may still probe', async () => {
    page(viewer);
    await screen.findByRole('table', { name: 'Broker figures' });
    expect(screen.queryByRole('button', { name: 'Transfer to another project…' })).toBeNull();
    expect(screen.getByRole('button', { name: 'Probe now' })).toBeEnabled();
  });

  it('writes uptimes the way people say them', () => {
    expect([fmtUptime(40), fmtUptime(720), fmtUptime(15000), fmtUptime(93784), fmtUptime(null)]).toEqual(['40 s', '12 min', '4 h 10 min', '1 d 2 h', '—']);
  });
});
