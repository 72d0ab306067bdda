import { afterEach, expect, it, vi } from 'vitest';
import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, renderAt, Route } from './util';
import { Members } from '../pages/Members';
import { Audit } from '../pages/Audit';

afterEach(() => vi.unstubAllGlobals());

it('pages a long list the api hands back whole', async () => {
  const many = Array.from({ length: 30 }, (_, i) => fx.member({ user_id: `u${i}`, email: `person${String(i).padStart(2, '0')}@rw.example`, name: `P ${i}`, role: 'project-viewer' }));
  mockApi((_m, u) => (u.pathname.endsWith('/members') ? json(many) : u.pathname.endsWith('/invitations') ? json([]) : undefined));
  renderAt('/o/rw/p/north/members', <Route path="/o/:org/p/:project/members" element={<Members />} />, me({ system_admin: true }));
  expect(await screen.findByText('person00@rw.example')).toBeInTheDocument();
  expect(screen.queryByText('person25@rw.example')).toBeNull();
  await userEvent.click(screen.getByRole('button', { name: 'Next' }));
  expect(await screen.findByText('person25@rw.example')).toBeInTheDocument();
  expect(screen.queryByText('person00@rw.example')).toBeNull();
  await userEvent.click(screen.getByRole('button', { name: 'Previous' }));
  expect(await screen.findByText('person00@rw.example')).toBeInTheDocument();
});

it('follows the api’s cursor and sends the filters', async () => {
  const calls = mockApi((_m, u) => {
    if (!u.pathname.endsWith('/audit')) return undefined;
    const cursor = u.searchParams.get('cursor');
    return json(cursor ? { items: [fx.audit({ seq: 1 })], next_cursor: null } : { items: [fx.audit({ seq: 2, at: '2026-01-01T00:01:00Z', action: 'project.create', target: 'project:north' })], next_cursor: 1 });
  });
  renderAt('/o/rw/audit', <Route path="/o/:org/audit" element={<Audit />} />, me({ system_admin: true }));
  expect(await screen.findByText('project.create')).toBeInTheDocument();
  await userEvent.click(screen.getByRole('button', { name: 'Next' }));
  expect(await screen.findByText('org.create')).toBeInTheDocument();
  expect(calls.some((c) => c.path.includes('cursor=1'))).toBe(true);
  await userEvent.type(screen.getByLabelText('Action'), 'gateway.update');
  await userEvent.click(screen.getByRole('button', { name: 'Apply filters' }));
  await vi.waitFor(() => expect(calls.some((c) => c.path.includes('action=gateway.update'))).toBe(true));
});
