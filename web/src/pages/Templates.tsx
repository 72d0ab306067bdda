// Gateway templates: a partial gateway config the api applies as a JSON
// merge patch. Made here from an existing gateway's current config, then
// applied to many gateways at once (`gateways:batch` with the template).
import { useEffect, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { fleet, gateways } from '../api/endpoints';
import type { GatewaySummary, GatewayTemplate } from '../api/types';
import { useScope } from '../scope';
import { SLUG_RE } from '../lib/slug';
import { Button, ConfirmDelete, Dialog, Empty, ErrorNotice, Field, fmtTime, Notice, PageHead, Spinner, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';
import { ApplyToGateways } from './FleetBatch';

type Loose = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * What a template takes from a gateway: what it reads and how it sends
 * (devices, rules, uplink, agent version). Site, cluster, mode and agent
 * storage stay each gateway's own, since a merge patch that named them would
 * move every gateway it is applied to onto the first one's site and broker.
 */
export const TEMPLATE_KEYS = ['devices', 'pipelines', 'uplink', 'agentVersion'] as const;

export function templateFromSpec(spec: Loose): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of TEMPLATE_KEYS) if (spec[k] !== undefined && spec[k] !== null) out[k] = spec[k];
  return out;
}

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** "2 devices (3 tags), 1 rule, uplink settings, agent 0.4.1": what applying it replaces. */
export function templateSummary(spec: Loose): string {
  const parts: string[] = [];
  if (Array.isArray(spec.devices)) {
    const tags = spec.devices.reduce((n: number, d: Loose) => n + (d.groups ?? []).reduce((m: number, g: Loose) => m + (g.tags?.length ?? 0), 0), 0);
    parts.push(`${count(spec.devices.length, 'device')} (${count(tags, 'tag')})`);
  }
  if (Array.isArray(spec.pipelines)) parts.push(count(spec.pipelines.length, 'rule'));
  if (spec.uplink) parts.push('uplink settings');
  if (spec.agentVersion) parts.push(`agent ${spec.agentVersion}`);
  const other = Object.keys(spec).filter((k) => !(TEMPLATE_KEYS as readonly string[]).includes(k));
  if (other.length) parts.push(other.join(', '));
  return parts.join(', ') || 'nothing';
}

function CreateTemplate({ onClose }: { onClose: () => void }) {
  const { s, base } = useScope();
  const nav = useNavigate();
  const [list, setList] = useState<GatewaySummary[] | null>(null);
  const [from, setFrom] = useState('');
  const [name, setName] = useState('');
  const [title, setTitle] = useState('');
  const [description, setDescription] = useState('');
  const [listErr, setListErr] = useState<unknown>(null);
  const act = useAction();
  useEffect(() => {
    gateways.list(s).then((p) => { setList(p.items); setFrom((f) => f || p.items[0]?.name || ''); }).catch(setListErr);
  }, [s.org, s.project]); // eslint-disable-line react-hooks/exhaustive-deps
  const nameErr = name && !SLUG_RE.test(name) ? 'Use lowercase letters, digits and “-”.' : act.fields.name;
  // A template must make a valid config on its own: the api's errors name `spec.…`.
  const specErr = Object.entries(act.fields).filter(([k]) => k.startsWith('spec')).map(([k, m]) => `${k}: ${m}`).join('; ');
  const create = async () => {
    const g = await gateways.get(s, from);
    return fleet.createTemplate(s, { name, title, description, spec: templateFromSpec(g.rawSpec ?? {}) });
  };
  return (
    <Dialog
      title="New gateway template"
      onClose={onClose}
      footer={<><Button onClick={onClose}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!SLUG_RE.test(name) || !from} onClick={() => act.run(create, { ok: `Created template ${name}.`, then: (t) => nav(`${base}/templates/${t.name}`) })}>Create template</Button></>}
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="From gateway" hint="Its current devices, rules, uplink settings and agent version; not its site or cluster." error={specErr || undefined}>
          {(p) => list ? <select {...p} value={from} onChange={(e) => setFrom(e.target.value)}>{list.map((g) => <option key={g.name} value={g.name}>{g.name}</option>)}</select> : <Spinner label="Loading gateways" />}
        </Field>
        <ErrorNotice error={listErr} />
        {list && !list.length && <Notice kind="info">This project has no gateways to make a template from.</Notice>}
        <Field label="Name" hint="e.g. “pump-station”" error={nameErr}>{(p) => <input {...p} value={name} autoComplete="off" onChange={(e) => setName(e.target.value)} />}</Field>
        <Field label="Title" hint="optional, e.g. “Pump station, two pumps”" error={act.fields.title}>{(p) => <input {...p} value={title} onChange={(e) => setTitle(e.target.value)} />}</Field>
        <Field label="Description" error={act.fields.description}>{(p) => <textarea {...p} rows={3} value={description} onChange={(e) => setDescription(e.target.value)} />}</Field>
        <ErrorNotice error={Object.keys(act.fields).length ? null : act.error} />
      </form>
    </Dialog>
  );
}

export function TemplateList() {
  const { s, base, can } = useScope();
  const [creating, setCreating] = useState(false);
  const p = usePaged(() => fleet.templates(s), [s.org, s.project]);
  const writer = can('project.write');
  return (
    <>
      <PageHead
        title="Gateway templates"
        sub="A gateway's devices, rules and uplink settings, kept to apply to many gateways at once. Each keeps its own site and cluster."
        actions={writer && <Button variant="primary" onClick={() => setCreating(true)}>New template</Button>}
      />
      <ListState p={p} empty={<div className="card"><Empty title="No templates yet">{writer ? 'Make one from a gateway whose config the others should share.' : ''}</Empty></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Gateway templates">
            <thead><tr><th>Name</th><th>Title</th><th>Sets</th><th>Changed</th></tr></thead>
            <tbody>
              {p.items.map((t) => (
                <tr key={t.name}>
                  <td><Link to={`${base}/templates/${t.name}`}>{t.name}</Link></td>
                  <td>{t.title}{t.description && <div className="muted small">{t.description}</div>}</td>
                  <td className="small">{templateSummary(t.spec)}</td>
                  <td className="muted">{fmtTime(t.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {creating && <CreateTemplate onClose={() => setCreating(false)} />}
    </>
  );
}

export function TemplateDetail() {
  const { s, base, can } = useScope();
  const { template: name = '' } = useParams();
  const nav = useNavigate();
  const [t, setT] = useState<GatewayTemplate | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [deleting, setDeleting] = useState(false);
  useEffect(() => {
    let live = true;
    fleet.template(s, name).then((x) => live && setT(x)).catch((e) => live && setErr(e));
    return () => { live = false; };
  }, [s.org, s.project, name]); // eslint-disable-line react-hooks/exhaustive-deps
  if (err) return <><PageHead title={name} /><ErrorNotice error={err} /></>;
  if (!t) return <Spinner />;
  const writer = can('project.write');
  const devices: Loose[] = Array.isArray(t.spec.devices) ? t.spec.devices : [];
  return (
    <>
      <PageHead
        title={t.title || t.name}
        sub={<>Template <code>{t.name}</code> · changed {fmtTime(t.updated_at)}</>}
        actions={writer && <Button variant="danger" onClick={() => setDeleting(true)}>Delete template</Button>}
      />
      <div className="stack">
        <section className="card stack" aria-label="What the template sets">
          {t.description && <p style={{ margin: 0 }}>{t.description}</p>}
          <p style={{ margin: 0 }}><strong>Sets:</strong> {templateSummary(t.spec)}. Applying it replaces these parts of each gateway's config.</p>
          {devices.length > 0 && (
            <ul style={{ margin: 0, paddingLeft: 18 }} aria-label="Devices">
              {devices.map((d) => <li key={d.name}><code>{d.name}</code> <span className="muted">({d.adapter})</span></li>)}
            </ul>
          )}
          <details>
            <summary>As JSON</summary>
            <pre className="mono small" style={{ overflow: 'auto', maxHeight: 360 }}>{JSON.stringify(t.spec, null, 2)}</pre>
          </details>
        </section>
        {writer ? (
          <section className="card stack" aria-label="Apply to gateways">
            <h2 style={{ margin: 0 }}>Apply to gateways</h2>
            <ApplyToGateways change={{ template: t.name }} what={`template ${t.name}`} />
          </section>
        ) : (
          <Notice kind="info">You can view this template; your role does not allow applying it.</Notice>
        )}
      </div>
      {deleting && (
        <ConfirmDelete
          what="template"
          name={t.name}
          consequence="Gateways it was applied to keep their config; only the template goes."
          onConfirm={async () => { await fleet.removeTemplate(s, t.name); nav(`${base}/templates`); }}
          onClose={() => setDeleting(false)}
        />
      )}
    </>
  );
}
