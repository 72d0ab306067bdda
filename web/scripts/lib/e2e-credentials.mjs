// End-to-end steps of device credentials (issue 22), run by e2e.mjs: a
// project editor adds an OPC UA login on the credentials page (the secret
// shows nowhere afterwards, neither on the page nor in the api's list), then
// a gateway's device editor adds an OPC UA device that picks it from the
// project's credentials, subscribes with a deadband, and saves.

/**
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { P (api path template of the project), base (console path), apiBase (api path) }
 */
export async function credentialSteps(t, o) {
  const { page, step, check, shot, apiCall } = t;
  const NAME = 'scada-login';
  const SECRET = `scada-Pw-${Date.now()}`;
  const GW = 'opcua-line';
  let made = false;
  await step('device credentials: an editor adds an OPC UA login; the secret shows nowhere after', [['PUT', `${o.P}/credentials/{credential}`], ['GET', `${o.P}/credentials`]], async () => {
    await page.goto(`${o.base}/credentials`);
    await page.getByRole('button', { name: 'New credential' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Name', { exact: true }).fill(NAME);
    await dlg.getByLabel('User name').fill('operator');
    await dlg.getByLabel('Password').fill(SECRET);
    await dlg.getByRole('button', { name: 'Save' }).click();
    const row = page.getByRole('table', { name: 'Device credentials' }).getByRole('row', { name: new RegExp(NAME) });
    await row.waitFor();
    check(/User name and password/.test((await row.textContent()) ?? ''), 'the row should name the kind');
    check(!(await page.content()).includes(SECRET), 'the secret is on the page');
    const r = await apiCall(page, 'GET', `${o.apiBase}/credentials`);
    check(r.status === 200 && r.json.some((c) => c.name === NAME), `the api lists ${JSON.stringify(r.json)}`);
    check(!JSON.stringify(r.json).includes(SECRET), 'the api list holds the secret');
    made = true;
    await shot(page, '14c-device-credentials');
  }, page);

  await step('device editor: an OPC UA device picks the credential, subscribes with a deadband, saves', [['POST', `${o.P}/gateways`], ['PATCH', `${o.P}/gateways/{gateway}`]], async () => {
    check(made, 'no credential to pick');
    const created = await apiCall(page, 'POST', `${o.apiBase}/gateways`, { name: GW, spec: {} });
    check(created.status === 201, `creating ${GW} answered ${created.status}`);
    await page.goto(`${o.base}/gateways/${GW}/config`);
    await page.getByRole('button', { name: '+ Add OPC UA device' }).click();
    await page.getByLabel('Endpoint', { exact: true }).fill('opc.tcp://10.0.0.7:4840/plant');
    const cred = page.getByLabel('Credential', { exact: true });
    // The picker lists the project's credentials (read when the tab opened).
    await page.waitForFunction((n) => [...document.querySelectorAll('option')].some((x) => x.value === n), NAME);
    await cred.selectOption(NAME);
    await page.getByLabel('Mode', { exact: true }).selectOption('subscribe');
    await page.getByLabel('Deadband', { exact: true }).fill('0.5');
    const hint = (await page.locator('.field:has(label:text("Address")) .hint').first().textContent()) ?? '';
    check(/ns=2;s=Pump1\.Flow/.test(hint), `the address hint reads "${hint}"`);
    await page.getByLabel('Address', { exact: true }).fill('ns=2;s=Pump1.Flow');
    await page.getByLabel('What changed').fill('OPC UA SCADA with a login');
    await page.getByRole('button', { name: 'Save new version' }).click();
    await page.getByText('Saved as a new version').waitFor();
    const g = await apiCall(page, 'GET', `${o.apiBase}/gateways/${GW}`);
    const d = g.json?.spec?.devices?.[0];
    check(d?.adapter === 'opcUa' && d.opcUa?.credential === NAME, `saved device ${JSON.stringify(d)}`);
    check(d.groups?.[0]?.mode === 'subscribe' && d.groups[0].deadband === 0.5, `saved group ${JSON.stringify(d.groups?.[0])}`);
    await shot(page, '14d-opcua-device-editor');
  }, page);
}
