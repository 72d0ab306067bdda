// The gateway's trend chart: several tags across its devices on one chart
// (one y-axis per unit), a preset or custom range, drag to zoom (back and
// reset), raw readings for short ranges and buckets for long ones as the
// api decides, and the shown data as CSV.
import { useEffect, useMemo, useRef, useState } from 'react';
import { gateways } from '../api/endpoints';
import { ApiError } from '../api/http';
import type { Gateway, Series } from '../api/types';
import { useScope } from '../scope';
import { download } from '../lib/csv';
import { MAX_SERIES, seriesCsv, seriesQuery, toChart, zoomBack, zoomTo, type TagChoice, type Window } from '../lib/trends';
import { Button, Empty, ErrorNotice, Notice } from '../ui/kit';
import { Chart } from '../ui/Chart';

const RANGES: [string, number, string][] = [['Last 15 minutes', 15 * 60, '5s'], ['Last hour', 3600, '15s'], ['Last 24 hours', 86400, '5m'], ['Last 7 days', 7 * 86400, '1h']];

/** The last hour as `datetime-local` values (local time, to the minute). */
function lastHour(): { from: string; to: string } {
  const local = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  const now = new Date();
  return { from: local(new Date(now.getTime() - 3600_000)), to: local(now) };
}

/** Every tag of the gateway's config, device by device. */
export function tagChoices(g: Gateway): TagChoice[] {
  return (g.config?.devices ?? []).flatMap((d) => d.groups.flatMap((gr) => gr.tags.map((t) => ({ id: `${d.name}/${t.name}`, device: d.name, tag: t.name, unit: t.unit, decimals: t.decimals }))));
}

const clock = (ms: number) => new Date(ms).toLocaleString();

/** Download the series the chart shows, as the api answered them. */
function exportShown(gateway: string, r: Series) {
  const from = r.from.slice(0, 19).replace(/:/g, '');
  const what = r.series.length === 1 ? `${r.series[0].device ?? 'all'}-${r.series[0].tag}` : `${r.series.length}-series`;
  download(`weir-${gateway}-${what}-${from}.csv`, seriesCsv(r));
}

export function TrendsChart({ g }: { g: Gateway }) {
  const { s } = useScope();
  const tags = useMemo(() => tagChoices(g), [g]);
  const [picked, setPicked] = useState<string[]>(() => (tags[0] ? [tags[0].id] : []));
  const [range, setRange] = useState(0);
  const custom = range === RANGES.length;
  const [win, setWin] = useState(lastHour);
  const bad = custom && !(Date.parse(win.from) < Date.parse(win.to));
  const [zooms, setZooms] = useState<Window[]>([]);
  const zoomed = zooms[zooms.length - 1];
  const [data, setData] = useState<{ r: Series; span: [number, number] } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  // A refresh redraws the plot: never in the middle of a drag.
  const dragging = useRef(false);
  useEffect(() => {
    const up = () => (dragging.current = false);
    window.addEventListener('mouseup', up);
    return () => window.removeEventListener('mouseup', up);
  }, []);
  // Choosing other tags or another range starts from the whole range again.
  useEffect(() => setZooms([]), [picked, range, win.from, win.to]);
  useEffect(() => {
    if (!picked.length || (bad && !zoomed)) return;
    let live = true;
    const ctl = new AbortController();
    const load = () => {
      // A zoomed or custom window is fixed (the api picks the step); a
      // preset ends now and moves with each refresh.
      const to = zoomed ? new Date(zoomed.to) : custom ? new Date(win.to) : new Date();
      const from = zoomed ? new Date(zoomed.from) : custom ? new Date(win.from) : new Date(to.getTime() - RANGES[range][1] * 1000);
      const step = zoomed || custom ? undefined : RANGES[range][2];
      gateways
        .series(s, g.name, seriesQuery(picked, from, to, step), ctl.signal)
        .then((r) => live && !dragging.current && (setData({ r, span: [from.getTime() / 1000, to.getTime() / 1000] }), setErr(null)))
        .catch((e) => live && (e as Error).name !== 'AbortError' && setErr(e));
    };
    load();
    // The zoom itself lands while the mouse button is still down: only the
    // periodic refresh waits for the drag to end.
    const t = zoomed || custom ? undefined : setInterval(() => !dragging.current && load(), 5000);
    return () => { live = false; ctl.abort(); clearInterval(t); };
  }, [s.org, s.project, g.name, picked, range, custom, bad, win.from, win.to, zoomed]);
  const chart = useMemo(() => (data ? toChart(data.r) : null), [data]);
  if (!tags.length) return <div className="card"><Empty title="No tags to show">Add devices and tags under “Devices & rules”.</Empty></div>;
  const toggle = (id: string, on: boolean) => setPicked((p) => (on ? [...p, id].slice(0, MAX_SERIES) : p.filter((x) => x !== id)));
  const empty = chart && chart.lines.every((l) => l.count === 0);
  return (
    <section className="card" aria-label="Trends">
      <h2>Trends</h2>
      <fieldset className="row" style={{ border: 0, padding: 0, margin: '0 0 8px', flexWrap: 'wrap' }}>
        <legend className="small muted">Tags to chart (up to {MAX_SERIES}; each unit gets its own axis)</legend>
        {tags.map((t) => (
          <label key={t.id} className="small" style={{ marginRight: 12 }}>
            <input type="checkbox" name="series" value={t.id} checked={picked.includes(t.id)} disabled={!picked.includes(t.id) && picked.length >= MAX_SERIES} onChange={(e) => toggle(t.id, e.target.checked)} /> {t.device} · {t.tag}{t.unit ? ` (${t.unit})` : ''}
          </label>
        ))}
      </fieldset>
      <div className="row" style={{ marginBottom: 12 }}>
        <label htmlFor="series-range"><strong>Range</strong></label>
        <select id="series-range" value={range} onChange={(e) => setRange(Number(e.target.value))}>{RANGES.map((r, i) => <option key={r[0]} value={i}>{r[0]}</option>)}<option value={RANGES.length}>Custom range</option></select>
        {custom ? (
          <>
            <label htmlFor="series-from">From</label>
            <input id="series-from" type="datetime-local" value={win.from} aria-invalid={bad} onChange={(e) => setWin({ ...win, from: e.target.value })} />
            <label htmlFor="series-to">To</label>
            <input id="series-to" type="datetime-local" value={win.to} aria-invalid={bad} onChange={(e) => setWin({ ...win, to: e.target.value })} />
            {bad && <span className="small" style={{ color: 'var(--c-danger)' }} role="alert">“From” must be before “To”.</span>}
          </>
        ) : !zoomed && <span className="muted small">refreshes every 5 s</span>}
        {data && !empty && <Button variant="ghost" onClick={() => exportShown(g.name, data.r)}>Export CSV</Button>}
      </div>
      {zoomed ? (
        <div className="row small" style={{ marginBottom: 8 }} data-testid="zoom">
          <span>Zoomed to <strong>{clock(zoomed.from)}</strong> – <strong>{clock(zoomed.to)}</strong></span>
          <Button variant="ghost" onClick={() => setZooms(zoomBack)}>Zoom back</Button>
          <Button variant="ghost" onClick={() => setZooms([])}>Reset zoom</Button>
        </div>
      ) : (
        data && !empty && <p className="small muted" style={{ margin: '0 0 8px' }}>Drag across the chart to zoom in.</p>
      )}
      {!picked.length ? (
        <Empty title="No tag chosen">Tick one or more tags above to chart them.</Empty>
      ) : err instanceof ApiError && err.status === 503 && err.problem?.detail ? (
        <Notice kind="error">Readings cannot be shown: {err.problem.detail}</Notice>
      ) : (
        <ErrorNotice error={err} />
      )}
      {picked.length > 0 && data && chart && (empty && !chart.gaps.length ? (
        <Empty title="No readings in this range">None of the chosen tags has readings between {clock(data.span[0] * 1000)} and {clock(data.span[1] * 1000)}. Readings appear once the agent is online and the historian stores them; try a longer range.</Empty>
      ) : (
        <>
          <div onMouseDown={() => (dragging.current = true)}>
            <Chart times={chart.times} lines={chart.lines} axes={chart.axes} span={data.span} gaps={chart.gaps} onZoom={(a, b) => setZooms((z) => zoomTo(z, a, b))} />
          </div>
          <p className="small muted" data-testid="series-mode" style={{ margin: '6px 0 0' }}>
            {chart.bucketed ? `Averages per ${data.r.step_seconds} s bucket (more than ${data.r.raw_limit.toLocaleString()} readings in a series).` : 'Every stored reading (raw).'}
            {chart.lines.filter((l) => l.count === 0).map((l) => ` No readings of ${l.label} in this range.`).join('')}
            {chart.lines.filter((l) => l.errors > 0).map((l) => ` ${l.label}: ${l.errors} read error${l.errors === 1 ? '' : 's'} (shown as breaks).`).join('')}
          </p>
        </>
      ))}
    </section>
  );
}
