import { useEffect, useState } from 'react';
import { projects, tokens } from '../api/endpoints';
import type { NewApiToken, Project, Role } from '../api/types';
import { useSession } from '../session';
import { useScope } from '../scope';
import { can, ORG_ROLES, PROJECT_ROLES, ROLE_LABEL } from '../lib/permissions';
import { Badge, Button, Copyable, Dialog, Empty, ErrorNotice, Field, fmtAgo, fmtTime, Notice, PageHead, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

function CreateToken({ org, project, onClose, onCreated }: { org: string; project: string | null; onClose: () => void; onCreated: () => void }) {
  const roles = project ? PROJECT_ROLES : ORG_ROLES;
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>(roles[roles.length - 1]);
  const [days, setDays] = useState('90');
  const [made, setMade] = useState<NewApiToken | null>(null);
  const act = useAction();
  if (made)
    return (
      <Dialog title="Token created" onClose={onClose} footer={<Button variant="primary" onClick={onClose}>Done</Button>}>
        <div className="stack">
          <Notice kind="warn">Copy this token now. It is shown only once; Weir keeps only a hash of it.</Notice>
          <Copyable text={made.token} />
          <p className="muted small" style={{ margin: 0 }}>
            Send it as <code>Authorization: Bearer …</code>.
          </p>
        </div>
      </Dialog>
    );
  return (
    <Dialog
      title={project ? `New API token for project ${project}` : 'New API token for the organization'}
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant="primary"
            busy={act.busy}
            disabled={!name.trim()}
            onClick={() =>
              act.run(() => tokens.create(org, project, { name: name.trim(), role, expires_in_days: days ? Number(days) : null }), {
                then: (t) => {
                  setMade(t);
                  onCreated();
                },
              })
            }
          >
            Create token
          </Button>
        </>
      }
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Name" hint="What uses it, e.g. “SCADA export”." error={act.fields.name}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Role" hint="The token never has more rights than you." error={act.fields.role}>
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
        <Field label="Expires after (days)" hint="Leave empty for a token that does not expire." error={act.fields.expires_in_days}>
          {(p) => <input {...p} type="number" min={1} max={3650} value={days} onChange={(e) => setDays(e.target.value)} />}
        </Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

export function Tokens() {
  const { org } = useScope();
  const { me } = useSession();
  const orgWide = can(me, 'org.tokens.manage', { org });
  const [projList, setProjList] = useState<Project[]>([]);
  const [scope, setScope] = useState<string>(orgWide ? '' : '\u0000');
  useEffect(() => {
    projects
      .list(org)
      .then((p) => {
        const mine = p.items.filter((x) => can(me, 'project.tokens.manage', { org, project: x.slug }));
        setProjList(mine);
        if (!orgWide) setScope((s) => (s === '\u0000' ? mine[0]?.slug ?? '' : s));
      })
      .catch(() => setProjList([]));
  }, [org, me, orgWide]);
  const project = scope || null;
  const ready = scope !== '\u0000' && (orgWide || !!project);
  const [creating, setCreating] = useState(false);
  const p = usePaged(() => (ready ? tokens.list(org, project) : Promise.resolve({ items: [] })), [org, scope]);
  const revoke = useAction();
  return (
    <>
      <PageHead
        title="API tokens"
        sub="Tokens let scripts and other systems use the Weir API with a role you choose."
        actions={ready && <Button variant="primary" onClick={() => setCreating(true)}>New token</Button>}
      />
      <div className="row" style={{ marginBottom: 12 }}>
        <label htmlFor="token-scope"><strong>Tokens of</strong></label>
        <select id="token-scope" value={scope} onChange={(e) => setScope(e.target.value)}>
          {orgWide && <option value="">the whole organization</option>}
          {projList.map((x) => (
            <option key={x.slug} value={x.slug}>
              project {x.name}
            </option>
          ))}
        </select>
      </div>
      <ErrorNotice error={revoke.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No tokens">Create one for automation.</Empty></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="API tokens">
            <thead>
              <tr>
                <th>Name</th>
                <th>Starts with</th>
                <th>Role</th>
                <th>Last used</th>
                <th>Expires</th>
                <th aria-label="Actions" />
              </tr>
            </thead>
            <tbody>
              {p.items.map((t) => (
                <tr key={t.id}>
                  <td>{t.name}</td>
                  <td className="mono">{t.prefix}…</td>
                  <td>{ROLE_LABEL[t.role] ?? t.role}</td>
                  <td className="muted">{fmtAgo(t.last_used_at)}</td>
                  <td className="muted">{t.expires_at ? fmtTime(t.expires_at) : 'never'}</td>
                  <td style={{ textAlign: 'right' }}>
                    {t.revoked_at ? (
                      <Badge kind="bad">revoked</Badge>
                    ) : (
                      <Button variant="ghost" busy={revoke.busy} onClick={() => revoke.run(() => tokens.revoke(org, project, t.id), { ok: `Revoked ${t.name}.`, then: p.reload })}>
                        Revoke
                      </Button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {creating && <CreateToken org={org} project={project} onClose={() => setCreating(false)} onCreated={p.reload} />}
    </>
  );
}
