// Every call the console makes, on the typed client: each path, parameter,
// body and answer is the api's OpenAPI document's (schema.d.ts), so when the
// api changes its contract `tsc` fails here or in the page that reads it.
import { ApiError, client, ok, type Schemas } from './http';
import type { paths } from './schema';
import type {
  ApiToken,
  AuditEntry,
  Cluster,
  Condition,
  Gateway,
  GatewayConfig,
  GatewaySummary,
  Invitation,
  Me,
  Member,
  Membership,
  NewApiToken,
  Page,
  Role,
  RolloutEntry,
  VersionDiff,
} from './types';

/** The lists the api answers whole (no cursor); the console pages them itself. */
function whole<T>(items: T[]): Page<T> {
  return { items, next_cursor: null };
}

function withRole<T extends { role: string }>(x: T): Omit<T, 'role'> & { role: Role } {
  return { ...x, role: x.role as Role };
}

// ---------- identity ----------

export const auth = {
  login: (email: string, password: string) => ok(client.POST('/api/v1/auth/login', { body: { email, password } })),
  logout: () => ok(client.POST('/api/v1/auth/logout')),
  /** The signed-in user with their roles, or an ApiError 401. */
  me: async (): Promise<Me> => meFromApi(await ok(client.GET('/api/v1/me'))),
  /** Single sign-on: where the button sends the browser. */
  ssoLoginUrl: (returnTo: string, loginUrl = '/api/v1/auth/oidc/login') =>
    `${loginUrl}${loginUrl.includes('?') ? '&' : '?'}return_to=${encodeURIComponent(returnTo)}`,
  /** Sign-in methods this server offers (local passwords, single sign-on). */
  providers: () => ok(client.GET('/api/v1/auth/providers')),
};

/** /me names the caller's org and project roles; the console keeps them as one list. */
export function meFromApi(m: Schemas['Me']): Me {
  const memberships: Membership[] = [
    ...m.orgs.map((o) => ({ org: o.org, org_name: o.name, project: null, role: o.role as Role })),
    ...m.projects.map((p) => ({ org: p.org, project: p.project, project_name: p.name, role: p.role as Role })),
  ];
  return { ...m.user, memberships };
}

// ---------- your account; accounts (system administrators) ----------

/** An account as a system administrator sees it; `disabled_at` set means it may not sign in. */
export type UserRow = Schemas['UserView'];

export const account = {
  /** Other sessions of the account end; this one stays. A wrong current password names `current_password`. */
  changePassword: (current_password: string, new_password: string): Promise<void> =>
    ok(client.PUT('/api/v1/me/password', { body: { current_password, new_password } })),
  /** Every session of the account ends, this one too. */
  signOutEverywhere: (): Promise<void> => ok(client.DELETE('/api/v1/me/sessions')),
};

export const users = {
  list: async (): Promise<Page<UserRow>> => whole(await ok(client.GET('/api/v1/users'))),
  create: (body: Schemas['CreateUser']): Promise<UserRow> => ok(client.POST('/api/v1/users', { body })),
  /** 409 for yourself or the last system administrator. */
  disable: (id: string): Promise<UserRow> => ok(client.POST('/api/v1/users/{id}/disable', { params: { path: { id } } })),
  enable: (id: string): Promise<UserRow> => ok(client.POST('/api/v1/users/{id}/enable', { params: { path: { id } } })),
};

// ---------- organizations, projects, members ----------

export const orgs = {
  list: async (): Promise<Page<Schemas['Org']>> => whole(await ok(client.GET('/api/v1/orgs'))),
  get: (org: string) => ok(client.GET('/api/v1/orgs/{org}', { params: { path: { org } } })),
  create: (body: Schemas['CreateOrg']) => ok(client.POST('/api/v1/orgs', { body })),
  update: (org: string, body: Schemas['UpdateOrg']) => ok(client.PATCH('/api/v1/orgs/{org}', { params: { path: { org } }, body })),
  remove: (org: string) => ok(client.DELETE('/api/v1/orgs/{org}', { params: { path: { org } } })),
};

export const projects = {
  list: async (org: string): Promise<Page<Schemas['Project']>> =>
    whole(await ok(client.GET('/api/v1/orgs/{org}/projects', { params: { path: { org } } }))),
  get: (org: string, project: string) => ok(client.GET('/api/v1/orgs/{org}/projects/{project}', { params: { path: { org, project } } })),
  create: (org: string, body: Schemas['CreateProject']) => ok(client.POST('/api/v1/orgs/{org}/projects', { params: { path: { org } }, body })),
  remove: (org: string, project: string) => ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}', { params: { path: { org, project } } })),
};

type OrgRoleName = Schemas['AddOrgMember']['role'];
type ProjectRoleName = Schemas['AddProjectMember']['role'];

/** Members of an org (project null) or of a project. */
export const members = {
  list: async (org: string, project?: string | null): Promise<Page<Member>> => {
    const items = project
      ? await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/members', { params: { path: { org, project } } }))
      : await ok(client.GET('/api/v1/orgs/{org}/members', { params: { path: { org } } }));
    return whole(items.map(withRole));
  },
  /** Add an existing account now, or invite the email (claimed at first sign-in). */
  invite: async (org: string, project: string | null | undefined, body: { email: string; role: Role }): Promise<'added' | 'invited'> => {
    try {
      if (project) {
        await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/members', { params: { path: { org, project } }, body: { email: body.email, role: body.role as ProjectRoleName } }));
      } else {
        await ok(client.POST('/api/v1/orgs/{org}/members', { params: { path: { org } }, body: { email: body.email, role: body.role as OrgRoleName } }));
      }
      return 'added';
    } catch (e) {
      const noAccount = e instanceof ApiError && e.kind === 'no-such' && e.fields.some((f) => f.field === 'email');
      if (!noAccount) throw e;
    }
    if (project) {
      await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/invitations', { params: { path: { org, project } }, body: { email: body.email, role: body.role as ProjectRoleName } }));
    } else {
      await ok(client.POST('/api/v1/orgs/{org}/invitations', { params: { path: { org } }, body: { email: body.email, role: body.role as OrgRoleName } }));
    }
    return 'invited';
  },
  setRole: async (org: string, project: string | null | undefined, user: string, role: Role) => {
    if (project) {
      await ok(client.PATCH('/api/v1/orgs/{org}/projects/{project}/members/{user}', { params: { path: { org, project, user } }, body: { role: role as ProjectRoleName } }));
    } else {
      await ok(client.PATCH('/api/v1/orgs/{org}/members/{user}', { params: { path: { org, user } }, body: { role: role as OrgRoleName } }));
    }
  },
  remove: (org: string, project: string | null | undefined, user: string) =>
    project
      ? ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/members/{user}', { params: { path: { org, project, user } } }))
      : ok(client.DELETE('/api/v1/orgs/{org}/members/{user}', { params: { path: { org, user } } })),
  invitations: async (org: string, project?: string | null): Promise<Page<Invitation>> => {
    const items = project
      ? await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/invitations', { params: { path: { org, project } } }))
      : await ok(client.GET('/api/v1/orgs/{org}/invitations', { params: { path: { org } } }));
    return whole(items.map(withRole));
  },
  revokeInvitation: (org: string, project: string | null | undefined, invitation: string) =>
    project
      ? ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/invitations/{invitation}', { params: { path: { org, project, invitation } } }))
      : ok(client.DELETE('/api/v1/orgs/{org}/invitations/{invitation}', { params: { path: { org, invitation } } })),
};

// ---------- API tokens ----------

/** Tokens of an org (project null) or of one project. */
export const tokens = {
  list: async (org: string, project: string | null): Promise<Page<ApiToken>> => {
    const items = project
      ? await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/tokens', { params: { path: { org, project } } }))
      : await ok(client.GET('/api/v1/orgs/{org}/tokens', { params: { path: { org } } }));
    return whole(items.map(withRole));
  },
  create: async (org: string, project: string | null, body: { name: string; role: Role; expires_in_days?: number | null }): Promise<NewApiToken> => {
    const made = project
      ? await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/tokens', { params: { path: { org, project } }, body: { ...body, role: body.role as ProjectRoleName } }))
      : await ok(client.POST('/api/v1/orgs/{org}/tokens', { params: { path: { org } }, body: { ...body, role: body.role as OrgRoleName } }));
    return withRole(made);
  },
  revoke: (org: string, project: string | null, token: string) =>
    project
      ? ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/tokens/{token}', { params: { path: { org, project, token } } }))
      : ok(client.DELETE('/api/v1/orgs/{org}/tokens/{token}', { params: { path: { org, token } } })),
};

// ---------- audit ----------

export interface AuditFilter {
  action?: string;
  /** User id. */
  actor?: string;
  outcome?: string;
  project?: string;
  since?: string;
  until?: string;
  cursor?: string | null;
  limit?: number;
}

export const audit = {
  list: async (org: string, f: AuditFilter = {}): Promise<Page<AuditEntry>> => {
    const query: NonNullable<paths['/api/v1/orgs/{org}/audit']['get']['parameters']['query']> = {};
    for (const k of ['action', 'actor', 'outcome', 'project', 'since', 'until'] as const) if (f[k]) query[k] = f[k];
    if (f.cursor) query.cursor = Number(f.cursor);
    if (f.limit) query.limit = f.limit;
    const p = await ok(client.GET('/api/v1/orgs/{org}/audit', { params: { path: { org }, query } }));
    return { items: p.items, next_cursor: p.next_cursor == null ? null : String(p.next_cursor) };
  },
};

// ---------- fleet ----------

export interface Scope {
  org: string;
  project: string;
}

type Loose = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The api's Cluster (spec/status as MqttCluster JSON) as the console shows it. */
export function fromApiCluster(c: Schemas['Cluster']): Cluster {
  const spec = (c.spec ?? null) as Loose | null;
  const st = (c.status ?? {}) as Loose;
  const external = c.backend === 'external';
  return {
    id: c.id,
    name: c.name,
    title: c.title,
    backend: c.backend,
    spec,
    version: st.currentVersion ?? spec?.version,
    replicas: spec?.replicas ?? st.replicas,
    ready_nodes: st.readyReplicas,
    ready_text: st.readyText ?? null,
    phase: external ? (c.health ? (c.health.reachable ? 'Reachable' : 'Unreachable') : 'Unknown') : (st.phase ?? 'Pending'),
    nodes: st.nodes,
    connection_limit: st.connectionLimit ?? null,
    endpoints: c.endpoints.length ? c.endpoints : (st.endpoints ?? []),
    conditions: (st.conditions ?? []) as Condition[],
    url: c.url,
    username: c.username,
    agent_identities: c.agent_identities,
    shared_with: c.shared_with,
    health: c.health,
    created_at: c.created_at,
  };
}

/** What a list item and a whole gateway share, with the rollout entry over the api's own fields. */
function gatewayFields(g: Schemas['GatewaySummary'] | Schemas['Gateway'], site: Loose | undefined, mode: unknown, rollout?: RolloutEntry): GatewaySummary {
  const online = rollout?.online ?? g.online;
  const heartbeat = rollout?.last_heartbeat ?? g.last_heartbeat ?? null;
  return {
    id: g.id,
    name: g.name,
    version: g.version,
    site,
    mode: mode as GatewaySummary['mode'],
    cluster: g.cluster ?? null,
    desired_version: rollout?.desired_version ?? g.bundle_version,
    applied_version: rollout?.applied_version ?? g.applied_version ?? null,
    status: online === true ? 'online' : heartbeat ? 'offline' : 'never-seen',
    last_heartbeat: heartbeat,
    last_error: rollout?.last_error ?? null,
    agent_version: rollout?.agent_version ?? (g.agent_status?.agentVersion || null),
    agent_hostname: rollout?.agent_hostname ?? null,
    agent_status: g.agent_status ?? null,
    readings_per_sec: g.readings_per_sec ?? null,
    created_at: g.created_at,
  };
}

/** A list item of the api (no config) with its rollout entry. */
export function fromApiGatewaySummary(g: Schemas['GatewaySummary'], rollout?: RolloutEntry): GatewaySummary {
  return gatewayFields(g, g.site as Loose, g.mode, rollout);
}

/** The api's Gateway (spec = EdgeGatewaySpec) with its rollout entry, as the console shows it. */
export function fromApiGateway(g: Schemas['Gateway'], rollout?: RolloutEntry): Gateway {
  const spec = g.spec as Loose;
  return {
    ...gatewayFields(g, spec.site, spec.mode, rollout),
    cluster: g.cluster ?? spec.clusterRef ?? null,
    rawSpec: spec,
    config: { devices: spec.devices ?? [], pipelines: spec.pipelines ?? [], uplink: spec.uplink },
  };
}

const at = (s: Scope) => ({ path: { org: s.org, project: s.project } });

async function rolloutByGateway(s: Scope): Promise<Map<string, RolloutEntry>> {
  const r = await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/rollout', { params: at(s) }));
  return new Map(r.map((x) => [x.gateway, x]));
}

export const clusters = {
  list: async (s: Scope): Promise<Page<Cluster>> =>
    whole((await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/clusters', { params: at(s) }))).map(fromApiCluster)),
  get: async (s: Scope, cluster: string) =>
    fromApiCluster(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}', { params: { path: { ...s, cluster } } }))),
  // The document's body adds which fields each backend takes (a union openapi-fetch cannot
  // match against CreateCluster); the wizard builds one of the two shapes and the api checks it.
  create: async (s: Scope, body: Schemas['CreateCluster']) =>
    fromApiCluster(await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/clusters', { params: at(s), body: body as never }))),
  /** Scale or upgrade: a merge patch of the MqttClusterSpec (kubernetes clusters). */
  update: async (s: Scope, cluster: string, body: Schemas['UpdateCluster']) =>
    fromApiCluster(await ok(client.PATCH('/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}', { params: { path: { ...s, cluster } }, body }))),
  probe: async (s: Scope, cluster: string) =>
    fromApiCluster(await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}/probe', { params: { path: { ...s, cluster } } }))),
  /** The name again as confirmation. */
  /** Hand the cluster to another project of the organization. */
  transfer: async (s: Scope, cluster: string, project: string) =>
    fromApiCluster(await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}/transfer', { params: { path: { ...s, cluster } }, body: { project } }))),
  remove: (s: Scope, cluster: string, confirm: string) =>
    ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}', { params: { path: { ...s, cluster }, query: { confirm } } })),
};

export const gateways = {
  /** Without each config (the list shows none; `gateways.get` has it). */
  list: async (s: Scope): Promise<Page<GatewaySummary>> => {
    const [list, ro] = await Promise.all([ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways', { params: at(s) })), rolloutByGateway(s)]);
    return whole(list.map((g) => fromApiGatewaySummary(g, ro.get(g.name))));
  },
  get: async (s: Scope, gateway: string): Promise<Gateway> => {
    const [g, ro] = await Promise.all([ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}', { params: { path: { ...s, gateway } } })), rolloutByGateway(s)]);
    return fromApiGateway(g, ro.get(gateway));
  },
  create: async (s: Scope, body: Schemas['CreateGateway']) =>
    fromApiGateway(await ok(client.POST('/api/v1/orgs/{org}/projects/{project}/gateways', { params: at(s), body }))),
  /** Save a new config version. Validation errors name fields like `spec.devices[0].groups[0].intervalMs`. */
  saveConfig: async (s: Scope, g: Gateway, config: GatewayConfig, comment: string) => {
    const spec = { ...g.rawSpec, devices: config.devices, pipelines: config.pipelines ?? [], ...(config.uplink ? { uplink: config.uplink } : {}) };
    return fromApiGateway(await ok(client.PATCH('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}', { params: { path: { ...s, gateway: g.name } }, body: { spec, comment } })));
  },
  /** Point the gateway at another cluster (null: none), as a new config version. A cluster the
   *  project may not use is refused on `spec.clusterRef`. */
  setCluster: async (s: Scope, gateway: string, cluster: string | null, comment: string) =>
    fromApiGateway(await ok(client.PATCH('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}', { params: { path: { ...s, gateway } }, body: { merge_patch: { clusterRef: cluster }, comment } }))),
  remove: (s: Scope, gateway: string) => ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}', { params: { path: { ...s, gateway } } })),
  /** The agent stops at once (sessions end, key refused, broker identity removed); the gateway must enroll again. */
  revokeAgent: (s: Scope, gateway: string) => ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/agent', { params: { path: { ...s, gateway } } })),
  versions: async (s: Scope, gateway: string) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/versions', { params: { path: { ...s, gateway } } }))),
  diff: async (s: Scope, gateway: string, version: number, against: number): Promise<VersionDiff> => {
    const d = await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/versions/{version}/diff', { params: { path: { ...s, gateway, version }, query: { against } } }));
    return { ...d, changes: d.changes.map((c) => ({ path: String(c.path ?? ''), op: String(c.op ?? ''), value: c.value, from: c.from as string | undefined })) };
  },
  rollback: (s: Scope, gateway: string, version: number, comment: string) =>
    ok(client.POST('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/rollback', { params: { path: { ...s, gateway } }, body: { version, comment } })),
  enrollmentTokens: async (s: Scope, gateway: string) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/enrollment-tokens', { params: { path: { ...s, gateway } } }))),
  createEnrollmentToken: (s: Scope, gateway: string, body: Schemas['CreateEnrollmentToken']) =>
    ok(client.POST('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/enrollment-tokens', { params: { path: { ...s, gateway } }, body })),
  revokeEnrollmentToken: (s: Scope, gateway: string, enrollment_token: string) =>
    ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/enrollment-tokens/{enrollment_token}', { params: { path: { ...s, gateway, enrollment_token } } })),
  /** The gateway's recent data gaps (fleet events `data_gap`, newest first; at most `limit`). */
  dataGaps: (s: Scope, gateway: string, limit = 100, signal?: AbortSignal) =>
    ok(client.GET('/api/v1/orgs/{org}/projects/{project}/fleet-events', { params: { path: s, query: { gateway, kind: 'data_gap', limit } }, signal })),
  /** What the historian is replaying for the gateway now (open gaps) and its latest recorded gaps. */
  gapStatus: (s: Scope, gateway: string, signal?: AbortSignal) =>
    ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/data-gaps', { params: { path: { ...s, gateway } }, signal })),
  /** The newest reading of every tag of the gateway's current config, from the historian. */
  latest: (s: Scope, gateway: string, signal?: AbortSignal) =>
    ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/latest', { params: { path: { ...s, gateway } }, signal })),
  /** Write a setpoint through the gateway's agent; answers with the agent's verdict. */
  write: (s: Scope, gateway: string, body: Schemas['WriteBody']) =>
    ok(client.POST('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/writes', { params: { path: { ...s, gateway } }, body })),
  /** Up to 8 `device/tag` series from the historian: raw readings for short ranges, else time buckets (`mode` says which). */
  series: (s: Scope, gateway: string, query: { series: string[]; from: string; to: string; step?: string; mode?: 'auto' | 'raw' | 'buckets' }, signal?: AbortSignal) =>
    ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/series', { params: { path: { ...s, gateway }, query }, signal })),
};

// ---------- device credentials ----------

export const credentials = {
  list: async (s: Scope) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/credentials', { params: at(s) }))),
  /** Create or replace; the secret is never answered back. */
  put: (s: Scope, credential: string, body: Schemas['DeviceCredential']) =>
    ok(client.PUT('/api/v1/orgs/{org}/projects/{project}/credentials/{credential}', { params: { path: { ...s, credential } }, body })),
  remove: (s: Scope, credential: string) =>
    ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/credentials/{credential}', { params: { path: { ...s, credential } } })),
};

// ---------- fleet: templates, batch changes, rollout, fleet events ----------

export const fleet = {
  templates: async (s: Scope) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateway-templates', { params: at(s) }))),
  template: (s: Scope, template: string) =>
    ok(client.GET('/api/v1/orgs/{org}/projects/{project}/gateway-templates/{template}', { params: { path: { ...s, template } } })),
  /** The spec must make a valid gateway config on its own; its errors name `spec.…` fields. */
  createTemplate: (s: Scope, body: Schemas['CreateTemplate']) =>
    ok(client.POST('/api/v1/orgs/{org}/projects/{project}/gateway-templates', { params: at(s), body })),
  removeTemplate: (s: Scope, template: string) =>
    ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/gateway-templates/{template}', { params: { path: { ...s, template } } })),
  /** A template or a merge patch applied to each gateway in its own transaction; one result per gateway.
   *  openapi-fetch cannot match the document's oneOf (a null `merge_patch` beside a template) against
   *  its own rewrite of it; the body is the document's type and the api checks it. */
  batch: (s: Scope, body: Schemas['BatchRequestBody']): Promise<Schemas['BatchResponse']> =>
    ok(client.POST('/api/v1/orgs/{org}/projects/{project}/gateways:batch', { params: at(s), body: body as never })),
  rollout: (s: Scope, signal?: AbortSignal) => ok(client.GET('/api/v1/orgs/{org}/projects/{project}/rollout', { params: at(s), signal })),
  /** Newest first; the api has no cursor, only `limit` (at most 500). */
  events: async (s: Scope, query: { gateway?: string; kind?: string; limit?: number } = {}) =>
    whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/fleet-events', { params: { ...at(s), query } }))),
};

// ---------- alerts ----------

export const alerts = {
  rules: async (s: Scope) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/alerts/rules', { params: at(s) }))),
  createRule: (s: Scope, body: Schemas['RuleSpec']) => ok(client.POST('/api/v1/orgs/{org}/projects/{project}/alerts/rules', { params: at(s), body: body as Schemas['RuleSpecBody'] })),
  updateRule: (s: Scope, rule: string, body: Schemas['RuleSpec']) => ok(client.PUT('/api/v1/orgs/{org}/projects/{project}/alerts/rules/{rule}', { params: { path: { ...s, rule } }, body: body as Schemas['RuleSpecBody'] })),
  deleteRule: (s: Scope, rule: string) => ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/alerts/rules/{rule}', { params: { path: { ...s, rule } } })),
  active: async (s: Scope, query: { include_shelved?: boolean } = {}) =>
    whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/alerts/active', { params: { ...at(s), query } }))),
  acknowledge: (s: Scope, body: Schemas['Acknowledge']) => ok(client.POST('/api/v1/orgs/{org}/projects/{project}/alerts/acknowledgements', { params: at(s), body })),
  history: async (s: Scope, query: { rule?: string; limit?: number } = {}) =>
    whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/alerts/history', { params: { ...at(s), query } }))),
  silences: async (s: Scope) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/alerts/silences', { params: at(s) }))),
  createSilence: (s: Scope, body: Schemas['CreateSilence']) => ok(client.POST('/api/v1/orgs/{org}/projects/{project}/alerts/silences', { params: at(s), body })),
  expireSilence: (s: Scope, silence: string) => ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/alerts/silences/{silence}', { params: { path: { ...s, silence } } })),
  channels: async (s: Scope) => whole(await ok(client.GET('/api/v1/orgs/{org}/projects/{project}/alerts/channels', { params: at(s) }))),
  createChannel: (s: Scope, body: Schemas['CreateChannel']) => ok(client.POST('/api/v1/orgs/{org}/projects/{project}/alerts/channels', { params: at(s), body: body as never })),
  deleteChannel: (s: Scope, channel: string) => ok(client.DELETE('/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}', { params: { path: { ...s, channel } } })),
  testChannel: (s: Scope, channel: string) => ok(client.POST('/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}/test', { params: { path: { ...s, channel } } })),
};
