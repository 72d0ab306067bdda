// The device / tag / rule editor of a gateway. The api validates; its
// messages appear beside the field they name (`spec.devices[0].groups[0].intervalMs`).
import { useMemo, useState } from 'react';
import type { Device, GatewayConfig, Tag, TagGroup } from '../api/types';
import { Button, Field } from '../ui/kit';

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

export function newTag(adapter: Device['adapter'], i: number): Tag {
  return adapter === 'simulator'
    ? { name: `tag-${i}`, address: `sim.${i}`, dataType: 'float32', signal: { kind: 'sine', min: 0, max: 10, periodS: 60 } }
    : { name: `tag-${i}`, address: `1!40000${i}`, dataType: 'uint16' };
}

export function newDevice(i: number, adapter: Device['adapter'] = 'simulator'): Device {
  return {
    name: `device-${i}`,
    adapter,
    ...(adapter === 'modbusTcp' ? { modbus: { host: '192.168.1.10', port: 502 } } : { simulator: { seed: i } }),
    groups: [{ name: 'main', intervalMs: 1000, tags: [newTag(adapter, 1)] }],
  };
}

type Set<T> = (f: (t: T) => T) => void;

function num(v: string): number {
  return v === '' ? NaN : Number(v);
}

function TagRow({ tag, path, err, set, remove, adapter, disabled }: { tag: Tag; path: string; err: Record<string, string>; set: Set<Tag>; remove: () => void; adapter: Device['adapter']; disabled: boolean }) {
  const e = (k: string) => err[`${path}.${k}`];
  return (
    <div className="editor-row" style={{ marginTop: 6 }} data-path={path}>
      <Field label="Tag name" error={e('name')}>{(p) => <input {...p} disabled={disabled} value={tag.name} onChange={(ev) => set((t) => ({ ...t, name: ev.target.value }))} />}</Field>
      <Field label="Address" hint={adapter === 'modbusTcp' ? 'SLAVE!AREAADDRESS, e.g. 1!400001' : undefined} error={e('address')}>{(p) => <input {...p} disabled={disabled} value={tag.address} onChange={(ev) => set((t) => ({ ...t, address: ev.target.value }))} />}</Field>
      <Field label="Type" error={e('dataType')}>
        {(p) => <select {...p} disabled={disabled} value={tag.dataType} onChange={(ev) => set((t) => ({ ...t, dataType: ev.target.value }))}>{DATA_TYPES.map((d) => <option key={d}>{d}</option>)}</select>}
      </Field>
      <Field label="Unit" error={e('unit')}>{(p) => <input {...p} disabled={disabled} value={tag.unit ?? ''} placeholder="mg/L" onChange={(ev) => set((t) => ({ ...t, unit: ev.target.value || undefined }))} />}</Field>
      {adapter === 'simulator' && (
        <Field label="Signal" error={e('signal') ?? e('signal.kind')}>
          {(p) => <select {...p} disabled={disabled} value={tag.signal?.kind ?? ''} onChange={(ev) => set((t) => ({ ...t, signal: { ...(t.signal ?? {}), kind: ev.target.value } }))}>{SIGNALS.map((d) => <option key={d}>{d}</option>)}</select>}
        </Field>
      )}
      {!disabled && <div style={{ alignSelf: 'end' }}><Button variant="ghost" onClick={remove} aria-label={`Remove tag ${tag.name}`}>Remove tag</Button></div>}
    </div>
  );
}

function GroupBox({ g, path, err, set, remove, adapter, disabled }: { g: TagGroup; path: string; err: Record<string, string>; set: Set<TagGroup>; remove: () => void; adapter: Device['adapter']; disabled: boolean }) {
  const e = (k: string) => err[`${path}.${k}`];
  return (
    <div className="editor-group" data-path={path}>
      <div className="editor-row">
        <Field label="Group" error={e('name')}>{(p) => <input {...p} disabled={disabled} value={g.name} onChange={(ev) => set((x) => ({ ...x, name: ev.target.value }))} />}</Field>
        <Field label="Poll every (ms)" error={e('intervalMs')}>{(p) => <input {...p} disabled={disabled} type="number" value={Number.isNaN(g.intervalMs) ? '' : g.intervalMs} onChange={(ev) => set((x) => ({ ...x, intervalMs: num(ev.target.value) }))} />}</Field>
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

function DeviceBox({ d, path, err, set, remove, disabled }: { d: Device; path: string; err: Record<string, string>; set: Set<Device>; remove: () => void; disabled: boolean }) {
  const e = (k: string) => err[`${path}.${k}`];
  return (
    <fieldset className="editor-device" data-path={path}>
      <legend className="sr-only">Device {d.name}</legend>
      {err[path] && <p role="alert" style={{ color: 'var(--c-danger)', marginTop: 0 }}>{err[path]}</p>}
      <div className="editor-row">
        <Field label="Device name" error={e('name')}>{(p) => <input {...p} disabled={disabled} value={d.name} onChange={(ev) => set((x) => ({ ...x, name: ev.target.value }))} />}</Field>
        <Field label="Adapter" error={e('adapter')}>
          {(p) => (
            <select {...p} disabled={disabled} value={d.adapter} onChange={(ev) => set((x) => ({ ...x, adapter: ev.target.value as Device['adapter'], modbus: ev.target.value === 'modbusTcp' ? x.modbus ?? { host: '', port: 502 } : undefined, simulator: ev.target.value === 'simulator' ? x.simulator ?? { seed: 1 } : undefined }))}>
              <option value="simulator">Simulator</option>
              <option value="modbusTcp">Modbus TCP</option>
            </select>
          )}
        </Field>
        {d.adapter === 'modbusTcp' && (
          <>
            <Field label="Host" error={e('modbus.host') ?? e('modbus')}>{(p) => <input {...p} disabled={disabled} value={d.modbus?.host ?? ''} onChange={(ev) => set((x) => ({ ...x, modbus: { port: 502, ...x.modbus, host: ev.target.value } }))} />}</Field>
            <Field label="Port" error={e('modbus.port')}>{(p) => <input {...p} disabled={disabled} type="number" value={d.modbus?.port ?? 502} onChange={(ev) => set((x) => ({ ...x, modbus: { host: '', ...x.modbus, port: num(ev.target.value) } }))} />}</Field>
          </>
        )}
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
}: {
  value: GatewayConfig;
  onChange: (c: GatewayConfig) => void;
  /** Field errors from the api, by path as the api names them. */
  errors: Record<string, string>;
  disabled?: boolean;
}) {
  const err = useMemo(() => normalizeErrors(errors), [errors]);
  const [rulesText, setRulesText] = useState(() => JSON.stringify({ pipelines: value.pipelines ?? [], uplink: value.uplink ?? {} }, null, 2));
  const [rulesErr, setRulesErr] = useState<string | null>(null);
  const shown = new Set<string>();
  const devices = value.devices ?? [];
  // Messages whose field is not in the form still show, in words, at the top.
  const known = (k: string) => /^devices\[\d+\](\.(name|adapter|modbus(\.host|\.port)?|groups(\[\d+\](\.(name|intervalMs|tags(\[\d+\]\.(name|address|dataType|unit|signal(\.kind)?))?))?)?))?$/.test(k);
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
          set={(f) => onChange({ ...value, devices: devices.map((x, j) => (j === i ? f(x) : x)) })}
          remove={() => onChange({ ...value, devices: devices.filter((_, j) => j !== i) })}
        />
      ))}
      {!disabled && (
        <div className="row">
          <Button onClick={() => onChange({ ...value, devices: [...devices, newDevice(devices.length + 1, 'simulator')] })}>+ Add simulated device</Button>
          <Button onClick={() => onChange({ ...value, devices: [...devices, newDevice(devices.length + 1, 'modbusTcp')] })}>+ Add Modbus device</Button>
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
