import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, buildUrl, call, fill, parseResponse } from './http';
import { json, mockApi, problem } from '../test/util';
import { offers, setRoutesFromDoc } from './capabilities';
import { api, normalizeMe, toPage } from './endpoints';

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
  setRoutesFromDoc(null);
});

describe('errors in words', () => {
  it('turns a validation problem into a sentence naming the fields', async () => {
    const e = await fail(parseResponse(problem(422, 'validation', 'invalid fields: slug', [{ field: 'slug', message: 'must be lowercase' }])));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.message).toBe('Some fields need attention: slug must be lowercase.');
    expect(e.fieldMap()).toEqual({ slug: 'must be lowercase' });
    expect(e.missingEndpoint).toBe(false);
  });

  it('never shows a bare status code', () => {
    for (const [status, kind] of [[401, 'unauthenticated'], [403, 'forbidden'], [403, 'csrf'], [404, 'not-found'], [500, 'internal'], [503, 'unavailable']] as const) {
      const e = new ApiError(status, { type: `https://weir.dev/problems/${kind}`, detail: 'x' });
      expect(e.message).not.toMatch(/\b\d{3}\b/);
      expect(e.message.length).toBeGreaterThan(15);
    }
    expect(new ApiError(0, undefined).message).toMatch(/Cannot reach the Weir server/);
  });

  it('says when an account is locked', () => {
    const e = new ApiError(429, { type: 'https://weir.dev/problems/account-locked', detail: 'account locked until 2030-01-01T10:00:00Z' });
    expect(e.message).toMatch(/^Too many failed sign-ins\. The account is locked until/);
  });

  it('tells a missing endpoint from a missing object', async () => {
    const spa = await fail(parseResponse(new Response('<html></html>', { status: 200, headers: { 'content-type': 'text/html' } })));
    expect(spa.missingEndpoint).toBe(true);
    const bare = await fail(parseResponse(new Response('', { status: 404 })));
    expect(bare.missingEndpoint).toBe(true);
    const obj = await fail(parseResponse(problem(404, 'not-found', 'not found')));
    expect(obj.missingEndpoint).toBe(false);
  });
});

describe('requests', () => {
  it('sends the CSRF cookie back as x-csrf-token on changes only', async () => {
    document.cookie = 'weir_csrf=tok123';
    const calls = mockApi(() => json({ ok: true }));
    await call('GET', '/api/v1/orgs');
    await call('POST', '/api/v1/orgs', { body: { slug: 'a' } });
    expect(calls[0].headers['x-csrf-token']).toBeUndefined();
    expect(calls[1].headers['x-csrf-token']).toBe('tok123');
    expect(calls[1].headers['content-type']).toBe('application/json');
  });

  it('builds paths and queries', () => {
    expect(fill('/o/{org}/p/{project}', { org: 'a b', project: 'x' })).toBe('/o/a%20b/p/x');
    expect(buildUrl('/x', { a: 1, b: undefined, c: '', d: 'y z' })).toBe('/x?a=1&d=y+z');
  });

  it('does not call a route the api document lacks', async () => {
    setRoutesFromDoc({ paths: { '/api/v1/orgs': { get: {} } } });
    expect(offers('GET', '/api/v1/orgs')).toBe(true);
    expect(offers('POST', '/api/v1/orgs')).toBe(false);
    const calls = mockApi(() => json([]));
    const e = await fail(api('GET', '/api/v1/orgs/{org}/projects/{project}/gateways', { org: 'a', project: 'b' }));
    expect(e.missingEndpoint).toBe(true);
    expect(calls).toHaveLength(0);
  });
});

describe('shapes', () => {
  it('pages come as arrays or as items + next_cursor', () => {
    expect(toPage([1, 2])).toEqual({ items: [1, 2], next_cursor: null });
    expect(toPage({ items: [1], next_cursor: 'c2' }).next_cursor).toBe('c2');
  });

  it('reads roles from /me in its nested forms', () => {
    const m = normalizeMe({
      user: { id: 'u', email: 'a@b', name: 'A', system_admin: false },
      orgs: [{ slug: 'riverside', role: 'org-admin', projects: [{ slug: 'north', role: 'project-viewer' }] }],
    });
    expect(m.email).toBe('a@b');
    expect(m.memberships).toEqual([
      expect.objectContaining({ org: 'riverside', project: null, role: 'org-admin' }),
      expect.objectContaining({ org: 'riverside', project: 'north', role: 'project-viewer' }),
    ]);
    const flat = normalizeMe({ id: 'u', email: 'x@y', name: 'X', system_admin: true, memberships: [{ org: 'o', project: 'p', role: 'project-editor' }] });
    expect(flat.system_admin).toBe(true);
    expect(flat.memberships[0]).toMatchObject({ org: 'o', project: 'p', role: 'project-editor' });
  });
});
