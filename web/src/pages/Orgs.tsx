// Organizations the user can see, and creating one; and an org's projects.
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { orgs, projects } from '../api/endpoints';
import { useSession } from '../session';
import { useScope } from '../scope';
import { slugify, SLUG_RE } from '../lib/slug';
import { Button, Dialog, Empty, ErrorNotice, Field, PageHead, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

function CreateNamed({
  what,
  onClose,
  create,
}: {
  what: 'organization' | 'project';
  onClose: () => void;
  create: (b: { name: string; slug: string; description: string }) => Promise<unknown>;
}) {
  const [name, setName] = useState('');
  const [slug, setSlug] = useState('');
  const [touched, setTouched] = useState(false);
  const [description, setDescription] = useState('');
  const act = useAction();
  const s = touched ? slug : slugify(name);
  const slugErr = s && !SLUG_RE.test(s) ? 'Use lowercase letters, digits and “-”.' : act.fields.slug;
  return (
    <Dialog
      title={`New ${what}`}
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant="primary"
            busy={act.busy}
            disabled={!name.trim() || !SLUG_RE.test(s)}
            onClick={() => act.run(() => create({ name: name.trim(), slug: s, description }), { ok: `Created ${what} ${name}.` })}
          >
            Create {what}
          </Button>
        </>
      }
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Name" error={act.fields.name}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} placeholder={what === 'organization' ? 'Riverside Water' : 'North treatment plant'} />}
        </Field>
        <Field label="URL name" hint="Used in addresses and topics; cannot be changed later." error={slugErr}>
          {(p) => (
            <input
              {...p}
              value={s}
              onChange={(e) => {
                setTouched(true);
                setSlug(e.target.value);
              }}
            />
          )}
        </Field>
        <Field label="Description" error={act.fields.description}>
          {(p) => <input {...p} value={description} onChange={(e) => setDescription(e.target.value)} />}
        </Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

export function OrgList() {
  const { me, refresh } = useSession();
  const nav = useNavigate();
  const [creating, setCreating] = useState(false);
  const p = usePaged(() => orgs.list(), []);
  return (
    <>
      <PageHead
        title="Organizations"
        sub="Each organization is a utility or plant operator with its own projects, people and audit log."
        actions={
          me?.system_admin && (
            <Button variant="primary" onClick={() => setCreating(true)}>
              New organization
            </Button>
          )
        }
      />
      <ListState p={p} empty={<div className="card"><Empty title="No organizations yet">{me?.system_admin ? 'Create the first one.' : 'Ask an administrator to invite you to one.'}</Empty></div>}>
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th>URL name</th>
                <th>Description</th>
              </tr>
            </thead>
            <tbody>
              {p.items.map((o) => (
                <tr key={o.slug}>
                  <td>
                    <Link to={`/o/${o.slug}`}>{o.name}</Link>
                    {o.managed_by && <span className="badge plain" style={{ marginLeft: 8 }}>managed by {o.managed_by}</span>}
                  </td>
                  <td className="mono">{o.slug}</td>
                  <td className="muted">{o.description}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {creating && (
        <CreateNamed
          what="organization"
          onClose={() => setCreating(false)}
          create={async (b) => {
            const o = await orgs.create(b);
            await refresh();
            nav(`/o/${o.slug}`);
          }}
        />
      )}
    </>
  );
}

export function OrgHome() {
  const { org, can } = useScope();
  const { refresh } = useSession();
  const nav = useNavigate();
  const [creating, setCreating] = useState(false);
  const p = usePaged(() => projects.list(org), [org]);
  return (
    <>
      <PageHead
        title="Projects"
        sub="A project groups the gateways, brokers and alert rules of one plant or network."
        actions={
          can('project.create') && (
            <Button variant="primary" onClick={() => setCreating(true)}>
              New project
            </Button>
          )
        }
      />
      <ListState p={p} empty={<div className="card"><Empty title="No projects yet">{can('project.create') ? 'Create one to add gateways.' : 'You have not been added to a project here.'}</Empty></div>}>
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th>URL name</th>
                <th>Description</th>
              </tr>
            </thead>
            <tbody>
              {p.items.map((x) => (
                <tr key={x.slug}>
                  <td>
                    <Link to={`/o/${org}/p/${x.slug}`}>{x.name}</Link>
                  </td>
                  <td className="mono">{x.slug}</td>
                  <td className="muted">{x.description}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {creating && (
        <CreateNamed
          what="project"
          onClose={() => setCreating(false)}
          create={async (b) => {
            const x = await projects.create(org, b);
            await refresh();
            nav(`/o/${org}/p/${x.slug}`);
          }}
        />
      )}
    </>
  );
}
