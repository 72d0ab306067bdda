import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assignableRoles, can, POLICY, roleIn } from './permissions';
import { me } from '../test/util';

describe('permissions', () => {
  it('mirror api/rbac/policy.csv exactly', () => {
    const csv = readFileSync(resolve(__dirname, '../../../api/rbac/policy.csv'), 'utf8');
    const fromApi: Record<string, string[]> = {};
    for (const line of csv.split('\n')) {
      const t = line.trim();
      if (!t.startsWith('p,')) continue;
      const [, role, , perm] = t.split(',').map((x) => x.trim());
      if (role === 'system-admin') continue;
      (fromApi[role] ??= []).push(perm);
    }
    const ours = Object.fromEntries(Object.entries(POLICY).map(([r, ps]) => [r, [...ps].sort()]));
    const theirs = Object.fromEntries(Object.entries(fromApi).map(([r, ps]) => [r, [...ps].sort()]));
    expect(ours).toEqual(theirs);
  });

  const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
  const editor = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-editor' }] });
  const admin = me({ memberships: [{ org: 'rw', project: null, role: 'org-admin' }] });

  it('a viewer reads but does not write', () => {
    expect(can(viewer, 'project.read', { org: 'rw', project: 'north' })).toBe(true);
    expect(can(viewer, 'project.write', { org: 'rw', project: 'north' })).toBe(false);
    expect(can(viewer, 'org.read', { org: 'rw' })).toBe(true);
    expect(can(viewer, 'org.audit.read', { org: 'rw' })).toBe(false);
  });

  it('a project role does not reach other projects or orgs', () => {
    expect(can(editor, 'project.write', { org: 'rw', project: 'north' })).toBe(true);
    expect(can(editor, 'project.write', { org: 'rw', project: 'south' })).toBe(false);
    expect(can(editor, 'project.read', { org: 'other', project: 'north' })).toBe(false);
  });

  it('an org admin manages every project but cannot name owners', () => {
    expect(can(admin, 'project.write', { org: 'rw', project: 'south' })).toBe(true);
    expect(assignableRoles(admin, { org: 'rw' })).toEqual(['org-admin']);
    expect(assignableRoles(admin, { org: 'rw', project: 'x' })).toEqual(['project-admin', 'project-editor', 'project-operator', 'project-viewer']);
    expect(assignableRoles(viewer, { org: 'rw', project: 'north' })).toEqual([]);
    expect(roleIn(admin, { org: 'rw', project: 'north' })).toBe('org-admin');
  });

  it('an operator reads and operates but changes nothing else; a viewer does not operate', () => {
    const operator = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-operator' }] });
    const where = { org: 'rw', project: 'north' };
    expect(can(operator, 'project.read', where)).toBe(true);
    expect(can(operator, 'project.operate', where)).toBe(true);
    expect(can(operator, 'project.write', where)).toBe(false);
    expect(can(operator, 'project.operate', { org: 'rw', project: 'south' })).toBe(false);
    expect(can(viewer, 'project.operate', where)).toBe(false);
    expect(can(editor, 'project.operate', where)).toBe(true);
    expect(roleIn(operator, where)).toBe('project-operator');
  });

  it('system admins may do everything; nobody signed out may do anything', () => {
    expect(can(me({ system_admin: true }), 'org.delete', { org: 'any' })).toBe(true);
    expect(can(null, 'project.read', { org: 'rw', project: 'north' })).toBe(false);
  });
});
