// End-to-end step of issue 23 ("Trends"), run by e2e.mjs while the agent is
// online: on the real path (weir-agent's simulated devices → Mosquitto →
// weir-historian → PostgreSQL → weir-api's `/series`), two tags of two
// devices with different units go on one chart with two y-axes; a mouse
// drag across the chart zooms (the range narrows and is fetched again);
// the CSV download holds both series.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { G (route template of the gateway), base, apiBase, gateway, hist, agentOnline, out (directory for downloads) }
 */
export async function trendsStep(t, o) {
  const { page, step, check, shot, apiCall } = t;
  await step('trends: two tags with different units on one chart (two axes), zoom by drag, CSV of both', [['GET', `${o.G}/series`], ['PATCH', o.G]], async () => {
    check(!o.hist.error, `no historian to read from: ${o.hist.error}`);
    check(o.agentOnline, 'the agent is not online');
    // Two more simulated devices, each with a tag in its own unit.
    const gw = await apiCall(page, 'GET', `${o.apiBase}/gateways/${o.gateway}`);
    check(gw.status === 200, `gateway answered ${gw.status}`);
    const sim = (name, tag, unit, decimals, min, max, periodS = 60) => ({ name, adapter: 'simulator', simulator: { seed: 11 }, groups: [{ name: 'main', intervalMs: 1000, tags: [{ name: tag, address: `sim.${tag}`, dataType: 'float64', unit, decimals, signal: { kind: 'sine', min, max, periodS } }] }] });
    const spec = { ...gw.json.spec, devices: [...gw.json.spec.devices.filter((d) => d.name !== 'dosing' && d.name !== 'filter'), sim('dosing', 'chlorine', 'mg/L', 2, 0.2, 1.2), sim('filter', 'turbidity', 'NTU', 3, 0.05, 0.4, 37)] };
    const patched = await apiCall(page, 'PATCH', `${o.apiBase}/gateways/${o.gateway}`, { spec, comment: 'trends: dosing and filter' });
    check(patched.status === 200, `PATCH answered ${patched.status} ${JSON.stringify(patched.json)}`);
    // The agent applies the new config; wait until the historian holds both.
    const q = () => `${o.apiBase}/gateways/${o.gateway}/series?series=dosing%2Fchlorine&series=filter%2Fturbidity&from=${new Date(Date.now() - 300e3).toISOString()}`;
    const deadline = Date.now() + 120_000;
    let r;
    for (;;) {
      r = await apiCall(page, 'GET', q());
      // 40 s of each, so that a window ending well before now still holds some.
      if (r.status === 200 && r.json.series.every((s) => s.readings.length + s.points.length >= 40)) break;
      if (Date.now() > deadline) throw new Error(`not 40 readings of each new tag after 120 s: ${JSON.stringify(r).slice(0, 800)}`);
      await page.waitForTimeout(1000);
    }
    check(r.json.mode === 'raw', `a few minutes of two tags should come back raw: ${r.json.mode}`);
    check(r.json.series[0].unit === 'mg/L' && r.json.series[1].unit === 'NTU', `units: ${JSON.stringify(r.json.series.map((s) => s.unit))}`);

    await page.goto(`${o.base}/gateways/${o.gateway}/readings`);
    const card = page.getByRole('region', { name: 'Trends' });
    await card.waitFor();
    // Only the two new tags: untick the default one.
    for (const box of await card.getByRole('checkbox', { checked: true }).all()) await box.uncheck();
    await card.getByLabel('dosing · chlorine (mg/L)').check();
    await card.getByLabel('filter · turbidity (NTU)').check();
    const chart = card.getByTestId('chart');
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-testid=chart]');
      return c?.getAttribute('data-series') === '2' && c.getAttribute('data-axes') === '2' && Number(c.getAttribute('data-points')) > 4 && !!c.querySelector('canvas');
    }, null, { timeout: 30000 });
    const axisLabels = (await chart.getAttribute('data-units')).split('|');
    check(axisLabels.join('|') === 'mg/L|NTU', `axis units: ${JSON.stringify(axisLabels)}`);
    const legend = await chart.locator('.u-legend').textContent();
    check(legend.includes('dosing · chlorine (mg/L)') && legend.includes('filter · turbidity (NTU)'), `legend: ${legend}`);
    console.log(`   two axes (${axisLabels.filter(Boolean).join(', ')}), ${await chart.getAttribute('data-points')} points, ${await card.getByTestId('series-mode').textContent()}`);
    await shot(page, '10d-trends-two-axes');

    // Drag across the end of the plot (80% to 97%, where the new tags have
    // readings): the window narrows to that and is fetched.
    const before = [Number(await chart.getAttribute('data-from')), Number(await chart.getAttribute('data-to'))];
    // The mouse only reaches what is inside the viewport.
    await chart.scrollIntoViewIfNeeded();
    const over = await chart.locator('.u-over').boundingBox();
    const y = over.y + over.height / 2;
    const seen = page.waitForRequest((req) => req.url().includes('/series?') && !req.url().includes('step='), { timeout: 15000 });
    await page.mouse.move(over.x + over.width * 0.8, y);
    await page.mouse.down();
    await page.mouse.move(over.x + over.width * 0.9, y, { steps: 5 });
    await page.mouse.move(over.x + over.width * 0.97, y, { steps: 5 });
    await page.mouse.up();
    await seen;
    await card.getByTestId('zoom').waitFor();
    await page.waitForFunction((b) => {
      const c = document.querySelector('[data-testid=chart]');
      const f = Number(c?.getAttribute('data-from'));
      const to = Number(c?.getAttribute('data-to'));
      return f > b[0] && to < b[1];
    }, before, { timeout: 15000 });
    const after = [Number(await chart.getAttribute('data-from')), Number(await chart.getAttribute('data-to'))];
    const share = (after[1] - after[0]) / (before[1] - before[0]);
    check(share > 0.12 && share < 0.22, `the drag over 17% of the plot should zoom to about 17% of the range: ${share.toFixed(2)} (${JSON.stringify(before)} → ${JSON.stringify(after)})`);
    console.log(`   zoom: ${(before[1] - before[0]).toFixed(0)} s → ${(after[1] - after[0]).toFixed(1)} s; "${(await card.getByTestId('zoom').textContent()).trim()}"`);
    await shot(page, '10e-trends-zoomed');

    // The shown (zoomed) data as CSV: both series.
    const [dl] = await Promise.all([page.waitForEvent('download'), card.getByRole('button', { name: 'Export CSV' }).click()]);
    const csvPath = join(o.out, 'trends-export.csv');
    await dl.saveAs(csvPath);
    const rows = readFileSync(csvPath, 'utf8').trim().split('\r\n');
    const kinds = new Set(rows.slice(1).map((l) => l.split(',').slice(1, 3).join('/')));
    check(/^(time|bucket_start),device,tag,/.test(rows[0]), `CSV header: ${rows[0]}`);
    check(kinds.has('dosing/chlorine') && kinds.has('filter/turbidity') && kinds.size === 2, `CSV series: ${[...kinds].join(', ')}`);
    const inWindow = rows.slice(1).every((l) => { const s = Date.parse(l.split(',')[0]) / 1000; return s >= after[0] - 0.001 && s < after[1] + 60; });
    check(inWindow, `CSV rows outside the zoomed window: ${rows.slice(1, 4).join(' | ')}`);
    console.log(`   CSV: ${rows.length - 1} rows of ${[...kinds].join(' and ')}, e.g. ${rows[1]}`);

    // Reset returns to the whole range.
    await card.getByRole('button', { name: 'Reset zoom' }).click();
    await card.getByTestId('zoom').waitFor({ state: 'detached' });
  }, page);
}
