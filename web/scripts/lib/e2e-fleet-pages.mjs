// End-to-end steps of the fleet pages (issue 23), run by e2e.mjs in the
// walk-through's project once its gateway has run a real agent: a template
// made from that gateway's config on the templates page and applied to two
// new gateways (a result per gateway), batch changes (changed, unchanged,
// refused with the reason), the rollout table against the api's answer,
// and the fleet events the agent's going offline left.

/**
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { P (api path template of the project), base (console path), apiBase (api path), gateway (the one with a config and an agent) }
 */
export async function fleetPageSteps(t, o) {
  const { page, step, check, shot, apiCall } = t;
  const TEMPLATE = 'pump-station';
  const NEW = ['pump-a', 'pump-b'];
  const nav = (name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
  const rowsOf = async (table) =>
    table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
  const results = () => page.getByRole('table', { name: 'Results per gateway' });
  /** Tick the gateways, say why, confirm; wait for the results of this run. */
  const apply = async (names, why) => {
    for (const n of names) await page.getByRole('checkbox', { name: n, exact: true }).check();
    await page.getByLabel('Why', { exact: true }).fill(why);
    await page.getByRole('button', { name: `Apply to ${names.length} gateway${names.length === 1 ? '' : 's'}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Apply', exact: true }).click();
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    await results().waitFor();
    return rowsOf(results());
  };
  const untickAll = () => page.getByRole('button', { name: 'Select none' }).click();

  let made = false;
  await step('gateway templates: one made from a gateway’s config, without its site or cluster', [['POST', `${o.P}/gateway-templates`], ['GET', `${o.P}/gateway-templates/{template}`]], async () => {
    for (const n of NEW) {
      const r = await apiCall(page, 'POST', `${o.apiBase}/gateways`, { name: n, spec: { site: { name: `Pump station ${n.slice(-1).toUpperCase()}` } } });
      check(r.status === 201, `creating ${n} answered ${r.status} ${JSON.stringify(r.json)}`);
    }
    await page.goto(o.base);
    await nav('Gateway templates');
    await page.getByRole('heading', { name: 'Gateway templates' }).waitFor();
    await page.getByRole('button', { name: 'New template' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('From gateway').selectOption(o.gateway);
    await dlg.getByLabel('Name', { exact: true }).fill(TEMPLATE);
    await dlg.getByLabel('Title').fill('Pump station');
    await dlg.getByLabel('Description').fill(`Made from ${o.gateway}`);
    await dlg.getByRole('button', { name: 'Create template' }).click();
    await page.waitForURL(`**/templates/${TEMPLATE}`);
    const sets = page.getByRole('region', { name: 'What the template sets' });
    await sets.getByText(/Sets: \d+ devices? \(\d+ tags?\)/).waitFor();
    const tpl = await apiCall(page, 'GET', `${o.apiBase}/gateway-templates/${TEMPLATE}`);
    const gw = await apiCall(page, 'GET', `${o.apiBase}/gateways/${o.gateway}`);
    check(tpl.status === 200 && JSON.stringify(tpl.json.spec.devices) === JSON.stringify(gw.json.spec.devices), `the template's devices ${JSON.stringify(tpl.json.spec.devices)} are not the gateway's`);
    check(!('site' in tpl.json.spec) && !('clusterRef' in tpl.json.spec), `the template took the gateway's site or cluster: ${JSON.stringify(tpl.json.spec)}`);
    made = true;
    await shot(page, '14e-gateway-template');
  }, page);

  await step('a template applied to two gateways: each one’s result, and their new config', [['POST', `${o.P}/gateways:batch`]], async () => {
    check(made, 'no template');
    const rows = await apply(NEW, 'same devices as the pump station');
    check(JSON.stringify(rows.map((r) => r.slice(0, 2))) === JSON.stringify(NEW.map((n) => [n, 'Changed'])), `results: ${JSON.stringify(rows)}`);
    check(rows.every((r) => /^now config v\d+$/.test(r[2])), `each should name its new version: ${JSON.stringify(rows)}`);
    await page.getByTestId('batch-summary').getByText('2 changed, 0 unchanged, 0 refused.').waitFor();
    const gw = await apiCall(page, 'GET', `${o.apiBase}/gateways/${o.gateway}`);
    for (const n of NEW) {
      const r = await apiCall(page, 'GET', `${o.apiBase}/gateways/${n}`);
      check(JSON.stringify(r.json.spec.devices) === JSON.stringify(gw.json.spec.devices), `${n} has devices ${JSON.stringify(r.json.spec.devices)}`);
      check(r.json.spec.site?.name === `Pump station ${n.slice(-1).toUpperCase()}`, `${n} lost its site: ${JSON.stringify(r.json.spec.site)}`);
      check(`now config v${r.json.version}` === rows.find((x) => x[0] === n)[2], `${n} is at v${r.json.version}, the table says ${JSON.stringify(rows)}`);
    }
    console.log(`   applied ${TEMPLATE}: ${rows.map((r) => r.join(' ')).join('; ')}`);
    await shot(page, '14f-template-applied');
  }, page);

  await step('batch changes: changed, unchanged, and refused with the reason, per gateway', [['POST', `${o.P}/gateways:batch`]], async () => {
    await nav('Batch changes');
    await page.getByRole('heading', { name: 'Batch changes' }).waitFor();
    await page.getByLabel('Change', { exact: true }).selectOption({ label: 'Agent version' });
    await page.getByLabel('Agent version', { exact: true }).fill('0.5.0');
    let rows = await apply([NEW[0]], 'agent 0.5.0 on the first');
    check(rows.length === 1 && rows[0][1] === 'Changed', `first run: ${JSON.stringify(rows)}`);
    await untickAll();
    rows = await apply(NEW, 'agent 0.5.0 everywhere');
    await page.getByTestId('batch-summary').getByText('1 changed, 1 unchanged, 0 refused.').waitFor();
    rows = await rowsOf(results());
    check(JSON.stringify(rows.map((r) => r.slice(0, 2))) === JSON.stringify([[NEW[0], 'Unchanged'], [NEW[1], 'Changed']]), `second run: ${JSON.stringify(rows)}`);
    for (const n of NEW) {
      const r = await apiCall(page, 'GET', `${o.apiBase}/gateways/${n}`);
      check(r.json.spec.agentVersion === '0.5.0', `${n} has agentVersion ${r.json.spec.agentVersion}`);
    }
    // A patch no gateway's config can take: each is refused, with the schema's reason.
    await page.getByLabel('Change', { exact: true }).selectOption({ label: 'JSON merge patch' });
    await page.getByLabel('Merge patch (JSON)').fill('{"uplink": {"lingerMs": 999999}}');
    await untickAll();
    await apply(NEW, 'too long a linger');
    await page.getByTestId('batch-summary').getByText('0 changed, 0 unchanged, 2 refused.').waitFor();
    rows = await rowsOf(results());
    check(rows.every((r) => r[1] === 'Refused' && /lingerMs/.test(r[2])), `refusals should name the field: ${JSON.stringify(rows)}`);
    console.log(`   refused: ${rows.map((r) => r.join(' ')).join('; ')}`);
    await shot(page, '14g-batch-change-results');
  }, page);

  await step('rollout: every gateway with the bundle it should run and the one it runs, refreshing', [['GET', `${o.P}/rollout`]], async () => {
    await nav('Rollout');
    const table = page.getByRole('table', { name: 'Rollout' });
    await table.waitFor();
    const api = await apiCall(page, 'GET', `${o.apiBase}/rollout`);
    check(api.status === 200, `rollout answered ${api.status}`);
    for (const n of [o.gateway, ...NEW]) check(api.json.some((e) => e.gateway === n), `the api's rollout lacks ${n}`);
    // Rows as the api has them (Gateway, Status, Config, Wanted, Runs, State).
    await page.waitForFunction((n) => document.querySelectorAll('table[aria-label="Rollout"] tbody tr').length === n, api.json.length);
    const rows = await rowsOf(table);
    for (const e of api.json) {
      const r = rows.find((x) => x[0] === e.gateway);
      check(r, `no row for ${e.gateway}`);
      check(r[2] === `v${e.config_version}` && r[3] === `v${e.desired_version}` && r[4] === (e.applied_version == null ? '—' : `v${e.applied_version}`), `${e.gateway}: row ${JSON.stringify(r)}, api ${JSON.stringify(e)}`);
    }
    const agent = rows.find((x) => x[0] === o.gateway);
    check(/^v\d+$/.test(agent[4]), `${o.gateway} ran an agent: its row should name the bundle it runs, ${JSON.stringify(agent)}`);
    check(rows.filter((x) => NEW.includes(x[0])).every((x) => x[5] === 'Waiting for the agent'), `the new gateways have no agent: ${JSON.stringify(rows)}`);
    console.log(`   rollout: ${rows.map((r) => `${r[0]} wants ${r[3]} runs ${r[4]} (${r[5]})`).join('; ')}`);
    const said = async () => (await page.getByTestId('rollout-summary').textContent()) ?? '';
    const before = await said();
    await page.waitForFunction((b) => document.querySelector('[data-testid=rollout-summary]')?.textContent !== b, before, { timeout: 15000 });
    await shot(page, '14h-rollout');
  }, page);

  await step('fleet events: the agent’s going offline is listed, and the filters work', [['GET', `${o.P}/fleet-events`]], async () => {
    // The fleet monitor records the revoked agent's gateway as offline within seconds.
    let api = null;
    for (let i = 0; i < 60 && !api?.json?.length; i++) {
      if (i) await page.waitForTimeout(500);
      api = await apiCall(page, 'GET', `${o.apiBase}/fleet-events`);
    }
    check(api.status === 200 && api.json.length > 0, `the api has no fleet events: ${JSON.stringify(api)}`);
    await nav('Fleet events');
    const table = page.getByRole('table', { name: 'Fleet events' });
    await table.waitFor();
    const label = { gateway_offline: 'Went offline', gateway_online: 'Came online', data_gap: 'Readings lost' };
    let rows = await rowsOf(table);
    check(rows.length === Math.min(api.json.length, 25), `${rows.length} rows for ${api.json.length} events`);
    check(rows[0][1] === api.json[0].gateway && rows[0][2] === label[api.json[0].kind], `first row ${JSON.stringify(rows[0])}, newest event ${JSON.stringify(api.json[0])}`);
    check(api.json.some((e) => e.gateway === o.gateway && e.kind === 'gateway_offline'), `no offline event of ${o.gateway}: ${JSON.stringify(api.json)}`);
    await page.getByLabel('Event', { exact: true }).selectOption({ label: 'Went offline' });
    const filtered = page.waitForResponse((r) => r.url().includes('/fleet-events?') && r.url().includes(`gateway=${o.gateway}`) && r.url().includes('kind=gateway_offline'));
    await page.getByLabel('Gateway', { exact: true }).selectOption(o.gateway);
    await filtered;
    await page.waitForFunction((g) => {
      const trs = [...document.querySelectorAll('table[aria-label="Fleet events"] tbody tr')];
      return trs.length > 0 && trs.every((tr) => tr.children[1]?.textContent === g && tr.children[2]?.textContent === 'Went offline');
    }, o.gateway);
    rows = await rowsOf(table);
    check(rows.length > 0 && rows.every((r) => r[1] === o.gateway && r[2] === 'Went offline'), `filtered rows: ${JSON.stringify(rows)}`);
    console.log(`   fleet events: ${api.json.length}, newest ${api.json[0].kind} of ${api.json[0].gateway}; ${rows.length} offline of ${o.gateway}`);
    await shot(page, '14i-fleet-events');
  }, page);
}

/**
 * Inside the walk-through's viewer step (after `fleetPageSteps`): a project
 * viewer reads the templates and the rollout but is offered nothing to change.
 * @param {import('playwright-core').Page} page the viewer's signed-in page
 */
export async function fleetViewerChecks(page, check, base) {
  await page.goto(`${base}/templates`);
  await page.getByRole('table', { name: 'Gateway templates' }).getByRole('link', { name: 'pump-station' }).click();
  await page.getByText('your role does not allow applying it').waitFor();
  check((await page.getByRole('button', { name: 'Delete template' }).count()) === 0, 'viewer is offered "Delete template"');
  check((await page.getByRole('checkbox').count()) === 0, 'viewer is offered gateways to apply the template to');
  const nav = page.getByRole('navigation', { name: 'Main' });
  check((await nav.getByRole('link', { name: 'Batch changes' }).count()) === 0, 'viewer is offered "Batch changes"');
  await nav.getByRole('link', { name: 'Gateway templates', exact: true }).click();
  await page.getByRole('table', { name: 'Gateway templates' }).waitFor();
  check((await page.getByRole('button', { name: 'New template' }).count()) === 0, 'viewer is offered "New template"');
  await nav.getByRole('link', { name: 'Rollout', exact: true }).click();
  await page.getByRole('table', { name: 'Rollout' }).getByRole('link', { name: 'pump-a' }).waitFor();
}
