// Accounts of this Weir server, for system administrators: who may sign in.
import { useState } from 'react';
import { users, type UserRow } from '../api/endpoints';
import { useSession } from '../session';
import { canManageUsers } from '../lib/permissions';
import { Badge, Button, Dialog, Empty, ErrorNotice, Field, fmtTime, Notice, PageHead, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

function CreateUser({ onClose, onCreated }: { onClose: () => void; onCreated: (u: UserRow) => void }) {
  const [email, setEmail] = useState('');
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [admin, setAdmin] = useState(false);
  const act = useAction();
  return (
    <Dialog
      title="New account"
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant="primary"
            busy={act.busy}
            disabled={!email.trim() || !name.trim()}
            onClick={() =>
              act.run(() => users.create({ email: email.trim(), name: name.trim(), password: password || null, system_admin: admin }), {
                ok: `Created the account ${email.trim()}.`,
                then: (u) => {
                  onCreated(u);
                  onClose();
                },
              })
            }
          >
            Create account
          </Button>
        </>
      }
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Email" error={act.fields.email}>
          {(p) => <input {...p} type="email" autoComplete="off" value={email} onChange={(e) => setEmail(e.target.value)} />}
        </Field>
        <Field label="Name" error={act.fields.name}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Password" hint="At least 12 characters. Leave empty for an account that signs in with single sign-on only." error={act.fields.password}>
          {(p) => <input {...p} type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />}
        </Field>
        <label className="row">
          <input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.target.checked)} /> System administrator (may do everything, in every organization)
        </label>
        <ErrorNotice error={act.fields.email || act.fields.name || act.fields.password ? null : act.error} />
      </form>
    </Dialog>
  );
}

/** Ask before disabling or enabling, saying what it does. */
function ConfirmToggle({ user, onClose, onDone }: { user: UserRow; onClose: () => void; onDone: (u: UserRow) => void }) {
  const act = useAction();
  const disabling = !user.disabled_at;
  const verb = disabling ? 'Disable' : 'Enable';
  return (
    <Dialog
      title={`${verb} ${user.email}?`}
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant={disabling ? 'danger' : 'primary'}
            busy={act.busy}
            onClick={() =>
              act.run(() => (disabling ? users.disable(user.id) : users.enable(user.id)), {
                ok: `${disabling ? 'Disabled' : 'Enabled'} ${user.email}.`,
                then: (u) => {
                  onDone(u);
                  onClose();
                },
              })
            }
          >
            {verb} account
          </Button>
        </>
      }
    >
      <p>
        {disabling
          ? `${user.email} can no longer sign in: their sessions end now and the API tokens they created are refused. Their roles stay, so enabling the account again restores their access.`
          : `${user.email} may sign in again, with the roles they held; their API tokens that are neither revoked nor expired work again.`}
      </p>
      <ErrorNotice error={act.error} />
    </Dialog>
  );
}

export function Users() {
  const { me } = useSession();
  const allowed = canManageUsers(me);
  const p = usePaged(() => (allowed ? users.list() : Promise.resolve({ items: [] as UserRow[] })), [allowed]);
  // The api's answer to a disable/enable, shown at once (the list reloads too).
  const [changed, setChanged] = useState<Record<string, UserRow>>({});
  const [creating, setCreating] = useState(false);
  const [toggling, setToggling] = useState<UserRow | null>(null);
  if (!allowed)
    return (
      <>
        <PageHead title="Users" />
        <Notice kind="info">Only system administrators manage accounts.</Notice>
      </>
    );
  return (
    <>
      <PageHead
        title="Users"
        sub="Every account of this Weir server. A disabled account cannot sign in."
        actions={<Button variant="primary" onClick={() => setCreating(true)}>New account</Button>}
      />
      <ListState p={p} empty={<div className="card"><Empty title="No accounts" /></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Users">
            <thead>
              <tr>
                <th>Email</th>
                <th>Name</th>
                <th>System administrator</th>
                <th>Last sign-in</th>
                <th>Status</th>
                <th aria-label="Actions" />
              </tr>
            </thead>
            <tbody>
              {p.items.map((row) => {
                const u = changed[row.id] ?? row;
                const self = u.id === me?.id;
                return (
                  <tr key={u.id} className={u.disabled_at ? 'muted' : undefined} data-testid={`user-${u.email}`}>
                    <td>
                      {u.email} {self && <Badge kind="info" plain>you</Badge>}
                    </td>
                    <td>{u.name || '—'}</td>
                    <td>{u.system_admin ? 'yes' : 'no'}</td>
                    <td className="muted">{u.last_login_at ? fmtTime(u.last_login_at) : 'never'}</td>
                    <td>
                      {u.disabled_at ? (
                        <span title={`since ${fmtTime(u.disabled_at)}`}>
                          <Badge kind="bad">Disabled</Badge>
                        </span>
                      ) : (
                        <Badge kind="ok" plain>Active</Badge>
                      )}
                    </td>
                    <td style={{ textAlign: 'right' }}>
                      {!self && (
                        <Button variant="ghost" aria-label={`${u.disabled_at ? 'Enable' : 'Disable'} ${u.email}`} onClick={() => setToggling(u)}>
                          {u.disabled_at ? 'Enable' : 'Disable'}
                        </Button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {creating && <CreateUser onClose={() => setCreating(false)} onCreated={p.reload} />}
      {toggling && (
        <ConfirmToggle
          user={toggling}
          onClose={() => setToggling(null)}
          onDone={(u) => {
            setChanged((c) => ({ ...c, [u.id]: u }));
            p.reload();
          }}
        />
      )}
    </>
  );
}
