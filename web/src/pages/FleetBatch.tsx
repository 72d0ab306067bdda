// Applying one change to many gateways (`POST …/gateways:batch`), shared by
// the template page ("apply to gateways") and the batch changes page: pick
// the gateways, say why, confirm, then read one result per gateway. The api
// writes each gateway in its own transaction, so some may change while
// others are refused; the table says which and why.
import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { fleet, gateways } from '../api/endpoints';
import type { BatchItem, BatchResult, GatewaySummary } from '../api/types';
import type { Schemas } from '../api/http';
import { useScope } from '../scope';
import { Badge, Button, Dialog, ErrorNotice, Field, Spinner, useAction } from '../ui/kit';

/** The change itself: a template's name or a merge patch (what the batch route takes). */
export type BatchChange = { template: string; merge_patch?: null } | { merge_patch: Record<string, unknown>; template?: null };

/** One gateway's outcome in words: changed (to which version), unchanged, or refused and why. */
export function resultWords(i: BatchItem): { label: string; tone: 'ok' | 'info' | 'bad'; detail: string } {
  if (i.result === 'updated') return { label: 'Changed', tone: 'ok', detail: i.version != null ? `now config v${i.version}` : '' };
  if (i.result === 'unchanged') return { label: 'Unchanged', tone: 'info', detail: 'already had this configuration' };
  // The field errors say more than the problem's detail ("invalid fields").
  const why = i.errors.length ? i.errors.map((e) => `${e.field}: ${e.message}`).join('; ') : (i.detail ?? `refused (${i.status})`);
  return { label: 'Refused', tone: 'bad', detail: why };
}

export function BatchResults({ r }: { r: BatchResult }) {
  const { base } = useScope();
  return (
    <section className="stack" aria-label="Batch results">
      <p style={{ margin: 0 }} data-testid="batch-summary">
        {r.updated} changed, {r.unchanged} unchanged, {r.failed} refused.
      </p>
      <div className="table-wrap">
        <table className="table" aria-label="Results per gateway">
          <thead><tr><th>Gateway</th><th>Result</th><th>Details</th></tr></thead>
          <tbody>
            {r.items.map((i) => {
              const w = resultWords(i);
              return (
                <tr key={i.gateway}>
                  <td><Link to={`${base}/gateways/${i.gateway}`}>{i.gateway}</Link></td>
                  <td><Badge kind={w.tone}>{w.label}</Badge></td>
                  <td className="small" style={{ color: w.tone === 'bad' ? 'var(--c-danger)' : undefined }}>{w.detail}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** The project's gateways as checkboxes (labelled by name), with select all / none. */
export function GatewayChecklist({ value, onChange, error }: { value: string[]; onChange: (v: string[]) => void; error?: string }) {
  const { s } = useScope();
  const [list, setList] = useState<GatewaySummary[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    gateways
      .list(s)
      .then((p) => live && setList(p.items))
      .catch((e) => live && setErr(e));
    return () => { live = false; };
  }, [s.org, s.project]); // eslint-disable-line react-hooks/exhaustive-deps
  if (err) return <ErrorNotice error={err} />;
  if (!list) return <Spinner label="Loading gateways" />;
  if (!list.length) return <p className="muted">This project has no gateways yet.</p>;
  const toggle = (name: string, on: boolean) => onChange(on ? [...value, name] : value.filter((n) => n !== name));
  return (
    <fieldset className="stack" style={{ border: 0, padding: 0, margin: 0, gap: 6 }} aria-describedby={error ? 'batch-gateways-err' : undefined}>
      <legend><strong>Gateways</strong> <span className="muted small">({value.length} of {list.length} chosen)</span></legend>
      <div className="row">
        <Button variant="link" onClick={() => onChange(list.map((g) => g.name))}>Select all</Button>
        <Button variant="link" onClick={() => onChange([])}>Select none</Button>
      </div>
      {list.map((g) => (
        <label key={g.name} className="row">
          {/* Named by the gateway alone; its site is the description. */}
          <input type="checkbox" aria-label={g.name} checked={value.includes(g.name)} onChange={(e) => toggle(g.name, e.target.checked)} />
          {g.name}
          {g.site?.name && <span className="muted small">{String(g.site.name)}</span>}
        </label>
      ))}
      {error && <span className="error" id="batch-gateways-err" role="alert">{error}</span>}
    </fieldset>
  );
}

/**
 * Pick gateways, a comment, confirm, apply `change` to each. `change` null
 * means the form above is not complete yet. The request's own field errors
 * (`merge_patch`, `template`) go back through `onFields` to show beside the
 * parent's fields; `gateways` and `comment` show here.
 */
export function ApplyToGateways({ change, what, onFields }: { change: BatchChange | null; what: string; onFields?: (f: Record<string, string>) => void }) {
  const { s } = useScope();
  const [picked, setPicked] = useState<string[]>([]);
  const [comment, setComment] = useState('');
  const [confirming, setConfirming] = useState(false);
  const [result, setResult] = useState<BatchResult | null>(null);
  const act = useAction();
  const f = act.fields;
  const run = async () => {
    if (!change) return;
    setResult(null);
    onFields?.({});
    const body = { ...change, gateways: picked, comment } as Schemas['BatchRequestBody'];
    // No toast: some gateways may have refused; the results below say which.
    const r = await act.run(() => fleet.batch(s, body));
    setConfirming(false);
    if (r) setResult(r);
  };
  useEffect(() => onFields?.(act.fields), [act.error]); // eslint-disable-line react-hooks/exhaustive-deps
  const shownHere = f.gateways || f.comment;
  const elsewhere = Object.keys(f).some((k) => k !== 'gateways' && k !== 'comment') && !!onFields;
  return (
    <div className="stack">
      <GatewayChecklist value={picked} onChange={setPicked} error={f.gateways} />
      <Field label="Why" hint="Saved as each gateway's new version comment, e.g. “new chlorine analyser on all lines”." error={f.comment}>
        {(p) => <input {...p} value={comment} onChange={(e) => setComment(e.target.value)} />}
      </Field>
      <ErrorNotice error={shownHere || elsewhere ? null : act.error} />
      <div>
        <Button variant="primary" disabled={!change || !picked.length} busy={act.busy} onClick={() => setConfirming(true)}>
          Apply to {picked.length} gateway{picked.length === 1 ? '' : 's'}
        </Button>
      </div>
      {confirming && (
        <Dialog
          title={`Apply ${what}?`}
          onClose={() => setConfirming(false)}
          footer={<><Button onClick={() => setConfirming(false)}>Cancel</Button><Button variant="primary" busy={act.busy} onClick={() => void run()}>Apply</Button></>}
        >
          <p>
            Each of these gateways gets a new config version, and its agent picks it up within seconds: <strong>{picked.join(', ')}</strong>.
            A gateway whose new config would not be valid is left as it is.
          </p>
        </Dialog>
      )}
      {result && <BatchResults r={result} />}
    </div>
  );
}
