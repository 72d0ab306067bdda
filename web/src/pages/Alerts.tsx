import { useState } from 'react';
import { NavLink, useParams } from 'react-router';
import { alerts } from '../api/endpoints';
import type { AlertHistoryEntry, AlertRule, Channel, CreateChannel, RuleKind, RuleSpec, Silence, SmtpTls } from '../api/types';
import { ActiveAlerts } from './AlertsActive';
import { useScope } from '../scope';
import { Badge, Button, Dialog, Empty, ErrorNotice, Field, fmtTime, Notice, PageHead, useAction, useToast } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

const KINDS: [RuleKind, string][] = [
  ['threshold', 'Threshold on a tag'],
  ['absence', 'No readings for a while'],
  ['rate', 'Rate of change'],
  ['gateway_offline', 'Gateway offline'],
  ['device_down', 'Device down'],
  ['cluster_degraded', 'Cluster degraded'],
  ['data_gap', 'Readings lost (data gap)'],
];

export function ruleWords(r: RuleSpec): string {
  const where = [r.gateway, r.device, r.tag].filter(Boolean).join(' / ');
  const dur = r.for_secs ? ` for ${r.for_secs} s` : '';
  switch (r.kind) {
    case 'threshold':
      return r.op === 'outside' ? `${where} outside ${r.low} … ${r.high}${dur}` : `${where} ${r.op === '<' ? 'below' : 'above'} ${r.threshold}${dur}`;
    case 'absence':
      return `no readings from ${where || 'any tag'} for ${r.absent_secs ?? '?'} s`;
    case 'rate':
      return `${where} changes faster than ${r.max_rate_per_sec}/s${dur}`;
    case 'gateway_offline':
      return `gateway ${r.gateway ?? 'any'} offline${dur}`;
    case 'device_down':
      return `device ${where || 'any'} down${dur}`;
    case 'cluster_degraded':
      return `the MQTT cluster degraded${dur}`;
    case 'data_gap':
      return `readings of gateway ${r.gateway ?? 'any'} lost for good`;
    default:
      return String(r.kind);
  }
}

const NEW_RULE: RuleSpec = { name: '', kind: 'threshold', op: '<', threshold: 0.2, for_secs: 60, severity: 'critical', summary: '' };

/** The spec of a rule as the api answers it (its fields at the top level, with id and times). */
export function specOf(rule: AlertRule): RuleSpec {
  const { id: _id, created_at: _c, updated_at: _u, ...spec } = rule;
  return spec;
}

/** Keep only the fields the rule's kind uses (the api rejects the others). */
export function cleanRule(r: RuleSpec): RuleSpec {
  // A data gap fires when it is recorded: there is no for-duration.
  const out: RuleSpec = { name: r.name, kind: r.kind, for_secs: r.kind === 'data_gap' ? 0 : r.for_secs ?? 0, severity: r.severity, summary: r.summary ?? '', labels: r.labels ?? {}, channels: r.channels ?? [], enabled: r.enabled ?? true };
  const tagRule = ['threshold', 'absence', 'rate', 'device_down'].includes(r.kind);
  if (tagRule || r.kind === 'gateway_offline' || r.kind === 'data_gap') out.gateway = r.gateway || null;
  if (tagRule) out.device = r.device || null;
  if (tagRule && r.kind !== 'device_down') out.tag = r.tag || null;
  if (r.kind === 'threshold') {
    out.op = r.op ?? '<';
    if (out.op === 'outside') Object.assign(out, { low: r.low, high: r.high });
    else out.threshold = r.threshold;
  }
  if (r.kind === 'absence') out.absent_secs = r.absent_secs ?? 300;
  if (r.kind === 'rate') out.max_rate_per_sec = r.max_rate_per_sec;
  for (const k of Object.keys(out) as (keyof RuleSpec)[]) if (out[k] === null || out[k] === undefined) delete out[k];
  return out;
}

function RuleEditor({ rule, onClose, onSaved }: { rule: AlertRule | null; onClose: () => void; onSaved: () => void }) {
  const { s } = useScope();
  const [r, setR] = useState<RuleSpec>(rule ? specOf(rule) : NEW_RULE);
  const act = useAction();
  const set = (k: keyof RuleSpec) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => {
    const v = e.target.type === 'number' ? (e.target.value === '' ? null : Number(e.target.value)) : e.target.value || null;
    setR({ ...r, [k]: v });
  };
  const f = act.fields;
  const onTag = ['threshold', 'absence', 'rate', 'device_down'].includes(r.kind);
  const save = () => {
    const body = cleanRule(r);
    return rule ? alerts.updateRule(s, rule.id, body) : alerts.createRule(s, body);
  };
  return (
    <Dialog title={rule ? `Edit rule ${rule.name}` : 'New alert rule'} onClose={onClose} footer={<><Button onClick={onClose}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!r.name} onClick={() => act.run(save, { ok: `Saved rule ${r.name}.`, then: () => { onSaved(); onClose(); } })}>Save rule</Button></>}>
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Name" error={f.name}>{(p) => <input {...p} value={r.name} onChange={set('name')} placeholder="Chlorine residual low" />}</Field>
        <Field label="When" error={f.kind}>{(p) => <select {...p} value={r.kind} onChange={set('kind')}>{KINDS.map(([k, l]) => <option key={k} value={k}>{l}</option>)}</select>}</Field>
        {(onTag || r.kind === 'gateway_offline' || r.kind === 'data_gap') && <Field label="Gateway" error={f.gateway}>{(p) => <input {...p} value={r.gateway ?? ''} onChange={set('gateway')} />}</Field>}
        {onTag && <Field label="Device" error={f.device}>{(p) => <input {...p} value={r.device ?? ''} onChange={set('device')} />}</Field>}
        {onTag && r.kind !== 'device_down' && <Field label="Tag" error={f.tag}>{(p) => <input {...p} value={r.tag ?? ''} onChange={set('tag')} />}</Field>}
        {r.kind === 'threshold' && (
          <>
            <Field label="Condition" error={f.op}>{(p) => <select {...p} value={r.op ?? '<'} onChange={set('op')}><option value="<">below</option><option value=">">above</option><option value="outside">outside a band</option></select>}</Field>
            {r.op === 'outside' ? (
              <div className="row">
                <Field label="Low" error={f.low}>{(p) => <input {...p} type="number" step="any" value={r.low ?? ''} onChange={set('low')} />}</Field>
                <Field label="High" error={f.high}>{(p) => <input {...p} type="number" step="any" value={r.high ?? ''} onChange={set('high')} />}</Field>
              </div>
            ) : <Field label="Value" error={f.threshold}>{(p) => <input {...p} type="number" step="any" value={r.threshold ?? ''} onChange={set('threshold')} />}</Field>}
          </>
        )}
        {r.kind === 'absence' && <Field label="No reading for (seconds)" error={f.absent_secs}>{(p) => <input {...p} type="number" min={1} value={r.absent_secs ?? 300} onChange={set('absent_secs')} />}</Field>}
        {r.kind === 'rate' && <Field label="Change per second above" error={f.max_rate_per_sec}>{(p) => <input {...p} type="number" step="any" value={r.max_rate_per_sec ?? ''} onChange={set('max_rate_per_sec')} />}</Field>}
        {r.kind === 'data_gap' ? (
          <Notice kind="info">Fires once for each range of readings the historian could not get back (the agent no longer held them, or did not answer), naming the gateway and the lost seq range; resolves on its own after 10 minutes. The gap stays on the readings chart.</Notice>
        ) : (
          <Field label="For (seconds)" hint="How long the condition must hold before the alert fires." error={f.for_secs}>{(p) => <input {...p} type="number" min={0} value={r.for_secs ?? 0} onChange={set('for_secs')} />}</Field>
        )}
        <Field label="Severity" error={f.severity}>{(p) => <select {...p} value={r.severity} onChange={set('severity')}><option value="critical">Critical</option><option value="warning">Warning</option><option value="info">Info</option></select>}</Field>
        <Field label="Summary" hint="Sent in notifications. {{value}}{{unit}} shows the tag's value with the decimals and unit of its gateway's config; empty uses a default that does." error={f.summary}>{(p) => <input {...p} value={r.summary ?? ''} onChange={set('summary')} />}</Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

function Rules() {
  const { s, can } = useScope();
  const p = usePaged(() => alerts.rules(s), [s.org, s.project]);
  const [editing, setEditing] = useState<AlertRule | null | 'new'>(null);
  const del = useAction();
  return (
    <>
      {can('project.write') && <div className="row" style={{ marginBottom: 12 }}><Button variant="primary" onClick={() => setEditing('new')}>New rule</Button></div>}
      <ErrorNotice error={del.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No alert rules">Rules watch readings and fleet health.</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Alert rules"><thead><tr><th>Name</th><th>Fires when</th><th>Severity</th><th aria-label="Actions" /></tr></thead>
          <tbody>{p.items.map((r) => <tr key={r.id}><td>{r.name} {r.enabled === false && <Badge plain>disabled</Badge>}</td><td>{ruleWords(r)}</td><td><Badge kind={r.severity === 'critical' ? 'bad' : r.severity === 'warning' ? 'warn' : 'info'} plain>{r.severity}</Badge></td>
            <td style={{ textAlign: 'right' }}>{can('project.write') && <><Button variant="ghost" onClick={() => setEditing(r)}>Edit</Button><Button variant="ghost" busy={del.busy} onClick={() => del.run(() => alerts.deleteRule(s, r.id), { ok: `Deleted rule ${r.name}.`, then: p.reload })}>Delete</Button></>}</td></tr>)}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {editing && <RuleEditor rule={editing === 'new' ? null : editing} onClose={() => setEditing(null)} onSaved={p.reload} />}
    </>
  );
}

const STATE_TONE: Record<string, 'bad' | 'warn' | 'ok' | 'info'> = { firing: 'bad', pending: 'warn', resolved: 'ok', inactive: 'info' };

/** A transition as from → to; an acknowledgement or shelve with who, why (and until when). */
export function historyChange(h: AlertHistoryEntry) {
  if (h.event === 'acknowledged' || h.event === 'shelved') {
    const until = h.event === 'shelved' && h.shelve_until ? ` until ${fmtTime(h.shelve_until)}` : '';
    return <><Badge kind="info">{h.event}</Badge> by {h.by}{until}: {h.comment}</>;
  }
  return <>{h.from} → <Badge kind={STATE_TONE[h.to]}>{h.to}</Badge></>;
}

function History() {
  const { s } = useScope();
  const p = usePaged(() => alerts.history(s), [s.org, s.project]);
  return (
    <ListState p={p} empty={<div className="card"><Empty title="No alerts yet" /></div>}>
      <div className="table-wrap"><table className="table" aria-label="Alert history"><thead><tr><th>When</th><th>Rule</th><th>Change</th><th>Value</th><th>Summary</th></tr></thead>
        <tbody>{p.items.map((h) => <tr key={h.id}><td>{fmtTime(h.at)}</td><td>{h.rule_name}</td><td>{historyChange(h)}</td><td>{h.value_text ?? h.value ?? '—'}</td><td>{h.summary || h.series}</td></tr>)}</tbody></table></div>
      <Pager p={p} />
    </ListState>
  );
}

function Silences() {
  const { s, can } = useScope();
  const p = usePaged(() => alerts.silences(s), [s.org, s.project]);
  const [open, setOpen] = useState(false);
  const [m, setM] = useState('gateway=');
  const [hours, setHours] = useState(2);
  const [startsIn, setStartsIn] = useState(0);
  const [comment, setComment] = useState('');
  const act = useAction();
  const exp = useAction();
  const matchers = m.split(',').map((x) => x.trim()).filter(Boolean).map((x) => { const [name, ...v] = x.split('='); return { name: name.trim(), value: v.join('=').trim() }; });
  return (
    <>
      {can('project.write') && <div className="row" style={{ marginBottom: 12 }}><Button variant="primary" onClick={() => setOpen(true)}>New silence</Button></div>}
      <ErrorNotice error={exp.error} />
      <ListState p={p} empty={<div className="card"><Empty title="No silences">Silence alerts during a planned maintenance window.</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Silences"><thead><tr><th>Matches</th><th>From</th><th>Until</th><th>By</th><th>Why</th><th aria-label="Actions" /></tr></thead>
          <tbody>{p.items.map((x: Silence, i) => <tr key={x.id ?? i}><td className="mono">{x.matchers.map((y) => `${y.name}=${y.value}`).join(', ')}</td><td>{fmtTime(x.starts_at)}</td><td>{fmtTime(x.ends_at)}</td><td>{x.author ?? '—'}</td><td>{x.comment}</td>
            <td>{can('project.write') && (x.active ?? Date.parse(x.ends_at) > Date.now()) && <Button variant="ghost" busy={exp.busy} onClick={() => exp.run(() => alerts.expireSilence(s, x.id), { ok: 'Silence ended.', then: p.reload })}>End now</Button>}</td></tr>)}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {open && (
        <Dialog title="New silence" onClose={() => setOpen(false)} footer={<><Button onClick={() => setOpen(false)}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!comment || !matchers.length} onClick={() => act.run(() => alerts.createSilence(s, { matchers, starts_in_secs: Math.round(startsIn * 3600), duration_secs: Math.round(hours * 3600), comment }), { ok: 'Silence created.', then: () => { setOpen(false); p.reload(); } })}>Create silence</Button></>}>
          <form className="form" onSubmit={(e) => e.preventDefault()}>
            <Field label="Alerts matching" hint="label=value, comma separated, e.g. gateway=north-pump-station" error={act.fields.matchers}>{(x) => <input {...x} value={m} onChange={(e) => setM(e.target.value)} />}</Field>
            <Field label="Starts in (hours)" hint="0: now" error={act.fields.starts_in_secs}>{(x) => <input {...x} type="number" min={0} max={8760} value={startsIn} onChange={(e) => setStartsIn(Number(e.target.value))} />}</Field>
            <Field label="For (hours)" hint="at most a year (8760)" error={act.fields.duration_secs}>{(x) => <input {...x} type="number" min={1} max={8760} value={hours} onChange={(e) => setHours(Number(e.target.value))} />}</Field>
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
  const p = usePaged(() => alerts.channels(s), [s.org, s.project]);
  const [open, setOpen] = useState(false);
  const [c, setC] = useState<CreateChannel>({ name: '', kind: 'webhook', url: 'https://' });
  const [email, setEmail] = useState<{ smtp_host: string; smtp_port: number; from: string; to: string; tls: SmtpTls }>({ smtp_host: '', smtp_port: 587, from: '', to: '', tls: 'starttls' });
  const [secret, setSecret] = useState<string | null>(null);
  const act = useAction();
  const test = useAction();
  const del = useAction();
  const toast = useToast();
  const body = (): CreateChannel =>
    c.kind === 'email'
      ? { name: c.name, kind: 'email', email: { smtp_host: email.smtp_host, smtp_port: email.smtp_port, from: email.from, to: email.to.split(',').map((x) => x.trim()).filter(Boolean), tls: email.tls }, ...(c.smtp_password ? { smtp_password: c.smtp_password } : {}) }
      : { name: c.name, kind: 'webhook', url: c.url, ...(c.secret ? { secret: c.secret } : {}) };
  const f = act.fields;
  const sendTest = (x: Channel) =>
    test.run(() => alerts.testChannel(s, x.id), {
      then: (r) => (r.ok ? toast('ok', `Test notification delivered through ${x.name}.`) : toast('error', `The test through ${x.name} failed after ${r.attempts ?? 1} attempt(s): ${r.error || `the receiver answered ${r.http_status}`}.`)),
    });
  return (
    <>
      {can('project.write') && <div className="row" style={{ marginBottom: 12 }}><Button variant="primary" onClick={() => { setSecret(null); setOpen(true); }}>New channel</Button></div>}
      <ErrorNotice error={test.error ?? del.error} />
      {secret && <Notice kind="warn">Webhook signing secret (shown once): <code>{secret}</code></Notice>}
      <ListState p={p} empty={<div className="card"><Empty title="No channels">Add a webhook or email address to receive notifications.</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Channels"><thead><tr><th>Name</th><th>Kind</th><th>Sends to</th><th aria-label="Actions" /></tr></thead>
          <tbody>{p.items.map((x) => <tr key={x.id}><td>{x.name}</td><td>{x.kind === 'email' ? 'Email' : 'Webhook'}{x.kind === 'email' && x.email?.tls === 'none' && <> <Badge kind="warn">no TLS</Badge></>}</td><td className="mono small">{x.kind === 'email' ? x.email?.to?.join(', ') : x.url}</td>
            <td style={{ textAlign: 'right' }}>{can('project.write') && <><Button variant="ghost" busy={test.busy} onClick={() => sendTest(x)}>Send test</Button><Button variant="ghost" onClick={() => del.run(() => alerts.deleteChannel(s, x.id), { ok: `Deleted ${x.name}.`, then: p.reload })}>Delete</Button></>}</td></tr>)}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {open && (
        <Dialog title="New notification channel" onClose={() => setOpen(false)} footer={<><Button onClick={() => setOpen(false)}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!c.name} onClick={() => act.run(() => alerts.createChannel(s, body()), { ok: `Created ${c.name}.`, then: (r) => { setSecret(r?.secret ?? null); setOpen(false); p.reload(); } })}>Create channel</Button></>}>
          <form className="form" onSubmit={(e) => e.preventDefault()}>
            <Field label="Name" error={f.name}>{(x) => <input {...x} value={c.name} onChange={(e) => setC({ ...c, name: e.target.value })} placeholder="Control room" />}</Field>
            <Field label="Kind" error={f.kind}>{(x) => <select {...x} value={c.kind} onChange={(e) => setC({ ...c, kind: e.target.value as Channel['kind'] })}><option value="webhook">Webhook</option><option value="email">Email</option></select>}</Field>
            {c.kind === 'webhook' ? (
              <>
                <Field label="URL" error={f.url}>{(x) => <input {...x} value={c.url ?? ''} onChange={(e) => setC({ ...c, url: e.target.value })} />}</Field>
                <Field label="Signing secret" hint="Bodies are signed with HMAC-SHA256. Leave empty to have one generated." error={f.secret}>{(x) => <input {...x} type="password" value={c.secret ?? ''} onChange={(e) => setC({ ...c, secret: e.target.value })} autoComplete="new-password" />}</Field>
              </>
            ) : (
              <>
                <Field label="Recipients" hint="Comma separated email addresses." error={f['email.to']}>{(x) => <input {...x} value={email.to} onChange={(e) => setEmail({ ...email, to: e.target.value })} />}</Field>
                <Field label="From" error={f['email.from']}>{(x) => <input {...x} value={email.from} onChange={(e) => setEmail({ ...email, from: e.target.value })} placeholder="weir@riverside.example" />}</Field>
                <div className="row">
                  <Field label="SMTP server" error={f['email.smtp_host']}>{(x) => <input {...x} value={email.smtp_host} onChange={(e) => setEmail({ ...email, smtp_host: e.target.value })} />}</Field>
                  <Field label="Port" error={f['email.smtp_port']}>{(x) => <input {...x} type="number" value={email.smtp_port} onChange={(e) => setEmail({ ...email, smtp_port: Number(e.target.value) })} />}</Field>
                </div>
                <Field label="Encryption" error={f['email.tls']}>{(x) => (
                  <select {...x} value={email.tls} onChange={(e) => setEmail({ ...email, tls: e.target.value as SmtpTls })}>
                    <option value="starttls">STARTTLS (port 587 or 25)</option>
                    <option value="tls">TLS from the start (port 465)</option>
                    <option value="none">None: password and mail in clear</option>
                  </select>
                )}</Field>
                {email.tls === 'none' && <Notice kind="warn">Without TLS the SMTP password and every notification cross the network in clear. Use it only for a relay on a network you trust.</Notice>}
                <Field label="SMTP password (optional)" error={f.smtp_password}>{(x) => <input {...x} type="password" value={c.smtp_password ?? ''} onChange={(e) => setC({ ...c, smtp_password: e.target.value })} autoComplete="new-password" />}</Field>
              </>
            )}
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
      {tab === 'active' && <ActiveAlerts />}
      {tab === 'history' && <History />}
      {tab === 'rules' && <Rules />}
      {tab === 'silences' && <Silences />}
      {tab === 'channels' && <Channels />}
    </>
  );
}
