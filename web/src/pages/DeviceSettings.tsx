// The adapter-specific part of a device in the config editor: Modbus TCP
// and RTU-over-TCP (host, port), Modbus RTU (the serial line), OPC UA
// (endpoint, security, credential, pinned server certificate). Error keys
// are the api's paths below the device (`opcUa.endpoint`, `serial.baudRate`).
import type { AdapterKind, Device, SecurityMode, SecurityPolicy, SerialSettings } from '../api/types';
import { Field } from '../ui/kit';

export const ADAPTERS: [AdapterKind, string][] = [
  ['simulator', 'Simulator'],
  ['modbusTcp', 'Modbus TCP'],
  ['modbusRtu', 'Modbus RTU (serial line)'],
  ['modbusRtuOverTcp', 'Modbus RTU over TCP (serial device server)'],
  ['opcUa', 'OPC UA'],
];

export const SECURITY_POLICIES: [SecurityPolicy, string][] = [
  ['none', 'None'],
  ['basic256Sha256', 'Basic256Sha256'],
  ['aes128Sha256RsaOaep', 'Aes128_Sha256_RsaOaep'],
  ['aes256Sha256RsaPss', 'Aes256_Sha256_RsaPss'],
];
export const SECURITY_MODES: [SecurityMode, string][] = [
  ['none', 'None'],
  ['sign', 'Sign'],
  ['signAndEncrypt', 'Sign and encrypt'],
];
export const BAUD_RATES = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200];

/** What a tag's address looks like for a device of this adapter. */
export function addressHint(adapter: AdapterKind): string | undefined {
  switch (adapter) {
    case 'opcUa':
      return 'OPC UA NodeId, e.g. ns=2;s=Pump1.Flow or ns=2;i=1001 (also g= and b=)';
    case 'simulator':
      return undefined;
    default:
      return 'SLAVE!AREAADDRESS, e.g. 1!400001 (#BB for byte order)';
  }
}

const DEFAULT_SERIAL: SerialSettings = { port: '/dev/ttyUSB0', baudRate: 9600, parity: 'none', dataBits: 8, stopBits: 1 };

/** Switch a device to another adapter: its settings block follows, the rest stays. */
export function withAdapter(d: Device, adapter: AdapterKind): Device {
  const tcp = adapter === 'modbusTcp' || adapter === 'modbusRtuOverTcp';
  return {
    ...d,
    adapter,
    modbus: tcp ? d.modbus ?? { host: '', port: 502 } : undefined,
    serial: adapter === 'modbusRtu' ? d.serial ?? { ...DEFAULT_SERIAL } : undefined,
    opcUa: adapter === 'opcUa' ? d.opcUa ?? { endpoint: 'opc.tcp://', securityPolicy: 'none', securityMode: 'none' } : undefined,
    simulator: adapter === 'simulator' ? d.simulator ?? { seed: 1 } : undefined,
    // Subscriptions and deadbands are OPC UA's.
    groups: adapter === 'opcUa' ? d.groups : d.groups.map(({ mode: _m, deadband: _d, ...g }) => g),
  };
}

/** An empty input is "not set" (the api's default), not zero. */
export function optNum(v: string): number | undefined {
  return v === '' ? undefined : Number(v);
}

/** A field's own message and its block's (e.g. `opcUa` as a whole), both shown. */
function both(a?: string, b?: string): string | undefined {
  return [a, b].filter(Boolean).join('; ') || undefined;
}

type SetDevice = (f: (d: Device) => Device) => void;
type Props = { d: Device; e: (k: string) => string | undefined; set: SetDevice; disabled: boolean };

export function ModbusTcpFields({ d, e, set, disabled }: Props) {
  const m = d.modbus ?? { host: '', port: 502 };
  const put = (patch: Partial<typeof m>) => set((x) => ({ ...x, modbus: { host: '', port: 502, ...x.modbus, ...patch } }));
  return (
    <>
      <Field label="Host" error={both(e('modbus.host'), e('modbus'))}>{(p) => <input {...p} disabled={disabled} value={m.host} onChange={(ev) => put({ host: ev.target.value })} />}</Field>
      <Field label="Port" error={e('modbus.port')}>{(p) => <input {...p} disabled={disabled} type="number" value={m.port} onChange={(ev) => put({ port: Number(ev.target.value) })} />}</Field>
      <Field label="Timeout (ms)" error={e('modbus.timeoutMs')}>{(p) => <input {...p} disabled={disabled} type="number" placeholder="default" value={m.timeoutMs ?? ''} onChange={(ev) => put({ timeoutMs: optNum(ev.target.value) })} />}</Field>
      <Field label="Retries" error={e('modbus.retries')}>{(p) => <input {...p} disabled={disabled} type="number" placeholder="default" value={m.retries ?? ''} onChange={(ev) => put({ retries: optNum(ev.target.value) })} />}</Field>
    </>
  );
}

export function SerialFields({ d, e, set, disabled }: Props) {
  const s = d.serial ?? DEFAULT_SERIAL;
  const put = (patch: Partial<SerialSettings>) => set((x) => ({ ...x, serial: { ...DEFAULT_SERIAL, ...x.serial, ...patch } }));
  return (
    <>
      <Field label="Serial port" hint="e.g. /dev/ttyUSB0; devices on one port share the line and its settings" error={both(e('serial.port'), e('serial'))}>{(p) => <input {...p} disabled={disabled} value={s.port} onChange={(ev) => put({ port: ev.target.value })} />}</Field>
      <Field label="Baud rate" error={e('serial.baudRate')}>
        {(p) => <select {...p} disabled={disabled} value={s.baudRate ?? 9600} onChange={(ev) => put({ baudRate: Number(ev.target.value) })}>{[...new Set([...BAUD_RATES, s.baudRate ?? 9600])].sort((a, b) => a - b).map((b) => <option key={b} value={b}>{b}</option>)}</select>}
      </Field>
      <Field label="Parity" error={e('serial.parity')}>
        {(p) => <select {...p} disabled={disabled} value={s.parity ?? 'none'} onChange={(ev) => put({ parity: ev.target.value as SerialSettings['parity'] })}><option value="none">None</option><option value="even">Even</option><option value="odd">Odd</option></select>}
      </Field>
      <Field label="Data bits" error={e('serial.dataBits')}>
        {(p) => <select {...p} disabled={disabled} value={s.dataBits ?? 8} onChange={(ev) => put({ dataBits: Number(ev.target.value) })}><option value={8}>8</option><option value={7}>7</option></select>}
      </Field>
      <Field label="Stop bits" error={e('serial.stopBits')}>
        {(p) => <select {...p} disabled={disabled} value={s.stopBits ?? 1} onChange={(ev) => put({ stopBits: Number(ev.target.value) })}><option value={1}>1</option><option value={2}>2</option></select>}
      </Field>
      <Field label="Inter-frame delay (ms)" hint="empty: 3.5 characters at the baud rate" error={e('serial.interFrameDelayMs')}>{(p) => <input {...p} disabled={disabled} type="number" placeholder="auto" value={s.interFrameDelayMs ?? ''} onChange={(ev) => put({ interFrameDelayMs: optNum(ev.target.value) })} />}</Field>
      <Field label="Timeout (ms)" error={e('serial.timeoutMs')}>{(p) => <input {...p} disabled={disabled} type="number" placeholder="500" value={s.timeoutMs ?? ''} onChange={(ev) => put({ timeoutMs: optNum(ev.target.value) })} />}</Field>
      <Field label="Retries" error={e('serial.retries')}>{(p) => <input {...p} disabled={disabled} type="number" placeholder="default" value={s.retries ?? ''} onChange={(ev) => put({ retries: optNum(ev.target.value) })} />}</Field>
    </>
  );
}

/** `credentials`: the project's credential names (a picker); undefined: typed by hand. */
export function OpcUaFields({ d, e, set, disabled, credentials }: Props & { credentials?: string[] }) {
  const o = d.opcUa ?? { endpoint: '' };
  const put = (patch: Partial<typeof o>) => set((x) => ({ ...x, opcUa: { endpoint: '', ...x.opcUa, ...patch } }));
  const policy = o.securityPolicy ?? 'none';
  // The api requires mode none exactly with policy none: keep them in step.
  const setPolicy = (p: SecurityPolicy) =>
    put({ securityPolicy: p, securityMode: p === 'none' ? 'none' : o.securityMode && o.securityMode !== 'none' ? o.securityMode : 'signAndEncrypt' });
  const names = credentials && o.credential && !credentials.includes(o.credential) ? [...credentials, o.credential] : credentials;
  return (
    <>
      <Field label="Endpoint" hint="opc.tcp://host:port/path" error={e('opcUa.endpoint')}>{(p) => <input {...p} disabled={disabled} value={o.endpoint} onChange={(ev) => put({ endpoint: ev.target.value })} />}</Field>
      <Field label="Security policy" error={e('opcUa.securityPolicy')}>
        {(p) => <select {...p} disabled={disabled} value={policy} onChange={(ev) => setPolicy(ev.target.value as SecurityPolicy)}>{SECURITY_POLICIES.map(([v, l]) => <option key={v} value={v}>{l}</option>)}</select>}
      </Field>
      <Field label="Security mode" error={both(e('opcUa.securityMode'), e('opcUa'))}>
        {(p) => <select {...p} disabled={disabled} value={o.securityMode ?? 'none'} onChange={(ev) => put({ securityMode: ev.target.value as SecurityMode })}>{SECURITY_MODES.map(([v, l]) => <option key={v} value={v} disabled={(policy === 'none') !== (v === 'none')}>{l}</option>)}</select>}
      </Field>
      <Field label="Credential" hint="a login from the project's credentials; none: anonymous" error={e('opcUa.credential')}>
        {(p) =>
          names ? (
            <select {...p} disabled={disabled} value={o.credential ?? ''} onChange={(ev) => put({ credential: ev.target.value || undefined })}>
              <option value="">None (anonymous)</option>
              {names.map((n) => <option key={n} value={n}>{credentials?.includes(n) ? n : `${n} (missing)`}</option>)}
            </select>
          ) : (
            <input {...p} disabled={disabled} placeholder="anonymous" value={o.credential ?? ''} onChange={(ev) => put({ credential: ev.target.value || undefined })} />
          )
        }
      </Field>
      <Field label="Server certificate SHA-256" hint="pins the server: 64 hex digits (weir-agent opcua browse prints it)" error={e('opcUa.serverCertificateSha256')}>{(p) => <input {...p} disabled={disabled} placeholder="not pinned" value={o.serverCertificateSha256 ?? ''} onChange={(ev) => put({ serverCertificateSha256: ev.target.value.trim().toLowerCase() || undefined })} />}</Field>
      <Field label="Timeout (ms)" error={e('opcUa.timeoutMs')}>{(p) => <input {...p} disabled={disabled} type="number" placeholder="5000" value={o.timeoutMs ?? ''} onChange={(ev) => put({ timeoutMs: optNum(ev.target.value) })} />}</Field>
    </>
  );
}

/** The error paths below a device that the form shows beside a field. */
export const SHOWN_DEVICE_FIELDS =
  /^(name|adapter|modbus(\.(host|port|timeoutMs|retries))?|serial(\.(port|baudRate|parity|dataBits|stopBits|interFrameDelayMs|timeoutMs|retries))?|opcUa(\.(endpoint|securityPolicy|securityMode|credential|serverCertificateSha256|timeoutMs))?)$/;
