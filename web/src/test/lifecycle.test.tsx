// Account and agent lifecycle: changing a password, signing out everywhere,
// disabling accounts, revoking a gateway's agent.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, problem, renderAt, Route } from './util';
import { Account } from '../pages/Account';
import { Users } from '../pages/Users';
import { GatewayDetail } from '../pages/Gateways';
import { Layout } from '../Layout';
import { SignIn } from '../pages/SignIn';

afterEach(() => {
  vi.unstubAllGlobals();
});

const accountRoutes = (
  <>
    <Route path="/account" element={<Account />} />
    <Route path="/signin" element={<p>sign-in page</p>} />
  </>
);

async function fillPassword(current: string, next: string, confirm: string) {
  await userEvent.type(screen.getByLabelText('Current password'), current);
  await userEvent.type(screen.getByLabelText('New password'), next);
  await userEvent.type(screen.getByLabelText('Confirm new password'), confirm);
  await userEvent.click(screen.getByRole('button', { name: 'Change password' }));
}

describe('change password', () => {
  it('a confirmation that does not match blocks the change and says so beside the field', async () => {
    const calls = mockApi(() => undefined);
    renderAt('/account', accountRoutes);
    await fillPassword('old-password-123', 'new-password-456', 'new-password-457');
    expect(screen.getByLabelText('Confirm new password')).toHaveAccessibleDescription('Does not match the new password.');
    expect(calls.filter((c) => c.method === 'PUT')).toHaveLength(0);
  });

  it('changes the password and says the other sessions ended', async () => {
    const calls = mockApi((m, u) => (m === 'PUT' && u.pathname === '/api/v1/me/password' ? new Response(null, { status: 204 }) : undefined));
    renderAt('/account', accountRoutes);
    await fillPassword('old-password-123', 'new-password-456', 'new-password-456');
    expect(await screen.findByText(/Your password is changed\. Your other sessions were signed out/)).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'PUT')?.body).toEqual({ current_password: 'old-password-123', new_password: 'new-password-456' });
    expect(screen.getByLabelText('Current password')).toHaveValue('');
  });

  it('shows a wrong current password beside that field and keeps the user signed in', async () => {
    mockApi((m) => (m === 'PUT' ? problem(422, 'validation', 'invalid fields', [{ field: 'current_password', message: 'is not your current password' }]) : undefined));
    renderAt('/account', accountRoutes);
    await fillPassword('not-my-password', 'new-password-456', 'new-password-456');
    await waitFor(() => expect(screen.getByLabelText('Current password')).toHaveAccessibleDescription('is not your current password'));
    expect(screen.getByLabelText('Current password')).toHaveAttribute('aria-invalid', 'true');
    expect(screen.queryByText('sign-in page')).toBeNull();
    expect(screen.queryByText(/Your password is changed/)).toBeNull();
  });

  it('shows the api’s objection to the new password beside it', async () => {
    mockApi((m) => (m === 'PUT' ? problem(422, 'validation', 'invalid fields', [{ field: 'new_password', message: 'must be at least 12 characters' }]) : undefined));
    renderAt('/account', accountRoutes);
    await fillPassword('old-password-123', 'short', 'short');
    await waitFor(() => expect(screen.getByLabelText('New password')).toHaveAccessibleDescription(/^must be at least 12 characters/));
    expect(screen.getByLabelText('Current password')).not.toHaveAttribute('aria-invalid');
  });

  it('an account without a password (single sign-on) is told where to change it, not offered the form', () => {
    mockApi(() => undefined);
    renderAt('/account', accountRoutes, me({ has_password: false }));
    expect(screen.getByTestId('sso-only')).toHaveTextContent('single sign-on');
    expect(screen.queryByLabelText('Current password')).toBeNull();
  });
});

describe('sign out everywhere', () => {
  it('asks first, saying this session ends too, then lands on the sign-in page', async () => {
    const calls = mockApi((m, u) => (m === 'DELETE' && u.pathname === '/api/v1/me/sessions' ? new Response(null, { status: 204 }) : undefined));
    renderAt('/account', accountRoutes);
    await userEvent.click(screen.getByRole('button', { name: 'Sign out everywhere' }));
    const dlg = screen.getByRole('dialog');
    expect(dlg).toHaveTextContent('this one included');
    expect(calls).toHaveLength(0);
    await userEvent.click(within(dlg).getByRole('button', { name: 'Sign out all sessions' }));
    expect(await screen.findByText('sign-in page')).toBeInTheDocument();
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual(['DELETE /api/v1/me/sessions']);
  });

  it('cancel keeps every session', async () => {
    const calls = mockApi(() => undefined);
    renderAt('/account', accountRoutes);
    await userEvent.click(screen.getByRole('button', { name: 'Sign out everywhere' }));
    await userEvent.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(calls).toHaveLength(0);
  });
});

describe('users (system administrators)', () => {
  const admin = me({ id: 'u1', email: 'admin@weir.test', system_admin: true });
  const people = () => [
    fx.user({ id: 'u1', email: 'admin@weir.test', name: 'Admin', system_admin: true, last_login_at: '2026-02-01T10:00:00Z' }),
    fx.user({ id: 'u2', email: 'olive@riverside.example', name: 'Olive' }),
    fx.user({ id: 'u3', email: 'gone@riverside.example', name: 'Gone', disabled_at: '2026-02-02T10:00:00Z' }),
  ];
  const route = <Route path="/users" element={<Users />} />;

  it('lists accounts and shows a disabled one clearly; no disabling yourself', async () => {
    mockApi((m, u) => (m === 'GET' && u.pathname === '/api/v1/users' ? json(people()) : undefined));
    renderAt('/users', route, admin);
    const gone = await screen.findByTestId('user-gone@riverside.example');
    expect(gone).toHaveTextContent('Disabled');
    expect(within(gone).getByRole('button', { name: 'Enable gone@riverside.example' })).toBeInTheDocument();
    expect(screen.getByTestId('user-olive@riverside.example')).toHaveTextContent('Active');
    const self = screen.getByTestId('user-admin@weir.test');
    expect(self).toHaveTextContent('you');
    expect(within(self).queryByRole('button')).toBeNull();
  });

  it('disable asks first, calls the api, and the row shows disabled', async () => {
    const calls = mockApi((m, u) => {
      if (m === 'GET' && u.pathname === '/api/v1/users') return json(people());
      if (m === 'POST' && u.pathname === '/api/v1/users/u2/disable') return json(fx.user({ id: 'u2', email: 'olive@riverside.example', name: 'Olive', disabled_at: '2026-03-01T00:00:00Z' }));
      return undefined;
    });
    renderAt('/users', route, admin);
    await userEvent.click(await screen.findByRole('button', { name: 'Disable olive@riverside.example' }));
    const dlg = screen.getByRole('dialog');
    expect(dlg).toHaveTextContent('can no longer sign in');
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0);
    await userEvent.click(within(dlg).getByRole('button', { name: 'Disable account' }));
    await waitFor(() => expect(screen.getByTestId('user-olive@riverside.example')).toHaveTextContent('Disabled'));
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.path)).toEqual(['/api/v1/users/u2/disable']);
    expect(screen.getByRole('button', { name: 'Enable olive@riverside.example' })).toBeInTheDocument();
  });

  it('enable calls the api and the row shows active', async () => {
    const calls = mockApi((m, u) => {
      if (m === 'GET' && u.pathname === '/api/v1/users') return json(people());
      if (m === 'POST' && u.pathname === '/api/v1/users/u3/enable') return json(fx.user({ id: 'u3', email: 'gone@riverside.example', name: 'Gone' }));
      return undefined;
    });
    renderAt('/users', route, admin);
    await userEvent.click(await screen.findByRole('button', { name: 'Enable gone@riverside.example' }));
    await userEvent.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Enable account' }));
    await waitFor(() => expect(screen.getByTestId('user-gone@riverside.example')).toHaveTextContent('Active'));
    expect(calls.some((c) => c.method === 'POST' && c.path === '/api/v1/users/u3/enable')).toBe(true);
  });

  it('the api’s refusal (the last administrator) reads in words and the row stays active', async () => {
    mockApi((m, u) => {
      if (m === 'GET' && u.pathname === '/api/v1/users') return json(people());
      if (m === 'POST') return problem(409, 'conflict', 'the last system administrator cannot be disabled');
      return undefined;
    });
    renderAt('/users', route, admin);
    await userEvent.click(await screen.findByRole('button', { name: 'Disable olive@riverside.example' }));
    await userEvent.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Disable account' }));
    expect(await within(screen.getByRole('dialog')).findByRole('alert')).toHaveTextContent('The last system administrator cannot be disabled.');
    expect(screen.getByTestId('user-olive@riverside.example')).toHaveTextContent('Active');
  });

  it('creates an account and shows the api’s field error beside the field', async () => {
    let tries = 0;
    const calls = mockApi((m, u) => {
      if (m === 'GET' && u.pathname === '/api/v1/users') return json(people());
      if (m === 'POST' && u.pathname === '/api/v1/users') {
        tries++;
        return tries === 1 ? problem(422, 'validation', 'invalid fields', [{ field: 'password', message: 'must be at least 12 characters' }]) : json(fx.user({ id: 'u9', email: 'new@riverside.example' }), 201);
      }
      return undefined;
    });
    renderAt('/users', route, admin);
    await userEvent.click(await screen.findByRole('button', { name: 'New account' }));
    const dlg = screen.getByRole('dialog');
    await userEvent.type(within(dlg).getByLabelText('Email'), 'new@riverside.example');
    await userEvent.type(within(dlg).getByLabelText('Name'), 'New');
    await userEvent.type(within(dlg).getByLabelText('Password'), 'short');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Create account' }));
    await waitFor(() => expect(within(dlg).getByLabelText('Password')).toHaveAccessibleDescription(/must be at least 12 characters/));
    await userEvent.clear(within(dlg).getByLabelText('Password'));
    await userEvent.type(within(dlg).getByLabelText('Password'), 'long-enough-password');
    await userEvent.click(within(dlg).getByRole('button', { name: 'Create account' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(calls.filter((c) => c.method === 'POST').pop()?.body).toEqual({ email: 'new@riverside.example', name: 'New', password: 'long-enough-password', system_admin: false });
  });

  it('only system administrators see the Users entry; others get no list', async () => {
    const calls = mockApi((_m, u) => (u.pathname === '/api/v1/orgs' ? json([]) : u.pathname === '/api/v1/users' ? json(people()) : undefined));
    const routes = <Route element={<Layout />}><Route path="/users" element={<Users />} /></Route>;
    const { unmount } = renderAt('/users', routes, me());
    expect(screen.queryByRole('link', { name: 'Users' })).toBeNull();
    expect(screen.getByText('Only system administrators manage accounts.')).toBeInTheDocument();
    expect(calls.some((c) => c.path === '/api/v1/users')).toBe(false);
    unmount();
    renderAt('/users', routes, admin);
    expect(screen.getByRole('link', { name: 'Users' })).toBeInTheDocument();
    expect(await screen.findByTestId('user-olive@riverside.example')).toBeInTheDocument();
  });
});

describe('a disabled account', () => {
  it('signing in says the account is disabled, not that the password is wrong', async () => {
    mockApi((m, u) => {
      if (u.pathname === '/api/v1/auth/providers') return json({ local: true, oidc: null });
      if (m === 'POST' && u.pathname === '/api/v1/auth/login') return problem(403, 'account-disabled', 'this account is disabled');
      return undefined;
    });
    renderAt('/signin', <><Route path="/signin" element={<SignIn />} /><Route path="/" element={<p>home</p>} /></>, null);
    await userEvent.type(screen.getByLabelText('Email'), 'gone@riverside.example');
    await userEvent.type(screen.getByLabelText('Password'), 'right-password-123');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('This account is disabled. Ask a system administrator to enable it.');
    expect(screen.queryByText('home')).toBeNull();
  });
});

describe('revoke a gateway’s agent', () => {
  const route = <Route path="/o/:org/p/:project/gateways/:gateway" element={<GatewayDetail />} />;
  const fleet = (m: string, u: URL) => {
    if (m === 'GET' && u.pathname.endsWith('/gateways/north-pump')) return json(fx.gateway({ spec: { site: { name: 'North' }, devices: [] } }));
    if (m === 'GET' && u.pathname.endsWith('/rollout')) return json([fx.rollout({ gateway: 'north-pump', online: true, last_heartbeat: new Date().toISOString() })]);
    if (m === 'DELETE' && u.pathname === '/api/v1/orgs/rw/projects/north/gateways/north-pump/agent') return new Response(null, { status: 204 });
    return undefined;
  };

  it('asks first, explaining the agent stops at once and must enroll again; then shows the result', async () => {
    const calls = mockApi(fleet);
    const editor = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-editor' }] });
    renderAt('/o/rw/p/north/gateways/north-pump', route, editor);
    await userEvent.click(await screen.findByRole('button', { name: 'Revoke agent' }));
    const dlg = screen.getByRole('dialog');
    expect(dlg).toHaveTextContent('stops at once');
    expect(dlg).toHaveTextContent('enroll the agent again');
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false);
    await userEvent.click(within(dlg).getByRole('button', { name: 'Revoke agent' }));
    expect(await screen.findByTestId('agent-revoked')).toHaveTextContent('The agent is revoked');
    expect(screen.getByRole('link', { name: 'issue an enrollment token' })).toHaveAttribute('href', '/o/rw/p/north/gateways/north-pump/enrollment');
    expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/api/v1/orgs/rw/projects/north/gateways/north-pump/agent']);
  });

  it('a viewer is not offered it', async () => {
    mockApi(fleet);
    const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
    renderAt('/o/rw/p/north/gateways/north-pump', route, viewer);
    expect(await screen.findByRole('heading', { name: 'north-pump' })).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Revoke agent' })).toBeNull();
  });
});
