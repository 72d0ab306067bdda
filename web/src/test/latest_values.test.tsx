// The gateway's "Latest values" table: values rounded to the tag's
// decimals with its unit, the age of each reading, a read error with its
// code and meaning, tags never read, and each device's health above its tags.
import { describe, expect, it } from 'vitest';
import { render, screen, within } from '@testing-library/react';
import { fmtAge, fmtValue, LatestTable } from '../pages/LatestValues';
import type { LatestValues, TagLatest } from '../api/types';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const ago = (s: number) => new Date(NOW - s * 1000).toISOString();

function tag(p: Partial<TagLatest>): TagLatest {
  return { name: 't', data_type: 'float32', unit: null, decimals: null, writable: false, write_min: null, write_max: null, ts: ago(3), value: null, value_text: null, error: null, ...p };
}

const data: LatestValues = {
  gateway: 'north-pump',
  version: 4,
  devices: [
    {
      name: 'pump-1',
      tags: [
        tag({ name: 'flow', unit: 'm3/h', decimals: 1, value: 12.3456, ts: ago(3) }),
        tag({ name: 'running', data_type: 'bool', value: 1, ts: ago(75) }),
        tag({ name: 'pressure', unit: 'bar', decimals: 2, ts: ago(8), error: { code: 1001, meaning: 'the device did not answer in time' } }),
      ],
    },
    { name: 'dosing', tags: [tag({ name: 'cl2', unit: 'mg/L', decimals: 2, value: 0.18341134607608112, ts: ago(3 * 3600) }), tag({ name: 'spare', ts: null })] },
  ],
};

const agent = {
  devices: [
    { name: 'pump-1', state: 'degraded' as const, readings: 10, lastError: 'pressure: timeout' },
    { name: 'dosing', state: 'ok' as const, readings: 5 },
  ],
};

function row(device: string, t: string) {
  const group = screen.getByRole('rowgroup', { name: `Device ${device}` });
  const r = within(group).getAllByRole('row').find((x) => x.getAttribute('data-tag') === `${device}/${t}`);
  if (!r) throw new Error(`no row ${device}/${t}`);
  return within(r).getAllByRole('cell').map((c) => c.textContent);
}

describe('Latest values', () => {
  it('formats each reading with its decimals and unit, its age and its quality', () => {
    render(<LatestTable data={data} agent={agent} now={NOW} />);
    expect(row('pump-1', 'flow')).toEqual(['flow', '12.3 m3/h', '3 s ago', 'ok']);
    expect(row('pump-1', 'running')).toEqual(['running', 'true', '1 min ago', 'ok']);
    expect(row('pump-1', 'pressure')).toEqual(['pressure', '—', '8 s ago', 'error 1001: the device did not answer in time']);
    expect(row('dosing', 'cl2')).toEqual(['cl2', '0.18 mg/L', '3 h ago', 'ok']);
    expect(row('dosing', 'spare')).toEqual(['spare', '—', 'never read', 'no reading yet']);
  });

  it('heads each device with its health from the agent report', () => {
    render(<LatestTable data={data} agent={agent} now={NOW} />);
    const pump = screen.getByRole('rowgroup', { name: 'Device pump-1' });
    expect(within(pump).getAllByRole('row')[0]).toHaveTextContent('pump-1 Degraded pressure: timeout');
    expect(within(screen.getByRole('rowgroup', { name: 'Device dosing' })).getAllByRole('row')[0]).toHaveTextContent('dosing OK');
    render(<LatestTable data={data} agent={null} now={NOW} />);
    expect(screen.getAllByRole('rowgroup', { name: 'Device dosing' })[1]).toHaveTextContent('dosing not reported');
  });

  it('says so when the config has no tags', () => {
    render(<LatestTable data={{ gateway: 'g', version: 0, devices: [] }} agent={null} now={NOW} />);
    expect(screen.getByText('No tags to show')).toBeInTheDocument();
  });

  it('formats values and ages exactly', () => {
    expect(fmtValue(tag({ value: 3.141590118408203 }))).toBe('3.14159');
    expect(fmtValue(tag({ value: 7, data_type: 'int16', unit: 'rpm' }))).toBe('7 rpm');
    expect(fmtValue(tag({ value: 2.5, decimals: 0 }))).toBe('3');
    expect(fmtValue(tag({ value_text: '18446744073709551615', value: 18446744073709552000, data_type: 'uint64' }))).toBe('18446744073709551615');
    expect(fmtValue(tag({ value_text: 'auto', data_type: 'string' }))).toBe('auto');
    expect(fmtValue(tag({ value: 0, data_type: 'bit' }))).toBe('false');
    expect(fmtAge(ago(0), NOW)).toBe('0 s ago');
    expect(fmtAge(ago(59), NOW)).toBe('59 s ago');
    expect(fmtAge(ago(-2), NOW)).toBe('0 s ago');
  });
});
