import { useState } from 'react';
import { audit, type AuditFilter } from '../api/endpoints';
import type { AuditEntry } from '../api/types';
import { client, ok, type Schemas } from '../api/http';
import { useScope } from '../scope';
import { useSession } from '../session';
import { download, toCsv } from '../lib/csv';
import { Badge, Button, Empty, ErrorNotice, Field, fmtTime, PageHead, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';

const COLS: (keyof AuditEntry)[] = ['seq', 'at', 'actor', 'action', 'target', 'outcome', 'client_addr', 'user_agent', 'details', 'hash'];
const MAX_EXPORT = 20000;

/** ISO time -> the value of a datetime-local input, in local time. */
function local(iso?: string): string {
  if (!iso) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

/** The verdict of `POST /api/v1/audit/verify`, in words. */
function ChainVerdict({ res }: { res: Schemas['VerifyResult'] }) {
  return (
    <div className="card" role="status" aria-label="Chain verdict" style={{ marginBottom: 16 }}>
      {res.intact ? (
        <p>
          <Badge kind="ok">intact</Badge> The whole audit chain checks out: {res.entries} entries
          {res.legacy_entries > 0 ? `, ${res.legacy_entries} of them written before the chain was keyed` : ''}.
        </p>
      ) : (
        <p>
          <Badge kind="bad">broken</Badge> Entry {res.broken_at}: {res.reason}
        </p>
      )}
    </div>
  );
}

export function Audit() {
  const { org } = useScope();
  const [draft, setDraft] = useState<AuditFilter>({});
  const [filter, setFilter] = useState<AuditFilter>({});
  const p = usePaged((q) => audit.list(org, { ...filter, ...q }), [org, JSON.stringify(filter)]);
  const exp = useAction();
  const [progress, setProgress] = useState(0);
  const { me } = useSession();
  // System admins can recompute the whole chain (all organizations).
  const chk = useAction();
  const [verdict, setVerdict] = useState<Schemas['VerifyResult'] | null>(null);
  const verifyChain = () => chk.run(() => ok(client.POST('/api/v1/audit/verify', {})), { then: setVerdict });

  const exportCsv = () =>
    exp.run(async () => {
      const rows: AuditEntry[] = [];
      let cursor: string | null | undefined = null;
      setProgress(0);
      do {
        const pg = await audit.list(org, { ...filter, cursor, limit: 500 });
        rows.push(...pg.items);
        setProgress(rows.length);
        cursor = pg.next_cursor;
      } while (cursor && rows.length < MAX_EXPORT);
      download(`weir-audit-${org}-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.csv`, toCsv(COLS as string[], rows.map((r) => COLS.map((c) => r[c]))));
      return rows.length;
    }, {});

  const set = (k: keyof AuditFilter) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => setDraft({ ...draft, [k]: e.target.value || undefined });
  return (
    <>
      <PageHead
        title="Audit log"
        sub="Every change and sign-in in this organization, in order. Entries are hash-chained so tampering shows."
        actions={
          <>
            {me?.system_admin && (
              <Button onClick={verifyChain} busy={chk.busy}>
                Verify chain
              </Button>
            )}
            <Button onClick={exportCsv} busy={exp.busy}>
              {exp.busy ? `Exporting… ${progress}` : 'Export CSV'}
            </Button>
          </>
        }
      />
      <form
        className="card row"
        style={{ alignItems: 'flex-end', marginBottom: 16 }}
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(draft);
        }}
        aria-label="Filters"
      >
        <Field label="Action">{(x) => <input {...x} placeholder="e.g. gateway.update" value={draft.action ?? ''} onChange={set('action')} />}</Field>
        <Field label="Project">{(x) => <input {...x} placeholder="URL name" value={draft.project ?? ''} onChange={set('project')} />}</Field>
        <Field label="Outcome">
          {(x) => (
            <select {...x} value={draft.outcome ?? ''} onChange={set('outcome')}>
              <option value="">Any</option>
              <option value="success">Success</option>
              <option value="failure">Failure</option>
              <option value="denied">Denied</option>
            </select>
          )}
        </Field>
        <Field label="From">{(x) => <input {...x} type="datetime-local" value={local(draft.since)} onChange={(e) => setDraft({ ...draft, since: e.target.value ? new Date(e.target.value).toISOString() : undefined })} />}</Field>
        <Field label="To">{(x) => <input {...x} type="datetime-local" value={local(draft.until)} onChange={(e) => setDraft({ ...draft, until: e.target.value ? new Date(e.target.value).toISOString() : undefined })} />}</Field>
        <Button type="submit" variant="primary">Apply filters</Button>
        <Button onClick={() => { setDraft({}); setFilter({}); }}>Clear</Button>
      </form>
      <ErrorNotice error={exp.error} />
      <ErrorNotice error={chk.error} />
      {verdict && <ChainVerdict res={verdict} />}
      <ListState p={p} empty={<div className="card"><Empty title="No entries match" /></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Audit entries">
            <thead>
              <tr>
                <th>#</th>
                <th>Time</th>
                <th>Actor</th>
                <th>Action</th>
                <th>Target</th>
                <th>Outcome</th>
                <th>From</th>
              </tr>
            </thead>
            <tbody>
              {p.items.map((e) => (
                <tr key={e.seq}>
                  <td className="mono muted">{e.seq}</td>
                  <td>{fmtTime(e.at)}</td>
                  <td>{e.actor}</td>
                  <td className="mono">{e.action}</td>
                  <td className="mono">{e.target}</td>
                  <td>
                    <Badge kind={e.outcome === 'success' ? 'ok' : e.outcome === 'denied' ? 'warn' : 'bad'}>{e.outcome}</Badge>
                  </td>
                  <td className="muted small">{e.client_addr}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
    </>
  );
}
