// The rollout view: per gateway, the config bundle its agent should run,
// the one it reports running, and why it refused a bundle if it did.
// Refreshed every few seconds, since agents pick a new bundle up within
// seconds and the point of the page is watching that happen.
import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { fleet } from '../api/endpoints';
import type { RolloutEntry } from '../api/types';
import { useScope } from '../scope';
import { Badge, Empty, ErrorNotice, fmtAgo, fmtTime, PageHead, Spinner } from '../ui/kit';

export const ROLLOUT_REFRESH_MS = 5000;

/** Where a gateway stands in words: refused, up to date, updating, behind or waiting. */
export function rolloutState(e: RolloutEntry): { label: string; tone: 'ok' | 'warn' | 'bad' | 'info' } {
  // The api clears the refusal once the agent runs the latest bundle.
  if (e.last_error && !e.up_to_date) return { label: 'Refused', tone: 'bad' };
  if (e.up_to_date) return { label: 'Up to date', tone: 'ok' };
  if (e.applied_version == null) return { label: e.last_heartbeat ? 'Not applied yet' : 'Waiting for the agent', tone: 'info' };
  // An agent that is not reporting is not taking the bundle up either.
  return e.online ? { label: 'Updating', tone: 'warn' } : { label: 'Behind (offline)', tone: 'warn' };
}

function onlineBadge(e: RolloutEntry) {
  if (e.online) return <Badge kind="ok">Online</Badge>;
  return e.last_heartbeat ? <Badge kind="bad">Offline</Badge> : <Badge kind="info">Not enrolled yet</Badge>;
}

export function Rollout() {
  const { s, base } = useScope();
  const [rows, setRows] = useState<RolloutEntry[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [at, setAt] = useState<number | null>(null);
  useEffect(() => {
    const ctl = new AbortController();
    const load = () =>
      fleet
        .rollout(s, ctl.signal)
        .then((r) => { setRows(r); setErr(null); setAt(Date.now()); })
        .catch((e) => !ctl.signal.aborted && setErr(e));
    void load();
    const t = setInterval(load, ROLLOUT_REFRESH_MS);
    return () => { ctl.abort(); clearInterval(t); };
  }, [s.org, s.project]); // eslint-disable-line react-hooks/exhaustive-deps
  const current = rows?.filter((r) => r.up_to_date).length ?? 0;
  const refused = rows?.filter((r) => rolloutState(r).label === 'Refused').length ?? 0;
  return (
    <>
      <PageHead
        title="Rollout"
        sub="Which config each gateway's agent should run, which it runs, and the bundles agents refused."
      />
      <ErrorNotice error={err} />
      {!rows ? (
        !err && <div className="empty"><Spinner /> Loading…</div>
      ) : !rows.length ? (
        <div className="card"><Empty title="No gateways yet">Gateways appear here once they are created.</Empty></div>
      ) : (
        <div className="stack">
          <p style={{ margin: 0 }} data-testid="rollout-summary">
            {current} of {rows.length} gateway{rows.length === 1 ? '' : 's'} run the bundle they should{refused ? `; ${refused} refused one` : ''}.{' '}
            <span className="muted small">Refreshes every {ROLLOUT_REFRESH_MS / 1000} s{at ? `, last at ${new Date(at).toLocaleTimeString()}` : ''}.</span>
          </p>
          <div className="table-wrap">
            <table className="table" aria-label="Rollout">
              <thead>
                <tr><th>Gateway</th><th>Status</th><th>Config</th><th>Wanted bundle</th><th>Runs bundle</th><th>State</th><th>Refusal</th><th>Agent</th><th>Last heartbeat</th></tr>
              </thead>
              <tbody>
                {rows.map((e) => {
                  const st = rolloutState(e);
                  return (
                    <tr key={e.gateway} data-gateway={e.gateway}>
                      <td><Link to={`${base}/gateways/${e.gateway}`}>{e.gateway}</Link></td>
                      <td>{onlineBadge(e)}</td>
                      <td>v{e.config_version}</td>
                      <td>v{e.desired_version}</td>
                      <td>{e.applied_version != null ? `v${e.applied_version}` : '—'}</td>
                      <td><Badge kind={st.tone} plain>{st.label}</Badge></td>
                      <td className="small" style={{ color: e.last_error ? 'var(--c-danger)' : undefined }}>{e.last_error ?? ''}</td>
                      <td className="small">{e.agent_version ?? '—'}{e.agent_hostname && <div className="muted">{e.agent_hostname}</div>}</td>
                      <td className="muted" title={fmtTime(e.last_heartbeat)}>{fmtAgo(e.last_heartbeat)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </>
  );
}
