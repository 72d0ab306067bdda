import { useState } from 'react';
import { projects, tokens } from '../api/endpoints';
import type { NewApiToken, Role } from '../api/types';
import { useSession } from '../session';
import { useScope } from '../scope';
import { can, ORG_ROLES, PROJECT_ROLES, ROLE_LABEL } from '../lib/permissions';
import { Badge, Button, Copyable, Dialog, Empty, ErrorNotice, Field, fmtAgo, fmtTime, Notice, PageHead, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';
import { useEffect } from 'react';

function CreateToken({ org, onClose, onCreated }: { org: string; onClose: () => void; onCreated: () => void }) {
  const { me } = useSession();
  const [name, setName] = useState('');
  const [project, setProject] = useState('');
  const [role, setRole] = useState<Role>('project-viewer');
  const [days, setDays] = useState('90');
  const [made, setMade] = useState<NewApiToken | null>(null);
  const [projList, setProjList] = useState<{ slug: string; name: string }[]>([]);
  const act = useAction();
  useEffect(() => {
    projects.list(org, { limit: 200 }).then((p) => setProjList(p.items)).catch(() => setProjList([]));
  }, [org]);
  const orgWide = can(me, 'org.tokens.manage', { org });
  const projOptions = projList.filter((x) => orgWide || can(me, 'project.tokens.manage', { org, project: x.slug }));
  const roles = project ? PROJECT_ROLES : orgWide ? ORG_ROLES.filter((r) => r !== 'org-owner') : [];
  useEffect(() => {
    if (!roles.includes(role)) setRole(roles[roles.length - 1] ?? 'project-viewer');
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [project]);
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
      title="New API token"
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant="primary"
            busy={act.busy}
            disabled={!name.trim() || (!project && !orgWide)}
            onClick={() =>
              act.run(
                () =>
                  tokens.create(org, {
                    name: name.trim(),
                    role,
                    project: project || null,
                    expires_in_days: days ? Number(days) : null,
                  }),
                { then: (t) => { setMade(t); onCreated(); } },
              )
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
        <Field label="Scope" error={act.fields.project}>
          {(p) => (
            <select {...p} value={project} onChange={(e) => setProject(e.target.value)}>
              {orgWide && <option value="">Whole organization</option>}
              {!orgWide && <option value="">Choose a project…</option>}
              {projOptions.map((x) => (
                <option key={x.slug} value={x.slug}>
                  Project: {x.name}
                </option>
              ))}
            </select>
          )}
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
        <Field label="Expires after (days)" hint="Leave empty for a token that does not expire." error={act.fields.expires_in_days ?? act.fields.expires_at}>
          {(p) => <input {...p} type="number" min={1} max={3650} value={days} onChange={(e) => setDays(e.target.value)} />}
        </Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

export function Tokens() {
  const { org } = useScope();
  const [creating, setCreating] = useState(false);
  const p = usePaged((q) => tokens.list(org, q), [org]);
  const revoke = useAction();
  return (
    <>
      <PageHead
        title="API tokens"
        sub="Tokens let scripts and other systems use the Weir API with a role you choose."
        actions={!p.missing && <Button variant="primary" onClick={() => setCreating(true)}>New token</Button>}
      />
      <ErrorNotice error={revoke.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No tokens">Create one for automation.</Empty></div>}>
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Starts with</th>
                <th>Role</th>
                <th>Scope</th>
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
                  <td>{t.project ?? 'organization'}</td>
                  <td className="muted">{fmtAgo(t.last_used_at)}</td>
                  <td className="muted">{t.expires_at ? fmtTime(t.expires_at) : 'never'}</td>
                  <td style={{ textAlign: 'right' }}>
                    {t.revoked_at ? (
                      <Badge kind="bad">revoked</Badge>
                    ) : (
                      <Button variant="ghost" busy={revoke.busy} onClick={() => revoke.run(() => tokens.revoke(org, t.id), { ok: `Revoked ${t.name}.`, then: p.reload })}>
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
      {creating && <CreateToken org={org} onClose={() => setCreating(false)} onCreated={p.reload} />}
    </>
  );
}
