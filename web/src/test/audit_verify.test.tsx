import { afterEach, expect, it, vi } from 'vitest';
import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, renderAt, Route } from './util';
import { Audit } from '../pages/Audit';

afterEach(() => vi.unstubAllGlobals());

const page = { items: [fx.audit({ seq: 1 })], next_cursor: null };

it('lets a system admin verify the chain and shows where it breaks', async () => {
  const calls = mockApi((m, u) => {
    if (u.pathname.endsWith('/audit')) return json(page);
    if (m === 'POST' && u.pathname === '/api/v1/audit/verify') {
      return json({ intact: false, entries: 6, legacy_entries: 0, broken_at: 7, reason: 'content does not match its keyed hash' });
    }
    return undefined;
  });
  renderAt('/o/rw/audit', <Route path="/o/:org/audit" element={<Audit />} />, me({ system_admin: true }));
  await userEvent.click(await screen.findByRole('button', { name: 'Verify chain' }));
  const verdict = await screen.findByRole('status', { name: 'Chain verdict' });
  expect(verdict).toHaveTextContent('Entry 7: content does not match its keyed hash');
  expect(calls.filter((c) => c.path === '/api/v1/audit/verify')).toHaveLength(1);
});

it('says how many entries predate the keyed chain', async () => {
  mockApi((m, u) => {
    if (u.pathname.endsWith('/audit')) return json(page);
    if (m === 'POST' && u.pathname === '/api/v1/audit/verify') return json({ intact: true, entries: 12, legacy_entries: 4 });
    return undefined;
  });
  renderAt('/o/rw/audit', <Route path="/o/:org/audit" element={<Audit />} />, me({ system_admin: true }));
  await userEvent.click(await screen.findByRole('button', { name: 'Verify chain' }));
  expect(await screen.findByRole('status', { name: 'Chain verdict' })).toHaveTextContent('12 entries, 4 of them written before the chain was keyed');
});

it('offers no chain check to an organization admin', async () => {
  mockApi((_m, u) => (u.pathname.endsWith('/audit') ? json(page) : undefined));
  renderAt('/o/rw/audit', <Route path="/o/:org/audit" element={<Audit />} />, me({ memberships: [{ org: 'rw', role: 'org-admin' }] as never }));
  expect(await screen.findByText('org.create')).toBeInTheDocument();
  expect(screen.queryByRole('button', { name: 'Verify chain' })).toBeNull();
});
