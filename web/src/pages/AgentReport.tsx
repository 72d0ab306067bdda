// What the agent's last heartbeat said (the api's `agent_status`, an
// AgentStatus): its devices, the queue on disk, dropped readings, a
// refused config bundle, what it keeps for replays and whether the broker
// says nobody reads its readings; and the gateway's recent data gaps.
import { useEffect, useState } from 'react';
import { gateways } from '../api/endpoints';
import type { FleetEvent, DeviceHealth, Gateway, GatewayDataGaps } from '../api/types';
import { useScope } from '../scope';
import { Badge, Empty, fmtAgo, fmtTime, Notice } from '../ui/kit';

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v >= 10 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function fmtDuration(secs: number): string {
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min`;
  return `${secs} s`;
}

export const STATE: Record<DeviceHealth['state'], { label: string; tone: 'ok' | 'warn' | 'bad' }> = {
  ok: { label: 'OK', tone: 'ok' },
  degraded: { label: 'Degraded', tone: 'warn' },
  down: { label: 'Down', tone: 'bad' },
};

const n = (x?: number | null) => (x ?? 0).toLocaleString();

export function AgentReport({ g }: { g: Gateway }) {
  const a = g.agent_status;
  if (!a) {
    return (
      <section className="card" aria-label="Agent report">
        <h2>Agent report</h2>
        <p>No heartbeat yet: the agent has not reported to Weir. Once it is installed and enrolled (see Enrollment), its devices, queue and dropped readings appear here.</p>
      </section>
    );
  }
  const devices = a.devices ?? [];
  const dropped = a.droppedReadings ?? 0;
  return (
    <section className="card stack" aria-label="Agent report">
      <div>
        <h2 style={{ marginBottom: 4 }}>Agent report</h2>
        <span className="muted small">
          Last heartbeat {fmtAgo(g.last_heartbeat)} ({fmtTime(g.last_heartbeat)}){a.heartbeatIntervalS ? `; one every ${a.heartbeatIntervalS} s` : ''}.
        </span>
      </div>
      {g.status === 'offline' && <Notice kind="warn">The agent is offline: these are the values of its last heartbeat.</Notice>}
      {a.waitingForSubscriber && (
        <Notice kind="warn">The broker says nothing subscribes to this gateway's readings; the agent holds them and retries. Check that the historian (or another reader) is connected to the broker.</Notice>
      )}
      {a.refused && (
        <Notice kind="error">
          The agent refused config bundle {a.refused.version != null ? `v${a.refused.version}` : '(version unknown)'} on {fmtTime(a.refused.at)}: {a.refused.reason}
          {a.appliedVersion != null ? ` It keeps running v${a.appliedVersion}.` : ''}
        </Notice>
      )}
      <div className="grid">
        <div className="stat" aria-label="Queue">
          <span className="label">Queue</span>
          <span className="value">{n(a.queueDepth)}</span>
          <span className="muted">readings waiting on disk for the broker ({fmtBytes(a.queueBytes ?? 0)})</span>
        </div>
        <div className="stat" aria-label="Dropped readings">
          <span className="label">Dropped readings</span>
          <span className="value" style={dropped ? { color: 'var(--c-danger)' } : undefined}>{n(dropped)}</span>
          <span className="muted">lost because the queue was full, since the agent started</span>
        </div>
        <div className="stat" aria-label="Readings sent">
          <span className="label">Readings sent</span>
          <span className="value">{n(a.readingsOut)}</span>
          <span className="muted">accepted by the broker since the agent started</span>
        </div>
        <div className="stat" aria-label="Kept for replay">
          <span className="label">Kept for replay</span>
          <span className="value">{n(a.retainedFrames)}</span>
          <span className="muted">acknowledged frames on disk the historian can ask for again; {n(a.replays)} replay{a.replays === 1 ? '' : 's'} answered</span>
        </div>
        <div className="stat" aria-label="Last acknowledged seq">
          <span className="label">Last acknowledged seq</span>
          {/* Seqs start from a time-based origin: long numbers, shown as they appear in messages. */}
          <span className="value" style={{ fontSize: 18, overflowWrap: 'anywhere' }}>{a.lastAckedSeq != null ? String(a.lastAckedSeq) : '—'}</span>
          <span className="muted">the newest frame the broker accepted</span>
        </div>
        <div className="stat" aria-label="Uptime">
          <span className="label">Running for</span>
          <span className="value">{fmtDuration(a.uptimeS ?? 0)}</span>
          <span className="muted">agent {a.agentVersion || 'version not reported'}</span>
        </div>
      </div>
      {devices.length ? (
        <div className="table-wrap">
          <table className="table" aria-label="Device health">
            <thead><tr><th>Device</th><th>State</th><th>Readings</th><th>Last error</th></tr></thead>
            <tbody>
              {devices.map((d) => {
                const st = STATE[d.state] ?? { label: d.state, tone: 'warn' as const };
                return (
                  <tr key={d.name}>
                    <td>{d.name}</td>
                    <td><Badge kind={st.tone}>{st.label}</Badge></td>
                    <td>{n(d.readings)}</td>
                    <td className="small" style={{ color: d.lastError ? 'var(--c-danger)' : undefined }}>{d.lastError ?? ''}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty title="No devices reported">The agent's config has no devices yet.</Empty>
      )}
    </section>
  );
}

const seqText = (from: number, to: number) => (from === to ? `seq ${from}` : `seq ${from}–${to}`);

const plural = (n: number, one: string) => `${n.toLocaleString()} ${one}${n === 1 ? '' : 's'}`;

/**
 * The gateway's data gaps: the ranges the historian is asking the agent to
 * replay right now (open gaps, `GET .../data-gaps`; a warning, as they may
 * still arrive) and the ranges lost for good (fleet events `data_gap`,
 * recorded from the historian's `reading_gaps`): how many and the last one.
 * Reloads with the gateway (`g` is a new object on every page refresh).
 */
export function DataGaps({ g }: { g: Gateway }) {
  const { s } = useScope();
  const [events, setEvents] = useState<FleetEvent[] | null>(null);
  const [status, setStatus] = useState<GatewayDataGaps | null>(null);
  useEffect(() => {
    const ctl = new AbortController();
    gateways
      .dataGaps(s, g.name, 100, ctl.signal)
      .then(setEvents)
      .catch(() => !ctl.signal.aborted && setEvents(null));
    // Without it (e.g. the historian is unreachable) the card still shows the recorded gaps.
    gateways
      .gapStatus(s, g.name, ctl.signal)
      .then(setStatus)
      .catch(() => !ctl.signal.aborted && setStatus(null));
    return () => ctl.abort();
  }, [s.org, s.project, g]); // eslint-disable-line react-hooks/exhaustive-deps
  if (!events) return null;
  const last = events[0]?.gap;
  const open = status?.open ?? [];
  return (
    <section className="card" aria-label="Data gaps">
      <h2>Data gaps</h2>
      {open.length > 0 && (
        <Notice kind="warn">
          <ul style={{ margin: 0, paddingLeft: 18 }} aria-label="Open gaps">
            {open.map((o) => (
              <li key={o.seq_from}>
                Replaying {plural(o.frames, 'missing frame')} ({seqText(o.seq_from, o.seq_to)}) since {fmtTime(o.since)}, {plural(o.replay_requests, 'request')}
                {o.last_request_at ? ` (the last ${fmtAgo(o.last_request_at)})` : ''}.
              </li>
            ))}
          </ul>
          The historian is asking the agent for these readings; a range it cannot get is recorded as a data gap.
        </Notice>
      )}
      {last ? (
        <Notice kind="error">
          {events.length >= 100 ? '100 or more' : events.length} range{events.length === 1 ? '' : 's'} of readings lost for good. Last: {seqText(last.seq_from, last.seq_to)} ({last.seq_to - last.seq_from + 1} frames, {last.reason === 'not-retained' ? 'the agent no longer held them' : last.reason === 'agent-unreachable' ? 'the agent did not answer replay requests' : last.reason}), recorded {fmtAgo(events[0].at)}
          {last.ts_from || last.ts_to ? ` (readings between ${last.ts_from ? fmtTime(last.ts_from) : 'the start'} and ${last.ts_to ? fmtTime(last.ts_to) : 'now'})` : ''}. The readings chart shows each gap.
        </Notice>
      ) : status?.historian === false ? (
        <p className="muted">Data gaps are not tracked: the api reads no historian database (WEIR_HISTORIAN_URL).</p>
      ) : open.length === 0 ? (
        <p className="muted">No data gaps recorded: every frame the agent sent reached the historian, or was replayed to it.</p>
      ) : (
        <p className="muted">No readings lost for good so far.</p>
      )}
    </section>
  );
}
