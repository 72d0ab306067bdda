// The frame of every signed-in page: navigation, org/project switcher, user menu.
import { useEffect, useState } from 'react';
import { NavLink, Outlet, useLocation, useNavigate, useParams } from 'react-router';
import { orgs as orgsApi, projects as projectsApi } from './api/endpoints';
import type { Org, Project } from './api/types';
import { Logo } from './Logo';
import { useSession } from './session';
import { can, canManageUsers, canSomewhereIn, roleIn, ROLE_LABEL } from './lib/permissions';
import { Button } from './ui/kit';

export function Layout() {
  const { org = '', project = '' } = useParams();
  const { me, signOut } = useSession();
  const nav = useNavigate();
  const loc = useLocation();
  const [orgList, setOrgList] = useState<Org[]>([]);
  const [projList, setProjList] = useState<Project[]>([]);

  useEffect(() => {
    orgsApi
      .list()
      .then((p) => setOrgList(p.items))
      .catch(() => setOrgList([]));
  }, [org, loc.pathname === '/orgs']);

  useEffect(() => {
    if (!org) return setProjList([]);
    projectsApi
      .list(org)
      .then((p) => setProjList(p.items))
      .catch(() => setProjList([]));
  }, [org, project]);

  const where = { org, project: project || null };
  const role = roleIn(me, where);
  const p = `/o/${org}/p/${project}`;

  return (
    <div className="shell">
      <nav className="nav" aria-label="Main">
        <div className="brand">
          <Logo /> Weir
        </div>
        {org && project && (
          <>
            <div className="section">Project</div>
            <NavLink to={`${p}`} end>
              Fleet overview
            </NavLink>
            <NavLink to={`${p}/gateways`}>Edge gateways</NavLink>
            <NavLink to={`${p}/templates`}>Gateway templates</NavLink>
            {can(me, 'project.write', where) && <NavLink to={`${p}/batch`}>Batch changes</NavLink>}
            <NavLink to={`${p}/rollout`}>Rollout</NavLink>
            <NavLink to={`${p}/fleet-events`}>Fleet events</NavLink>
            <NavLink to={`${p}/clusters`}>MQTT clusters</NavLink>
            <NavLink to={`${p}/alerts`}>Alerts</NavLink>
            <NavLink to={`${p}/credentials`}>Device credentials</NavLink>
            {can(me, 'project.members.read', where) && <NavLink to={`${p}/members`}>Project members</NavLink>}
          </>
        )}
        {org && (
          <>
            <div className="section">Organization</div>
            <NavLink to={`/o/${org}`} end>
              Projects
            </NavLink>
            {can(me, 'org.members.read', where) && <NavLink to={`/o/${org}/members`}>Members</NavLink>}
            {(can(me, 'org.tokens.manage', where) || canSomewhereIn(me, 'project.tokens.manage', org)) && (
              <NavLink to={`/o/${org}/tokens`}>API tokens</NavLink>
            )}
            {can(me, 'org.audit.read', where) && <NavLink to={`/o/${org}/audit`}>Audit log</NavLink>}
          </>
        )}
        <div className="section">You</div>
        <NavLink to="/orgs" end>
          All organizations
        </NavLink>
        <NavLink to="/account">Account</NavLink>
        {canManageUsers(me) && (
          <>
            <div className="section">Server</div>
            <NavLink to="/users">Users</NavLink>
          </>
        )}
        <div className="spacer" />
      </nav>
      <div className="main">
        <header className="topbar">
          <label className="sr-only" htmlFor="org-switch">
            Organization
          </label>
          <select
            id="org-switch"
            value={org}
            onChange={(e) => nav(e.target.value ? `/o/${e.target.value}` : '/orgs')}
          >
            <option value="">Choose organization…</option>
            {orgList.map((o) => (
              <option key={o.slug} value={o.slug}>
                {o.name}
              </option>
            ))}
          </select>
          {org && (
            <>
              <span className="muted">/</span>
              <label className="sr-only" htmlFor="project-switch">
                Project
              </label>
              <select
                id="project-switch"
                value={project}
                onChange={(e) => nav(e.target.value ? `/o/${org}/p/${e.target.value}` : `/o/${org}`)}
              >
                <option value="">Choose project…</option>
                {projList.map((x) => (
                  <option key={x.slug} value={x.slug}>
                    {x.name}
                  </option>
                ))}
              </select>
            </>
          )}
          <span className="grow" />
          {role && <span className="badge info plain" data-testid="role">{ROLE_LABEL[role]}</span>}
          <span className="muted" data-testid="whoami">
            {me?.name || me?.email}
          </span>
          <Button
            onClick={async () => {
              await signOut();
              nav('/signin');
            }}
          >
            Sign out
          </Button>
        </header>
        <main className="content">
          <Outlet />
        </main>
      </div>
    </div>
  );
}
