// The gateway's trend chart without React: which tags to ask for, how the
// api's answer (raw readings or buckets, several series) becomes uPlot's
// aligned data with one y-axis per unit, the zoom history, and the CSV of
// what is shown.
import type { DataGap, RawReading, Series, SeriesPoint, TagSeries } from '../api/types';
import { toCsv } from './csv';
import { fmtMeasure } from './number';

/** Most series the api takes in one request (`MAX_SERIES` there). */
export const MAX_SERIES = 8;

/** A tag of the gateway's config the user may chart. */
export interface TagChoice {
  /** `device/tag` (neither name may contain '/'). */
  id: string;
  device: string;
  tag: string;
  unit?: string | null;
  decimals?: number | null;
}

/** The api query for the chosen series over a window (`step` only for buckets). */
export function seriesQuery(ids: string[], from: Date, to: Date, step?: string): { series: string[]; from: string; to: string; step?: string } {
  const q: { series: string[]; from: string; to: string; step?: string } = { series: ids.slice(0, MAX_SERIES), from: from.toISOString(), to: to.toISOString() };
  if (step) q.step = step;
  return q;
}

/** One y-axis: the series that share a unit (no unit is a unit of its own). */
export interface Axis {
  /** uPlot scale key. */
  scale: string;
  unit: string;
  /** Series ids on this axis, in the order shown. */
  ids: string[];
}

/** Group series by unit, in the order the units first appear. */
export function axesFor(series: { id: string; unit?: string | null }[]): Axis[] {
  const axes: Axis[] = [];
  for (const s of series) {
    const unit = s.unit ?? '';
    let a = axes.find((x) => x.unit === unit);
    if (!a) {
      a = { scale: `y${axes.length}`, unit, ids: [] };
      axes.push(a);
    }
    a.ids.push(s.id);
  }
  return axes;
}

/** A series on the chart: its label and values aligned to the shared times. */
export interface ChartLine {
  id: string;
  label: string;
  unit: string;
  decimals?: number | null;
  scale: string;
  /** `null` breaks the line (no bucket, a read error, a data gap); `undefined`: this series has no point at that time. */
  values: (number | null | undefined)[];
  /** Read errors in the range (raw answers only). */
  errors: number;
  /** Points of this series in the answer. */
  count: number;
}

/** Readings lost for good between two times (s; ±Infinity: no stored frame on that side). */
export interface GapBand {
  from: number;
  to: number;
  /** On the band: `gap: seq 100–149`. */
  short: string;
  label: string;
}

/** The api's data gaps as bands: `seq 100–149 lost (150 frames)`. */
export function gapBands(gaps: DataGap[] | undefined): GapBand[] {
  return (gaps ?? []).map((g) => {
    const from = g.ts_from ? Date.parse(g.ts_from) / 1000 : -Infinity;
    const to = g.ts_to ? Date.parse(g.ts_to) / 1000 : Infinity;
    const frames = g.seq_to - g.seq_from + 1;
    const seqs = frames === 1 ? `seq ${g.seq_from}` : `seq ${g.seq_from}–${g.seq_to}`;
    return { from, to, short: `gap: ${seqs}`, label: `Data gap: ${seqs} lost (${frames} frame${frames === 1 ? '' : 's'}, ${g.reason})` };
  });
}

export const seriesId = (s: Pick<TagSeries, 'device' | 'tag'>) => (s.device ? `${s.device}/${s.tag}` : s.tag);
export const seriesLabel = (s: Pick<TagSeries, 'device' | 'tag' | 'unit'>) => `${s.device ? `${s.device} · ` : ''}${s.tag}${s.unit ? ` (${s.unit})` : ''}`;

/**
 * One series as (time s, value) pairs with `null` where the line must
 * break: a missing bucket, a data gap between two points (even two
 * neighbouring buckets), a read error. A lost range is never drawn as a
 * line across it.
 */
export function seriesPoints(s: TagSeries, bucketed: boolean, step: number, gaps: GapBand[]): [number, number | null][] {
  const src: { t: string; v: number | null }[] = bucketed
    ? s.points.map((p: SeriesPoint) => ({ t: p.t, v: p.avg ?? null }))
    : s.readings.map((r: RawReading) => ({ t: r.t, v: r.error ? null : (r.value ?? null) }));
  const out: [number, number | null][] = [];
  let prev: number | undefined;
  for (const p of src) {
    const ms = Date.parse(p.t);
    if (Number.isNaN(ms)) continue;
    const t = ms / 1000;
    if (prev !== undefined) {
      // Bucket `b` holds b..b+step; a raw reading holds only its instant.
      const end = bucketed ? prev + step : prev;
      const missing = bucketed && step > 0 && t - prev > step * 1.5;
      const lost = gaps.some((g) => g.from < t && g.to >= end);
      if (missing || lost) out.push([bucketed && end < t ? end : (prev + t) / 2, null]);
    }
    out.push([t, p.v]);
    prev = t;
  }
  return out;
}

/** The api's answer as uPlot data: shared times, one line per series, one axis per unit. */
export function toChart(r: Series): { times: number[]; lines: ChartLine[]; axes: Axis[]; gaps: GapBand[]; bucketed: boolean } {
  const bucketed = r.mode === 'buckets';
  const gaps = gapBands(r.gaps);
  const axes = axesFor(r.series.map((s) => ({ id: seriesId(s), unit: s.unit })));
  const per = r.series.map((s) => seriesPoints(s, bucketed, r.step_seconds, gaps));
  const times = [...new Set(per.flatMap((ps) => ps.map(([t]) => t)))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const lines = r.series.map((s, k): ChartLine => {
    const values: (number | null | undefined)[] = new Array(times.length).fill(undefined);
    for (const [t, v] of per[k]) values[at.get(t)!] = v;
    const id = seriesId(s);
    return {
      id,
      label: seriesLabel(s),
      unit: s.unit ?? '',
      decimals: s.decimals,
      scale: axes.find((a) => a.ids.includes(id))!.scale,
      values,
      errors: bucketed ? 0 : s.readings.filter((x) => x.error).length,
      count: bucketed ? s.points.length : s.readings.length,
    };
  });
  return { times, lines, axes, gaps, bucketed };
}

/** A legend value: the tag's decimals and unit, as tables and alerts show it. */
export const legendValue = (l: Pick<ChartLine, 'decimals' | 'unit'>, v: number | null | undefined) => fmtMeasure(v, l.decimals, l.unit);

/** A time window, ms since the epoch. */
export interface Window {
  from: number;
  to: number;
}

/**
 * The zoom history: each drag pushes the window it selects (narrower than
 * a second is ignored: a click, not a drag); back pops one, reset clears.
 */
export function zoomTo(stack: Window[], fromS: number, toS: number): Window[] {
  const [a, b] = fromS <= toS ? [fromS, toS] : [toS, fromS];
  if (!Number.isFinite(a) || !Number.isFinite(b) || b - a < 1) return stack;
  return [...stack, { from: Math.round(a * 1000), to: Math.round(b * 1000) }];
}
export const zoomBack = (stack: Window[]) => stack.slice(0, -1);

/** Every shown series as CSV rows, series after series, as the api answered them. */
export function seriesCsv(r: Series): string {
  if (r.mode === 'buckets') {
    return toCsv(
      ['bucket_start', 'device', 'tag', 'avg', 'min', 'max', 'count', 'unit'],
      r.series.flatMap((s) => s.points.map((p) => [p.t, s.device ?? '', s.tag, p.avg, p.min, p.max, p.count, s.unit ?? ''])),
    );
  }
  return toCsv(
    ['time', 'device', 'tag', 'value', 'value_text', 'error_code', 'error', 'unit'],
    r.series.flatMap((s) => s.readings.map((x) => [x.t, s.device ?? '', s.tag, x.value, x.value_text, x.error?.code, x.error?.meaning, s.unit ?? ''])),
  );
}
