// Time series chart (uPlot). Times in seconds since the epoch.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Series } from '../api/types';

export interface Line {
  label: string;
  values: (number | null)[];
}

const COLORS = ['#0b5cad', '#1f7a3a', '#b42318', '#9a6700', '#6941c6', '#0e7490'];

// `span` (seconds) fixes the time axis to the range asked for, so a series
// that starts late or ends early shows where it sits in that range.
export function Chart({ times, lines, height = 260, unit, span }: { times: number[]; lines: Line[]; height?: number; unit?: string; span?: [number, number] }) {
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
      series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false, points: { show: times.length < 60 } }))],
      legend: { show: true },
    };
    try {
      plot.current = new uPlot(opts, [times, ...lines.map((l) => l.values)] as uPlot.AlignedData, node);
    } catch {
      plot.current = null; // no canvas (tests)
    }
    const onResize = () => plot.current?.setSize({ width: Math.max(320, node.clientWidth), height });
    window.addEventListener('resize', onResize);
    return () => {
      window.removeEventListener('resize', onResize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [times, lines, height, unit, span]);
  return <div ref={el} className="chart" data-testid="chart" data-points={times.length} />;
}

/**
 * The api's Series (bucket averages, oldest first) as (times s, values).
 * A missing bucket becomes a null so the line shows the gap.
 */
export function toSeries(r: Series): { times: number[]; values: (number | null)[] } {
  const step = r.step_seconds;
  const times: number[] = [];
  const values: (number | null)[] = [];
  for (const p of r.points) {
    const ms = Date.parse(p.t);
    if (Number.isNaN(ms)) continue;
    const prev = times[times.length - 1];
    if (step > 0 && prev !== undefined && ms / 1000 - prev > step * 1.5) {
      times.push(prev + step);
      values.push(null);
    }
    times.push(ms / 1000);
    values.push(p.avg ?? null);
  }
  return { times, values };
}
