// The project's device credentials page: editors add, replace and delete;
// the secret is write-only (never in the list, asked for again on replace);
// the api's field errors show beside the field; viewers only see the list.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { json, me, mockApi, problem, renderAt, Route } from './util';
import { Credentials } from '../pages/Credentials';
import type { CredentialSummary } from '../api/types';

afterEach(() => vi.unstubAllGlobals());

const P = '/api/v1/orgs/rw/projects/north';
const T = '2026-01-02T03:04:05Z';
const editor = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-editor' }] });
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const page = <Route path="/o/:org/p/:project/credentials" element={<Credentials />} />;

function api(list: CredentialSummary[]) {
  return mockApi((m, u, body) => {
    if (m === 'GET' && u.pathname === `${P}/credentials`) return json(list);
    const name = decodeURIComponent(u.pathname.split('/').pop() ?? '');
    if (m === 'PUT' && u.pathname.startsWith(`${P}/credentials/`)) {
      const b = body as { kind: string; username?: string; certificatePem?: string };
      if (b.kind === 'certificate' && !b.certificatePem?.includes('BEGIN CERTIFICATE'))
        return problem(422, 'validation', 'invalid fields: certificatePem', [{ field: 'certificatePem', message: "holds no '-----BEGIN CERTIFICATE-----' block" }]);
      const row = { name, kind: b.kind, username: b.username ?? null, created_at: T, updated_at: T };
      const i = list.findIndex((c) => c.name === name);
      if (i >= 0) list[i] = row;
      else list.push(row);
      return json(row, i >= 0 ? 200 : 201);
    }
    if (m === 'DELETE' && u.pathname.startsWith(`${P}/credentials/`)) {
      list.splice(list.findIndex((c) => c.name === name), 1);
      return new Response(null, { status: 204 });
    }
    return undefined;
  });
}

describe('device credentials page', () => {
  it('an editor adds a login; the password goes in the PUT only', async () => {
    const calls = api([]);
    renderAt('/o/rw/p/north/credentials', page, editor);
    expect(await screen.findByText('No device credentials')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'New credential' }));
    const save = screen.getByRole('button', { name: 'Save' });
    expect(save).toBeDisabled();
    await userEvent.type(screen.getByLabelText('Name'), 'Scada Login');
    expect(screen.getByLabelText('Name')).toHaveAccessibleDescription(/lowercase letters/);
    await userEvent.clear(screen.getByLabelText('Name'));
    await userEvent.type(screen.getByLabelText('Name'), 'scada-login');
    await userEvent.type(screen.getByLabelText('User name'), 'operator');
    const pw = screen.getByLabelText('Password');
    expect(pw).toHaveAttribute('type', 'password');
    await userEvent.type(pw, 'Secret-Pw-1');
    await userEvent.click(save);
    const table = await screen.findByRole('table', { name: 'Device credentials' });
    const row = await within(table).findByText('scada-login');
    expect(row.closest('tr')).toHaveTextContent('User name and password');
    expect(row.closest('tr')).toHaveTextContent('operator');
    expect(document.body).not.toHaveTextContent('Secret-Pw-1');
    const put = calls.find((c) => c.method === 'PUT');
    expect(put?.path).toBe(`${P}/credentials/scada-login`);
    expect(put?.body).toEqual({ kind: 'userPassword', username: 'operator', password: 'Secret-Pw-1' });
  });

  it('replacing asks for the whole credential; a bad certificate is named beside its field', async () => {
    const calls = api([{ name: 'plc-cert', kind: 'certificate', username: null, created_at: T, updated_at: T }]);
    renderAt('/o/rw/p/north/credentials', page, editor);
    await userEvent.click(await screen.findByRole('button', { name: 'Replace plc-cert' }));
    expect(screen.getByLabelText('Name')).toBeDisabled();
    expect(screen.getByText(/never shown; enter the whole credential again/)).toBeInTheDocument();
    expect(screen.getByLabelText('Kind')).toHaveValue('certificate');
    await userEvent.type(screen.getByLabelText('Certificate (PEM)'), 'not a certificate');
    await userEvent.type(screen.getByLabelText('Private key (PEM)'), 'KEY');
    await userEvent.click(screen.getByRole('button', { name: 'Replace' }));
    await waitFor(() => expect(screen.getByLabelText('Certificate (PEM)')).toHaveAccessibleDescription(/BEGIN CERTIFICATE/));
    expect(calls.filter((c) => c.method === 'PUT')).toHaveLength(1);
  });

  it('deleting needs the name typed', async () => {
    const calls = api([{ name: 'spare', kind: 'userPassword', username: 'maint', created_at: T, updated_at: T }]);
    renderAt('/o/rw/p/north/credentials', page, editor);
    await userEvent.click(await screen.findByRole('button', { name: 'Delete spare' }));
    const del = screen.getByRole('button', { name: 'Delete credential' });
    expect(del).toBeDisabled();
    await userEvent.type(screen.getByLabelText(/to confirm/), 'spare');
    await userEvent.click(del);
    await waitFor(() => expect(calls.some((c) => c.method === 'DELETE' && c.path === `${P}/credentials/spare`)).toBe(true));
    expect(await screen.findByText('No device credentials')).toBeInTheDocument();
  });

  it('a viewer sees names and kinds, and no way to change them', async () => {
    api([{ name: 'scada-login', kind: 'userPassword', username: 'operator', created_at: T, updated_at: T }]);
    renderAt('/o/rw/p/north/credentials', page, viewer);
    expect(await screen.findByText('scada-login')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'New credential' })).toBeNull();
    expect(screen.queryByRole('button', { name: /Replace|Delete/ })).toBeNull();
    expect(screen.getByText(/your role does not allow changing them/)).toBeInTheDocument();
  });
});
