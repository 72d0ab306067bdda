// Writing a setpoint from the Latest values table (`POST …/gateways/{gateway}/writes`):
// the operator enters the new value, then confirms a summary that shows the
// old and the new value with the tag's unit and decimals. The api checks the
// tag and its limits again, publishes the write to the agent and answers with
// the agent's verdict, which the dialog shows.
import { useState } from 'react';
import { gateways } from '../api/endpoints';
import { ApiError } from '../api/http';
import type { TagLatest, WriteResult } from '../api/types';
import { useScope } from '../scope';
import { Button, Dialog, ErrorNotice, Field, Notice, useAction, useToast } from '../ui/kit';
import { fmtValue } from './LatestValues';

type Value = number | boolean | string;

/** The value typed for a tag of this type, or why it cannot be sent. */
export function parseSetpoint(t: Pick<TagLatest, 'data_type' | 'write_min' | 'write_max'>, raw: string): { value?: Value; error?: string } {
  const text = raw.trim();
  if (t.data_type === 'string') return { value: raw };
  if (t.data_type === 'bool' || t.data_type === 'bit') {
    if (text === 'true' || text === 'false') return { value: text === 'true' };
    return { error: 'choose true or false' };
  }
  if (text === '' || !Number.isFinite(Number(text))) return { error: 'enter a number' };
  const v = Number(text);
  if (t.data_type !== 'float32' && t.data_type !== 'float64' && !Number.isInteger(v)) return { error: `a ${t.data_type} tag takes a whole number` };
  if (t.write_min != null && v < t.write_min) return { error: `at least ${t.write_min} (the tag's writeMin)` };
  if (t.write_max != null && v > t.write_max) return { error: `at most ${t.write_max} (the tag's writeMax)` };
  return { value: v };
}

/** A value as the table shows it, for the confirmation. */
export function fmtSetpoint(t: TagLatest, v: Value): string {
  if (typeof v === 'boolean' || typeof v === 'string') return `${v}${t.unit ? ` ${t.unit}` : ''}`;
  return fmtValue({ ...t, ts: t.ts ?? new Date().toISOString(), error: null, value: v, value_text: null });
}

function limits(t: TagLatest): string | undefined {
  const u = t.unit ? ` ${t.unit}` : '';
  if (t.write_min != null && t.write_max != null) return `Between ${t.write_min} and ${t.write_max}${u}.`;
  if (t.write_min != null) return `At least ${t.write_min}${u}.`;
  if (t.write_max != null) return `At most ${t.write_max}${u}.`;
  return undefined;
}

export function WriteDialog({ gateway, device, t, onClose, onWritten }: { gateway: string; device: string; t: TagLatest; onClose: () => void; onWritten: () => void }) {
  const { s } = useScope();
  const isBool = t.data_type === 'bool' || t.data_type === 'bit';
  const [raw, setRaw] = useState(isBool ? (t.value ? 'false' : 'true') : '');
  const [comment, setComment] = useState('');
  const [step, setStep] = useState<'edit' | 'confirm'>('edit');
  const [refused, setRefused] = useState<WriteResult | null>(null);
  const act = useAction();
  const toast = useToast();
  const parsed = parseSetpoint(t, raw);
  const old = t.ts && !t.error ? fmtValue(t) : 'unknown (no reading yet)';
  const send = () =>
    act.run(() => gateways.write(s, gateway, { device, tag: t.name, value: parsed.value as Value, comment: comment.trim() || null }), {
      then: (r) => {
        if (r.ok) {
          toast('ok', `${device}/${t.name} is now ${fmtSetpoint(t, r.value as Value)}: the agent confirmed in ${r.answered_in_ms} ms.`);
          onWritten();
          onClose();
        } else {
          setRefused(r);
        }
      },
    });
  // A refusal that names a field belongs beside it: back to the form.
  const fieldErr = act.fields.value ?? act.fields.tag ?? act.fields.device ?? act.fields.comment;
  const timedOut = act.error instanceof ApiError && act.error.status === 504;
  return (
    <Dialog
      title={`Write ${device}/${t.name}`}
      onClose={onClose}
      footer={
        step === 'edit' || fieldErr ? (
          <>
            <Button onClick={onClose}>Cancel</Button>
            <Button variant="primary" disabled={!!parsed.error} onClick={() => { act.reset(); setRefused(null); setStep('confirm'); }}>
              Review
            </Button>
          </>
        ) : (
          <>
            <Button onClick={() => { act.reset(); setRefused(null); setStep('edit'); }}>Back</Button>
            <Button variant="danger" busy={act.busy} onClick={send}>
              Write {fmtSetpoint(t, parsed.value as Value)}
            </Button>
          </>
        )
      }
    >
      {step === 'edit' || fieldErr ? (
        <form className="form" onSubmit={(e) => e.preventDefault()}>
          <p className="small">Current value: <strong className="mono" data-testid="write-old">{old}</strong></p>
          <Field label="New value" hint={limits(t) ?? (t.unit ? `In ${t.unit}.` : undefined)} error={(raw !== '' && parsed.error) || fieldErr}>
            {(p) =>
              isBool ? (
                <select {...p} value={raw} onChange={(e) => setRaw(e.target.value)}>
                  <option value="true">true</option>
                  <option value="false">false</option>
                </select>
              ) : (
                <input {...p} inputMode={t.data_type === 'string' ? 'text' : 'decimal'} value={raw} onChange={(e) => setRaw(e.target.value)} />
              )
            }
          </Field>
          <Field label="Comment" hint="Why; kept in the audit log with the old and new value.">
            {(p) => <input {...p} value={comment} maxLength={500} onChange={(e) => setComment(e.target.value)} />}
          </Field>
        </form>
      ) : (
        <div className="stack" data-testid="write-confirm">
          <p>
            Change <strong>{device}/{t.name}</strong> from <strong className="mono">{old}</strong> to{' '}
            <strong className="mono">{fmtSetpoint(t, parsed.value as Value)}</strong>?
          </p>
          <p className="small muted">The agent writes the value to the device at once. {comment.trim() ? `Comment: “${comment.trim()}”` : 'No comment.'}</p>
          {refused && <Notice kind="error">The agent did not write it: {refused.error ?? 'no reason given'}</Notice>}
          {timedOut ? (
            <Notice kind="warn">{(act.error as ApiError).problem?.detail ?? 'The agent did not answer in time.'} Check the table before writing again.</Notice>
          ) : (
            <ErrorNotice error={act.error} />
          )}
        </div>
      )}
    </Dialog>
  );
}
