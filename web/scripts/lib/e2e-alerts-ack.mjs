// End-to-end steps of issue 23 ("Alarm acknowledgement and shelving"), run
// by e2e.mjs at the end: a project of its own with two MQTT clusters nobody
// listens on (the api's probe finds them unreachable, so a cluster-degraded
// rule fires once per cluster) and a webhook channel that repeats every 2 s
// into a receiver here (the api runs with WEIR_OUTBOUND_ALLOW_CIDRS naming
// 127.0.0.1). In the console an operator acknowledges one alert: its
// notices stop while the other's go on; then shelves the other: it leaves
// the list (behind "Show 1 shelved") and its notices stop too.
import { createServer } from 'node:http';
import { freePort } from './api-server.mjs';

const PROJECT = { slug: 'west-works', name: 'West Works' }; // a project no other step makes
const REPEAT_S = 2;

/** A webhook receiver: the cluster label of every alert of every notice, with when it came. */
async function receiver() {
  const got = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (b) => (body += b));
    req.on('end', () => {
      try {
        for (const a of JSON.parse(body).alerts ?? []) got.push({ at: Date.now(), status: a.status, cluster: a.labels?.cluster });
      } catch {}
      res.writeHead(200).end();
    });
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}/hook`, got, close: () => new Promise((r) => server.close(r)) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { P (route template of a project), org (slug) }
 */
export async function alarmAckSteps(t, o) {
  const { page, step, check, shot, apiCall } = t;
  const api = `/api/v1/orgs/${o.org}/projects/${PROJECT.slug}`;
  const base = `/o/${o.org}/p/${PROJECT.slug}`;
  const hook = await receiver();
  const firingOf = (cluster, since = 0) => hook.got.filter((n) => n.cluster === cluster && n.status === 'firing' && n.at >= since).length;
  const call = async (method, path, body) => {
    const r = await apiCall(page, method, path, body);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} answered ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  };
  const waitUntil = async (what, ms, probe) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await probe()) return;
      await sleep(250);
    }
    throw new Error(`${what}: not within ${ms / 1000} s; notices so far ${JSON.stringify(hook.got.slice(-10))}`);
  };
  const row = (cluster) => page.getByRole('table', { name: 'Active alerts' }).getByRole('row').filter({ hasText: `cluster=${cluster}` });
  const needs = [['POST', `${o.P}/alerts/acknowledgements`], ['GET', `${o.P}/alerts/active`], ['POST', `${o.P}/clusters/{cluster}/probe`]];
  let ready = false;
  try {
    await step('acknowledge an alert in the console: its repeat notifications stop', needs, async () => {
      await call('POST', `/api/v1/orgs/${o.org}/projects`, { slug: PROJECT.slug, name: PROJECT.name });
      await call('POST', `${api}/alerts/channels`, { name: 'Control room hook', kind: 'webhook', url: hook.url, group_by: ['alertname', 'cluster'], group_wait_secs: 0, group_interval_secs: 0, repeat_interval_secs: REPEAT_S });
      await call('POST', `${api}/alerts/rules`, { name: 'Broker unreachable', kind: 'cluster_degraded', for_secs: 0, severity: 'critical', summary: 'MQTT cluster {{cluster}} cannot be reached' });
      for (const c of ['east-a', 'east-b']) {
        await call('POST', `${api}/clusters`, { name: c, backend: 'external', url: `mqtt://127.0.0.1:${await freePort()}` });
        const p = await call('POST', `${api}/clusters/${c}/probe`);
        check(p.health?.reachable === false, `the probe should find ${c} unreachable: ${JSON.stringify(p.health)}`);
      }
      // Both alerts fire and repeat: the channel works before anyone acts.
      await waitUntil('both alerts notify, and repeat', 30000, async () => firingOf('east-a') >= 2 && firingOf('east-b') >= 2);
      ready = true;
      await page.goto(`${base}/alerts/active`);
      await row('east-a').getByRole('button', { name: 'Acknowledge' }).click();
      const dlg = page.getByRole('dialog');
      await dlg.getByLabel('Comment').fill('Broker host rebooting, IT informed');
      await dlg.getByRole('button', { name: 'Acknowledge' }).click();
      await row('east-a').getByText('firing, acknowledged').waitFor();
      await row('east-a').getByText('Acknowledged by').waitFor();
      await shot(page, '40-alert-acknowledged');
      // A notice already on its way may still land; after that, silence for east-a
      // over three repeat intervals, while east-b keeps repeating.
      await sleep(1000);
      const since = Date.now();
      await sleep(3 * REPEAT_S * 1000 + 500);
      const a = firingOf('east-a', since);
      const b = firingOf('east-b', since);
      console.log(`   over ${((Date.now() - since) / 1000).toFixed(1)} s after the acknowledgement: east-a ${a} notices, east-b ${b}`);
      check(a === 0, `the acknowledged alert still notifies: ${a} notices`);
      check(b >= 2, `the other alert should go on repeating every ${REPEAT_S} s: ${b} notices`);
    }, page);

    await step('shelve an alert in the console: hidden behind a count, and silent', needs, async () => {
      check(ready, 'the alerts did not fire');
      await page.goto(`${base}/alerts/active`);
      await row('east-b').getByRole('button', { name: 'Shelve' }).click();
      const dlg = page.getByRole('dialog');
      await dlg.getByLabel('Shelve for (hours)').fill('4');
      await dlg.getByLabel('Comment').fill('Broker replaced tonight');
      await dlg.getByRole('button', { name: 'Shelve' }).click();
      await row('east-b').waitFor({ state: 'detached' });
      const toggle = page.getByRole('checkbox', { name: 'Show 1 shelved' });
      await toggle.waitFor();
      check((await row('east-a').count()) === 1, 'the acknowledged alert should still be listed');
      await sleep(1000);
      const since = Date.now();
      await sleep(3 * REPEAT_S * 1000 + 500);
      const b = firingOf('east-b', since);
      check(b === 0, `the shelved alert still notifies: ${b} notices`);
      await toggle.check();
      await row('east-b').getByText('firing, shelved').waitFor();
      await row('east-b').getByText('Shelved until').waitFor();
      await shot(page, '41-alert-shelved-shown');
      // The history says who did what.
      await page.getByRole('navigation', { name: 'Alert sections' }).getByRole('link', { name: 'History', exact: true }).click();
      const h = page.getByRole('table', { name: 'Alert history' });
      await h.getByText('Broker host rebooting, IT informed', { exact: false }).waitFor();
      await h.getByText('Broker replaced tonight', { exact: false }).waitFor();
      await shot(page, '42-alert-history-acks');
    }, page);
  } finally {
    await hook.close();
  }
}
