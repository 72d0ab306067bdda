// The device / tag / rule editor of a gateway. The api validates; its
// messages appear beside the field they name (`spec.devices[0].groups[0].intervalMs`).
import { useMemo, useState } from 'react';
import type { AdapterKind, Device, GatewayConfig, Tag, TagGroup } from '../api/types';
import { Button, Field } from '../ui/kit';
import { ADAPTERS, addressHint, ModbusTcpFields, OpcUaFields, optNum, SerialFields, SHOWN_DEVICE_FIELDS, withAdapter } from './DeviceSettings';

export const DATA_TYPES = ['bool', 'bit', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', 'float64', 'string'];
export const SIGNALS = ['sine', 'ramp', 'randomWalk', 'step', 'pump', 'pumpFault', 'constant'];

/** `spec.config.devices[0].name` -> `devices[0].name`. */
export function normalizePath(field: string): string {
  let f = field.trim().replace(/^\$\.?/, '').replace(/^\./, '');
  for (;;) {
    const g = f.replace(/^(spec|config|body)\./, '');
    if (g === f) break;
    f = g;
  }
  return f;
}

export function normalizeErrors(fields: Record<string, string>): Record<string, string> {
  const m: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) {
    const n = normalizePath(k);
    m[n] = m[n] ? `${m[n]}; ${v}` : v;
  }
  return m;
}

export function newTag(adapter: AdapterKind, i: number): Tag {
  if (adapter === 'simulator') return { name: `tag-${i}`, address: `sim.${i}`, dataType: 'float32', signal: { kind: 'sine', min: 0, max: 10, periodS: 60 } };
  if (adapter === 'opcUa') return { name: `tag-${i}`, address: `ns=2;s=Tag${i}`, dataType: 'float64' };
  return { name: `tag-${i}`, address: `1!40000${i}`, dataType: 'uint16' };
}

export function newDevice(i: number, adapter: AdapterKind = 'simulator'): Device {
  const base: Device = { name: `device-${i}`, adapter: 'simulator', groups: [{ name: 'main', intervalMs: 1000, tags: [newTag(adapter, 1)] }] };
  const d = withAdapter(base, adapter);
  if (adapter === 'modbusTcp') return { ...d, modbus: { host: '192.168.1.10', port: 502 } };
  if (adapter === 'simulator') return { ...d, simulator: { seed: i } };
  return d;
}

type Set<T> = (f: (t: T) => T) => void;

function num(v: string): number {
  return v === '' ? NaN : Number(v);
}

function TagRow({ tag, path, err, set, remove, adapter, disabled }: { tag: Tag; path: string; err: Record<string, string>; set: Set<Tag>; remove: () => void; adapter: AdapterKind; disabled: boolean }) {
  const e = (k: string) => err[`${path}.${k}`];
  return (
    <div className="editor-row" style={{ marginTop: 6 }} data-path={path}>
      <Field label="Tag name" error={e('name')}>{(p) => <input {...p} disabled={disabled} value={tag.name} onChange={(ev) => set((t) => ({ ...t, name: ev.target.value }))} />}</Field>
      <Field label="Address" hint={addressHint(adapter)} error={e('address')}>{(p) => <input {...p} disabled={disabled} value={tag.address} onChange={(ev) => set((t) => ({ ...t, address: ev.target.value }))} />}</Field>
      <Field label="Type" error={e('dataType')}>
        {(p) => <select {...p} disabled={disabled} value={tag.dataType} onChange={(ev) => set((t) => ({ ...t, dataType: ev.target.value }))}>{DATA_TYPES.map((d) => <option key={d}>{d}</option>)}</select>}
      </Field>
      <Field label="Unit" error={e('unit')}>{(p) => <input {...p} disabled={disabled} value={tag.unit ?? ''} placeholder="mg/L" onChange={(ev) => set((t) => ({ ...t, unit: ev.target.value || undefined }))} />}</Field>
      <Field label="Decimals" hint="Rounds the value; tables, charts and alerts show as many." error={e('decimals')}>{(p) => <input {...p} type="number" min={0} max={15} disabled={disabled} value={tag.decimals ?? ''} onChange={(ev) => set((t) => ({ ...t, decimals: ev.target.value === '' ? undefined : num(ev.target.value) }))} />}</Field>
      {adapter === 'simulator' && (
        <Field label="Signal" error={e('signal') ?? e('signal.kind')}>
          {(p) => <select {...p} disabled={disabled} value={tag.signal?.kind ?? ''} onChange={(ev) => set((t) => ({ ...t, signal: { ...(t.signal ?? {}), kind: ev.target.value } }))}>{SIGNALS.map((d) => <option key={d}>{d}</option>)}</select>}
        </Field>
      )}
      {!disabled && <div style={{ alignSelf: 'end' }}><Button variant="ghost" onClick={remove} aria-label={`Remove tag ${tag.name}`}>Remove tag</Button></div>}
    </div>
  );
}

function GroupBox({ g, path, err, set, remove, adapter, disabled }: { g: TagGroup; path: string; err: Record<string, string>; set: Set<TagGroup>; remove: () => void; adapter: AdapterKind; disabled: boolean }) {
  const e = (k: string) => err[`${path}.${k}`];
  const subscribed = adapter === 'opcUa' && g.mode === 'subscribe';
  return (
    <div className="editor-group" data-path={path}>
      <div className="editor-row">
        <Field label="Group" error={e('name')}>{(p) => <input {...p} disabled={disabled} value={g.name} onChange={(ev) => set((x) => ({ ...x, name: ev.target.value }))} />}</Field>
        {adapter === 'opcUa' && (
          <Field label="Mode" hint={subscribed ? 'the server reports changes (monitored items)' : 'the agent reads every interval'} error={e('mode')}>
            {(p) => <select {...p} disabled={disabled} value={g.mode ?? 'poll'} onChange={(ev) => set((x) => (ev.target.value === 'subscribe' ? { ...x, mode: 'subscribe' } : { ...x, mode: 'poll', deadband: undefined }))}><option value="poll">Poll (Read)</option><option value="subscribe">Subscribe</option></select>}
          </Field>
        )}
        {subscribed && (
          <Field label="Deadband" hint="smallest change reported, in the tag's unit; empty: every change" error={e('deadband')}>{(p) => <input {...p} disabled={disabled} type="number" min={0} step="any" value={g.deadband ?? ''} onChange={(ev) => set((x) => ({ ...x, deadband: optNum(ev.target.value) }))} />}</Field>
        )}
        <Field label={subscribed ? 'Sample every (ms)' : 'Poll every (ms)'} error={e('intervalMs')}>{(p) => <input {...p} disabled={disabled} type="number" value={Number.isNaN(g.intervalMs) ? '' : g.intervalMs} onChange={(ev) => set((x) => ({ ...x, intervalMs: num(ev.target.value) }))} />}</Field>
        {!disabled && <div style={{ alignSelf: 'end' }}><Button variant="ghost" onClick={remove}>Remove group</Button></div>}
      </div>
      {e('tags') && <p className="error small" role="alert" style={{ color: 'var(--c-danger)' }}>{e('tags')}</p>}
      {g.tags.map((t, i) => (
        <TagRow
          key={i}
          tag={t}
          adapter={adapter}
          disabled={disabled}
          path={`${path}.tags[${i}]`}
          err={err}
          set={(f) => set((x) => ({ ...x, tags: x.tags.map((y, j) => (j === i ? f(y) : y)) }))}
          remove={() => set((x) => ({ ...x, tags: x.tags.filter((_, j) => j !== i) }))}
        />
      ))}
      {!disabled && <Button variant="ghost" onClick={() => set((x) => ({ ...x, tags: [...x.tags, newTag(adapter, x.tags.length + 1)] }))}>+ Add tag</Button>}
    </div>
  );
}

function DeviceBox({ d, path, err, set, remove, disabled, credentials }: { d: Device; path: string; err: Record<string, string>; set: Set<Device>; remove: () => void; disabled: boolean; credentials?: string[] }) {
  const e = (k: string) => err[`${path}.${k}`];
  return (
    <fieldset className="editor-device" data-path={path}>
      <legend className="sr-only">Device {d.name}</legend>
      {err[path] && <p role="alert" style={{ color: 'var(--c-danger)', marginTop: 0 }}>{err[path]}</p>}
      <div className="editor-row">
        <Field label="Device name" error={e('name')}>{(p) => <input {...p} disabled={disabled} value={d.name} onChange={(ev) => set((x) => ({ ...x, name: ev.target.value }))} />}</Field>
        <Field label="Adapter" error={e('adapter')}>
          {(p) => (
            <select {...p} disabled={disabled} value={d.adapter} onChange={(ev) => set((x) => withAdapter(x, ev.target.value as AdapterKind))}>
              {ADAPTERS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
            </select>
          )}
        </Field>
        {(d.adapter === 'modbusTcp' || d.adapter === 'modbusRtuOverTcp') && <ModbusTcpFields d={d} e={e} set={set} disabled={disabled} />}
        {d.adapter === 'modbusRtu' && <SerialFields d={d} e={e} set={set} disabled={disabled} />}
        {d.adapter === 'opcUa' && <OpcUaFields d={d} e={e} set={set} disabled={disabled} credentials={credentials} />}
        {!disabled && <div style={{ alignSelf: 'end' }}><Button variant="ghost" onClick={remove}>Remove device</Button></div>}
      </div>
      {e('groups') && <p role="alert" style={{ color: 'var(--c-danger)' }}>{e('groups')}</p>}
      {d.groups.map((g, i) => (
        <GroupBox
          key={i}
          g={g}
          adapter={d.adapter}
          disabled={disabled}
          path={`${path}.groups[${i}]`}
          err={err}
          set={(f) => set((x) => ({ ...x, groups: x.groups.map((y, j) => (j === i ? f(y) : y)) }))}
          remove={() => set((x) => ({ ...x, groups: x.groups.filter((_, j) => j !== i) }))}
        />
      ))}
      {!disabled && <Button variant="ghost" onClick={() => set((x) => ({ ...x, groups: [...x.groups, { name: `group-${x.groups.length + 1}`, intervalMs: 1000, tags: [newTag(x.adapter, 1)] }] }))}>+ Add group</Button>}
    </fieldset>
  );
}

export function ConfigEditor({
  value,
  onChange,
  errors,
  disabled = false,
  credentials,
}: {
  value: GatewayConfig;
  onChange: (c: GatewayConfig) => void;
  /** Field errors from the api, by path as the api names them. */
  errors: Record<string, string>;
  disabled?: boolean;
  /** The project's device credential names, for OPC UA devices' picker. */
  credentials?: string[];
}) {
  const err = useMemo(() => normalizeErrors(errors), [errors]);
  const [rulesText, setRulesText] = useState(() => JSON.stringify({ pipelines: value.pipelines ?? [], uplink: value.uplink ?? {} }, null, 2));
  const [rulesErr, setRulesErr] = useState<string | null>(null);
  const shown = new Set<string>();
  const devices = value.devices ?? [];
  // Messages whose field is not in the form still show, in words, at the top.
  const known = (k: string) => {
    const m = /^devices\[\d+\](?:\.(.+))?$/.exec(k);
    if (!m) return false;
    const rest = m[1] ?? '';
    return rest === '' || SHOWN_DEVICE_FIELDS.test(rest) || /^groups(\[\d+\](\.(name|intervalMs|mode|deadband|tags(\[\d+\]\.(name|address|dataType|unit|signal(\.kind)?))?))?)?$/.test(rest);
  };
  for (const k of Object.keys(err)) if (known(k)) shown.add(k);
  const other = Object.entries(err).filter(([k]) => !shown.has(k));
  return (
    <div className="stack">
      {other.length > 0 && (
        <div className="notice error" role="alert">
          <ul style={{ margin: 0, paddingLeft: 18 }}>
            {other.map(([k, v]) => <li key={k}><code>{k}</code>: {v}</li>)}
          </ul>
        </div>
      )}
      {devices.length === 0 && <p className="muted">No devices yet.</p>}
      {devices.map((d, i) => (
        <DeviceBox
          key={i}
          d={d}
          disabled={disabled}
          path={`devices[${i}]`}
          err={err}
          credentials={credentials}
          set={(f) => onChange({ ...value, devices: devices.map((x, j) => (j === i ? f(x) : x)) })}
          remove={() => onChange({ ...value, devices: devices.filter((_, j) => j !== i) })}
        />
      ))}
      {!disabled && (
        <div className="row">
          <Button onClick={() => onChange({ ...value, devices: [...devices, newDevice(devices.length + 1, 'simulator')] })}>+ Add simulated device</Button>
          <Button onClick={() => onChange({ ...value, devices: [...devices, newDevice(devices.length + 1, 'modbusTcp')] })}>+ Add Modbus device</Button>
          <Button onClick={() => onChange({ ...value, devices: [...devices, newDevice(devices.length + 1, 'opcUa')] })}>+ Add OPC UA device</Button>
        </div>
      )}
      <details>
        <summary>Rules (pipelines) and uplink, as JSON</summary>
        <Field label="Pipelines and uplink" hint="Filter, scale, deadband, report on change, rate of change and window steps per device, group or tag." error={rulesErr ?? (Object.entries(err).find(([k]) => k.startsWith('pipelines') || k.startsWith('uplink'))?.[1])}>
          {(p) => (
            <textarea
              {...p}
              rows={12}
              disabled={disabled}
              value={rulesText}
              onChange={(e) => {
                setRulesText(e.target.value);
                try {
                  const v = JSON.parse(e.target.value) as { pipelines?: unknown[]; uplink?: Record<string, unknown> };
                  setRulesErr(null);
                  onChange({ ...value, pipelines: v.pipelines ?? [], uplink: v.uplink ?? {} });
                } catch (x) {
                  setRulesErr(`Not valid JSON: ${(x as Error).message}`);
                }
              }}
            />
          )}
        </Field>
      </details>
    </div>
  );
}
