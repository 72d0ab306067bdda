import { useState } from 'react';
import { members } from '../api/endpoints';
import type { Member, Role } from '../api/types';
import { useSession } from '../session';
import { useScope } from '../scope';
import { assignableRoles, ROLE_LABEL } from '../lib/permissions';
import { Badge, Button, Dialog, Empty, ErrorNotice, Field, fmtTime, PageHead, useAction, useToast } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

function RoleCell({ m, roles, onChange }: { m: Member; roles: Role[]; onChange: (r: Role) => Promise<unknown> }) {
  const act = useAction();
  if (!roles.length || !roles.includes(m.role))
    return <span>{ROLE_LABEL[m.role] ?? m.role}</span>;
  return (
    <div className="row">
      <select
        aria-label={`Role of ${m.email}`}
        value={m.role}
        disabled={act.busy}
        onChange={(e) => act.run(() => onChange(e.target.value as Role), { ok: `Changed the role of ${m.email}.` })}
      >
        {roles.map((r) => (
          <option key={r} value={r}>
            {ROLE_LABEL[r]}
          </option>
        ))}
      </select>
      {act.busy && <span className="spinner" />}
      {!!act.error && <ErrorNotice error={act.error} />}
    </div>
  );
}

function Invite({ roles, onClose, invite }: { roles: Role[]; onClose: () => void; invite: (email: string, role: Role) => Promise<'added' | 'invited'> }) {
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<Role>(roles[roles.length - 1]);
  const act = useAction();
  const toast = useToast();
  return (
    <Dialog
      title="Invite a member"
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button variant="primary" busy={act.busy} disabled={!email.includes('@')} onClick={() => act.run(() => invite(email.trim(), role), { then: (r) => { toast('ok', r === 'added' ? `Added ${email}.` : `Invited ${email}; they join at their first sign-in.`); onClose(); } })}>
            Send invitation
          </Button>
        </>
      }
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Email" hint="They join at their first sign-in with this email (password or single sign-on)." error={act.fields.email}>
          {(p) => <input {...p} type="email" value={email} onChange={(e) => setEmail(e.target.value)} />}
        </Field>
        <Field label="Role" error={act.fields.role}>
          {(p) => (
            <select {...p} value={role} onChange={(e) => setRole(e.target.value as Role)}>
              {roles.map((r) => (
                <option key={r} value={r}>
                  {ROLE_LABEL[r]}
                </option>
              ))}
            </select>
          )}
        </Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

export function Members() {
  const { org, project } = useScope();
  const { me } = useSession();
  const [inviting, setInviting] = useState(false);
  const [removing, setRemoving] = useState<Member | null>(null);
  const roles = assignableRoles(me, { org, project: project || null });
  const p = usePaged(() => members.list(org, project || null), [org, project]);
  const inv = usePaged(() => members.invitations(org, project || null).then((x) => ({ ...x, items: x.items.filter((i) => !i.claimed_at) })), [org, project, p.page]);
  const removeAct = useAction();
  const where = project ? 'project' : 'organization';
  return (
    <>
      <PageHead
        title={project ? 'Project members' : 'Organization members'}
        sub={project ? 'People with a role in this project.' : 'People with a role across the whole organization. Project members are listed on each project.'}
        actions={
          roles.length > 0 && (
            <Button variant="primary" onClick={() => setInviting(true)}>
              Invite member
            </Button>
          )
        }
      />
      <ListState p={p} empty={<div className="card"><Empty title="No members" /></div>}>
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Email</th>
                <th>Role</th>
                <th>Since</th>
                {roles.length > 0 && <th aria-label="Actions" />}
              </tr>
            </thead>
            <tbody>
              {p.items.map((m) => (
                <tr key={m.user_id ?? m.email}>
                  <td>{m.name || '—'}</td>
                  <td>{m.email}</td>
                  <td>
                    <RoleCell m={m} roles={m.source && m.source !== 'manual' ? [] : roles} onChange={async (r) => { await members.setRole(org, project || null, m.user_id, r); p.reload(); }} />
                    {m.source && m.source !== 'manual' && <span className="muted small"> (from {m.source === 'oidc' ? 'single sign-on groups' : m.source})</span>}
                  </td>
                  <td className="muted">{fmtTime(m.created_at)}</td>
                  {roles.length > 0 && (
                    <td style={{ textAlign: 'right' }}>
                      {(roles.includes(m.role)) && (
                        <Button variant="ghost" onClick={() => setRemoving(m)}>
                          Remove
                        </Button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {inv.items.length > 0 && (
        <section className="card" style={{ marginTop: 16 }}>
          <h2>Pending invitations</h2>
          <table className="table">
            <thead>
              <tr>
                <th>Email</th>
                <th>Role</th>
                <th>Expires</th>
              </tr>
            </thead>
            <tbody>
              {inv.items.map((i) => (
                <tr key={i.id}>
                  <td>{i.email}</td>
                  <td>
                    <Badge kind="info" plain>
                      {ROLE_LABEL[i.role] ?? i.role}
                    </Badge>
                  </td>
                  <td className="muted">{fmtTime(i.expires_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager p={inv} />
        </section>
      )}
      {inviting && (
        <Invite
          roles={roles}
          onClose={() => setInviting(false)}
          invite={async (email, role) => {
            const r = await members.invite(org, project || null, { email, role });
            p.reload();
            return r;
          }}
        />
      )}
      {removing && (
        <Dialog
          title={`Remove ${removing.email}?`}
          onClose={() => setRemoving(null)}
          footer={
            <>
              <Button onClick={() => setRemoving(null)}>Cancel</Button>
              <Button
                variant="danger"
                busy={removeAct.busy}
                onClick={() =>
                  removeAct.run(() => members.remove(org, project || null, removing.user_id), {
                    ok: `Removed ${removing.email}.`,
                    then: () => {
                      setRemoving(null);
                      p.reload();
                    },
                  })
                }
              >
                Remove from {where}
              </Button>
            </>
          }
        >
          <p>
            {removing.email} loses the role {ROLE_LABEL[removing.role]} in this {where}. Their API tokens here stop working.
          </p>
          <ErrorNotice error={removeAct.error} />
        </Dialog>
      )}
    </>
  );
}
