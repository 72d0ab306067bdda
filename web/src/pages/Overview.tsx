// Fleet overview: gateways online/offline, readings per second, firing alerts, clusters' health.
import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { alerts, clusters, gateways } from '../api/endpoints';
import type { ActiveAlert, Cluster, Gateway } from '../api/types';
import { ApiError } from '../api/http';
import { useScope } from '../scope';
import { gatewayStatus, phaseTone } from '../lib/words';
import { Badge, Empty, ErrorNotice, fmtAgo, PageHead, Spinner } from '../ui/kit';
import { Chart } from '../ui/Chart';

type Load<T> = { items?: T[]; error?: unknown; more?: boolean };

async function all<T>(f: (q: { cursor?: string | null; limit: number }) => Promise<{ items: T[]; next_cursor?: string | null }>, max = 1000): Promise<Load<T>> {
  try {
    const items: T[] = [];
    let cursor: string | null | undefined = null;
    do {
      const p = await f({ cursor, limit: 200 });
      items.push(...p.items);
      cursor = p.next_cursor;
    } while (cursor && items.length < max);
    return { items, more: !!cursor };
  } catch (error) {
    return { error };
  }
}

function Missing({ what }: { what: string }) {
  return <p className="muted" data-testid="unavailable">{what} not available on this server.</p>;
}

function Section<T>({ title, load, link, children }: { title: string; load: Load<T> | null; link?: string; children: (items: T[]) => React.ReactNode }) {
  return (
    <section className="card">
      <div className="row spread"><h2>{title}</h2>{link && <Link to={link}>View all</Link>}</div>
      {!load ? <Spinner /> : load.error instanceof ApiError && load.error.missingEndpoint ? <Missing what={title} /> : load.error ? <ErrorNotice error={load.error} /> : children(load.items ?? [])}
    </section>
  );
}

export function Overview() {
  const { s, base } = useScope();
  const [gws, setGws] = useState<Load<Gateway> | null>(null);
  const [cls, setCls] = useState<Load<Cluster> | null>(null);
  const [act, setAct] = useState<Load<ActiveAlert> | null>(null);
  const [rate, setRate] = useState<{ t: number[]; v: (number | null)[] }>({ t: [], v: [] });
  useEffect(() => {
    let live = true;
    const load = () => {
      void all((q) => gateways.list(s, q)).then((x) => {
        if (!live) return;
        setGws(x);
        // Readings per second: the sum of what the gateways report, sampled here.
        const r = x.items?.reduce((n, g) => n + (Number((g as Gateway & { readings_per_sec?: number }).readings_per_sec) || 0), 0);
        if (x.items && x.items.some((g) => 'readings_per_sec' in g)) setRate((o) => ({ t: [...o.t, Date.now() / 1000].slice(-360), v: [...o.v, r ?? null].slice(-360) }));
      });
      void all((q) => clusters.list(s, q)).then((x) => live && setCls(x));
      void all((q) => alerts.active(s, q)).then((x) => live && setAct(x));
    };
    load();
    const t = setInterval(load, 10000);
    return () => { live = false; clearInterval(t); };
  }, [s.org, s.project]);
  const online = gws?.items?.filter((g) => g.status === 'online').length ?? 0;
  const offline = gws?.items?.filter((g) => g.status === 'offline').length ?? 0;
  const firing = act?.items?.filter((a) => a.state === 'firing') ?? [];
  const degraded = cls?.items?.filter((c) => phaseTone(c.phase) !== 'ok').length ?? 0;
  return (
    <>
      <PageHead title="Fleet overview" sub="Gateways, brokers and alerts of this project at a glance. Refreshes every 10 s." />
      <div className="grid" style={{ marginBottom: 16 }}>
        <div className="card stat"><span className="label">Gateways online</span><span className="value" data-testid="online-count" style={{ color: 'var(--c-ok)' }}>{gws?.items ? online : '—'}</span><span className="muted">of {gws?.items?.length ?? '—'}</span></div>
        <div className="card stat"><span className="label">Gateways offline</span><span className="value" style={{ color: offline ? 'var(--c-danger)' : undefined }}>{gws?.items ? offline : '—'}</span><span className="muted">no heartbeat for 3 intervals</span></div>
        <div className="card stat"><span className="label">Firing alerts</span><span className="value" style={{ color: firing.length ? 'var(--c-danger)' : undefined }}>{act?.items ? firing.length : '—'}</span><span className="muted">{act?.error ? 'alerts not available' : 'now'}</span></div>
        <div className="card stat"><span className="label">Clusters needing attention</span><span className="value">{cls?.items ? degraded : '—'}</span><span className="muted">of {cls?.items?.length ?? '—'}</span></div>
      </div>
      <section className="card" style={{ marginBottom: 16 }}>
        <h2>Readings per second</h2>
        {rate.t.length > 1 ? <Chart times={rate.t} lines={[{ label: 'readings/s', values: rate.v }]} height={200} unit="readings/s" /> : <p className="muted" data-testid="unavailable">{gws?.items?.length ? 'Readings per second are not reported by this server yet.' : gws?.error ? 'Readings per second are not available on this server.' : 'No gateways yet.'}</p>}
      </section>
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
