// The parts of a cluster's page that say how the broker is doing and how it
// is reached: connection and message figures (EMQX's per-node connections
// as the operator reads them from its API; an adopted broker's `$SYS`
// figures, read by the api's probe), a "Probe now" button, the listeners
// with their TLS, the connection limit, and the hand-over of the cluster to
// another project of the organization.
import { useEffect, useState } from 'react';
import { useNavigate } from 'react-router';
import { clusters, projects } from '../api/endpoints';
import type { Cluster } from '../api/types';
import { useScope } from '../scope';
import { fmtDuration } from './AgentReport';
import { Badge, Button, Dialog, ErrorNotice, Field, fmtTime, useAction } from '../ui/kit';

const num = (n?: number | null) => (n == null ? '—' : n.toLocaleString());

/** "2 d 3 h", "4 h 10 min", "12 min", "40 s" (the agent report's words); '—' when unknown. */
export function fmtUptime(secs?: number | null): string {
  return secs == null ? '—' : fmtDuration(secs);
}

/** Figures rows: what the broker (or EMQX through the operator) reports. */
export function figureRows(c: Cluster): [string, string][] {
  if (c.backend !== 'external') {
    const nodes = c.nodes ?? [];
    if (!nodes.length) return [];
    const total = nodes.reduce((n, x) => n + (x.connections ?? 0), 0);
    return [['Connections', `${num(total)} on ${nodes.length} node${nodes.length === 1 ? '' : 's'}`], ...nodes.map((x): [string, string] => [`  ${x.name}`, `${num(x.connections)} connections`])];
  }
  const b = c.health?.broker;
  if (!b) return [];
  return [
    ['Clients connected', num(b.clients_connected)],
    ['Messages received', `${num(b.messages_received)} (${b.messages_received_per_min == null ? '—' : b.messages_received_per_min.toFixed(1)}/min)`],
    ['Messages sent', `${num(b.messages_sent)} (${b.messages_sent_per_min == null ? '—' : b.messages_sent_per_min.toFixed(1)}/min)`],
    ['Broker up for', fmtUptime(b.uptime_secs)],
    ['Broker version', b.version ?? '—'],
  ];
}

export function BrokerFigures({ c, onChange }: { c: Cluster; onChange: (c: Cluster) => void }) {
  const { s } = useScope();
  const probe = useAction();
  const rows = figureRows(c);
  return (
    <section className="card stack" aria-label="Connections and messages">
      <h2>Connections and messages</h2>
      {rows.length ? (
        <table className="table" aria-label="Broker figures">
          <tbody>{rows.map(([k, v]) => <tr key={k}><th scope="row" style={{ textTransform: 'none', whiteSpace: 'pre' }}>{k}</th><td className="mono">{v}</td></tr>)}</tbody>
        </table>
      ) : (
        <p className="muted">
          {c.backend === 'external' ? 'The broker published no $SYS figures to Weir (EMQX and brokers with $SYS turned off do not).' : 'No node has reported yet.'}
        </p>
      )}
      {c.health && <p className="small muted">Checked {fmtTime(c.health.checked_at)}{c.health.rtt_ms != null ? `; round trip ${c.health.rtt_ms.toFixed(1)} ms` : ''}.</p>}
      <ErrorNotice error={probe.error} />
      <div>
        <Button busy={probe.busy} onClick={() => probe.run(() => clusters.probe(s, c.name), { ok: 'Probed the cluster.', then: onChange })}>Probe now</Button>
      </div>
    </section>
  );
}

interface ListenerRow { name: string; protocol: string; port: string; tls: string }

/** The listeners: a managed cluster's from its spec, an adopted broker's from its URL. */
export function listenerRows(c: Cluster): ListenerRow[] {
  if (c.backend !== 'external') {
    const ls = (c.spec?.listeners as { name: string; protocol: string; port: number; tlsSecretRef?: string }[] | undefined) ?? [{ name: 'mqtt', protocol: 'tcp', port: 1883 }];
    return ls.map((l) => ({
      name: l.name,
      protocol: l.protocol,
      port: String(l.port),
      tls: l.protocol === 'tls' || l.protocol === 'wss' ? `TLS, certificate from ${l.tlsSecretRef ?? 'the default secret'}` : 'none (plain text)',
    }));
  }
  return c.endpoints.map((u) => {
    const m = /^(\w+):\/\/([^/:]+)(?::(\d+))?/.exec(u);
    const scheme = m?.[1] ?? '?';
    const tls = scheme === 'mqtts' || scheme === 'ssl';
    return { name: m?.[2] ?? u, protocol: scheme, port: m?.[3] ?? (tls ? '8883' : '1883'), tls: tls ? 'TLS, checked against the system’s trusted CAs' : 'none (plain text)' };
  });
}

export function Listeners({ c }: { c: Cluster }) {
  const lim = c.connection_limit;
  return (
    <section className="card stack" aria-label="Listeners and limits">
      <h2>Listeners and limits</h2>
      <table className="table" aria-label="Listeners">
        <thead><tr><th>Listener</th><th>Protocol</th><th>Port</th><th>Encryption</th></tr></thead>
        <tbody>{listenerRows(c).map((l) => <tr key={l.name + l.port}><td className="mono">{l.name}</td><td>{l.protocol}</td><td>{l.port}</td><td>{l.tls.startsWith('TLS') ? <Badge kind="ok" plain>{l.tls}</Badge> : <Badge kind="warn" plain>{l.tls}</Badge>}</td></tr>)}</tbody>
      </table>
      <p data-testid="connection-limit">
        {c.backend === 'external'
          ? 'Connection limits are the broker’s own settings; Weir does not manage them on an adopted broker.'
          : lim
            ? `At most ${num(lim.clusterMax)} connections (${num(lim.perListener)} per listener on each node), from the tenant’s quota of ${num(lim.tenantQuota)} shared by ${num(lim.tenantNodes)} nodes.`
            : 'No connection quota: the tenant sets none.'}
      </p>
    </section>
  );
}

export function TransferCluster({ c }: { c: Cluster }) {
  const { s, base } = useScope();
  const nav = useNavigate();
  const [open, setOpen] = useState(false);
  const [targets, setTargets] = useState<string[]>([]);
  const [to, setTo] = useState('');
  const act = useAction();
  useEffect(() => {
    if (!open) return;
    projects.list(s.org).then((p) => {
      const slugs = p.items.map((x) => x.slug).filter((x) => x !== s.project);
      setTargets(slugs);
      setTo(slugs[0] ?? '');
    }).catch(() => setTargets([]));
  }, [open, s.org, s.project]);
  return (
    <section className="card stack" aria-label="Transfer">
      <h2>Transfer</h2>
      <p className="small muted">Hand this cluster to another project of the organization, which manages it from then on. Gateways of this project lose it unless that project shares it back with this one.</p>
      <div><Button onClick={() => setOpen(true)}>Transfer to another project…</Button></div>
      {open && (
        <Dialog
          title={`Transfer ${c.name}`}
          onClose={() => setOpen(false)}
          footer={<><Button onClick={() => setOpen(false)}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!to} onClick={() => act.run(() => clusters.transfer(s, c.name, to), { ok: `${c.name} now belongs to ${to}.`, then: () => nav(`${base.replace(/\/p\/[^/]+$/, `/p/${to}`)}/clusters/${c.name}`) })}>Transfer to {to || '…'}</Button></>}
        >
          <form className="form" onSubmit={(e) => e.preventDefault()}>
            <Field label="Project" error={act.fields.project} hint="You need the right to change both projects.">
              {(p) => <select {...p} value={to} onChange={(e) => setTo(e.target.value)}>{targets.map((t) => <option key={t}>{t}</option>)}</select>}
            </Field>
            <ErrorNotice error={act.error} />
          </form>
        </Dialog>
      )}
    </section>
  );
}
