import { afterEach, describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useState } from 'react';
import { fx, json, me, mockApi, problem, renderAt, Route } from './util';
import { SignIn } from '../pages/SignIn';
import { ConfigEditor, normalizePath } from '../pages/ConfigEditor';
import { GatewayList } from '../pages/Gateways';
import { Members } from '../pages/Members';
import { ConfirmDelete, ToastProvider } from '../ui/kit';
import type { GatewayConfig } from '../api/types';
import { ClusterDetail } from '../pages/Clusters';
import { Alerts } from '../pages/Alerts';

afterEach(() => {
  vi.unstubAllGlobals();
});

const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const editor = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-editor' }] });

describe('sign in', () => {
  it('signs in and shows a wrong password in words', async () => {
    let attempts = 0;
    const calls = mockApi((m, u) => {
      if (u.pathname === '/api/v1/auth/providers') return json({ local: true, oidc: { name: 'Riverside SSO', login_url: '/api/v1/auth/oidc/login' } });
      if (m === 'POST' && u.pathname === '/api/v1/auth/login') {
        attempts++;
        return attempts === 1 ? problem(401, 'invalid-credentials', 'wrong email or password') : json({ csrf_token: 'c', user: fx.user() });
      }
      if (u.pathname === '/api/v1/me') return json({ user: fx.user({ system_admin: true }), auth_method: 'session', orgs: [], projects: [] });
      return undefined;
    });
    renderAt('/signin', <><Route path="/signin" element={<SignIn />} /><Route path="/" element={<p>home</p>} /></>, null);
    expect(await screen.findByText('Sign in with Riverside SSO')).toHaveAttribute('href', '/api/v1/auth/oidc/login?return_to=%2F');
    await userEvent.type(screen.getByLabelText('Email'), 'a@b.c');
    await userEvent.type(screen.getByLabelText('Password'), 'nope');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Wrong email or password.');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByText('home')).toBeInTheDocument();
    expect(calls.filter((c) => c.path === '/api/v1/auth/login')[1].body).toEqual({ email: 'a@b.c', password: 'nope' });
  });
});

describe('gateway config editor', () => {
  function Harness({ errors }: { errors: Record<string, string> }) {
    const [cfg, setCfg] = useState<GatewayConfig>({
      devices: [{ name: 'dosing', adapter: 'modbusTcp', modbus: { host: '10.0.0.5', port: 502 }, groups: [{ name: 'fast', intervalMs: 5, tags: [{ name: 'cl2', address: '1!400001', dataType: 'float32', unit: 'mg/L' }] }] }],
    });
    return <ConfigEditor value={cfg} onChange={setCfg} errors={errors} />;
  }

  it('shows the api’s message beside the field it names', () => {
    render(<Harness errors={{ 'spec.devices[0].groups[0].intervalMs': 'must be at least 10 ms', 'spec.uplink.qos': 'must be 0 or 1' }} />);
    const interval = screen.getByLabelText('Poll every (ms)');
    expect(interval).toHaveAttribute('aria-invalid', 'true');
    expect(interval).toHaveAccessibleDescription('must be at least 10 ms');
    expect(screen.getByLabelText('Tag name')).not.toHaveAttribute('aria-invalid');
    // a field the form does not show is still named, in words
    expect(screen.getAllByRole('alert').some((a) => a.textContent?.includes('uplink.qos: must be 0 or 1'))).toBe(true);
  });

  it('edits devices, groups and tags', async () => {
    render(<Harness errors={{}} />);
    await userEvent.click(screen.getByRole('button', { name: '+ Add tag' }));
    expect(screen.getAllByLabelText('Tag name')).toHaveLength(2);
    await userEvent.click(screen.getByRole('button', { name: '+ Add simulated device' }));
    expect(screen.getAllByLabelText('Device name')).toHaveLength(2);
    expect(screen.getAllByLabelText('Signal')).toHaveLength(1);
  });

  it('normalizes field paths', () => {
    expect(normalizePath('spec.config.devices[1].name')).toBe('devices[1].name');
    expect(normalizePath('devices[0]')).toBe('devices[0]');
  });
});

describe('roles', () => {
  const gw = [fx.gatewaySummary({ name: 'north-pump', version: 5, bundle_version: 3, applied_version: 2, site: { name: 'North' } })];
  const rollout = [fx.rollout({ gateway: 'north-pump', online: true, last_heartbeat: new Date().toISOString(), desired_version: 3, applied_version: 2 })];
  const fleet = (u: URL) => (u.pathname.endsWith('/gateways') ? json(gw) : u.pathname.endsWith('/rollout') ? json(rollout) : undefined);

  it('a viewer sees gateways but no edit controls', async () => {
    mockApi((_m, u) => fleet(u));
    renderAt('/o/rw/p/north/gateways', <Route path="/o/:org/p/:project/gateways" element={<GatewayList />} />, viewer);
    expect(await screen.findByText('north-pump')).toBeInTheDocument();
    expect(screen.getByText('runs v2, wants v3')).toBeInTheDocument();
    expect(screen.getByText('Online')).toBeInTheDocument();
    expect(screen.getByText('North')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'New gateway' })).toBeNull();
  });

  it('an editor is offered to create one', async () => {
    mockApi((_m, u) => fleet(u));
    renderAt('/o/rw/p/north/gateways', <Route path="/o/:org/p/:project/gateways" element={<GatewayList />} />, editor);
    expect(await screen.findByRole('button', { name: 'New gateway' })).toBeInTheDocument();
  });

  it('a viewer cannot invite, change roles or remove members', async () => {
    mockApi((_m, u) => (u.pathname.endsWith('/members') ? json([fx.member()]) : u.pathname.endsWith('/invitations') ? json([]) : undefined));
    renderAt('/o/rw/p/north/members', <Route path="/o/:org/p/:project/members" element={<Members />} />, viewer);
    expect(await screen.findByText('op@rw.example')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Invite member' })).toBeNull();
    expect(screen.queryByRole('combobox')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Remove' })).toBeNull();
  });

  it('an org admin changes a role and sees the outcome', async () => {
    const calls = mockApi((m, u) => {
      if (u.pathname === '/api/v1/orgs/rw/members' && m === 'GET') return json([fx.member({ role: 'org-admin' })]);
      if (u.pathname.endsWith('/invitations')) return json([]);
      if (m === 'PATCH') return json(fx.member({ role: 'org-owner' }));
      return undefined;
    });
    const owner = me({ memberships: [{ org: 'rw', project: null, role: 'org-owner' }] });
    renderAt('/o/rw/members', <Route path="/o/:org/members" element={<Members />} />, owner);
    const select = await screen.findByLabelText('Role of op@rw.example');
    fireEvent.change(select, { target: { value: 'org-owner' } });
    expect(await screen.findByText('Changed the role of op@rw.example.')).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'PATCH')).toMatchObject({ path: '/api/v1/orgs/rw/members/u2', body: { role: 'org-owner' } });
  });
});

describe('confirmations and words', () => {
  it('delete needs the name typed', async () => {
    const onConfirm = vi.fn(async () => {});
    render(<ToastProvider><ConfirmDelete what="cluster" name="plant-broker" onConfirm={onConfirm} onClose={() => {}} /></ToastProvider>);
    const btn = screen.getByRole('button', { name: 'Delete cluster' });
    expect(btn).toBeDisabled();
    await userEvent.type(screen.getByRole('textbox'), 'plant-broke');
    expect(btn).toBeDisabled();
    await userEvent.type(screen.getByRole('textbox'), 'r');
    expect(btn).toBeEnabled();
    await userEvent.click(btn);
    await waitFor(() => expect(onConfirm).toHaveBeenCalledWith('plant-broker'));
  });

  it('cluster conditions read as words', async () => {
    mockApi((_m, u) => (u.pathname.endsWith('/clusters/plant-broker') ? json(fx.cluster({ spec: { version: '5.8.6', replicas: 3 }, status: { phase: 'Degraded', readyReplicas: 2, conditions: [{ type: 'Ready', status: 'False', reason: 'NodesNotReady', message: '2 of 3 nodes ready', lastTransitionTime: '2026-01-01T00:00:00Z' }] } })) : undefined));
    renderAt('/o/rw/p/north/clusters/plant-broker', <Route path="/o/:org/p/:project/clusters/:cluster" element={<ClusterDetail />} />, viewer);
    expect(await screen.findByText(/Ready: no \(nodes not ready\)\. 2 of 3 nodes ready\./)).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Delete cluster' })).toBeNull();
    expect(screen.queryByRole('button', { name: 'Scale' })).toBeNull();
  });

  it('says how gateways log in to a broker, and warns about an open one', async () => {
    let identities = 'dynamicSecurity';
    mockApi((_m, u) => (u.pathname.endsWith('/clusters/plant-broker') ? json(fx.cluster({ backend: 'external', auth_mode: 'password', agent_identities: identities, url: 'mqtt://broker:1883', shared_with: ['south'] })) : undefined));
    const route = <Route path="/o/:org/p/:project/clusters/:cluster" element={<ClusterDetail />} />;
    const { unmount } = renderAt('/o/rw/p/north/clusters/plant-broker', route, viewer);
    expect(await screen.findByText(/Each gateway has its own broker login and ACL/)).toBeInTheDocument();
    expect(screen.getByText('Shared with south.')).toBeInTheDocument();
    expect(screen.queryByText(/has no authentication/)).toBeNull();
    unmount();
    identities = 'none';
    renderAt('/o/rw/p/north/clusters/plant-broker', route, viewer);
    expect(await screen.findByText(/This broker has no authentication/)).toBeInTheDocument();
  });
});

describe('alert rules', () => {
  it('lists a rule as the api answers it: its name, what fires it, its severity', async () => {
    mockApi((_m, u) => (u.pathname.endsWith('/alerts/rules') ? json([fx.rule()]) : undefined));
    renderAt('/o/rw/p/north/alerts/rules', <Route path="/o/:org/p/:project/alerts/:tab" element={<Alerts />} />, editor);
    const table = await screen.findByRole('table', { name: 'Alert rules' });
    expect(table).toHaveTextContent('Chlorine residual low');
    expect(table).toHaveTextContent('chlorination / chlorine_residual below 0.3 for 10 s');
    expect(table).toHaveTextContent('critical');
    await userEvent.click(screen.getByRole('button', { name: 'Edit' }));
    expect(screen.getByRole('dialog')).toHaveTextContent('Edit rule Chlorine residual low');
    expect(screen.getByLabelText('Name')).toHaveValue('Chlorine residual low');
  });

  it('shows the api’s objection beside the rule’s field', async () => {
    mockApi((m, u) => {
      if (!u.pathname.endsWith('/alerts/rules')) return undefined;
      return m === 'GET' ? json([]) : problem(422, 'validation', 'invalid fields', [{ field: 'threshold', message: 'must be a number' }]);
    });
    renderAt('/o/rw/p/north/alerts/rules', <Route path="/o/:org/p/:project/alerts/:tab" element={<Alerts />} />, editor);
    await userEvent.click(await screen.findByRole('button', { name: 'New rule' }));
    await userEvent.type(screen.getByLabelText('Name'), 'Turbidity');
    await userEvent.click(screen.getByRole('button', { name: 'Save rule' }));
    expect(await screen.findByLabelText('Value')).toHaveAccessibleDescription('must be a number');
  });

  it('an email channel uses STARTTLS unless the user picks none, which it warns about', async () => {
    const calls = mockApi((m, u) => {
      if (!u.pathname.endsWith('/alerts/channels')) return undefined;
      return m === 'GET' ? json([]) : json({ id: 'ch1', name: 'Control room', kind: 'email' }, 201);
    });
    renderAt('/o/rw/p/north/alerts/channels', <Route path="/o/:org/p/:project/alerts/:tab" element={<Alerts />} />, editor);
    await userEvent.click(await screen.findByRole('button', { name: 'New channel' }));
    await userEvent.type(screen.getByLabelText('Name'), 'Control room');
    await userEvent.selectOptions(screen.getByLabelText('Kind'), 'email');
    expect(screen.getByLabelText('Encryption')).toHaveValue('starttls');
    expect(screen.queryByText(/cross the network in clear/)).toBeNull();
    await userEvent.selectOptions(screen.getByLabelText('Encryption'), 'none');
    expect(screen.getByText(/cross the network in clear/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Create channel' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true));
    const post = calls.find((c) => c.method === 'POST')!;
    expect((post.body as { email: { tls: string } }).email.tls).toBe('none');
  });
});
