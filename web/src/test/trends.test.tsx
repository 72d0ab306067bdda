// Issue 23, trends: several tags across devices on one chart, one y-axis
// per unit, the api query with repeated `series`, raw readings and
// buckets as uPlot data, CSV of every shown series, and the zoom history.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { fx, json, me, mockApi, problem, renderAt, Route } from './util';
import { GatewayDetail } from '../pages/Gateways';
import type { Schemas } from '../api/http';
import { axesFor, legendValue, seriesCsv, seriesQuery, toChart, zoomBack, zoomTo } from '../lib/trends';

afterEach(() => {
  vi.unstubAllGlobals();
});

type Series = Schemas['Series'];
const T0 = Date.parse('2026-01-01T00:00:00Z') / 1000;
const P = '/api/v1/orgs/rw/projects/north';
const viewer = me({ memberships: [{ org: 'rw', project: 'north', role: 'project-viewer' }] });
const detail = <Route path="/o/:org/p/:project/gateways/:gateway/:tab?" element={<GatewayDetail />} />;

const config = {
  devices: [
    { name: 'dosing', adapter: 'modbusTcp', modbus: { host: '10.0.0.5' }, groups: [{ name: 'fast', intervalMs: 1000, tags: [
      { name: 'chlorine', address: '1!400001', dataType: 'float32', unit: 'mg/L', decimals: 2 },
      { name: 'residual', address: '1!400003', dataType: 'float32', unit: 'mg/L', decimals: 1 },
    ] }] },
    { name: 'filter', adapter: 'modbusTcp', modbus: { host: '10.0.0.6' }, groups: [{ name: 'fast', intervalMs: 1000, tags: [{ name: 'turbidity', address: '1!400001', dataType: 'float32', unit: 'NTU', decimals: 3 }] }] },
  ],
};

const raw: Series = {
  gateway: 'north-pump', from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:01:00Z', mode: 'raw', step_seconds: 1, raw_limit: 2000, gaps: [],
  series: [
    { device: 'dosing', tag: 'chlorine', unit: 'mg/L', decimals: 2, points: [], readings: [{ t: '2026-01-01T00:00:00Z', value: 0.5 }, { t: '2026-01-01T00:00:10Z', value: 0.516 }] },
    { device: 'filter', tag: 'turbidity', unit: 'NTU', decimals: 3, points: [], readings: [
      { t: '2026-01-01T00:00:05Z', value: 0.1 },
      { t: '2026-01-01T00:00:07Z', value: null, error: { code: 1001, meaning: 'the device did not answer in time' } },
      { t: '2026-01-01T00:00:10Z', value: 0.12 },
    ] },
  ],
};

const buckets: Series = {
  gateway: 'north-pump', from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:05:00Z', mode: 'buckets', step_seconds: 60, raw_limit: 2000, gaps: [],
  series: [
    { device: 'dosing', tag: 'chlorine', unit: 'mg/L', decimals: 2, readings: [], points: [{ t: '2026-01-01T00:00:00Z', avg: 0.5, min: 0.4, max: 0.6, count: 60 }, { t: '2026-01-01T00:03:00Z', avg: 0.7, min: 0.6, max: 0.8, count: 60 }] },
    { device: 'filter', tag: 'turbidity', unit: 'NTU', decimals: 3, readings: [], points: [{ t: '2026-01-01T00:01:00Z', avg: 0.1, min: 0.1, max: 0.1, count: 1 }] },
  ],
};

describe('trend chart data', () => {
  it('gives each unit its own axis and lets series of one unit share it', () => {
    const axes = axesFor([{ id: 'dosing/chlorine', unit: 'mg/L' }, { id: 'filter/turbidity', unit: 'NTU' }, { id: 'dosing/residual', unit: 'mg/L' }, { id: 'pump/running' }]);
    expect(axes).toEqual([
      { scale: 'y0', unit: 'mg/L', ids: ['dosing/chlorine', 'dosing/residual'] },
      { scale: 'y1', unit: 'NTU', ids: ['filter/turbidity'] },
      { scale: 'y2', unit: '', ids: ['pump/running'] },
    ]);
    expect(axesFor([{ id: 'a/x', unit: 'm' }, { id: 'b/y', unit: 'm' }])).toHaveLength(1);
  });

  it('builds the query: each chosen series once as device/tag, a step only when given, at most 8', () => {
    const from = new Date('2026-01-01T00:00:00Z');
    const to = new Date('2026-01-01T01:00:00Z');
    expect(seriesQuery(['dosing/chlorine', 'filter/turbidity'], from, to)).toEqual({ series: ['dosing/chlorine', 'filter/turbidity'], from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T01:00:00.000Z' });
    expect(seriesQuery(['a/b'], from, to, '15s').step).toBe('15s');
    expect(seriesQuery(Array.from({ length: 10 }, (_, i) => `d/t${i}`), from, to).series).toHaveLength(8);
  });

  it('aligns raw readings of two series on shared times; a read error breaks the line', () => {
    const c = toChart(raw);
    expect(c.bucketed).toBe(false);
    expect(c.times).toEqual([T0, T0 + 5, T0 + 7, T0 + 10]);
    expect(c.lines.map((l) => l.values)).toEqual([
      [0.5, undefined, undefined, 0.516],
      [undefined, 0.1, null, 0.12],
    ]);
    expect(c.lines.map((l) => [l.label, l.scale, l.errors])).toEqual([['dosing · chlorine (mg/L)', 'y0', 0], ['filter · turbidity (NTU)', 'y1', 1]]);
    expect(c.axes.map((a) => a.unit)).toEqual(['mg/L', 'NTU']);
    // The legend shows the tag's decimals and unit.
    expect(legendValue(c.lines[0], 0.516)).toBe('0.52 mg/L');
    expect(legendValue(c.lines[1], 0.1)).toBe('0.100 NTU');
  });

  it('draws buckets with a missing bucket as a break, per series', () => {
    const c = toChart(buckets);
    expect(c.bucketed).toBe(true);
    expect(c.times).toEqual([T0, T0 + 60, T0 + 180]);
    expect(c.lines[0].values).toEqual([0.5, null, 0.7]);
    expect(c.lines[1].values).toEqual([undefined, 0.1, undefined]);
  });

  it('exports every shown series as CSV, raw readings with their error codes, or buckets', () => {
    expect(seriesCsv(raw)).toBe(
      'time,device,tag,value,value_text,error_code,error,unit\r\n' +
        '2026-01-01T00:00:00Z,dosing,chlorine,0.5,,,,mg/L\r\n' +
        '2026-01-01T00:00:10Z,dosing,chlorine,0.516,,,,mg/L\r\n' +
        '2026-01-01T00:00:05Z,filter,turbidity,0.1,,,,NTU\r\n' +
        '2026-01-01T00:00:07Z,filter,turbidity,,,1001,the device did not answer in time,NTU\r\n' +
        '2026-01-01T00:00:10Z,filter,turbidity,0.12,,,,NTU\r\n',
    );
    expect(seriesCsv(buckets)).toBe(
      'bucket_start,device,tag,avg,min,max,count,unit\r\n' +
        '2026-01-01T00:00:00Z,dosing,chlorine,0.5,0.4,0.6,60,mg/L\r\n' +
        '2026-01-01T00:03:00Z,dosing,chlorine,0.7,0.6,0.8,60,mg/L\r\n' +
        '2026-01-01T00:01:00Z,filter,turbidity,0.1,0.1,0.1,1,NTU\r\n',
    );
  });

  it('zooms to the dragged window (either direction), steps back and resets', () => {
    let z = zoomTo([], T0 + 30, T0 + 10);
    expect(z).toEqual([{ from: (T0 + 10) * 1000, to: (T0 + 30) * 1000 }]);
    z = zoomTo(z, T0 + 12.5, T0 + 20);
    expect(z[1]).toEqual({ from: (T0 + 12.5) * 1000, to: (T0 + 20) * 1000 });
    // A click is not a drag.
    expect(zoomTo(z, T0 + 15, T0 + 15.2)).toBe(z);
    expect(zoomBack(z)).toEqual([z[0]]);
    expect(zoomBack([])).toEqual([]);
  });
});

describe('trend chart on the gateway page', () => {
  function api(answer: (u: URL) => Response) {
    return mockApi((_m, u) => {
      if (u.pathname === `${P}/gateways/north-pump/series`) return answer(u);
      if (u.pathname === `${P}/gateways/north-pump/latest`) return json({ gateway: 'north-pump', version: 1, devices: [] });
      if (u.pathname === `${P}/gateways/north-pump`) return json(fx.gateway({ spec: config } as Partial<Schemas['Gateway']>));
      if (u.pathname === `${P}/rollout`) return json([]);
      if (u.pathname === `${P}/clusters`) return json([]);
      if (u.pathname === `${P}/fleet-events`) return json([]);
      return undefined;
    });
  }

  it('asks for every ticked tag across devices in one request and draws one axis per unit', async () => {
    const calls = api((u) => json(u.searchParams.getAll('series').length > 1 ? raw : { ...raw, series: [raw.series[0]] }));
    renderAt('/o/rw/p/north/gateways/north-pump/readings', detail, viewer);
    const card = await screen.findByRole('region', { name: 'Trends' });
    await waitFor(() => expect(within(card).getByTestId('chart')).toHaveAttribute('data-axes', '1'));
    await userEvent.click(within(card).getByLabelText('filter · turbidity (NTU)'));
    await waitFor(() => expect(within(card).getByTestId('chart')).toHaveAttribute('data-axes', '2'));
    expect(within(card).getByTestId('chart')).toHaveAttribute('data-series', '2');
    const asked = calls.filter((c) => c.path.includes('/series?')).map((c) => new URL(c.path, 'http://x').searchParams.getAll('series'));
    expect(asked).toContainEqual(['dosing/chlorine', 'filter/turbidity']);
    expect(within(card).getByTestId('series-mode')).toHaveTextContent('Every stored reading (raw). filter · turbidity (NTU): 1 read error (shown as breaks).');
    // Same unit: still two axes for three series.
    await userEvent.click(within(card).getByLabelText('dosing · residual (mg/L)'));
    await waitFor(() => expect(calls.some((c) => new URL(c.path, 'http://x').searchParams.getAll('series').length === 3)).toBe(true));
  });

  it('says when the chosen tags have no readings, and gives the api’s reason when there is no historian', async () => {
    let down = false;
    api(() => (down ? problem(503, 'unavailable', 'no historian database is configured: start weir-api with WEIR_HISTORIAN_URL') : json({ ...raw, series: [{ ...raw.series[0], readings: [] }] })));
    renderAt('/o/rw/p/north/gateways/north-pump/readings', detail, viewer);
    const card = await screen.findByRole('region', { name: 'Trends' });
    expect(await within(card).findByText('No readings in this range')).toBeInTheDocument();
    expect(within(card).queryByRole('button', { name: 'Export CSV' })).toBeNull();
    down = true;
    await userEvent.click(within(card).getByLabelText('filter · turbidity (NTU)'));
    expect(await within(card).findByText(/Readings cannot be shown: no historian database is configured/)).toBeInTheDocument();
    // No tag ticked: said so, nothing asked.
    await userEvent.click(within(card).getByLabelText('filter · turbidity (NTU)'));
    await userEvent.click(within(card).getByLabelText('dosing · chlorine (mg/L)'));
    expect(await within(card).findByText('No tag chosen')).toBeInTheDocument();
  });
});
