// Time series chart (uPlot): several series, one y-axis per unit, drag to
// zoom. Times in seconds since the epoch.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { legendValue, type Axis, type ChartLine, type GapBand } from '../lib/trends';

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

export const COLORS = ['#0b5cad', '#1f7a3a', '#b42318', '#9a6700', '#6941c6', '#0e7490', '#c2410c', '#475467'];

/** uPlot options for the lines: the first unit's axis on the left, the others on the right. */
function options(width: number, height: number, lines: ChartLine[], axes: Axis[], span: [number, number] | undefined, gaps: GapBand[], points: boolean, onZoom?: (from: number, to: number) => void): uPlot.Options {
  const scales: uPlot.Scales = { x: span ? { time: true, range: () => span } : { time: true } };
  for (const a of axes) scales[a.scale] = { auto: true };
  return {
    width,
    height,
    scales,
    axes: [
      { stroke: '#5b6676', grid: { stroke: '#edf0f4' } },
      ...axes.map((a, i): uPlot.Axis => ({ scale: a.scale, side: i === 0 ? 3 : 1, label: a.unit || undefined, stroke: axes.length > 1 ? COLORS[lines.findIndex((l) => l.scale === a.scale) % COLORS.length] : '#5b6676', grid: { show: i === 0, stroke: '#edf0f4' }, size: 60 })),
    ],
    // The legend shows each value under the cursor with the tag's decimals and unit.
    series: [{}, ...lines.map((l, i) => ({ label: l.label, scale: l.scale, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false, points: { show: points }, value: (_u: uPlot, v: number | null) => legendValue(l, v) }))],
    legend: { show: true },
    // A drag selects a window; the page fetches it (uPlot does not rescale itself).
    cursor: { drag: { x: true, y: false, setScale: false } },
    hooks: {
      ...(gaps.length ? { draw: [drawGaps(gaps)] } : {}),
      setSelect: [
        (u: uPlot) => {
          const { left, width } = u.select;
          if (width > 0 && onZoom) onZoom(u.posToVal(left, 'x'), u.posToVal(left + width, 'x'));
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        },
      ],
    },
  };
}

// `span` (seconds) fixes the time axis to the range asked for, so a series
// that starts late or ends early shows where it sits in that range.
// `gaps` are shaded bands with a label (readings the historian lost for
// good), listed under the chart too; each line is broken across each.
export function Chart({ times, lines, axes, height = 280, span, gaps = NO_GAPS, onZoom }: { times: number[]; lines: ChartLine[]; axes: Axis[]; height?: number; span?: [number, number]; gaps?: GapBand[]; onZoom?: (from: number, to: number) => void }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // The latest handler, without rebuilding the plot when it changes.
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  useEffect(() => {
    const node = el.current;
    if (!node) return;
    const width = Math.max(320, node.clientWidth || 800);
    const opts = options(width, height, lines, axes, span, gaps, times.length < 60, (a, b) => zoom.current?.(a, b));
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
  }, [times, lines, axes, height, span, gaps]);
  return (
    <>
      <div ref={el} className="chart" data-testid="chart" data-points={times.length} data-gaps={gaps.length} data-series={lines.length} data-axes={axes.length} data-units={axes.map((a) => a.unit).join('|')} data-from={span?.[0]} data-to={span?.[1]} />
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
