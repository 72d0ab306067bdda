// End-to-end step of issue 20, run by e2e.mjs after the readings chart
// fills: a data gap the historian recorded (a `reading_gaps` row, written
// here with psql as weir-historian writes it) is drawn on the chart as a
// labelled gap, and the api's poller turns it into a `data_gap` fleet event
// that the gateway page counts.
import { spawnSync } from 'node:child_process';

// weir_crds::historian::READING_GAPS_DDL; IF NOT EXISTS, so the table a
// weir-historian that makes it already made wins.
const GAPS_DDL = `CREATE TABLE IF NOT EXISTS reading_gaps (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    seq_from bigint NOT NULL, seq_to bigint NOT NULL,
    ts_from timestamptz, ts_to timestamptz,
    detected_at timestamptz NOT NULL DEFAULT now(), reason text NOT NULL,
    PRIMARY KEY (tenant, gateway, seq_from))`;

/**
 * @param {object} t { page, step, check, shot, apiCall }
 * @param {object} o { P, G, hist ({url} or {error}), tenant, gateway, base (console path of the project), apiBase, agentOnline }
 */
export async function dataGapStep(t, o) {
  const { page, step, check, shot, apiCall } = t;
  await step('a data gap shows on the chart as a gap, and on the gateway page', [['GET', `${o.G}/series`], ['GET', `${o.P}/fleet-events`]], async () => {
    check(!o.hist.error, `no historian database: ${o.hist.error}`);
    check(o.agentOnline, 'the agent is not online');
    const from = new Date(Date.now() - 60_000).toISOString();
    const to = new Date(Date.now() - 45_000).toISOString();
    const sql = `${GAPS_DDL}; INSERT INTO reading_gaps (tenant, gateway, seq_from, seq_to, ts_from, ts_to, reason) VALUES ('${o.tenant}', '${o.gateway}', 900000100, 900000149, '${from}', '${to}', 'not-retained')`;
    const r = spawnSync('psql', [o.hist.url, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { encoding: 'utf8' });
    check(r.status === 0, `psql failed: ${r.stderr}`);
    await page.goto(`${o.base}/gateways/${o.gateway}/readings`);
    await page.waitForFunction(() => document.querySelector('[data-testid=chart]')?.getAttribute('data-gaps') === '1' && !!document.querySelector('[data-testid=chart] canvas'), null, { timeout: 30000 });
    const listed = (await page.getByRole('list', { name: 'Data gaps' }).textContent()) ?? '';
    check(listed.includes('Data gap: seq 900000100–900000149 lost (50 frames, not-retained)'), `under the chart: "${listed}"`);
    console.log(`   under the chart: "${listed}"`);
    await page.waitForTimeout(300);
    await shot(page, '10b-gateway-readings-gap');
    // The api's poller (every 5 s) records it as a fleet event once.
    const path = `${o.apiBase}/fleet-events?gateway=${o.gateway}&kind=data_gap`;
    const end = Date.now() + 30_000;
    let ev = [];
    while (Date.now() < end && !ev.length) {
      const a = await apiCall(page, 'GET', path);
      ev = a.status === 200 ? a.json : [];
      if (!ev.length) await page.waitForTimeout(500);
    }
    check(ev.length === 1 && ev[0].gap?.seq_from === 900000100 && ev[0].gap?.seq_to === 900000149, `data_gap fleet events: ${JSON.stringify(ev)}`);
    await page.goto(`${o.base}/gateways/${o.gateway}`);
    const region = page.getByRole('region', { name: 'Data gaps' });
    await region.getByText(/1 range of readings lost for good\. Last: seq 900000100–900000149/).waitFor({ timeout: 15000 });
    await shot(page, '10c-gateway-data-gaps');
  }, page);
}
