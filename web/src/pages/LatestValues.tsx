// The gateway's "Latest values": every tag of its current config with its
// newest reading (`GET …/gateways/{gateway}/latest`, from the historian),
// refreshed every few seconds, grouped by device with the device's health.
// Health, queue depth and dropped readings are the agent's last heartbeat,
// which the gateway itself carries (`agent_status`, refreshed by the page).
import { useEffect, useState } from 'react';
import { gateways } from '../api/endpoints';
import { ApiError } from '../api/http';
import type { Gateway, LatestValues as Latest, TagLatest } from '../api/types';
import { useScope } from '../scope';
import { Badge, Button, Empty, ErrorNotice, fmtAgo, fmtTime, Notice } from '../ui/kit';
import { STATE } from './AgentReport';
import { WriteDialog } from './SetpointWrite';

const REFRESH_MS = 5000;

/**
 * A reading as an operator reads it: rounded to the tag's `decimals`, with
 * its unit; bools as true/false; text (and the exact digits of a huge
 * integer) as sent; '—' for an error or no reading.
 */
export function fmtValue(t: TagLatest): string {
  if (t.error || !t.ts) return '—';
  const unit = t.unit ? ` ${t.unit}` : '';
  if (t.value_text != null) return t.value_text + unit;
  const v = t.value;
  if (v == null) return '—';
  if (t.data_type === 'bool' || t.data_type === 'bit') return v ? 'true' : 'false';
  let text: string;
  if (t.decimals != null) text = v.toFixed(t.decimals);
  // A float32 carries about 7 significant digits; the rest is noise of the widening.
  else if (t.data_type === 'float32') text = String(Number(v.toPrecision(7)));
  else text = String(v);
  return text + unit;
}

/** "3 s ago" to the second under a minute (a live table ticks), then as elsewhere. */
export function fmtAge(ts: string | null | undefined, now = Date.now()): string {
  if (!ts) return 'never read';
  const sec = Math.round((now - Date.parse(ts)) / 1000);
  if (sec < 60) return `${Math.max(0, sec)} s ago`;
  return fmtAgo(ts, now);
}

function Quality({ t }: { t: TagLatest }) {
  if (t.error) return <span style={{ color: 'var(--c-danger)' }}>error {t.error.code}: {t.error.meaning}</span>;
  if (!t.ts) return <span className="muted">no reading yet</span>;
  return <Badge kind="ok">ok</Badge>;
}

const n = (x?: number | null) => (x ?? 0).toLocaleString();

/**
 * The table itself: one row group per device, headed by its health. With
 * `onWrite` (the user may operate), writable tags get a Write button.
 */
export function LatestTable({ data, agent, now = Date.now(), onWrite }: { data: Latest; agent: Gateway['agent_status']; now?: number; onWrite?: (device: string, t: TagLatest) => void }) {
  if (!data.devices.some((d) => d.tags.length)) return <Empty title="No tags to show">Add devices and tags under “Devices & rules”.</Empty>;
  const health = new Map((agent?.devices ?? []).map((d) => [d.name, d]));
  const writes = !!onWrite && data.devices.some((d) => d.tags.some((t) => t.writable));
  const cols = writes ? 5 : 4;
  return (
    <div className="table-wrap">
      <table className="table" aria-label="Latest values">
        <thead><tr><th>Tag</th><th style={{ textAlign: 'right' }}>Value</th><th>Age</th><th>Quality</th>{writes && <th><span className="sr-only">Setpoint</span></th>}</tr></thead>
        {data.devices.map((d) => {
          const h = health.get(d.name);
          const st = h ? STATE[h.state] ?? { label: h.state, tone: 'warn' as const } : null;
          return (
            <tbody key={d.name} aria-label={`Device ${d.name}`}>
              <tr>
                <th colSpan={cols} scope="rowgroup" style={{ textTransform: 'none', fontSize: 14, color: 'inherit' }}>
                  {d.name} {st ? <Badge kind={st.tone}>{st.label}</Badge> : <Badge>not reported</Badge>}
                  {h?.lastError && <span className="small" style={{ color: 'var(--c-danger)', fontWeight: 400 }}> {h.lastError}</span>}
                </th>
              </tr>
              {d.tags.map((t) => (
                <tr key={t.name} data-tag={`${d.name}/${t.name}`}>
                  <td>{t.name}</td>
                  <td className="mono" style={{ textAlign: 'right' }}>{fmtValue(t)}</td>
                  <td title={t.ts ? fmtTime(t.ts) : undefined}>{fmtAge(t.ts, now)}</td>
                  <td><Quality t={t} /></td>
                  {writes && (
                    <td>
                      {t.writable && (
                        <Button variant="link" aria-label={`Write ${d.name}/${t.name}`} onClick={() => onWrite?.(d.name, t)}>
                          Write
                        </Button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          );
        })}
      </table>
    </div>
  );
}

/** The card on the gateway page: loads and refreshes the table. */
export function LatestValues({ g }: { g: Gateway }) {
  const { s, can } = useScope();
  const [data, setData] = useState<{ v: Latest; at: number } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [writing, setWriting] = useState<{ device: string; t: TagLatest } | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    const ctl = new AbortController();
    const load = () =>
      gateways
        .latest(s, g.name, ctl.signal)
        .then((v) => live && (setData({ v, at: Date.now() }), setErr(null)))
        .catch((e) => live && (e as Error).name !== 'AbortError' && setErr(e));
    void load();
    const t = setInterval(load, REFRESH_MS);
    return () => { live = false; ctl.abort(); clearInterval(t); };
  }, [s.org, s.project, g.name, tick]); // eslint-disable-line react-hooks/exhaustive-deps
  const a = g.agent_status;
  return (
    <section className="card stack" aria-label="Latest values">
      <div>
        <h2 style={{ marginBottom: 4 }}>Latest values</h2>
        <span className="muted small">
          The newest reading of each tag the historian stored; refreshes every {REFRESH_MS / 1000} s.{' '}
          {a ? <>Agent queue: {n(a.queueDepth)} readings waiting, {n(a.droppedReadings)} dropped.</> : 'No heartbeat from the agent yet.'}
        </span>
      </div>
      {err instanceof ApiError && err.status === 503 && err.problem?.detail ? (
        <Notice kind="error">Latest values cannot be shown: {err.problem.detail}</Notice>
      ) : (
        <ErrorNotice error={err} />
      )}
      {data && <LatestTable data={data.v} agent={a} now={data.at} onWrite={can('project.operate') ? (device, t) => setWriting({ device, t }) : undefined} />}
      {writing && <WriteDialog gateway={g.name} device={writing.device} t={writing.t} onClose={() => setWriting(null)} onWritten={() => setTick((x) => x + 1)} />}
    </section>
  );
}
