// Every route the console calls, in one place. Paths follow the api where it
// serves them (its OpenAPI document) and issues 3, 4, 6 and 7 where it does
// not yet; adjust here when the api lands a route under another name.
import { ApiError, call, fill, type Query } from './http';
import { offers } from './capabilities';
import type {
  ActiveAlert,
  AlertHistoryEntry,
  AlertRule,
  ChannelTestResult,
  CreateChannel,
  RuleSpec,
  ApiToken,
  AuditEntry,
  Channel,
  Cluster,
  EnrollmentToken,
  Gateway,
  GatewayConfig,
  GatewayVersion,
  Invitation,
  Me,
  Member,
  Membership,
  NewApiToken,
  NewEnrollmentToken,
  Org,
  Page,
  Project,
  Role,
  Series,
  Silence,
  User,
  VersionDiff,
} from './types';

const V1 = '/api/v1';

type Params = Record<string, string | number>;

/** Call a route by its OpenAPI template; absent routes fail fast as "missing". */
export function api<T>(
  method: string,
  template: string,
  params: Params = {},
  opts: { query?: Query; body?: unknown; signal?: AbortSignal; quiet401?: boolean } = {},
): Promise<T> {
  if (!offers(method, template)) return Promise.reject(new ApiError(404, undefined, true));
  return call<T>(method, fill(template, params), opts);
}

/** Lists may come as a bare array or as { items, next_cursor }. */
export function toPage<T>(raw: unknown): Page<T> {
  if (Array.isArray(raw)) return { items: raw as T[], next_cursor: null };
  const r = (raw ?? {}) as Record<string, unknown>;
  const items = (r.items ?? r.data ?? r.entries ?? r.results ?? []) as T[];
  const next = (r.next_cursor ?? r.nextCursor ?? r.next ?? null) as string | null;
  return { items, next_cursor: next, total: (r.total as number | undefined) ?? null };
}

async function page<T>(template: string, params: Params, query?: Query, signal?: AbortSignal): Promise<Page<T>> {
  return toPage<T>(await api<unknown>('GET', template, params, { query, signal }));
}

export interface PageQuery {
  cursor?: string | null;
  limit?: number;
}

// ---------- identity (issue 3) ----------

export const auth = {
  login: (email: string, password: string) =>
    api<User>('POST', `${V1}/auth/login`, {}, { body: { email, password }, quiet401: true }),
  logout: () => api<void>('POST', `${V1}/auth/logout`),
  /** The signed-in user with their roles, or an ApiError 401. */
  me: async (): Promise<Me> => normalizeMe(await api<unknown>('GET', `${V1}/me`, {}, { quiet401: true })),
  /** Single sign-on: where the button sends the browser. */
  ssoLoginUrl: (returnTo: string, loginUrl = `${V1}/auth/oidc/login`) =>
    `${loginUrl}${loginUrl.includes('?') ? '&' : '?'}return_to=${encodeURIComponent(returnTo)}`,
  /** Sign-in methods this server offers (local passwords, single sign-on). */
  providers: () =>
    api<{ local: boolean; oidc?: { name: string; login_url: string } | null }>('GET', `${V1}/auth/providers`, {}, { quiet401: true }),
  changePassword: (current_password: string, new_password: string) =>
    api<void>('POST', `${V1}/me/password`, {}, { body: { current_password, new_password } }),
};

/** /me may nest the user and name memberships in a few ways; make one shape. */
export function normalizeMe(raw: unknown): Me {
  const r = (raw ?? {}) as Record<string, unknown>;
  const user = ((r.user as Record<string, unknown>) ?? r) as unknown as User;
  const ms: Membership[] = [];
  const push = (m: Record<string, unknown>, orgDefault?: string) => {
    const org = (m.org_slug ?? m.org ?? orgDefault) as string | undefined;
    const role = m.role as Role | undefined;
    if (!org || !role) return;
    ms.push({
      org: typeof org === 'object' ? ((org as { slug: string }).slug) : org,
      org_name: ((m.org_name ?? (m.project ? undefined : m.name)) as string) ?? undefined,
      project: ((m.project_slug ?? m.project) as string | null | undefined) ?? null,
      project_name: ((m.project_name ?? (m.project ? m.name : undefined)) as string) ?? null,
      role,
    });
  };
  for (const m of (r.memberships ?? r.roles ?? r.grants ?? []) as Record<string, unknown>[]) push(m);
  for (const o of (r.orgs ?? []) as Record<string, unknown>[]) {
    if (o.role) push({ ...o, org: o.slug ?? o.org, project: null });
    for (const p of (o.projects ?? []) as Record<string, unknown>[]) {
      if (p.role) push({ ...p, org: o.slug ?? o.org, project: p.slug ?? p.project });
    }
  }
  for (const p of (r.projects ?? []) as Record<string, unknown>[]) {
    if (p.role) push({ ...p, project: p.slug ?? p.project });
  }
  return { ...user, system_admin: !!user.system_admin, memberships: ms };
}

// ---------- organizations, projects, members ----------

export const orgs = {
  list: (q: PageQuery = {}) => page<Org>(`${V1}/orgs`, {}, { ...q }),
  get: (org: string) => api<Org>('GET', `${V1}/orgs/{org}`, { org }),
  create: (body: { slug: string; name: string; description?: string }) =>
    api<Org>('POST', `${V1}/orgs`, {}, { body }),
  update: (org: string, body: { name?: string; description?: string }) =>
    api<Org>('PATCH', `${V1}/orgs/{org}`, { org }, { body }),
  remove: (org: string) => api<void>('DELETE', `${V1}/orgs/{org}`, { org }),
};

export const projects = {
  list: (org: string, q: PageQuery = {}) => page<Project>(`${V1}/orgs/{org}/projects`, { org }, { ...q }),
  get: (org: string, project: string) => api<Project>('GET', `${V1}/orgs/{org}/projects/{project}`, { org, project }),
  create: (org: string, body: { slug: string; name: string; description?: string }) =>
    api<Project>('POST', `${V1}/orgs/{org}/projects`, { org }, { body }),
  remove: (org: string, project: string) =>
    api<void>('DELETE', `${V1}/orgs/{org}/projects/{project}`, { org, project }),
};

/** Members of an org (project undefined) or of a project. */
export function membersBase(org: string, project?: string | null) {
  return project
    ? { t: `${V1}/orgs/{org}/projects/{project}/members`, p: { org, project } as Params }
    : { t: `${V1}/orgs/{org}/members`, p: { org } as Params };
}

export const members = {
  list: (org: string, project?: string | null, q: PageQuery = {}) => {
    const b = membersBase(org, project);
    return page<Member>(b.t, b.p, { ...q });
  },
  /** Add an existing account now, or invite the email (claimed at first sign-in). */
  invite: async (org: string, project: string | null | undefined, body: { email: string; role: Role }): Promise<'added' | 'invited'> => {
    const m = membersBase(org, project);
    try {
      await api<Member>('POST', m.t, m.p, { body });
      return 'added';
    } catch (e) {
      const noAccount = e instanceof ApiError && e.status === 422 && e.fields.some((f) => f.field === 'email');
      if (!noAccount) throw e;
    }
    const b = invitationsBase(org, project);
    await api<Invitation>('POST', b.t, b.p, { body });
    return 'invited';
  },
  setRole: (org: string, project: string | null | undefined, user: string, role: Role) => {
    const b = membersBase(org, project);
    return api<Member>('PATCH', `${b.t}/{user}`, { ...b.p, user }, { body: { role } });
  },
  remove: (org: string, project: string | null | undefined, user: string) => {
    const b = membersBase(org, project);
    return api<void>('DELETE', `${b.t}/{user}`, { ...b.p, user });
  },
  invitations: (org: string, project?: string | null) => {
    const b = invitationsBase(org, project);
    return page<Invitation>(b.t, b.p);
  },
  revokeInvitation: (org: string, project: string | null | undefined, id: string) => {
    const b = invitationsBase(org, project);
    return api<void>('DELETE', `${b.t}/{invitation}`, { ...b.p, invitation: id });
  },
};

function invitationsBase(org: string, project?: string | null) {
  return project
    ? { t: `${V1}/orgs/{org}/projects/{project}/invitations`, p: { org, project } as Params }
    : { t: `${V1}/orgs/{org}/invitations`, p: { org } as Params };
}

// ---------- API tokens ----------

/** Tokens of an org (project null) or of one project. */
function tokensBase(org: string, project?: string | null) {
  return project
    ? { t: `${V1}/orgs/{org}/projects/{project}/tokens`, p: { org, project } as Params }
    : { t: `${V1}/orgs/{org}/tokens`, p: { org } as Params };
}

export const tokens = {
  list: (org: string, project: string | null, q: PageQuery = {}) => {
    const b = tokensBase(org, project);
    return page<ApiToken>(b.t, b.p, { ...q });
  },
  create: async (
    org: string,
    project: string | null,
    body: { name: string; role: Role; expires_in_days?: number | null },
  ): Promise<NewApiToken> => {
    const b = tokensBase(org, project);
    const r = await api<{ info?: ApiToken; token: string } & Partial<ApiToken>>('POST', b.t, b.p, { body });
    return { ...(r.info ?? (r as ApiToken)), token: r.token };
  },
  revoke: (org: string, project: string | null, id: string) => {
    const b = tokensBase(org, project);
    return api<void>('DELETE', `${b.t}/{token}`, { ...b.p, token: id });
  },
};

// ---------- audit ----------

export interface AuditFilter extends PageQuery {
  action?: string;
  /** User id. */
  actor?: string;
  outcome?: string;
  project?: string;
  since?: string;
  until?: string;
}

export const audit = {
  list: (org: string, f: AuditFilter = {}) => page<AuditEntry>(`${V1}/orgs/{org}/audit`, { org }, { ...f }),
};

// ---------- fleet (issue 4) ----------

const P = `${V1}/orgs/{org}/projects/{project}`;
export interface Scope {
  org: string;
  project: string;
}

type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The api's Cluster (spec/status as MqttCluster JSON) as the console shows it. */
export function fromApiCluster(c: Raw): Cluster {
  const spec = (c.spec ?? null) as Raw | null;
  const st = (c.status ?? {}) as Raw;
  const external = c.backend === 'external';
  return {
    id: c.id,
    name: c.name,
    title: c.title,
    backend: c.backend,
    spec,
    version: st.currentVersion ?? spec?.version ?? c.version,
    replicas: spec?.replicas ?? st.replicas ?? c.replicas,
    ready_nodes: st.readyReplicas ?? c.ready_nodes,
    ready_text: st.readyText ?? null,
    phase: external ? (c.health ? (c.health.reachable ? 'Reachable' : 'Unreachable') : 'Unknown') : (st.phase ?? c.phase ?? 'Pending'),
    nodes: st.nodes ?? c.nodes,
    endpoints: c.endpoints?.length ? c.endpoints : st.endpoints ?? [],
    conditions: st.conditions ?? c.conditions ?? [],
    url: c.url,
    username: c.username,
    health: c.health,
    created_at: c.created_at,
  };
}

/** The api's Gateway (spec = flattened EdgeGatewaySpec) as the console shows it. */
export function fromApiGateway(g: Raw, rollout?: Raw): Gateway {
  const spec = (g.spec ?? {}) as Raw;
  const online = rollout?.online ?? g.online;
  const heartbeat = rollout?.last_heartbeat ?? g.last_heartbeat ?? null;
  return {
    id: g.id,
    name: g.name,
    version: g.version,
    site: spec.site,
    mode: spec.mode,
    cluster: g.cluster ?? spec.clusterRef ?? null,
    desired_version: rollout?.desired_version ?? g.bundle_version ?? g.desired_version ?? null,
    applied_version: rollout?.applied_version ?? g.applied_version ?? null,
    status: online === true ? 'online' : heartbeat ? 'offline' : online === false && g.status ? g.status : 'never-seen',
    last_heartbeat: heartbeat,
    last_error: rollout?.last_error ?? g.last_error ?? null,
    agent_version: rollout?.agent_version ?? g.agent_version ?? spec.agentVersion ?? null,
    agent_hostname: rollout?.agent_hostname ?? null,
    rawSpec: spec,
    config: { devices: spec.devices ?? [], pipelines: spec.pipelines ?? [], uplink: spec.uplink },
    created_at: g.created_at,
  };
}

async function rolloutByGateway(s: Scope): Promise<Map<string, Raw>> {
  if (!offers('GET', `${P}/rollout`)) return new Map();
  try {
    const r = toPage<Raw>(await api<unknown>('GET', `${P}/rollout`, { ...s }));
    return new Map(r.items.map((x) => [x.gateway as string, x]));
  } catch {
    return new Map();
  }
}

export const clusters = {
  list: async (s: Scope, q: PageQuery = {}): Promise<Page<Cluster>> => {
    const p = await page<Raw>(`${P}/clusters`, { ...s }, { ...q });
    return { ...p, items: p.items.map(fromApiCluster) };
  },
  get: async (s: Scope, name: string) => fromApiCluster(await api<Raw>('GET', `${P}/clusters/{cluster}`, { ...s, cluster: name })),
  create: async (s: Scope, body: Record<string, unknown>) => fromApiCluster(await api<Raw>('POST', `${P}/clusters`, { ...s }, { body })),
  /** Scale or upgrade: a new MqttClusterSpec (kubernetes clusters). */
  update: async (s: Scope, name: string, body: { spec?: Record<string, unknown>; title?: string; url?: string }) =>
    fromApiCluster(await api<Raw>('PATCH', `${P}/clusters/{cluster}`, { ...s, cluster: name }, { body })),
  probe: (s: Scope, name: string) => api<Raw>('POST', `${P}/clusters/{cluster}/probe`, { ...s, cluster: name }),
  /** The name again as confirmation. */
  remove: (s: Scope, name: string, confirm: string) =>
    api<void>('DELETE', `${P}/clusters/{cluster}`, { ...s, cluster: name }, { query: { confirm } }),
};

export const gateways = {
  list: async (s: Scope, q: PageQuery = {}): Promise<Page<Gateway>> => {
    const [p, ro] = await Promise.all([page<Raw>(`${P}/gateways`, { ...s }, { ...q }), rolloutByGateway(s)]);
    return { ...p, items: p.items.map((g) => fromApiGateway(g, ro.get(g.name))) };
  },
  get: async (s: Scope, name: string): Promise<Gateway> => {
    const [g, ro] = await Promise.all([api<Raw>('GET', `${P}/gateways/{gateway}`, { ...s, gateway: name }), rolloutByGateway(s)]);
    return fromApiGateway(g, ro.get(name));
  },
  create: async (s: Scope, body: { name: string; spec: Record<string, unknown>; comment?: string }) =>
    fromApiGateway(await api<Raw>('POST', `${P}/gateways`, { ...s }, { body })),
  /** Save a new config version. Validation errors name fields like `spec.devices[0].groups[0].intervalMs`. */
  saveConfig: async (s: Scope, g: Gateway, config: GatewayConfig, comment: string) =>
    fromApiGateway(
      await api<Raw>('PATCH', `${P}/gateways/{gateway}`, { ...s, gateway: g.name }, {
        body: { spec: { ...(g.rawSpec ?? {}), devices: config.devices, pipelines: config.pipelines ?? [], ...(config.uplink ? { uplink: config.uplink } : {}) }, comment },
      }),
    ),
  remove: (s: Scope, name: string) => api<void>('DELETE', `${P}/gateways/{gateway}`, { ...s, gateway: name }),
  versions: (s: Scope, name: string, q: PageQuery = {}) =>
    page<GatewayVersion>(`${P}/gateways/{gateway}/versions`, { ...s, gateway: name }, { ...q }),
  diff: (s: Scope, name: string, v: number, against: number) =>
    api<VersionDiff | string>('GET', `${P}/gateways/{gateway}/versions/{version}/diff`, { ...s, gateway: name, version: v }, { query: { against } }),
  rollback: (s: Scope, name: string, version: number, comment: string) =>
    api<Raw>('POST', `${P}/gateways/{gateway}/rollback`, { ...s, gateway: name }, { body: { version, comment } }),
  enrollmentTokens: (s: Scope, name: string) =>
    page<EnrollmentToken>(`${P}/gateways/{gateway}/enrollment-tokens`, { ...s, gateway: name }),
  createEnrollmentToken: async (s: Scope, name: string, body: { expires_in_secs: number; max_uses: number }): Promise<NewEnrollmentToken> => {
    const r = await api<{ info?: EnrollmentToken; token: string; install_command?: string } & Partial<EnrollmentToken>>('POST', `${P}/gateways/{gateway}/enrollment-tokens`, { ...s, gateway: name }, { body });
    return { ...(r.info ?? (r as EnrollmentToken)), token: r.token, install_command: r.install_command };
  },
  revokeEnrollmentToken: (s: Scope, name: string, id: string) =>
    api<void>('DELETE', `${P}/gateways/{gateway}/enrollment-tokens/{token}`, { ...s, gateway: name, token: id }),
  /** Readings of one tag (of one device when given) in time buckets, from the historian. */
  series: (s: Scope, name: string, q: { tag: string; device?: string; from: string; to: string; step: string }, signal?: AbortSignal) =>
    api<Series>('GET', `${P}/gateways/{gateway}/series`, { ...s, gateway: name }, { query: q, signal }),
};

// ---------- alerts (issue 7) ----------

const A = `${P}/alerts`;
export const alerts = {
  rules: (s: Scope, q: PageQuery = {}) => page<AlertRule>(`${A}/rules`, { ...s }, { ...q }),
  createRule: (s: Scope, body: RuleSpec) => api<AlertRule>('POST', `${A}/rules`, { ...s }, { body }),
  updateRule: (s: Scope, id: string, body: RuleSpec) => api<AlertRule>('PUT', `${A}/rules/{rule}`, { ...s, rule: id }, { body }),
  deleteRule: (s: Scope, id: string) => api<void>('DELETE', `${A}/rules/{rule}`, { ...s, rule: id }),
  active: (s: Scope, q: PageQuery = {}) => page<ActiveAlert>(`${A}/active`, { ...s }, { ...q }),
  history: (s: Scope, q: PageQuery = {}) => page<AlertHistoryEntry>(`${A}/history`, { ...s }, { ...q }),
  silences: (s: Scope, q: PageQuery = {}) => page<Silence>(`${A}/silences`, { ...s }, { ...q }),
  createSilence: (s: Scope, body: { matchers: Silence['matchers']; starts_at?: string; ends_at: string; comment: string }) =>
    api<Silence>('POST', `${A}/silences`, { ...s }, { body }),
  expireSilence: (s: Scope, id: string) => api<void>('DELETE', `${A}/silences/{silence}`, { ...s, silence: id }),
  channels: (s: Scope, q: PageQuery = {}) => page<Channel>(`${A}/channels`, { ...s }, { ...q }),
  createChannel: (s: Scope, body: CreateChannel) =>
    api<{ channel: Channel; secret?: string | null }>('POST', `${A}/channels`, { ...s }, { body }),
  deleteChannel: (s: Scope, id: string) => api<void>('DELETE', `${A}/channels/{channel}`, { ...s, channel: id }),
  testChannel: (s: Scope, id: string) => api<ChannelTestResult>('POST', `${A}/channels/{channel}/test`, { ...s, channel: id }),
};
