// Fleet overview: gateways online/offline, firing alerts, clusters' health.
import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { alerts, clusters, gateways } from '../api/endpoints';
import type { ActiveAlert, Cluster, GatewaySummary } from '../api/types';
import { useScope } from '../scope';
import { gatewayStatus, phaseTone } from '../lib/words';
import { Badge, Empty, ErrorNotice, fmtAgo, PageHead, Spinner } from '../ui/kit';

type Load<T> = { items?: T[]; error?: unknown };

async function load<T>(f: () => Promise<{ items: T[] }>): Promise<Load<T>> {
  try {
    return { items: (await f()).items };
  } catch (error) {
    return { error };
  }
}

function Section<T>({ title, load, link, children }: { title: string; load: Load<T> | null; link?: string; children: (items: T[]) => React.ReactNode }) {
  return (
    <section className="card">
      <div className="row spread"><h2>{title}</h2>{link && <Link to={link}>View all</Link>}</div>
      {!load ? <Spinner /> : load.error ? <ErrorNotice error={load.error} /> : children(load.items ?? [])}
    </section>
  );
}

/** Readings/s of the online gateways that have reported a rate; null when none has. */
export function readingsRate(items?: GatewaySummary[]): number | null {
  const rates = (items ?? []).filter((g) => g.status === 'online' && g.readings_per_sec != null).map((g) => g.readings_per_sec as number);
  return rates.length ? rates.reduce((a, b) => a + b, 0) : null;
}

export function fmtRate(r: number): string {
  return r >= 100 ? Math.round(r).toLocaleString('en') : r.toFixed(1);
}

export function Overview() {
  const { s, base } = useScope();
  const [gws, setGws] = useState<Load<GatewaySummary> | null>(null);
  const [cls, setCls] = useState<Load<Cluster> | null>(null);
  const [act, setAct] = useState<Load<ActiveAlert> | null>(null);
  useEffect(() => {
    let live = true;
    const refresh = () => {
      void load(() => gateways.list(s)).then((x) => live && setGws(x));
      void load(() => clusters.list(s)).then((x) => live && setCls(x));
      void load(() => alerts.active(s)).then((x) => live && setAct(x));
    };
    refresh();
    const t = setInterval(refresh, 10000);
    return () => { live = false; clearInterval(t); };
  }, [s.org, s.project]);
  const online = gws?.items?.filter((g) => g.status === 'online').length ?? 0;
  const offline = gws?.items?.filter((g) => g.status === 'offline').length ?? 0;
  const firing = act?.items?.filter((a) => a.state === 'firing') ?? [];
  const degraded = cls?.items?.filter((c) => phaseTone(c.phase) !== 'ok').length ?? 0;
  const rate = readingsRate(gws?.items);
  return (
    <>
      <PageHead title="Fleet overview" sub="Gateways, brokers and alerts of this project at a glance. Refreshes every 10 s." />
      <div className="grid" style={{ marginBottom: 16 }}>
        <div className="card stat"><span className="label">Gateways online</span><span className="value" data-testid="online-count" style={{ color: 'var(--c-ok)' }}>{gws?.items ? online : '—'}</span><span className="muted">of {gws?.items?.length ?? '—'}</span></div>
        <div className="card stat"><span className="label">Gateways offline</span><span className="value" style={{ color: offline ? 'var(--c-danger)' : undefined }}>{gws?.items ? offline : '—'}</span><span className="muted">no heartbeat for 3 intervals</span></div>
        <div className="card stat"><span className="label">Firing alerts</span><span className="value" style={{ color: firing.length ? 'var(--c-danger)' : undefined }}>{act?.items ? firing.length : '—'}</span><span className="muted">{act?.error ? 'alerts not available' : 'now'}</span></div>
        <div className="card stat"><span className="label">Readings per second</span><span className="value" data-testid="readings-rate">{rate === null ? '—' : fmtRate(rate)}</span><span className="muted">sent by the online agents between their last two heartbeats</span></div>
        <div className="card stat"><span className="label">Clusters needing attention</span><span className="value">{cls?.items ? degraded : '—'}</span><span className="muted">of {cls?.items?.length ?? '—'}</span></div>
      </div>
      <div className="grid-2">
        <Section title="Gateways" load={gws} link={`${base}/gateways`}>
          {(items) => items.length ? (
            <table className="table"><tbody>{items.slice(0, 8).map((g) => { const st = gatewayStatus(g.status); return <tr key={g.name}><td><Link to={`${base}/gateways/${g.name}`}>{g.name}</Link></td><td><Badge kind={st.tone}>{st.label}</Badge></td><td className="muted">{fmtAgo(g.last_heartbeat)}</td></tr>; })}</tbody></table>
          ) : <Empty title="No gateways" />}
        </Section>
        <Section title="Firing alerts" load={act} link={`${base}/alerts`}>
          {() => firing.length ? (
            <ul style={{ margin: 0, paddingLeft: 18 }}>{firing.slice(0, 8).map((a) => <li key={`${a.rule_id}/${a.series}`}><Badge kind={a.labels?.severity === 'critical' ? 'bad' : 'warn'} plain>{a.labels?.severity ?? 'firing'}</Badge> {a.summary || a.series} <span className="muted small">since {fmtAgo(a.fired_at ?? a.since)}</span></li>)}</ul>
          ) : <Empty title="Nothing is firing" />}
        </Section>
        <Section title="MQTT clusters" load={cls} link={`${base}/clusters`}>
          {(items) => items.length ? (
            <table className="table"><tbody>{items.map((c) => <tr key={c.name}><td><Link to={`${base}/clusters/${c.name}`}>{c.name}</Link></td><td><Badge kind={phaseTone(c.phase)}>{c.phase ?? 'unknown'}</Badge></td><td className="muted">{c.backend === 'external' ? 'existing broker' : `${c.ready_nodes ?? 0}/${c.replicas ?? '?'} nodes`}</td></tr>)}</tbody></table>
          ) : <Empty title="No clusters" />}
        </Section>
      </div>
    </>
  );
}
