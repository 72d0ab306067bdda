// Transport: cookie session + CSRF double submit, problem+json errors turned
// into words, and "this server has no such endpoint" told apart from
// "this object does not exist".
import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';

export const CSRF_COOKIE = 'weir_csrf';
export const CSRF_HEADER = 'x-csrf-token';

export interface FieldError {
  field: string;
  message: string;
}

/** The api's application/problem+json body. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: FieldError[];
}

const KIND_WORDS: Record<string, string> = {
  unauthenticated: 'Your session has ended. Sign in again.',
  'invalid-credentials': 'The email or password is not right.',
  csrf: 'The page’s security token is out of date. Reload the page and try again.',
  forbidden: 'Your role does not allow this.',
  'not-found': 'This item does not exist, or you do not have access to it.',
  'payload-too-large': 'The request is too large for the server.',
  'unsupported-media-type': 'The console sent data the server does not accept.',
  unavailable: 'The server cannot do this right now. Try again in a minute.',
  internal: 'The server failed to do this. Try again; if it keeps failing, tell your administrator.',
};

const STATUS_WORDS: Record<number, string> = {
  400: 'The server did not understand the request.',
  401: KIND_WORDS.unauthenticated,
  403: KIND_WORDS.forbidden,
  404: KIND_WORDS['not-found'],
  409: 'This conflicts with something that already exists.',
  413: KIND_WORDS['payload-too-large'],
  422: 'Some fields need attention.',
  429: 'Too many attempts. Wait a while and try again.',
  500: KIND_WORDS.internal,
  502: 'The server is not reachable right now.',
  503: KIND_WORDS.unavailable,
};

export class ApiError extends Error {
  readonly status: number;
  readonly kind: string;
  readonly fields: FieldError[];
  /** The server has no such route: a feature it does not offer (yet). */
  readonly missingEndpoint: boolean;
  readonly problem?: Problem;

  constructor(status: number, problem: Problem | undefined, missingEndpoint = false) {
    const kind = problem?.type?.split('/').pop() ?? (status === 0 ? 'network' : `http-${status}`);
    super(ApiError.words(status, kind, problem, missingEndpoint));
    this.name = 'ApiError';
    this.status = status;
    this.kind = kind;
    this.fields = problem?.errors ?? [];
    this.missingEndpoint = missingEndpoint;
    this.problem = problem;
  }

  static words(status: number, kind: string, p: Problem | undefined, missing: boolean): string {
    if (missing) return 'This feature is not available on this server yet.';
    if (status === 0) return 'Cannot reach the Weir server. Check the network connection and try again.';
    if (kind === 'account-locked') {
      const until = p?.detail?.match(/until (.+)$/)?.[1];
      const when = until && !Number.isNaN(Date.parse(until)) ? new Date(until).toLocaleTimeString() : undefined;
      return when
        ? `Too many failed sign-ins. The account is locked until ${when}.`
        : 'Too many failed sign-ins. The account is locked for a while.';
    }
    if (kind === 'validation' && p?.errors?.length) {
      return `Some fields need attention: ${p.errors.map((e) => `${e.field} ${e.message}`).join('; ')}.`;
    }
    if ((kind === 'conflict' || kind === 'bad-request' || kind === 'invalid-credentials') && p?.detail) {
      return sentence(p.detail);
    }
    return KIND_WORDS[kind] ?? (p?.detail ? sentence(p.detail) : STATUS_WORDS[status] ?? `The server answered with an error (${status}).`);
  }

  /** Messages keyed by field path, for showing beside form fields. */
  fieldMap(): Record<string, string> {
    const m: Record<string, string> = {};
    for (const f of this.fields) m[f.field] = m[f.field] ? `${m[f.field]}; ${f.message}` : f.message;
    return m;
  }
}

function sentence(s: string): string {
  const t = s.trim();
  if (!t) return t;
  const u = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(u) ? u : `${u}.`;
}

export function readCookie(name: string): string | undefined {
  if (typeof document === 'undefined') return undefined;
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

/** Fired when the api says the session is gone, so the app can show sign-in. */
export const UNAUTHENTICATED_EVENT = 'weir:unauthenticated';

const csrf: Middleware = {
  onRequest({ request }) {
    if (!['GET', 'HEAD', 'OPTIONS'].includes(request.method)) {
      const token = readCookie(CSRF_COOKIE);
      if (token) request.headers.set(CSRF_HEADER, token);
    }
    return request;
  },
};

/** The typed client generated from the api's OpenAPI document. */
export const client = createClient<paths>({ baseUrl: '', credentials: 'same-origin' });
client.use(csrf);

export type Query = Record<string, string | number | boolean | undefined | null>;

export interface CallOptions {
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
  /** Don't broadcast 401 (the sign-in page and the "who am I" probe). */
  quiet401?: boolean;
}

export function buildUrl(path: string, query?: Query): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Path with `{name}` placeholders filled (each value URL-encoded). */
export function fill(template: string, params: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    if (!(k in params)) throw new Error(`missing path parameter ${k} for ${template}`);
    return encodeURIComponent(String(params[k]));
  });
}

/**
 * One call to the api. Resolves with the parsed JSON body (undefined for 204),
 * rejects with ApiError.
 */
export async function call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (!['GET', 'HEAD'].includes(method)) {
    const token = readCookie(CSRF_COOKIE);
    if (token) headers[CSRF_HEADER] = token;
  }
  let res: Response;
  try {
    res = await fetch(buildUrl(path, opts.query), {
      method,
      headers,
      credentials: 'same-origin',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, undefined);
  }
  return parseResponse<T>(res, opts);
}

export async function parseResponse<T>(res: Response, opts: Pick<CallOptions, 'quiet401'> = {}): Promise<T> {
  const ct = res.headers.get('content-type') ?? '';
  const isJson = ct.includes('json');
  if (res.ok) {
    if (res.status === 204) return undefined as T;
    if (!isJson) {
      // The SPA fallback answered: the api has no such route.
      if (ct.includes('text/html')) throw new ApiError(404, undefined, true);
      return (await res.text()) as T;
    }
    return (await res.json()) as T;
  }
  let problem: Problem | undefined;
  if (isJson) {
    try {
      problem = (await res.json()) as Problem;
    } catch {
      problem = undefined;
    }
  }
  // A route the api does not have answers 404/405 without a problem body
  // (our problem bodies always carry a `type`).
  const missing = (res.status === 404 || res.status === 405) && !problem?.type;
  if (res.status === 401 && !opts.quiet401 && typeof window !== 'undefined') {
    window.dispatchEvent(new Event(UNAUTHENTICATED_EVENT));
  }
  throw new ApiError(res.status, problem, missing);
}
