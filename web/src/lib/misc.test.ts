import { describe, expect, it } from 'vitest';
import { toCsv } from './csv';
import { slugify } from './slug';
import { conditionWords, gatewayStatus } from './words';
import { toChart } from './trends';
import type { Series } from '../api/types';

/** The api's answer for one series in buckets (the old single-tag shape). */
function one(r: { from: string; to: string; step_seconds: number; points: Series['series'][number]['points']; gaps: Series['gaps'] }): Series {
  return { gateway: 'g', from: r.from, to: r.to, mode: 'buckets', step_seconds: r.step_seconds, raw_limit: 2000, gaps: r.gaps, series: [{ device: 'd', tag: 't', points: r.points, readings: [] }] };
}

function toSeries(r: Parameters<typeof one>[0]) {
  const c = toChart(one(r));
  return { times: c.times, values: c.lines[0].values, gaps: c.gaps };
}
import { fmtAgo } from '../ui/kit';
import { installCommand, versionText } from '../pages/Gateways';
import { cleanRule, ruleWords } from '../pages/Alerts';

describe('helpers', () => {
  it('writes CSV that spreadsheets read safely', () => {
    expect(toCsv(['a', 'b'], [['x,y', 'he said "hi"'], ['=SUM(A1)', null]])).toBe('a,b\r\n"x,y","he said ""hi"""\r\n\'=SUM(A1),\r\n');
  });

  it('makes URL names', () => {
    expect(slugify('Riverside Water — Nord!')).toBe('riverside-water-nord');
    expect(slugify('Épuration 2')).toBe('epuration-2');
  });

  it('says conditions in words', () => {
    expect(conditionWords({ type: 'Ready', status: 'True', reason: 'AllNodesReady', message: '3 of 3 nodes joined' })).toEqual({ text: 'Ready: yes (all nodes ready). 3 of 3 nodes joined.', tone: 'ok' });
    expect(conditionWords({ type: 'Degraded', status: 'True', reason: 'NodeDown', message: '' }).tone).toBe('bad');
    expect(gatewayStatus('online')).toEqual({ label: 'Online', tone: 'ok' });
    expect(gatewayStatus(undefined).label).toBe('Not enrolled yet');
  });

  it('draws the api’s series: bucket averages, a missing bucket as a gap', () => {
    const api = { gateway: 'g', tag: 't', from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:05:00Z', step_seconds: 60, points: [{ t: '2026-01-01T00:00:00Z', avg: 1, count: 6 }, { t: '2026-01-01T00:01:00Z', avg: 2, count: 6 }, { t: '2026-01-01T00:04:00Z', avg: null, count: 1 }], gaps: [] };
    expect(toSeries(api)).toEqual({ times: [1767225600, 1767225660, 1767225720, 1767225840], values: [1, 2, null, null], gaps: [] });
  });

  it('breaks the line across a data gap, even between neighbouring buckets, and labels the gap', () => {
    // Buckets 00:00, 00:01, 00:02, 00:03 all hold readings; seq 100–149 were lost
    // between 00:01:30 (last frame before) and 00:02:10 (first after).
    const pts = [0, 1, 2, 3].map((m) => ({ t: `2026-01-01T00:0${m}:00Z`, avg: m, count: 6 }));
    const gap = { seq_from: 100, seq_to: 149, ts_from: '2026-01-01T00:01:30Z', ts_to: '2026-01-01T00:02:10Z', detected_at: '2026-01-01T00:03:00Z', reason: 'not-retained' };
    const api = { gateway: 'g', tag: 't', from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:05:00Z', step_seconds: 60, points: pts, gaps: [gap] };
    const s = toSeries(api);
    const t0 = 1767225600;
    expect(s.times).toEqual([t0, t0 + 60, t0 + 90, t0 + 120, t0 + 180]);
    expect(s.values).toEqual([0, 1, null, 2, 3]);
    expect(s.gaps).toEqual([{ from: t0 + 90, to: t0 + 130, short: 'gap: seq 100–149', label: 'Data gap: seq 100–149 lost (50 frames, not-retained)' }]);
    // A gap with no stored frame after it yet runs to the end of the range.
    const open = toSeries({ ...api, points: pts.slice(0, 2), gaps: [{ ...gap, ts_to: null, seq_to: 100 }] });
    expect(open.values).toEqual([0, 1]);
    expect(open.gaps[0]).toEqual({ from: t0 + 90, to: Infinity, short: 'gap: seq 100', label: 'Data gap: seq 100 lost (1 frame, not-retained)' });
  });

  it('words for time, versions, install commands and rules', () => {
    const now = Date.parse('2026-01-01T00:10:00Z');
    expect(fmtAgo('2026-01-01T00:09:30Z', now)).toBe('30 s ago');
    expect(fmtAgo(null)).toBe('never');
    expect(versionText({ desired_version: 4, applied_version: 3 }).text).toBe('runs v3, wants v4');
    expect(versionText({ desired_version: 4, applied_version: 4 }).tone).toBe('ok');
    expect(installCommand('https://weir.example', { token: 'T0K' })).toBe('weir-agent run --server https://weir.example --token T0K');
    expect(installCommand('x', { token: 't', install_command: 'given' })).toBe('given');
    expect(ruleWords({ name: 'cl', kind: 'threshold', gateway: 'north', device: 'cl2', tag: 'residual', op: '<', threshold: 0.2, for_secs: 60, severity: 'critical' })).toBe('north / cl2 / residual below 0.2 for 60 s');
    expect(ruleWords({ name: 'lost', kind: 'data_gap', gateway: 'north', for_secs: 0, severity: 'critical' })).toBe('readings of gateway north lost for good');
    // A data gap fires when recorded: no for-duration, no device or tag.
    expect(cleanRule({ name: 'lost', kind: 'data_gap', gateway: 'north', device: 'd', tag: 'x', for_secs: 60, severity: 'critical' })).toEqual({ name: 'lost', kind: 'data_gap', gateway: 'north', for_secs: 0, severity: 'critical', summary: '', labels: {}, channels: [], enabled: true });
    expect(cleanRule({ name: 'off', kind: 'gateway_offline', gateway: 'north', tag: 'x', op: '<', threshold: 1, for_secs: 30, severity: 'warning' })).toEqual({ name: 'off', kind: 'gateway_offline', gateway: 'north', for_secs: 30, severity: 'warning', summary: '', labels: {}, channels: [], enabled: true });
  });
});
