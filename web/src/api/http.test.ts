import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, UNAUTHENTICATED_EVENT } from './http';
import { json, mockApi, problem } from '../test/util';
import { auth, members, orgs, projects } from './endpoints';

async function fail(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    return e as ApiError;
  }
  throw new Error('expected the call to fail');
}

afterEach(() => {
  vi.unstubAllGlobals();
  document.cookie = 'weir_csrf=; Max-Age=0';
});

describe('errors in words', () => {
  it('turns a validation problem into a sentence naming the fields', async () => {
    mockApi(() => problem(422, 'validation', 'invalid fields: slug', [{ field: 'slug', message: 'must be lowercase' }]));
    const e = await fail(orgs.create({ slug: 'A', name: 'a' }));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.message).toBe('Some fields need attention: slug must be lowercase.');
    expect(e.fieldMap()).toEqual({ slug: 'must be lowercase' });
  });

  it('never shows a bare status code', () => {
    for (const [status, kind] of [[401, 'unauthenticated'], [403, 'forbidden'], [403, 'csrf'], [404, 'not-found'], [500, 'internal'], [503, 'unavailable']] as const) {
      const e = new ApiError(status, { type: `https://weir.dev/problems/${kind}`, detail: 'x' });
      expect(e.message).not.toMatch(/\b\d{3}\b/);
      expect(e.message.length).toBeGreaterThan(15);
    }
    expect(new ApiError(0, undefined).message).toMatch(/Cannot reach the Weir server/);
  });

  it('says when the server cannot be reached', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => { throw new TypeError('Failed to fetch'); }));
    const e = await fail(orgs.list());
    expect(e.status).toBe(0);
    expect(e.message).toMatch(/Cannot reach the Weir server/);
  });

  it('says when an account is locked', () => {
    const e = new ApiError(429, { type: 'https://weir.dev/problems/account-locked', detail: 'account locked until 2030-01-01T10:00:00Z' });
    expect(e.message).toMatch(/^Too many failed sign-ins\. The account is locked until/);
  });
});

describe('the session', () => {
  it('sends the CSRF cookie back as x-csrf-token on changes only', async () => {
    document.cookie = 'weir_csrf=tok123';
    const calls = mockApi((m) => (m === 'GET' ? json([]) : json({}, 201)));
    await orgs.list();
    await orgs.create({ slug: 'a', name: 'A' });
    expect(calls[0].headers['x-csrf-token']).toBeUndefined();
    expect(calls[1].headers['x-csrf-token']).toBe('tok123');
    expect(calls[1].headers['content-type']).toBe('application/json');
    expect(calls[1].body).toEqual({ slug: 'a', name: 'A' });
  });

  it('a 401 sends the user to sign-in, except from sign-in itself and the “who am I” probe', async () => {
    const gone = vi.fn();
    window.addEventListener(UNAUTHENTICATED_EVENT, gone);
    try {
      mockApi(() => problem(401, 'unauthenticated', 'no session'));
      await fail(auth.me());
      await fail(auth.login('a@b.c', 'wrong'));
      expect(gone).not.toHaveBeenCalled();
      await fail(projects.list('rw'));
      expect(gone).toHaveBeenCalledTimes(1);
    } finally {
      window.removeEventListener(UNAUTHENTICATED_EVENT, gone);
    }
  });

  it('fills path parameters URL-encoded', async () => {
    const calls = mockApi(() => json([]));
    await projects.list('a b');
    expect(calls[0].path).toBe('/api/v1/orgs/a%20b/projects');
  });
});

describe('adding a member', () => {
  it('invites the email when the api says no account has it', async () => {
    const calls = mockApi((_m, url) =>
      url.pathname.endsWith('/members')
        ? problem(409, 'no-such', 'no account has this email; send an invitation instead', [{ field: 'email', message: 'no account has this email' }])
        : json({ id: 'i1' }, 201),
    );
    await expect(members.invite('riverside', 'north', { email: 'new@riverside.test', role: 'project-viewer' })).resolves.toBe('invited');
    expect(calls.map((c) => c.path)).toEqual(['/api/v1/orgs/riverside/projects/north/members', '/api/v1/orgs/riverside/projects/north/invitations']);
  });

  it('does not invite someone who is already a member', async () => {
    const calls = mockApi(() => problem(409, 'conflict', 'already a member; change the role instead', [{ field: 'email', message: 'already in use' }]));
    const e = await fail(members.invite('riverside', null, { email: 'old@riverside.test', role: 'org-admin' }));
    expect(e.status).toBe(409);
    expect(calls).toHaveLength(1);
  });
});
