// End-to-end step of issue 23 ("Latest values"), run by e2e.mjs after the
// readings chart fills: on the same real path (weir-agent's simulated
// device → Mosquitto → weir-historian → PostgreSQL → weir-api's `/latest`),
// the gateway's Live readings tab shows the simulated tag's newest value,
// seconds old, with quality ok, under its device and the device's health.

/**
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { G (route template of the gateway), base (console path of the project), apiBase, gateway, hist, agentOnline }
 */
export async function latestValuesStep(t, o) {
  const { page, step, check, shot, apiCall } = t;
  await step('the latest values table shows the simulated tag, seconds old', [['GET', `${o.G}/latest`]], async () => {
    check(!o.hist.error, `no historian to read from: ${o.hist.error}`);
    check(o.agentOnline, 'the agent is not online');
    await page.goto(`${o.base}/gateways/${o.gateway}/readings`);
    const table = page.getByRole('table', { name: 'Latest values' });
    await table.waitFor({ timeout: 30000 });
    const row = table.locator('tr[data-tag="device-1/tag-1"]');
    let cells = [];
    try {
      // A value (the sine runs between 0 and 10), a few seconds old, quality ok.
      await page.waitForFunction(() => {
        const tds = [...(document.querySelector('tr[data-tag="device-1/tag-1"]')?.querySelectorAll('td') ?? [])].map((c) => c.textContent);
        return tds.length === 4 && /^\d+(\.\d+)?(e-\d+)?$/.test(tds[1]) && tds[3] === 'ok';
      }, null, { timeout: 30000 });
      cells = await row.locator('td').allTextContents();
    } catch (e) {
      const r = await apiCall(page, 'GET', `${o.apiBase}/gateways/${o.gateway}/latest`);
      throw new Error(`${e.message}\n--- row ---\n${await row.textContent().catch(() => '(none)')}\n--- latest answer ---\n${JSON.stringify(r).slice(0, 1500)}`);
    }
    const [name, value, age, quality] = cells;
    check(name === 'tag-1', `tag cell: ${name}`);
    const v = Number(value);
    check(v >= 0 && v <= 10, `the simulated sine runs 0..10, the table shows ${value}`);
    const secs = Number(age.match(/^(\d+) s ago$/)?.[1] ?? NaN);
    check(secs >= 0 && secs < 30, `the newest reading should be seconds old (one a second), the table says "${age}"`);
    const head = (await table.getByRole('rowgroup', { name: 'Device device-1' }).locator('th').textContent()) ?? '';
    check(/device-1 (OK|Degraded|Down)/.test(head), `device header without the agent's health: "${head}"`);
    // The table shows what the api answers, as the historian stored it.
    const r = await apiCall(page, 'GET', `${o.apiBase}/gateways/${o.gateway}/latest`);
    check(r.status === 200, `latest answered ${r.status} ${JSON.stringify(r.json)}`);
    const tag = r.json.devices?.[0]?.tags?.[0];
    check(tag?.name === 'tag-1' && typeof tag.value === 'number' && tag.error == null, `latest: ${JSON.stringify(r.json)}`);
    check(Date.now() - Date.parse(tag.ts) < 30_000, `latest ts ${tag.ts} is not recent`);
    console.log(`   ${head.trim()} · ${name} = ${value}, ${age}, ${quality} (api: ${tag.value} at ${tag.ts})`);
    await shot(page, '10a-gateway-latest-values');
  }, page);
}
