import { render } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router';
import type { ReactNode } from 'react';
import { vi } from 'vitest';
import { SessionProvider } from '../session';
import { ToastProvider } from '../ui/kit';
import type { Me } from '../api/types';

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
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    const headers = Object.fromEntries(new Headers(init?.headers ?? req?.headers).entries());
    calls.push({ method, path: url.pathname + url.search, body, headers });
    return handler(method, url, body) ?? problem(404, 'not-found', 'not found');
  });
  vi.stubGlobal('fetch', fn);
  return calls;
}

export function me(partial: Partial<Me> = {}): Me {
  return { id: 'u1', email: 'pm@riverside.example', name: 'Pat Manager', system_admin: false, memberships: [], ...partial };
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
