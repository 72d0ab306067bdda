// Alerts → Active: the pending and firing alerts, with who acknowledged or
// shelved them. Operators (and editors, admins: `project.operate`) acknowledge an alert (its
// repeat notifications stop until it resolves) or shelve it for some hours
// (hidden here and silent until then). Shelved alerts sit behind a toggle
// that says how many there are.
import { useState } from 'react';
import { alerts } from '../api/endpoints';
import type { ActiveAlert } from '../api/types';
import { useScope } from '../scope';
import { Badge, Button, Dialog, Empty, ErrorNotice, Field, fmtTime, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

/** The longest shelve the api takes: 30 days. */
export const MAX_SHELVE_HOURS = 720;

const STATE_TONE: Record<string, 'bad' | 'warn' | 'ok' | 'info'> = { firing: 'bad', pending: 'warn', resolved: 'ok', inactive: 'info' };

/** `shelve_until` for a shelve of `hours` from `now`. */
export function shelveUntil(hours: number, now = Date.now()): string {
  return new Date(now + hours * 3600_000).toISOString();
}

/** "Acknowledged by … at …: why" or "Shelved until … by …: why". */
export function ackWords(a: ActiveAlert): string {
  const k = a.acknowledgement;
  if (!k) return '';
  const head = k.shelve_until ? `Shelved until ${fmtTime(k.shelve_until)} by ${k.by}` : `Acknowledged by ${k.by} at ${fmtTime(k.at)}`;
  return `${head}: ${k.comment}`;
}

/** Alerts to list: shelved ones only when asked for. */
export function visibleAlerts(all: ActiveAlert[], showShelved: boolean): ActiveAlert[] {
  return showShelved ? all : all.filter((a) => a.status !== 'shelved');
}

function alertName(a: ActiveAlert): string {
  return a.summary || a.series;
}

function AckDialog({ alert, shelve, onClose, onDone }: { alert: ActiveAlert; shelve: boolean; onClose: () => void; onDone: () => void }) {
  const { s } = useScope();
  const [comment, setComment] = useState('');
  const [hours, setHours] = useState(8);
  const act = useAction();
  const f = act.fields;
  const verb = shelve ? 'Shelve' : 'Acknowledge';
  const send = () => alerts.acknowledge(s, { rule_id: alert.rule_id, series: alert.series, comment, ...(shelve ? { shelve_until: shelveUntil(hours) } : {}) });
  const okText = shelve ? `Shelved for ${hours} h: ${alertName(alert)}.` : `Acknowledged: ${alertName(alert)}.`;
  return (
    <Dialog
      title={`${verb} alert`}
      onClose={onClose}
      footer={<><Button onClick={onClose}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!comment.trim() || (shelve && !(hours > 0))} onClick={() => act.run(send, { ok: okText, then: () => { onDone(); onClose(); } })}>{verb}</Button></>}
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <p>{alertName(alert)}</p>
        <p className="small">{shelve ? 'Hidden from this list and no notifications until the time passes; then, if it still fires, it notifies again.' : 'Stays in this list, marked; its repeat notifications stop until it resolves (the resolution is still sent).'}</p>
        {shelve && <Field label="Shelve for (hours)" hint={`until ${fmtTime(shelveUntil(hours || 0))}; at most 30 days (${MAX_SHELVE_HOURS} h)`} error={f.shelve_until}>{(p) => <input {...p} type="number" min={1} max={MAX_SHELVE_HOURS} value={hours} onChange={(e) => setHours(Number(e.target.value))} />}</Field>}
        <Field label="Comment" error={f.comment ?? f.series ?? f.rule_id}>{(p) => <input {...p} value={comment} onChange={(e) => setComment(e.target.value)} placeholder={shelve ? 'Turbidity sensor being replaced' : 'Crew on the way'} />}</Field>
        <ErrorNotice error={act.error} />
      </form>
    </Dialog>
  );
}

export function ActiveAlerts() {
  const { s, can } = useScope();
  const [showShelved, setShowShelved] = useState(false);
  const [shelvedCount, setShelvedCount] = useState(0);
  const [acting, setActing] = useState<{ alert: ActiveAlert; shelve: boolean } | null>(null);
  const p = usePaged(async () => {
    const all = await alerts.active(s, { include_shelved: true });
    setShelvedCount(all.items.filter((a) => a.status === 'shelved').length);
    return { ...all, items: visibleAlerts(all.items, showShelved) };
  }, [s.org, s.project, showShelved]);
  const mayAct = can('project.operate');
  return (
    <>
      {shelvedCount > 0 && (
        <div className="row" style={{ marginBottom: 12 }}>
          <label><input type="checkbox" checked={showShelved} onChange={(e) => setShowShelved(e.target.checked)} /> Show {shelvedCount} shelved</label>
        </div>
      )}
      <ListState p={p} empty={<div className="card"><Empty title="Nothing is firing">{shelvedCount > 0 ? `${shelvedCount} shelved alert${shelvedCount === 1 ? ' is' : 's are'} hidden.` : null}</Empty></div>}>
        <div className="table-wrap"><table className="table" aria-label="Active alerts"><thead><tr><th>State</th><th>Alert</th><th>Value</th><th>Since</th><th>Acknowledged</th><th>Labels</th>{mayAct && <th aria-label="Actions" />}</tr></thead>
          <tbody>{p.items.map((a) => (
            <tr key={`${a.rule_id}/${a.series}`}>
              <td><Badge kind={STATE_TONE[a.state]}>{a.state}{a.status !== 'active' ? `, ${a.status}` : ''}</Badge></td>
              <td>{alertName(a)}</td><td>{a.value_text ?? a.value ?? '—'}</td><td>{fmtTime(a.fired_at ?? a.since)}</td>
              <td className="small">{ackWords(a) || '—'}</td>
              <td className="small mono">{Object.entries(a.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')}</td>
              {mayAct && <td style={{ textAlign: 'right', whiteSpace: 'nowrap' }}>
                {!(a.acknowledgement && !a.acknowledgement.shelve_until) && <Button variant="ghost" onClick={() => setActing({ alert: a, shelve: false })}>Acknowledge</Button>}
                {!a.acknowledgement?.shelve_until && <Button variant="ghost" onClick={() => setActing({ alert: a, shelve: true })}>Shelve</Button>}
              </td>}
            </tr>
          ))}</tbody></table></div>
        <Pager p={p} />
      </ListState>
      {acting && <AckDialog alert={acting.alert} shelve={acting.shelve} onClose={() => setActing(null)} onDone={p.reload} />}
    </>
  );
}
