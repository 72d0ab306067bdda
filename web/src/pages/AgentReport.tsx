// What the agent's last heartbeat said (the api's `agent_status`, an
// AgentStatus): its devices, the queue on disk, dropped readings and a
// refused config bundle.
import type { DeviceHealth, Gateway } from '../api/types';
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

const STATE: Record<DeviceHealth['state'], { label: string; tone: 'ok' | 'warn' | 'bad' }> = {
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
