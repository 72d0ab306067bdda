// The config editor for the adapters of issue 22: Modbus RTU (serial line),
// Modbus RTU over TCP, OPC UA (endpoint, security, credential picker, pinned
// certificate), group mode poll/subscribe with deadband, address hints.
import { describe, expect, it } from 'vitest';
import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useState } from 'react';
import { ConfigEditor } from '../pages/ConfigEditor';
import type { Device, GatewayConfig } from '../api/types';

function Harness({ device, errors = {}, credentials }: { device: Device; errors?: Record<string, string>; credentials?: string[] }) {
  const [cfg, setCfg] = useState<GatewayConfig>({ devices: [device] });
  return (
    <>
      <ConfigEditor value={cfg} onChange={setCfg} errors={errors} credentials={credentials} />
      <pre data-testid="cfg">{JSON.stringify(cfg)}</pre>
    </>
  );
}

const current = (): GatewayConfig => JSON.parse(screen.getByTestId('cfg').textContent ?? '{}');

const opcua: Device = {
  name: 'scada',
  adapter: 'opcUa',
  opcUa: { endpoint: 'opc.tcp://10.0.0.7:4840/plant', securityPolicy: 'none', securityMode: 'none' },
  groups: [{ name: 'fast', intervalMs: 500, tags: [{ name: 'flow', address: 'ns=2;s=Pump1.Flow', dataType: 'float64' }] }],
};

const modbus: Device = {
  name: 'meter',
  adapter: 'modbusTcp',
  modbus: { host: '10.0.0.5', port: 502 },
  groups: [{ name: 'g', intervalMs: 1000, tags: [{ name: 'flow', address: '1!400001#BB', dataType: 'float32' }] }],
};

describe('OPC UA devices', () => {
  it('pick a credential from the project, set security, subscribe with a deadband', async () => {
    render(<Harness device={opcua} credentials={['scada-login', 'spare']} />);
    expect(screen.getByLabelText('Address')).toHaveAccessibleDescription(/ns=2;s=Pump1\.Flow/);
    const cred = screen.getByLabelText('Credential');
    expect(within(cred).getAllByRole('option').map((o) => o.textContent)).toEqual(['None (anonymous)', 'scada-login', 'spare']);
    await userEvent.selectOptions(cred, 'scada-login');
    expect(current().devices[0].opcUa?.credential).toBe('scada-login');
    await userEvent.selectOptions(cred, 'None (anonymous)');
    expect(current().devices[0].opcUa?.credential).toBeUndefined();

    // A policy other than none needs a mode other than none: kept in step.
    await userEvent.selectOptions(screen.getByLabelText('Security policy'), 'Basic256Sha256');
    expect(current().devices[0].opcUa).toMatchObject({ securityPolicy: 'basic256Sha256', securityMode: 'signAndEncrypt' });
    await userEvent.selectOptions(screen.getByLabelText('Security mode'), 'Sign');
    expect(current().devices[0].opcUa?.securityMode).toBe('sign');
    await userEvent.selectOptions(screen.getByLabelText('Security policy'), 'None');
    expect(current().devices[0].opcUa).toMatchObject({ securityPolicy: 'none', securityMode: 'none' });

    await userEvent.type(screen.getByLabelText('Server certificate SHA-256'), 'AB'.repeat(32));
    expect(current().devices[0].opcUa?.serverCertificateSha256).toBe('ab'.repeat(32));

    expect(screen.queryByLabelText('Deadband')).toBeNull();
    await userEvent.selectOptions(screen.getByLabelText('Mode'), 'Subscribe');
    expect(screen.getByLabelText('Sample every (ms)')).toHaveValue(500);
    await userEvent.type(screen.getByLabelText('Deadband'), '0.5');
    expect(current().devices[0].groups[0]).toMatchObject({ mode: 'subscribe', deadband: 0.5 });
    await userEvent.selectOptions(screen.getByLabelText('Mode'), 'Poll (Read)');
    expect(current().devices[0].groups[0].deadband).toBeUndefined();
    expect(screen.getByLabelText('Poll every (ms)')).toBeInTheDocument();
  });

  it('a credential the project lacks shows as missing; errors show beside their field', () => {
    render(
      <Harness
        device={{ ...opcua, opcUa: { ...opcua.opcUa!, credential: 'gone' } }}
        credentials={['scada-login']}
        errors={{ 'spec.devices[0].opcUa.endpoint': 'must start with opc.tcp://', 'spec.devices[0].opcUa': "securityMode must be 'none' exactly when securityPolicy is 'none'" }}
      />,
    );
    expect(screen.getByLabelText('Credential')).toHaveValue('gone');
    expect(screen.getByRole('option', { name: 'gone (missing)' })).toBeInTheDocument();
    expect(screen.getByLabelText('Endpoint')).toHaveAccessibleDescription(/must start with opc\.tcp:\/\//);
    // The message about the OPC UA block as a whole shows on the mode it is about.
    expect(screen.getByLabelText('Security mode')).toHaveAccessibleDescription(/securityMode must be 'none' exactly when securityPolicy is 'none'/);
  });

  it('without the credentials list, the name is typed', async () => {
    render(<Harness device={opcua} />);
    await userEvent.type(screen.getByLabelText('Credential'), 'plc-user');
    expect(current().devices[0].opcUa?.credential).toBe('plc-user');
  });
});

describe('Modbus RTU devices', () => {
  it('switching to the serial adapter asks for the line settings', async () => {
    render(<Harness device={modbus} errors={{ 'spec.devices[0].serial.baudRate': 'devices on /dev/ttyUSB0 disagree: 9600 and 19200' }} />);
    await userEvent.selectOptions(screen.getByLabelText('Adapter'), 'Modbus RTU (serial line)');
    expect(screen.queryByLabelText('Host')).toBeNull();
    expect(screen.getByLabelText('Serial port')).toHaveValue('/dev/ttyUSB0');
    expect(screen.getByLabelText('Baud rate')).toHaveAccessibleDescription(/disagree/);
    await userEvent.clear(screen.getByLabelText('Serial port'));
    await userEvent.type(screen.getByLabelText('Serial port'), '/dev/ttyS1');
    await userEvent.selectOptions(screen.getByLabelText('Baud rate'), '19200');
    await userEvent.selectOptions(screen.getByLabelText('Parity'), 'Even');
    await userEvent.selectOptions(screen.getByLabelText('Stop bits'), '2');
    await userEvent.type(screen.getByLabelText('Inter-frame delay (ms)'), '4');
    await userEvent.type(screen.getByLabelText('Timeout (ms)'), '300');
    const d = current().devices[0];
    expect(d.adapter).toBe('modbusRtu');
    expect(d.modbus).toBeUndefined();
    expect(d.serial).toEqual({ port: '/dev/ttyS1', baudRate: 19200, parity: 'even', dataBits: 8, stopBits: 2, interFrameDelayMs: 4, timeoutMs: 300 });
    expect(screen.getByLabelText('Address')).toHaveAccessibleDescription(/1!400001/);
    // Mode and deadband are OPC UA's only.
    expect(screen.queryByLabelText('Mode')).toBeNull();
  });

  it('RTU over TCP keeps host and port', async () => {
    render(<Harness device={modbus} />);
    await userEvent.selectOptions(screen.getByLabelText('Adapter'), 'Modbus RTU over TCP (serial device server)');
    expect(screen.getByLabelText('Host')).toHaveValue('10.0.0.5');
    const d = current().devices[0];
    expect(d).toMatchObject({ adapter: 'modbusRtuOverTcp', modbus: { host: '10.0.0.5', port: 502 } });
    expect(d.serial).toBeUndefined();
  });

  it('adds an OPC UA device with a node-id tag', async () => {
    render(<Harness device={modbus} />);
    await userEvent.click(screen.getByRole('button', { name: '+ Add OPC UA device' }));
    const d = current().devices[1];
    expect(d.adapter).toBe('opcUa');
    expect(d.opcUa?.endpoint).toBe('opc.tcp://');
    expect(d.groups[0].tags[0].address).toMatch(/^ns=2;s=/);
  });
});

describe('tag display', () => {
  it('decimals are set, cleared, and a refusal shows beside the field', async () => {
    const { unmount } = render(<Harness device={modbus} />);
    const field = screen.getByLabelText('Decimals');
    await userEvent.type(field, '2');
    expect(current().devices[0].groups[0].tags[0].decimals).toBe(2);
    await userEvent.clear(field);
    expect(current().devices[0].groups[0].tags[0].decimals).toBeUndefined();
    unmount();
    render(<Harness device={modbus} errors={{ 'devices[0].groups[0].tags[0].decimals': 'must be at most 15' }} />);
    expect(screen.getByText('must be at most 15')).toBeInTheDocument();
  });
});
