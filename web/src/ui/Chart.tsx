// Time series chart (uPlot). Times in seconds since the epoch.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import { fmtMeasure } from '../lib/number';
import 'uplot/dist/uPlot.min.css';
import type { Series } from '../api/types';

export interface Line {
  label: string;
  values: (number | null)[];
}

/** Readings lost for good between two times (s; ±Infinity: no stored frame on that side). */
export interface GapBand {
  from: number;
  to: number;
  /** On the band: `gap: seq 100–149`. */
  short: string;
  label: string;
}

const GAP_FILL = 'rgba(180, 35, 24, 0.12)';
const GAP_TEXT = '#b42318';

/** Shade each gap and name it (a uPlot draw hook: under nothing, over the grid). */
function drawGaps(gaps: GapBand[]) {
  return (u: uPlot) => {
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    for (const g of gaps) {
      const x0 = Math.max(left, Number.isFinite(g.from) ? u.valToPos(g.from, 'x', true) : left);
      const x1 = Math.min(left + width, Number.isFinite(g.to) ? u.valToPos(g.to, 'x', true) : left + width);
      if (x1 <= x0) continue;
      ctx.fillStyle = GAP_FILL;
      ctx.fillRect(x0, top, x1 - x0, height);
      // The short label, kept inside the plot (the whole one is listed below it).
      ctx.fillStyle = GAP_TEXT;
      ctx.font = `${12 * devicePixelRatio}px sans-serif`;
      const pad = 4 * devicePixelRatio;
      const w = ctx.measureText(g.short).width;
      const x = Math.max(left + pad, Math.min(x0 + pad, left + width - w - pad));
      ctx.fillText(g.short, x, top + 14 * devicePixelRatio);
    }
    ctx.restore();
  };
}

const COLORS = ['#0b5cad', '#1f7a3a', '#b42318', '#9a6700', '#6941c6', '#0e7490'];

// `span` (seconds) fixes the time axis to the range asked for, so a series
// that starts late or ends early shows where it sits in that range.
// `gaps` are shaded bands with a label (readings the historian lost for
// good), listed under the chart too; the line is broken across each.
export function Chart({ times, lines, height = 260, unit, decimals, span, gaps = NO_GAPS }: { times: number[]; lines: Line[]; height?: number; unit?: string; decimals?: number | null; span?: [number, number]; gaps?: GapBand[] }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const node = el.current;
    if (!node) return;
    const width = Math.max(320, node.clientWidth || 800);
    const opts: uPlot.Options = {
      width,
      height,
      scales: { x: span ? { time: true, range: () => span } : { time: true } },
      axes: [{ stroke: '#5b6676', grid: { stroke: '#edf0f4' } }, { stroke: '#5b6676', grid: { stroke: '#edf0f4' }, label: unit, size: 60 }],
      // The legend shows the value under the cursor as tables and alerts do.
      series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false, points: { show: times.length < 60 }, value: (_u: uPlot, v: number | null) => fmtMeasure(v, decimals, unit) }))],
      legend: { show: true },
      hooks: gaps.length ? { draw: [drawGaps(gaps)] } : {},
    };
    try {
      // No 2D canvas (jsdom in tests): uPlot would fail later, asynchronously.
      plot.current = canDraw() ? new uPlot(opts, [times, ...lines.map((l) => l.values)] as uPlot.AlignedData, node) : null;
    } catch {
      plot.current = null;
    }
    const onResize = () => plot.current?.setSize({ width: Math.max(320, node.clientWidth), height });
    window.addEventListener('resize', onResize);
    return () => {
      window.removeEventListener('resize', onResize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [times, lines, height, unit, decimals, span, gaps]);
  return (
    <>
      <div ref={el} className="chart" data-testid="chart" data-points={times.length} data-gaps={gaps.length} />
      {gaps.length > 0 && (
        <ul className="small" aria-label="Data gaps" style={{ color: GAP_TEXT, margin: '8px 0 0', paddingLeft: 18 }}>
          {gaps.map((g) => <li key={`${g.from}-${g.label}`}>{g.label}: {gapWindow(g)}. Not interpolated: these readings never reached the historian.</li>)}
        </ul>
      )}
    </>
  );
}

const NO_GAPS: GapBand[] = [];

let drawable: boolean | undefined;
function canDraw(): boolean {
  if (drawable === undefined) {
    try {
      drawable = !!document.createElement('canvas').getContext('2d');
    } catch {
      drawable = false;
    }
  }
  return drawable;
}

const hhmmss = (s: number) => new Date(s * 1000).toLocaleTimeString();

function gapWindow(g: GapBand): string {
  if (!Number.isFinite(g.from) && !Number.isFinite(g.to)) return 'time unknown';
  if (!Number.isFinite(g.from)) return `until ${hhmmss(g.to)}`;
  if (!Number.isFinite(g.to)) return `since ${hhmmss(g.from)}`;
  return `between ${hhmmss(g.from)} and ${hhmmss(g.to)}`;
}

/** The api's data gaps as bands: `seq 100–149 lost (150 frames)`. */
export function gapBands(r: Series): GapBand[] {
  return (r.gaps ?? []).map((g) => {
    const from = g.ts_from ? Date.parse(g.ts_from) / 1000 : -Infinity;
    const to = g.ts_to ? Date.parse(g.ts_to) / 1000 : Infinity;
    const frames = g.seq_to - g.seq_from + 1;
    const seqs = frames === 1 ? `seq ${g.seq_from}` : `seq ${g.seq_from}–${g.seq_to}`;
    return { from, to, short: `gap: ${seqs}`, label: `Data gap: ${seqs} lost (${frames} frame${frames === 1 ? '' : 's'}, ${g.reason})` };
  });
}

/**
 * The api's Series (bucket averages, oldest first) as (times s, values)
 * and its data gaps as bands. A missing bucket becomes a null so the line
 * shows the hole, and so does a data gap between two buckets that both
 * hold readings: a lost range is never drawn as a line across it.
 */
export function toSeries(r: Series): { times: number[]; values: (number | null)[]; gaps: GapBand[] } {
  const step = r.step_seconds;
  const gaps = gapBands(r);
  const times: number[] = [];
  const values: (number | null)[] = [];
  for (const p of r.points) {
    const ms = Date.parse(p.t);
    if (Number.isNaN(ms)) continue;
    const t = ms / 1000;
    const prev = times[times.length - 1];
    // A gap lies between two buckets when it starts before this one and
    // ends after the previous one (bucket `b` holds b..b+step).
    const missing = step > 0 && prev !== undefined && t - prev > step * 1.5;
    const lost = prev !== undefined && gaps.some((g) => g.from < t && g.to >= prev + step);
    if (prev !== undefined && (missing || lost)) {
      times.push(prev + step < t ? prev + step : (prev + t) / 2);
      values.push(null);
    }
    times.push(t);
    values.push(p.avg ?? null);
  }
  return { times, values, gaps };
}
