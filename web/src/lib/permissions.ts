// What the signed-in user may do, so the console offers only that. Mirrors
// api/rbac/policy.csv (a unit test fails when the two differ); the api
// remains the judge of every request.
import type { Me, Role } from '../api/types';

export type Permission =
  | 'org.read'
  | 'org.update'
  | 'org.delete'
  | 'org.members.read'
  | 'org.members.manage'
  | 'org.owners.manage'
  | 'org.audit.read'
  | 'org.tokens.manage'
  | 'org.sso.read'
  | 'org.sso.manage'
  | 'project.create'
  | 'project.read'
  | 'project.update'
  | 'project.delete'
  | 'project.write'
  | 'project.operate'
  | 'project.members.read'
  | 'project.members.manage'
  | 'project.tokens.manage';

const ORG_ADMIN: Permission[] = [
  'org.read',
  'org.update',
  'org.members.read',
  'org.members.manage',
  'org.audit.read',
  'org.tokens.manage',
  'org.sso.read',
  'org.sso.manage',
  'project.create',
  'project.read',
  'project.update',
  'project.delete',
  'project.write',
  'project.operate',
  'project.members.read',
  'project.members.manage',
  'project.tokens.manage',
];

export const POLICY: Record<Exclude<Role, 'system-admin'>, Permission[]> = {
  'org-owner': [...ORG_ADMIN, 'org.delete', 'org.owners.manage'],
  'org-admin': ORG_ADMIN,
  'project-admin': [
    'org.read',
    'project.read',
    'project.update',
    'project.write',
    'project.operate',
    'project.members.read',
    'project.members.manage',
    'project.tokens.manage',
  ],
  'project-editor': ['org.read', 'project.read', 'project.write', 'project.operate', 'project.members.read'],
  'project-operator': ['org.read', 'project.read', 'project.operate', 'project.members.read'],
  'project-viewer': ['org.read', 'project.read', 'project.members.read'],
};

export const ROLE_LABEL: Record<Role, string> = {
  'system-admin': 'System administrator',
  'org-owner': 'Organization owner',
  'org-admin': 'Organization administrator',
  'project-admin': 'Project administrator',
  'project-editor': 'Project editor',
  'project-operator': 'Project operator',
  'project-viewer': 'Project viewer',
};

export const ORG_ROLES: Role[] = ['org-owner', 'org-admin'];
export const PROJECT_ROLES: Role[] = ['project-admin', 'project-editor', 'project-operator', 'project-viewer'];

export interface Where {
  org?: string | null;
  project?: string | null;
}

/** May `me` do `perm` in the org / project named by slug? */
export function can(me: Me | null | undefined, perm: Permission, where: Where = {}): boolean {
  if (!me) return false;
  if (me.system_admin) return true;
  const { org, project } = where;
  if (!org) return false;
  for (const m of me.memberships) {
    if (m.org !== org || m.role === 'system-admin') continue;
    const perms = POLICY[m.role];
    if (!perms?.includes(perm)) continue;
    if (!m.project) return true; // org role: the org and all its projects
    if (perm.startsWith('org.')) return true; // project role's org-level rights (org.read)
    if (project && m.project === project) return true;
  }
  return false;
}

/** The highest role the user holds in the org or project, for display. */
export function roleIn(me: Me | null | undefined, where: Where): Role | null {
  if (!me) return null;
  if (me.system_admin) return 'system-admin';
  const order: Role[] = ['org-owner', 'org-admin', 'project-admin', 'project-editor', 'project-operator', 'project-viewer'];
  const held = me.memberships
    .filter((m) => m.org === where.org && (!m.project || m.project === where.project))
    .map((m) => m.role);
  return order.find((r) => held.includes(r)) ?? null;
}

/** Roles the user may hand out in a domain (an org owner alone names owners). */
export function assignableRoles(me: Me | null | undefined, where: Where): Role[] {
  if (where.project) return can(me, 'project.members.manage', where) ? PROJECT_ROLES : [];
  if (!can(me, 'org.members.manage', where)) return [];
  return can(me, 'org.owners.manage', where) ? ORG_ROLES : ['org-admin'];
}

/** May `me` do `perm` in at least one project of the org (or org-wide)? */
export function canSomewhereIn(me: Me | null | undefined, perm: Permission, org: string): boolean {
  if (can(me, perm, { org })) return true;
  return !!me?.memberships.some((m) => m.org === org && m.project && can(me, perm, { org, project: m.project }));
}

/** System administrators alone manage accounts (create, disable, enable). */
export function canManageUsers(me: Me | null | undefined): boolean {
  return !!me?.system_admin;
}
