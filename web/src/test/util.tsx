import { render } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router';
import type { ReactNode } from 'react';
import { vi } from 'vitest';
import { SessionProvider } from '../session';
import { ToastProvider } from '../ui/kit';
import type { Me } from '../api/types';
import type { Schemas } from '../api/http';

export function json(body: unknown, status = 200, type = 'application/json') {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': type } });
}

export function problem(status: number, kind: string, detail: string, errors: { field: string; message: string }[] = []) {
  return json({ type: `https://weir.dev/problems/${kind}`, title: 'x', status, detail, errors }, status, 'application/problem+json');
}

export type Handler = (method: string, url: URL, body: unknown) => Response | undefined;

/** Replace fetch with a router over (method, path); records every call. */
export function mockApi(handler: Handler) {
  const calls: { method: string; path: string; body: unknown; headers: Record<string, string> }[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = input instanceof Request ? input : null;
    const method = (init?.method ?? req?.method ?? 'GET').toUpperCase();
    const url = new URL(String(req ? req.url : input), 'http://console.test');
    const text = init?.body ? String(init.body) : req ? await req.clone().text() : '';
    const body = text ? JSON.parse(text) : undefined;
    const headers = Object.fromEntries(new Headers(init?.headers ?? req?.headers).entries());
    calls.push({ method, path: url.pathname + url.search, body, headers });
    return handler(method, url, body) ?? problem(404, 'not-found', 'not found');
  });
  vi.stubGlobal('fetch', fn);
  return calls;
}

export function me(partial: Partial<Me> = {}): Me {
  return { id: 'u1', email: 'pm@riverside.example', name: 'Pat Manager', system_admin: false, has_password: true, created_at: '2026-01-01T00:00:00Z', disabled_at: null, memberships: [], ...partial };
}

export function renderAt(path: string, routes: ReactNode, user: Me | null = me()) {
  return render(
    <MemoryRouter initialEntries={[path]}>
      <ToastProvider>
        <SessionProvider initial={user}>
          <Routes>{routes}</Routes>
        </SessionProvider>
      </ToastProvider>
    </MemoryRouter>,
  );
}

export { Route };

const T = '2026-01-01T00:00:00Z';

/** Answers as the api documents them (typed by schema.d.ts, so fixtures follow the contract). */
export const fx = {
  gateway: (p: Partial<Schemas['Gateway']> = {}): Schemas['Gateway'] => ({ id: 'g1', name: 'north-pump', org: 'rw', project: 'north', version: 1, bundle_version: 1, spec: {}, created_at: T, updated_at: T, ...p }),
  gatewaySummary: (p: Partial<Schemas['GatewaySummary']> = {}): Schemas['GatewaySummary'] => ({ id: 'g1', name: 'north-pump', org: 'rw', project: 'north', version: 1, bundle_version: 1, site: {}, created_at: T, updated_at: T, ...p }),
  rollout: (p: Partial<Schemas['RolloutEntry']> & { gateway: string }): Schemas['RolloutEntry'] => ({ config_version: 1, desired_version: 1, up_to_date: true, heartbeat_interval_s: 10, online: false, ...p }),
  cluster: (p: Partial<Schemas['Cluster']> = {}): Schemas['Cluster'] => ({ id: 'c1', name: 'plant-broker', title: '', org: 'rw', project: 'north', backend: 'kubernetes', auth_mode: 'apiJwt', agent_identities: 'apiJwt', shared_with: [], has_password: false, endpoints: [], created_at: T, updated_at: T, ...p }),
  member: (p: Partial<Schemas['Member']> = {}): Schemas['Member'] => ({ user_id: 'u2', email: 'op@rw.example', name: 'Op', role: 'project-editor', source: 'manual', created_at: T, ...p }),
  user: (p: Partial<Schemas['UserView']> = {}): Schemas['UserView'] => ({ id: 'u1', email: 'a@b.c', name: 'A', system_admin: false, has_password: true, created_at: T, disabled_at: null, ...p }),
  audit: (p: Partial<Schemas['AuditEntry']> = {}): Schemas['AuditEntry'] => ({ seq: 1, at: T, actor: 'a@b', action: 'org.create', target: 'org:rw', outcome: 'success', client_addr: '127.0.0.1', user_agent: 'test', details: {}, prev_hash: '', hash: '', ...p }),
  rule: (p: Partial<Schemas['Rule']> = {}): Schemas['Rule'] => ({ id: 'r1', name: 'Chlorine residual low', kind: 'threshold', gateway: 'chlorination', tag: 'chlorine_residual', op: '<', threshold: 0.3, for_secs: 10, severity: 'critical', created_at: T, updated_at: T, ...p }),
};
