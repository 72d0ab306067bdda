import { useState } from 'react';
import { NavLink, useParams } from 'react-router';
import { alerts } from '../api/endpoints';
import type { AlertRule, Channel, Silence } from '../api/types';
import { useScope } from '../scope';
import { Badge, Button, Dialog, Empty, ErrorNotice, Field, fmtTime, PageHead, Unavailable, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

const KINDS: [string, string][] = [
  ['threshold', 'Threshold on a tag'],
  ['absence', 'No readings for a while'],
  ['rate', 'Rate of change'],
  ['gateway-offline', 'Gateway offline'],
  ['device-down', 'Device down'],
  ['cluster-degraded', 'Cluster degraded'],
];

export function ruleWords(r: AlertRule): string {
  const where = [r.gateway, r.device, r.tag].filter(Boolean).join(' / ');
  const dur = r.for_secs ? ` for ${r.for_secs} s` : '';
  switch (r.kind) {
    case 'threshold':
      return r.op === 'outside' ? `${where} outside ${r.low} … ${r.high}${dur}` : `${where} ${r.op === '<' ? 'below' : 'above'} ${r.threshold}${dur}`;
    case 'absence':
      return `no readings from ${where || 'any tag'}${dur}`;
    case 'rate':
      return `${where} changes faster than ${r.threshold}/s${dur}`;
    case 'gateway-offline':
      return `gateway ${r.gateway ?? 'any'} offline${dur}`;
    case 'device-down':
      return `device ${where || 'any'} down${dur}`;
    case 'cluster-degraded':
      return `a cluster degraded${dur}`;
    default:
      return r.kind;
  }
}

function RuleEditor({ rule, onClose, onSaved }: { rule: AlertRule | null; onClose: () => void; onSaved: () => void }) {
  const { s } = useScope();
  const [r, setR] = useState<AlertRule>(rule ?? { name: '', kind: 'threshold', op: '<', threshold: 0.2, for_secs: 60, severity: 'critical', summary: '' });
  const act = useAction();
  const set = (k: keyof AlertRule) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => {
    const v = e.target.type === 'number' ? (e.target.value === '' ? null : Number(e.target.value)) : e.target.value || null;
    setR({ ...r, [k]: v });
  };
  const onTag = ['threshold', 'absence', 'rate', 'device-down'].includes(r.kind);
  return (
    <Dialog title={rule ? `Edit rule ${rule.name}` : 'New alert rule'} onClose={onClose} footer={<><Button onClick={onClose}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!r.name} onClick={() => act.run(() => (rule?.id ? alerts.updateRule(s, rule.id, r) : alerts.createRule(s, r)), { ok: `Saved rule ${r.name}.`, then: () => { onSaved(); onClose(); } })}>Save rule</Button></>}>
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Name" error={act.fields.name}>{(p) => <input {...p} value={r.name} onChange={set('name')} placeholder="Chlorine residual low" />}</Field>
        <Field label="When" error={act.fields.kind}>{(p) => <select {...p} value={r.kind} onChange={set('kind')}>{KINDS.map(([k, l]) => <option key={k} value={k}>{l}</option>)}</select>}</Field>
        {(onTag || r.kind === 'gateway-offline') && <Field label="Gateway" error={act.fields.gateway}>{(p) => <input {...p} value={r.gateway ?? ''} onChange={set('gateway')} />}</Field>}
        {onTag && <Field label="Device" error={act.fields.device}>{(p) => <input {...p} value={r.device ?? ''} onChange={set('device')} />}</Field>}
        {onTag && r.kind !== 'device-down' && <Field label="Tag" error={act.fields.tag}>{(p) => <input {...p} value={r.tag ?? ''} onChange={set('tag')} />}</Field>}
        {r.kind === 'threshold' && (
          <>
            <Field label="Condition" error={act.fields.op}>{(p) => <select {...p} value={r.op ?? '<'} onChange={set('op')}><option value="<">below</option><option value=">">above</option><option value="outside">outside a band</option></select>}</Field>
            {r.op === 'outside' ? (
              <div className="row">
                <Field label="Low" error={act.fields.low}>{(p) => <input {...p} type="number" value={r.low ?? ''} onChange={set('low')} />}</Field>
                <Field label="High" error={act.fields.high}>{(p) => <input {...p} type="number" value={r.high ?? ''} onChange={set('high')} />}</Field>
              </div>
            ) : <Field label="Value" error={act.fields.threshold}>{(p) => <input {...p} type="number" step="any" value={r.threshold ?? ''} onChange={set('threshold')} />}</Field>}
          </>
        )}
        {r.kind === 'rate' && <Field label="Change per second" error={act.fields.threshold}>{(p) => <input {...p} type="number" step="any" value={r.threshold ?? ''} onChange={set('threshold')} />}</Field>}
        <Field label="For (seconds)" hint="How long the condition must hold before the alert fires." error={act.fields.for_secs}>{(p) => <input {...p} type="number" min={0} value={r.for_secs ?? 0} onChange={set('for_secs')} />}</Field>
        <Field label="Severity" error={act.fields.severity}>{(p) => <select {...p} value={r.severity} onChange={set('severity')}><option value="critical">Critical</option><option value="warning">Warning</option><option value="info">Info</option></select>}</Field>
        <Field label="Summary" hint="Sent in notifications, e.g. “Chlorine at {{ $value }} mg/L at {{ $labels.gateway }}”." error={act.fields.summary}>{(p) => <input {...p} value={r.summary ?? ''} onChange={set('summary')} />}</Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

function Rules() {
  const { s, can } = useScope();
  const p = usePaged((q) => alerts.rules(s, q), [s.org, s.project]);
  const [editing, setEditing] = useState<AlertRule | null | 'new'>(null);
  const del = useAction();
  if (p.missing) return <Unavailable what="Alert rules are not served by this api yet." />;
  return (
    <>
      {can('project.write') && <div className="row" style={{ marginBottom: 12 }}><Button variant="primary" onClick={() => setEditing('new')}>New rule</Button></div>}
      <ErrorNotice error={del.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No alert rules">Rules watch readings and fleet health.</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Alert rules"><thead><tr><th>Name</th><th>Fires when</th><th>Severity</th><th aria-label="Actions" /></tr></thead>
          <tbody>{p.items.map((r) => <tr key={r.id ?? r.name}><td>{r.name}</td><td>{ruleWords(r)}</td><td><Badge kind={r.severity === 'critical' ? 'bad' : r.severity === 'warning' ? 'warn' : 'info'} plain>{r.severity}</Badge></td>
            <td style={{ textAlign: 'right' }}>{can('project.write') && r.id && <><Button variant="ghost" onClick={() => setEditing(r)}>Edit</Button><Button variant="ghost" busy={del.busy} onClick={() => del.run(() => alerts.deleteRule(s, r.id!), { ok: `Deleted rule ${r.name}.`, then: p.reload })}>Delete</Button></>}</td></tr>)}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {editing && <RuleEditor rule={editing === 'new' ? null : editing} onClose={() => setEditing(null)} onSaved={p.reload} />}
    </>
  );
}

function AlertTable({ kind }: { kind: 'active' | 'history' }) {
  const { s } = useScope();
  const p = usePaged((q) => (kind === 'active' ? alerts.active(s, q) : alerts.history(s, q)), [s.org, s.project, kind]);
  if (p.missing) return <Unavailable what="Alerts are not served by this api yet." />;
  return (
    <ListState p={p} empty={<div className="card"><Empty title={kind === 'active' ? 'Nothing is firing' : 'No alerts yet'} /></div>}>
      <div className="table-wrap"><table className="table" aria-label={kind === 'active' ? 'Active alerts' : 'Alert history'}><thead><tr><th>State</th><th>Alert</th><th>Severity</th><th>Started</th><th>{kind === 'active' ? 'Labels' : 'Resolved'}</th></tr></thead>
        <tbody>{p.items.map((a, i) => <tr key={a.id ?? i}><td><Badge kind={a.state === 'firing' ? 'bad' : a.state === 'pending' ? 'warn' : 'ok'}>{a.silenced ? `${a.state}, silenced` : a.state}</Badge></td><td>{a.summary ?? a.rule}</td><td>{a.severity ?? '—'}</td><td>{fmtTime(a.started_at)}</td>
          <td className="small">{kind === 'active' ? Object.entries(a.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ') : fmtTime(a.resolved_at)}</td></tr>)}</tbody></table></div>
      <Pager p={p} />
    </ListState>
  );
}

function Silences() {
  const { s, can } = useScope();
  const p = usePaged((q) => alerts.silences(s, q), [s.org, s.project]);
  const [open, setOpen] = useState(false);
  const [m, setM] = useState('gateway=');
  const [hours, setHours] = useState(2);
  const [comment, setComment] = useState('');
  const act = useAction();
  const exp = useAction();
  if (p.missing) return <Unavailable what="Silences are not served by this api yet." />;
  const matchers = m.split(',').map((x) => x.trim()).filter(Boolean).map((x) => { const [name, ...v] = x.split('='); return { name: name.trim(), value: v.join('=').trim() }; });
  return (
    <>
      {can('project.write') && <div className="row" style={{ marginBottom: 12 }}><Button variant="primary" onClick={() => setOpen(true)}>New silence</Button></div>}
      <ErrorNotice error={exp.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No silences">Silence alerts during a planned maintenance window.</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Silences"><thead><tr><th>Matches</th><th>From</th><th>Until</th><th>By</th><th>Why</th><th aria-label="Actions" /></tr></thead>
          <tbody>{p.items.map((x: Silence, i) => <tr key={x.id ?? i}><td className="mono">{x.matchers.map((y) => `${y.name}=${y.value}`).join(', ')}</td><td>{fmtTime(x.starts_at)}</td><td>{fmtTime(x.ends_at)}</td><td>{x.author ?? '—'}</td><td>{x.comment}</td>
            <td>{can('project.write') && x.id && Date.parse(x.ends_at) > Date.now() && <Button variant="ghost" busy={exp.busy} onClick={() => exp.run(() => alerts.expireSilence(s, x.id!), { ok: 'Silence ended.', then: p.reload })}>End now</Button>}</td></tr>)}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {open && (
        <Dialog title="New silence" onClose={() => setOpen(false)} footer={<><Button onClick={() => setOpen(false)}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!comment || !matchers.length} onClick={() => act.run(() => alerts.createSilence(s, { matchers, starts_at: new Date().toISOString(), ends_at: new Date(Date.now() + hours * 3600e3).toISOString(), comment }), { ok: 'Silence created.', then: () => { setOpen(false); p.reload(); } })}>Create silence</Button></>}>
          <form className="form" onSubmit={(e) => e.preventDefault()}>
            <Field label="Alerts matching" hint="label=value, comma separated, e.g. gateway=north-pump-station" error={act.fields.matchers}>{(x) => <input {...x} value={m} onChange={(e) => setM(e.target.value)} />}</Field>
            <Field label="For (hours)" error={act.fields.ends_at}>{(x) => <input {...x} type="number" min={1} value={hours} onChange={(e) => setHours(Number(e.target.value))} />}</Field>
            <Field label="Why" error={act.fields.comment}>{(x) => <input {...x} value={comment} onChange={(e) => setComment(e.target.value)} placeholder="Pump replacement, ticket 4711" />}</Field>
            <ErrorNotice error={act.error} />
          </form>
        </Dialog>
      )}
    </>
  );
}

function Channels() {
  const { s, can } = useScope();
  const p = usePaged((q) => alerts.channels(s, q), [s.org, s.project]);
  const [open, setOpen] = useState(false);
  const [c, setC] = useState<Channel & { secret?: string }>({ name: '', kind: 'webhook', url: 'https://' });
  const [to, setTo] = useState('');
  const act = useAction();
  const test = useAction();
  const del = useAction();
  if (p.missing) return <Unavailable what="Notification channels are not served by this api yet." />;
  return (
    <>
      {can('project.write') && <div className="row" style={{ marginBottom: 12 }}><Button variant="primary" onClick={() => setOpen(true)}>New channel</Button></div>}
      <ErrorNotice error={test.error ?? del.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No channels">Add a webhook or email address to receive notifications.</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Channels"><thead><tr><th>Name</th><th>Kind</th><th>Sends to</th><th aria-label="Actions" /></tr></thead>
          <tbody>{p.items.map((x) => <tr key={x.id ?? x.name}><td>{x.name}</td><td>{x.kind === 'email' ? 'Email' : 'Webhook'}</td><td className="mono small">{x.kind === 'email' ? x.to?.join(', ') : x.url}</td>
            <td style={{ textAlign: 'right' }}>{x.id && can('project.write') && <><Button variant="ghost" busy={test.busy} onClick={() => test.run(() => alerts.testChannel(s, x.id!), { ok: `Test notification sent through ${x.name}.` })}>Send test</Button><Button variant="ghost" onClick={() => del.run(() => alerts.deleteChannel(s, x.id!), { ok: `Deleted ${x.name}.`, then: p.reload })}>Delete</Button></>}</td></tr>)}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {open && (
        <Dialog title="New notification channel" onClose={() => setOpen(false)} footer={<><Button onClick={() => setOpen(false)}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!c.name} onClick={() => act.run(() => alerts.createChannel(s, c.kind === 'email' ? { name: c.name, kind: 'email', to: to.split(',').map((x) => x.trim()).filter(Boolean) } : c), { ok: `Created ${c.name}.`, then: () => { setOpen(false); p.reload(); } })}>Create channel</Button></>}>
          <form className="form" onSubmit={(e) => e.preventDefault()}>
            <Field label="Name" error={act.fields.name}>{(x) => <input {...x} value={c.name} onChange={(e) => setC({ ...c, name: e.target.value })} placeholder="Control room" />}</Field>
            <Field label="Kind" error={act.fields.kind}>{(x) => <select {...x} value={c.kind} onChange={(e) => setC({ ...c, kind: e.target.value as Channel['kind'] })}><option value="webhook">Webhook</option><option value="email">Email</option></select>}</Field>
            {c.kind === 'webhook' ? (
              <>
                <Field label="URL" error={act.fields.url}>{(x) => <input {...x} value={c.url ?? ''} onChange={(e) => setC({ ...c, url: e.target.value })} />}</Field>
                <Field label="Signing secret" hint="Bodies are signed with HMAC-SHA256 using this secret." error={act.fields.secret}>{(x) => <input {...x} type="password" value={c.secret ?? ''} onChange={(e) => setC({ ...c, secret: e.target.value })} autoComplete="new-password" />}</Field>
              </>
            ) : <Field label="Recipients" hint="Comma separated email addresses." error={act.fields.to}>{(x) => <input {...x} value={to} onChange={(e) => setTo(e.target.value)} />}</Field>}
            <ErrorNotice error={act.error} />
          </form>
        </Dialog>
      )}
    </>
  );
}

export function Alerts() {
  const { base } = useScope();
  const { tab = 'active' } = useParams();
  const tabs: [string, string][] = [['active', 'Active'], ['history', 'History'], ['rules', 'Rules'], ['silences', 'Silences'], ['channels', 'Channels']];
  return (
    <>
      <PageHead title="Alerts" sub="Rules on readings and fleet health, and where notifications go." />
      <nav className="tabs" aria-label="Alert sections">{tabs.map(([k, l]) => <NavLink key={k} to={`${base}/alerts/${k}`} className={() => (tab === k ? 'active' : '')}>{l}</NavLink>)}</nav>
      {tab === 'active' && <AlertTable kind="active" />}
      {tab === 'history' && <AlertTable kind="history" />}
      {tab === 'rules' && <Rules />}
      {tab === 'silences' && <Silences />}
      {tab === 'channels' && <Channels />}
    </>
  );
}
