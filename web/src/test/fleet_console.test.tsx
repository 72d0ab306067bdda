// The cluster wizard's authentication mode, choosing a gateway's cluster,
// and what an agent's heartbeat reports on the gateway page.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, problem, renderAt, Route } from './util';
import { ClusterWizard } from '../pages/Clusters';
import { GatewayDetail, GatewayList } from '../pages/Gateways';
import type { Schemas } from '../api/http';

afterEach(() => {
  vi.unstubAllGlobals();
});

const admin = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-admin' }] });
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const P = '/api/v1/orgs/rw/projects/north';
const refusal = (name: string) => problem(422, 'validation', 'invalid fields', [{ field: 'spec.clusterRef', message: `no cluster named '${name}' in this project (nor shared with it)` }]);

describe('cluster wizard: how gateways log in', () => {
  const routes = (
    <>
      <Route path="/o/:org/p/:project/clusters/new" element={<ClusterWizard />} />
      <Route path="/o/:org/p/:project/clusters/:cluster" element={<p>cluster page</p>} />
    </>
  );

  it('a managed cluster offers only tokens, and sends apiJwt', async () => {
    const calls = mockApi((m, u) => (m === 'POST' && u.pathname === `${P}/clusters` ? json(fx.cluster({ name: 'plant-broker' }), 201) : undefined));
    renderAt('/o/rw/p/north/clusters/new', routes, admin);
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    await userEvent.type(screen.getByLabelText('Name'), 'plant-broker');
    const jwt = screen.getByRole('radio', { name: /Tokens from Weir \(JWT\)/ });
    expect(jwt).toBeChecked();
    expect(screen.getByRole('radio', { name: /Broker logins/ })).toBeDisabled();
    expect(screen.getByText(/Weir's public keys \(http:\/\/.*\/api\/v1\/jwks\.json\)/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    expect(screen.getByText(/Gateways log in with tokens from Weir \(JWT\)\./)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Create cluster' }));
    expect(await screen.findByText('cluster page')).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'POST')?.body).toMatchObject({ name: 'plant-broker', backend: 'kubernetes', auth_mode: 'apiJwt' });
  });

  it('an existing broker defaults to broker logins; choosing tokens sends apiJwt and no admin login', async () => {
    const calls = mockApi((m, u) => (m === 'POST' && u.pathname === `${P}/clusters` ? json(fx.cluster({ name: 'mosq', backend: 'external' }), 201) : undefined));
    renderAt('/o/rw/p/north/clusters/new', routes, admin);
    await userEvent.click(screen.getByRole('radio', { name: /Existing broker/ }));
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    await userEvent.type(screen.getByLabelText('Name'), 'mosq');
    await userEvent.clear(screen.getByLabelText('Broker URL'));
    await userEvent.type(screen.getByLabelText('Broker URL'), 'mqtt://broker.plant.local:1883');
    const logins = screen.getByRole('radio', { name: /Broker logins/ });
    expect(logins).toBeChecked();
    expect(logins).toBeEnabled();
    await userEvent.type(screen.getByLabelText('Admin username (optional)'), 'admin');
    await userEvent.click(screen.getByRole('radio', { name: /Tokens from Weir/ }));
    // The broker checks Weir's keys: no admin login to give.
    expect(screen.queryByLabelText('Admin username (optional)')).toBeNull();
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    await userEvent.click(screen.getByRole('button', { name: 'Create cluster' }));
    await screen.findByText('cluster page');
    const body = calls.find((c) => c.method === 'POST')?.body as Record<string, unknown>;
    expect(body).toMatchObject({ backend: 'external', url: 'mqtt://broker.plant.local:1883', auth_mode: 'apiJwt' });
    expect(body).not.toHaveProperty('username');
  });

  it('an existing broker in password mode sends its admin login', async () => {
    const calls = mockApi((m, u) => (m === 'POST' && u.pathname === `${P}/clusters` ? json(fx.cluster({ name: 'mosq', backend: 'external' }), 201) : undefined));
    renderAt('/o/rw/p/north/clusters/new', routes, admin);
    await userEvent.click(screen.getByRole('radio', { name: /Existing broker/ }));
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    await userEvent.type(screen.getByLabelText('Name'), 'mosq');
    await userEvent.type(screen.getByLabelText('Broker URL'), 'broker:1883');
    await userEvent.type(screen.getByLabelText('Admin username (optional)'), 'admin');
    await userEvent.click(screen.getByRole('button', { name: 'Next' }));
    expect(screen.getByText(/Gateways log in with a broker login Weir creates for each of them\./)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Create cluster' }));
    await screen.findByText('cluster page');
    expect(calls.find((c) => c.method === 'POST')?.body).toMatchObject({ backend: 'external', auth_mode: 'password', username: 'admin' });
  });
});

describe('a gateway’s cluster', () => {
  const own = [fx.cluster({ name: 'plant-broker', title: 'Plant broker' }), fx.cluster({ id: 'c2', name: 'backup' })];

  it('is chosen when creating the gateway; a refused one shows the api’s error beside the field', async () => {
    const posts: unknown[] = [];
    const calls = mockApi((m, u, body) => {
      if (u.pathname === `${P}/gateways` && m === 'GET') return json([]);
      if (u.pathname === `${P}/rollout`) return json([]);
      if (u.pathname === `${P}/clusters`) return json(own);
      if (u.pathname === `${P}/gateways` && m === 'POST') {
        posts.push(body);
        const ref = (body as { spec: { clusterRef?: string } }).spec.clusterRef;
        return ref === 'south-broker' ? refusal(ref) : json(fx.gateway({ name: 'north-pump', cluster: ref, spec: { clusterRef: ref } }), 201);
      }
      return undefined;
    });
    renderAt('/o/rw/p/north/gateways', <><Route path="/o/:org/p/:project/gateways" element={<GatewayList />} /><Route path="/o/:org/p/:project/gateways/:gateway" element={<p>gateway page</p>} /></>, admin);
    await userEvent.click(await screen.findByRole('button', { name: 'New gateway' }));
    const dlg = screen.getByRole('dialog');
    await userEvent.type(within(dlg).getByLabelText('Name'), 'north-pump');
    const pick = await within(dlg).findByLabelText('MQTT cluster');
    expect(within(pick).getAllByRole('option').map((o) => o.textContent)).toEqual(['No cluster yet', 'plant-broker (Plant broker)', 'backup', 'A cluster another project shares with this one…']);
    // A cluster of another project, typed by name (the api lists only this project's own).
    await userEvent.selectOptions(pick, 'A cluster another project shares with this one…');
    await userEvent.type(within(dlg).getByLabelText('Shared cluster name'), 'south-broker');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Create gateway' }));
    const field = within(dlg).getByLabelText('Shared cluster name');
    await waitFor(() => expect(field).toHaveAttribute('aria-invalid', 'true'));
    expect(field).toHaveAccessibleDescription(/^no cluster named 'south-broker' in this project \(nor shared with it\)/);
    expect(screen.queryByText('gateway page')).toBeNull();
    await userEvent.selectOptions(within(dlg).getByLabelText('MQTT cluster'), 'plant-broker');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Create gateway' }));
    expect(await screen.findByText('gateway page')).toBeInTheDocument();
    expect(posts).toHaveLength(2);
    expect(posts[1]).toMatchObject({ name: 'north-pump', spec: { clusterRef: 'plant-broker' } });
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(2);
  });

  function gatewayApi(state: { cluster: string | null }, patches: unknown[]) {
    return mockApi((m, u, body) => {
      if (u.pathname === `${P}/clusters`) return json(own);
      if (u.pathname === `${P}/rollout`) return json([]);
      if (u.pathname === `${P}/gateways/north-pump` && m === 'GET') return json(fx.gateway({ cluster: state.cluster, spec: state.cluster ? { clusterRef: state.cluster } : {} }));
      if (u.pathname === `${P}/gateways/north-pump` && m === 'PATCH') {
        patches.push(body);
        const ref = (body as { merge_patch: { clusterRef: string | null } }).merge_patch.clusterRef;
        if (ref === 'south-broker') return refusal(ref);
        state.cluster = ref;
        return json(fx.gateway({ cluster: ref, version: 2, spec: ref ? { clusterRef: ref } : {} }));
      }
      return undefined;
    });
  }
  const detail = <Route path="/o/:org/p/:project/gateways/:gateway" element={<GatewayDetail />} />;

  it('shows on the gateway page and is changed there; a refusal shows beside the field', async () => {
    const state = { cluster: 'plant-broker' as string | null };
    const patches: unknown[] = [];
    gatewayApi(state, patches);
    renderAt('/o/rw/p/north/gateways/north-pump', detail, admin);
    const current = await screen.findByTestId('current-cluster');
    expect(current).toHaveTextContent('Publishes to plant-broker.');
    expect(await within(current).findByRole('link', { name: 'plant-broker' })).toHaveAttribute('href', '/o/rw/p/north/clusters/plant-broker');
    const pick = await screen.findByLabelText('MQTT cluster');
    expect(pick).toHaveValue('plant-broker');
    expect(screen.getByRole('button', { name: 'Change cluster' })).toBeDisabled();

    await userEvent.selectOptions(pick, 'A cluster another project shares with this one…');
    await userEvent.type(screen.getByLabelText('Shared cluster name'), 'south-broker');
    await userEvent.click(screen.getByRole('button', { name: 'Change cluster' }));
    await waitFor(() => expect(screen.getByLabelText('Shared cluster name')).toHaveAccessibleDescription(/^no cluster named 'south-broker'/));
    expect(screen.getByTestId('current-cluster')).toHaveTextContent('Publishes to plant-broker.');

    await userEvent.selectOptions(screen.getByLabelText('MQTT cluster'), 'backup');
    expect(screen.queryByText(/no cluster named/)).toBeNull();
    await userEvent.click(screen.getByRole('button', { name: 'Change cluster' }));
    await waitFor(() => expect(screen.getByTestId('current-cluster')).toHaveTextContent('Publishes to backup.'));
    expect(patches).toEqual([
      { merge_patch: { clusterRef: 'south-broker' }, comment: 'cluster set to south-broker' },
      { merge_patch: { clusterRef: 'backup' }, comment: 'cluster set to backup' },
    ]);
  });

  it('a shared cluster shows by name; a viewer sees it but cannot change it', async () => {
    gatewayApi({ cluster: 'south-broker' }, []);
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    await waitFor(() => expect(screen.getByTestId('current-cluster')).toHaveTextContent('Publishes to south-broker, a cluster another project shares with this one.'));
    expect(screen.queryByRole('button', { name: 'Change cluster' })).toBeNull();
  });
});

describe('the agent’s heartbeat on the gateway page', () => {
  const detail = <Route path="/o/:org/p/:project/gateways/:gateway" element={<GatewayDetail />} />;
  function api(g: Schemas['Gateway'], online: boolean) {
    mockApi((_m, u) => {
      if (u.pathname === `${P}/gateways/north-pump`) return json(g);
      if (u.pathname === `${P}/rollout`) return json([fx.rollout({ gateway: 'north-pump', online, last_heartbeat: g.last_heartbeat })]);
      if (u.pathname === `${P}/clusters`) return json([]);
      return undefined;
    });
  }

  it('shows device health, the queue and dropped readings', async () => {
    const at = new Date(Date.now() - 20_000).toISOString();
    api(
      fx.gateway({
        online: true,
        last_heartbeat: at,
        applied_version: 3,
        agent_status: {
          appliedVersion: 3,
          agentVersion: '0.4.1',
          uptimeS: 3 * 3600 + 25 * 60,
          heartbeatIntervalS: 10,
          queueDepth: 1520,
          queueBytes: 3 * 1024 * 1024,
          droppedReadings: 42,
          readingsOut: 98765,
          refused: { version: 4, reason: 'signature does not verify with the pinned key', at: '2026-01-02T03:04:05Z' },
          devices: [
            { name: 'dosing-plc', state: 'ok', readings: 1200 },
            { name: 'flow-meter', state: 'down', readings: 7, lastError: 'connection refused (10.0.0.9:502)' },
          ],
        },
      }),
      true,
    );
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const report = await screen.findByRole('region', { name: 'Agent report' });
    const rows = within(within(report).getByRole('table', { name: 'Device health' })).getAllByRole('row').slice(1);
    expect(rows.map((r) => within(r).getAllByRole('cell').map((c) => c.textContent))).toEqual([
      ['dosing-plc', 'OK', (1200).toLocaleString(), ''],
      ['flow-meter', 'Down', '7', 'connection refused (10.0.0.9:502)'],
    ]);
    expect(within(report).getByLabelText('Queue')).toHaveTextContent(`${(1520).toLocaleString()}readings waiting on disk for the broker (3.0 MiB)`);
    expect(within(report).getByLabelText('Dropped readings')).toHaveTextContent('42lost because the queue was full');
    expect(within(report).getByLabelText('Readings sent')).toHaveTextContent((98765).toLocaleString());
    expect(within(report).getByLabelText('Uptime')).toHaveTextContent('3 h 25 minagent 0.4.1');
    expect(within(report).getByText(/The agent refused config bundle v4 on .*: signature does not verify with the pinned key It keeps running v3\./)).toBeInTheDocument();
    expect(within(report).getByText(/Last heartbeat 20 s ago .*; one every 10 s\./)).toBeInTheDocument();
    expect(within(report).queryByText(/offline/)).toBeNull();
  });

  it('says plainly when there was no heartbeat yet', async () => {
    api(fx.gateway({ agent_status: null, last_heartbeat: null }), false);
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const report = await screen.findByRole('region', { name: 'Agent report' });
    expect(report).toHaveTextContent('No heartbeat yet: the agent has not reported to Weir.');
    expect(within(report).queryByRole('table')).toBeNull();
  });

  it('an offline agent’s last report is marked as such', async () => {
    api(fx.gateway({ online: false, last_heartbeat: '2026-01-01T00:00:00Z', agent_status: { devices: [], queueDepth: 0 } }), false);
    renderAt('/o/rw/p/north/gateways/north-pump', detail, viewer);
    const report = await screen.findByRole('region', { name: 'Agent report' });
    expect(report).toHaveTextContent('The agent is offline: these are the values of its last heartbeat.');
    expect(report).toHaveTextContent('No devices reported');
  });
});
