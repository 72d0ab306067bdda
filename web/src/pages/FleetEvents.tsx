// Fleet events: gateways going offline and coming back, and readings lost
// for good (data gaps), newest first, filtered by gateway and kind as the
// api allows. The api has no cursor for them, only a limit (at most 500):
// the console asks for the newest N and pages them itself.
import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { fleet } from '../api/endpoints';
import type { FleetEvent } from '../api/types';
import { useScope } from '../scope';
import { Badge, Empty, Field, fmtTime, PageHead } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

export const EVENT_KINDS: [string, string, 'ok' | 'bad' | 'warn'][] = [
  ['gateway_offline', 'Went offline', 'bad'],
  ['gateway_online', 'Came online', 'ok'],
  ['data_gap', 'Readings lost', 'warn'],
];

const REASONS: Record<string, string> = {
  'not-retained': 'the agent no longer held them',
  'agent-unreachable': 'the agent did not answer replay requests',
};

/** What an event says beyond its kind: for a data gap, which frames, when and why. */
export function eventDetails(e: FleetEvent): string {
  const g = e.gap;
  if (!g) return '';
  const frames = g.seq_to - g.seq_from + 1;
  const range = g.seq_from === g.seq_to ? `seq ${g.seq_from}` : `seq ${g.seq_from}–${g.seq_to}`;
  const when = g.ts_from || g.ts_to ? `, readings between ${g.ts_from ? fmtTime(g.ts_from) : 'the start'} and ${g.ts_to ? fmtTime(g.ts_to) : 'now'}` : '';
  return `${frames} frame${frames === 1 ? '' : 's'} (${range}): ${REASONS[g.reason] ?? g.reason}${when}`;
}

export function FleetEvents() {
  const { s, base } = useScope();
  const [gateway, setGateway] = useState('');
  const [kind, setKind] = useState('');
  const [limit, setLimit] = useState(100);
  const [names, setNames] = useState<string[]>([]);
  useEffect(() => {
    // The gateways to filter by; without them the filter offers "All" only.
    fleet.rollout(s).then((r) => setNames(r.map((x) => x.gateway))).catch(() => setNames([]));
  }, [s.org, s.project]); // eslint-disable-line react-hooks/exhaustive-deps
  const p = usePaged(() => fleet.events(s, { gateway: gateway || undefined, kind: kind || undefined, limit }), [s.org, s.project, gateway, kind, limit]);
  return (
    <>
      <PageHead title="Fleet events" sub="Gateways going offline and coming back, and readings lost for good, newest first." />
      <div className="row card" style={{ marginBottom: 12, alignItems: 'flex-end', gap: 16 }} role="search" aria-label="Filter fleet events">
        <Field label="Gateway">
          {(x) => <select {...x} value={gateway} onChange={(e) => setGateway(e.target.value)}><option value="">All gateways</option>{names.map((n) => <option key={n} value={n}>{n}</option>)}</select>}
        </Field>
        <Field label="Event">
          {(x) => <select {...x} value={kind} onChange={(e) => setKind(e.target.value)}><option value="">All events</option>{EVENT_KINDS.map(([k, l]) => <option key={k} value={k}>{l}</option>)}</select>}
        </Field>
        <Field label="Show">
          {(x) => <select {...x} value={limit} onChange={(e) => setLimit(Number(e.target.value))}><option value={100}>newest 100</option><option value={500}>newest 500</option></select>}
        </Field>
      </div>
      <ListState p={p} empty={<div className="card"><Empty title="No fleet events">{gateway || kind ? 'None match the filter.' : 'Events appear when a gateway goes offline, comes back, or loses readings.'}</Empty></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Fleet events">
            <thead><tr><th>When</th><th>Gateway</th><th>Event</th><th>Details</th></tr></thead>
            <tbody>
              {p.items.map((e) => {
                const k = EVENT_KINDS.find(([x]) => x === e.kind);
                return (
                  <tr key={e.id}>
                    <td>{fmtTime(e.at)}</td>
                    <td><Link to={`${base}/gateways/${e.gateway}`}>{e.gateway}</Link></td>
                    <td><Badge kind={k?.[2] ?? 'info'}>{k?.[1] ?? e.kind}</Badge></td>
                    <td className="small">{eventDetails(e)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
    </>
  );
}
