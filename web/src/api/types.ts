// Shapes the console works with. Core objects (issue 3) follow the api's
// OpenAPI document; fleet, series and alert shapes (issues 4, 6, 7) follow
// the issues until the api serves them: see endpoints.ts.

export type Role =
  | 'system-admin'
  | 'org-owner'
  | 'org-admin'
  | 'project-admin'
  | 'project-editor'
  | 'project-viewer';

export interface User {
  id: string;
  email: string;
  name: string;
  system_admin: boolean;
  has_password?: boolean;
  created_at?: string;
  last_login_at?: string | null;
}

export interface Membership {
  org: string; // org slug
  org_name?: string;
  project?: string | null; // project slug for project roles
  project_name?: string | null;
  role: Role;
}

export interface Me extends User {
  memberships: Membership[];
}

export interface Org {
  id: string;
  slug: string;
  name: string;
  description?: string;
  managed_by?: string | null;
  created_at?: string;
  /** The caller's role here, when the api says. */
  role?: Role | null;
}

export interface Project {
  id: string;
  org_id?: string;
  slug: string;
  name: string;
  description?: string;
  created_at?: string;
  role?: Role | null;
}

export interface Member {
  user_id: string;
  email: string;
  name?: string;
  role: Role;
  source?: string;
  created_at?: string;
}

export interface Invitation {
  id: string;
  email: string;
  role: Role;
  created_at?: string;
  expires_at?: string;
  claimed_at?: string | null;
}

export interface ApiToken {
  id: string;
  name: string;
  prefix: string;
  role: Role;
  project?: string | null;
  created_at: string;
  expires_at?: string | null;
  revoked_at?: string | null;
  last_used_at?: string | null;
}

export interface NewApiToken extends ApiToken {
  /** Shown once. */
  token: string;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  org?: string | null;
  project?: string | null;
  action: string;
  target: string;
  outcome: string;
  client_addr?: string;
  user_agent?: string;
  details?: unknown;
  hash?: string;
  prev_hash?: string;
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
  total?: number | null;
}

// ---- fleet (issue 4) ----

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime?: string;
}

export interface Cluster {
  id?: string;
  name: string;
  title?: string;
  backend: 'kubernetes' | 'external' | string;
  /** kubernetes: the MqttClusterSpec as the api stores it. */
  spec?: Record<string, unknown> | null;
  version?: string;
  replicas?: number;
  phase?: string;
  ready_nodes?: number;
  nodes?: { name: string; status: string; version?: string; connections?: number }[];
  endpoints?: string[];
  conditions?: Condition[];
  url?: string | null;
  username?: string | null;
  ready_text?: string | null;
  health?: { reachable: boolean; rtt_ms?: number | null; checked_at?: string; error?: string | null } | null;
  created_at?: string;
}

export interface Site {
  name?: string;
  location?: string;
  timezone?: string;
}

export interface Gateway {
  id?: string;
  name: string;
  /** Latest config version (each save makes one). */
  version?: number;
  site?: Site;
  mode?: 'external' | 'inCluster';
  cluster?: string | null;
  desired_version?: number | null;
  applied_version?: number | null;
  status?: 'online' | 'offline' | 'never-seen' | string;
  last_heartbeat?: string | null;
  last_error?: string | null;
  agent_version?: string | null;
  /** The whole EdgeGatewaySpec as stored (site, mode, clusterRef, devices, pipelines, uplink). */
  rawSpec?: Record<string, unknown>;
  /** The devices, pipelines and uplink of the latest version. */
  config?: GatewayConfig;
  agent_hostname?: string | null;
  created_at?: string;
}

export interface GatewayConfig {
  devices: Device[];
  pipelines?: unknown[];
  uplink?: Record<string, unknown>;
}

export interface Device {
  name: string;
  adapter: 'modbusTcp' | 'simulator';
  description?: string;
  modbus?: { host: string; port: number; timeoutMs?: number; retries?: number };
  simulator?: { seed?: number };
  groups: TagGroup[];
}

export interface TagGroup {
  name: string;
  intervalMs: number;
  tags: Tag[];
}

export interface Tag {
  name: string;
  address: string;
  dataType: string;
  unit?: string;
  scale?: number;
  offset?: number;
  description?: string;
  signal?: { kind: string; min?: number; max?: number; periodS?: number };
}

export interface GatewayVersion {
  version: number;
  author?: string;
  comment?: string;
  created_at: string;
}

export interface VersionDiff {
  from: number;
  to: number;
  /** Unified diff text, or JSON Patch (RFC 6902) operations. */
  diff?: string;
  changes?: { path: string; op: string; value?: unknown; from?: string }[];
}

export interface EnrollmentToken {
  id: string;
  prefix?: string;
  state?: string;
  last_used_at?: string | null;
  created_at?: string;
  expires_at?: string | null;
  max_uses?: number | null;
  uses?: number;
  revoked_at?: string | null;
}

export interface NewEnrollmentToken extends EnrollmentToken {
  token: string;
  install_command?: string;
}

// ---- series (issue 6) ----

/** One time bucket: the good readings in [t, t + step). */
export interface SeriesPoint {
  t: string;
  avg?: number | null;
  min?: number | null;
  max?: number | null;
  count: number;
}

/** A tag of one gateway over time; buckets without readings are absent. */
export interface Series {
  gateway: string;
  tag: string;
  device?: string | null;
  from: string;
  to: string;
  step_seconds: number;
  points: SeriesPoint[];
}

// ---- alerts (issue 7) ----

export type RuleKind = 'threshold' | 'absence' | 'rate' | 'gateway_offline' | 'device_down' | 'cluster_degraded';

/** What a rule watches; the kind says which fields count. */
export interface RuleSpec {
  name: string;
  kind: RuleKind;
  gateway?: string | null;
  device?: string | null;
  tag?: string | null;
  op?: '>' | '<' | 'outside' | null;
  threshold?: number | null;
  low?: number | null;
  high?: number | null;
  absent_secs?: number | null;
  max_rate_per_sec?: number | null;
  for_secs: number;
  severity: 'critical' | 'warning' | 'info';
  labels?: Record<string, string>;
  summary?: string;
  channels?: string[];
  enabled?: boolean;
}

export interface AlertRule {
  id: string;
  spec: RuleSpec;
  created_at?: string;
  updated_at?: string;
}

export type AlertState = 'inactive' | 'pending' | 'firing' | 'resolved';

export interface ActiveAlert {
  rule_id: string;
  series: string;
  state: AlertState;
  status: 'active' | 'silenced' | 'inhibited';
  labels?: Record<string, string>;
  summary?: string;
  value?: number | null;
  since: string;
  fired_at?: string | null;
}

export interface AlertHistoryEntry {
  id: string;
  rule_id: string;
  rule_name: string;
  series: string;
  from: AlertState;
  to: AlertState;
  at: string;
  value?: number | null;
  summary?: string;
  labels?: Record<string, string>;
}

export interface Matcher {
  name: string;
  value: string;
  regex?: boolean;
}

export interface Silence {
  id: string;
  matchers: Matcher[];
  starts_at: string;
  ends_at: string;
  author?: string;
  comment: string;
  active?: boolean;
}

export interface EmailConfig {
  smtp_host: string;
  smtp_port?: number;
  smtp_username?: string | null;
  from: string;
  to: string[];
}

export interface Channel {
  id: string;
  name: string;
  kind: 'webhook' | 'email';
  url?: string | null;
  email?: EmailConfig | null;
  has_secret?: boolean;
  created_at?: string;
}

export interface CreateChannel {
  name: string;
  kind: 'webhook' | 'email';
  url?: string;
  secret?: string;
  email?: EmailConfig;
  smtp_password?: string;
}

export interface ChannelTestResult {
  ok: boolean;
  attempts?: number;
  http_status?: number | null;
  error?: string;
}
