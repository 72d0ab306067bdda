// End-to-end steps of one fleet view (issue 19), run by e2e.mjs: the
// gateway page shows the running agent's heartbeat (device health, queue,
// dropped readings) as the api stored it; the cluster wizard creates an
// existing broker whose gateways log in with Weir's tokens (apiJwt); and a
// gateway's cluster is changed on its page, a refused name shown beside the
// field first.

/**
 * While the real agent runs (simulated device `device-1`, heartbeat every 2 s).
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { G, url (the gateway page), api (the gateway's api path), agentOnline }
 */
export async function agentReportStep(t, o) {
  const { page, step, check, shot, apiCall } = t;
  await step('the gateway page shows the agent’s heartbeat: device health, queue, dropped readings', [['GET', o.G]], async () => {
    check(o.agentOnline, 'the agent is not online');
    await page.goto(o.url);
    const report = page.getByRole('region', { name: 'Agent report' });
    const row = report.getByRole('table', { name: 'Device health' }).getByRole('row', { name: /device-1/ });
    await row.waitFor({ timeout: 30000 });
    // The simulator polls every second: its count of readings grows with the heartbeats.
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('table[aria-label="Device health"] tr')].find((r) => r.textContent?.includes('device-1'))?.querySelectorAll('td');
      return cells && cells[1].textContent === 'OK' && Number((cells[2].textContent ?? '').replace(/\D/g, '')) > 0;
    }, null, { timeout: 30000 });
    const queue = (await report.getByLabel('Queue').textContent()) ?? '';
    const dropped = (await report.getByLabel('Dropped readings').textContent()) ?? '';
    const uptime = (await report.getByLabel('Uptime').textContent()) ?? '';
    check(/readings waiting on disk/.test(queue), `queue reads "${queue}"`);
    check(/Dropped readings0lost because the queue was full/.test(dropped), `dropped readings read "${dropped}"`);
    check(/agent \d+\.\d+/.test(uptime), `uptime reads "${uptime}"`);
    // The page shows what the api stored from the heartbeat.
    const r = await apiCall(page, 'GET', o.api);
    check(r.status === 200, `GET gateway answered ${r.status}`);
    const a = r.json.agent_status;
    check(a && a.devices?.some((d) => d.name === 'device-1' && d.state === 'ok'), `agent_status from the api: ${JSON.stringify(a)}`);
    console.log(`   heartbeat: ${a.devices.map((d) => `${d.name} ${d.state} ${d.readings} readings`).join(', ')}; queue ${a.queueDepth} (${a.queueBytes} B), dropped ${a.droppedReadings}, out ${a.readingsOut}, agent ${a.agentVersion}`);
    await shot(page, '09b-gateway-agent-report');
  }, page);
}

/**
 * @param {object} t { page, step, check, shot, apiCall, freePort }
 * @param {object} o { P, G, base (console path of the project), apiBase (api path of the project), gateway }
 */
export async function clusterChoiceSteps(t, o) {
  const { page, step, check, shot, apiCall, freePort } = t;
  const CLUSTER = 'north-broker';
  let made = false;
  await step('cluster wizard: an existing broker whose gateways log in with Weir’s tokens (apiJwt)', [['POST', `${o.P}/clusters`]], async () => {
    await page.goto(`${o.base}/clusters/new`);
    await page.getByRole('radio', { name: /Existing broker/ }).check();
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Name', { exact: true }).fill(CLUSTER);
    await page.getByLabel('Broker URL').fill(`mqtt://127.0.0.1:${await freePort()}`);
    check(await page.getByRole('radio', { name: /Broker logins/ }).isChecked(), 'an existing broker should default to broker logins, as the api does');
    await page.getByRole('radio', { name: /Tokens from Weir/ }).check();
    check((await page.getByLabel('Admin username (optional)').count()) === 0, 'token mode should not ask for an admin login');
    await shot(page, '14b-cluster-wizard-auth-mode');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByText('Gateways log in with tokens from Weir (JWT).').waitFor();
    await page.getByRole('button', { name: 'Create cluster' }).click();
    await page.waitForURL(`**/clusters/${CLUSTER}`);
    await page.getByText('Each gateway logs in with an api-issued JWT').waitFor();
    const r = await apiCall(page, 'GET', `${o.apiBase}/clusters/${CLUSTER}`);
    check(r.status === 200 && r.json.auth_mode === 'apiJwt', `the api has the cluster as ${JSON.stringify(r.json)}`);
    made = true;
  }, page);

  await step('a gateway’s cluster is changed on its page; a refused one is named beside the field', [['PATCH', o.G]], async () => {
    check(made, `no cluster ${CLUSTER}`);
    await page.goto(`${o.base}/gateways/${o.gateway}`);
    const section = page.getByRole('region', { name: 'Cluster' });
    await section.getByText('No cluster chosen').waitFor();
    await section.getByLabel('MQTT cluster').selectOption({ label: 'A cluster another project shares with this one…' });
    const typed = section.getByLabel('Shared cluster name');
    await typed.fill('no-such-broker');
    await section.getByRole('button', { name: 'Change cluster' }).click();
    await page.waitForFunction(() => document.querySelector('section[aria-label="Cluster"] input[aria-invalid="true"]'));
    const said = (await section.locator('.field:has(input[aria-invalid="true"]) .error').first().textContent()) ?? '';
    check(said.includes("no cluster named 'no-such-broker'"), `beside the field: "${said}"`);
    console.log(`   refused cluster, beside the field: "${said}"`);
    await shot(page, '05b-gateway-cluster-refused');
    await section.getByLabel('MQTT cluster').selectOption(CLUSTER);
    await section.getByRole('button', { name: 'Change cluster' }).click();
    await section.getByTestId('current-cluster').getByRole('link', { name: CLUSTER }).waitFor();
    const r = await apiCall(page, 'GET', `${o.apiBase}/gateways/${o.gateway}`);
    check(r.status === 200 && r.json.cluster === CLUSTER && r.json.spec.clusterRef === CLUSTER, `the api has the gateway as ${JSON.stringify(r.json).slice(0, 400)}`);
    await shot(page, '05c-gateway-cluster-changed');
  }, page, [{ status: 422, path: `/gateways/${o.gateway}`, why: 'a cluster name the project may not use, on purpose, to see the api’s objection beside the field' }]);
}

/**
 * While the real agent runs: the overview's readings-per-second panel fills
 * from its heartbeats (the rise of its readings counter between two).
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { P (the project's api route template), apiBase (its api path), base (console path), agentOnline }
 */
export async function overviewRateStep(t, o) {
  const { page, step, check, shot, apiCall } = t;
  await step('the overview shows the readings per second the running agent sends', [['GET', `${o.P}/gateways`]], async () => {
    check(o.agentOnline, 'the agent is not online');
    await page.goto(o.base);
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    const rate = page.getByTestId('readings-rate');
    // Two heartbeats (2 s apart) give a rate; the page refreshes every 10 s.
    await page.waitForFunction(() => Number((document.querySelector('[data-testid="readings-rate"]')?.textContent ?? '').replace(/,/g, '')) > 0, null, { timeout: 30000 });
    const shown = (await rate.textContent()) ?? '';
    const r = await apiCall(page, 'GET', `${o.apiBase}/gateways`);
    check(r.status === 200, `GET gateways answered ${r.status}`);
    const rates = r.json.filter((g) => g.online).map((g) => g.readings_per_sec);
    check(rates.some((x) => x > 0), `the api's readings_per_sec: ${JSON.stringify(rates)}`);
    console.log(`   overview: ${shown} readings/s; api: ${JSON.stringify(rates)}`);
    await shot(page, '09c-overview-readings-rate');
  }, page);
}
