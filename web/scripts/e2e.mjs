// End-to-end: a real weir-api (fresh SQLite), the built console it serves,
// Debian's chromium driven by playwright-core. A step whose api route is
// missing from the served OpenAPI document, or that cannot set itself up,
// fails (nothing is skipped): the console depends on every route it calls.
//
// Every step fails on an uncaught error in the page (`pageerror`) and on a
// `console.error`, except the failed requests it names as expected (a
// deliberate 4xx, each with the reason beside it).
//
// One file of about 750 lines: the steps share one browser, one api and the
// state each step leaves for the next (a walk-through, in order).
//
// After the walk-through, a second project is seeded through the api the way
// `make demo` seeds one (scripts/demo_seed.py): a cluster, gateways with two
// config versions, alert rules, a channel, a silence, a member, a token, and
// an alert that fires (a cluster-degraded rule on a broker nobody listens
// on, probed through the api); then every page the navigation reaches must
// show what was seeded.
//
// The readings chart runs the real data path: weir-agent (simulated device)
// → a Mosquitto of our own → weir-historian → a fresh PostgreSQL database
// (WEIR_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test, names
// the server) → weir-api's series endpoint (WEIR_HISTORIAN_URL) → uPlot.
// Without Mosquitto or PostgreSQL that step fails and says why.
//
//   npm run build && npm run e2e
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';
import { ADMIN_EMAIL, ADMIN_PASSWORD, cargoBuild, freePort, startApi, TARGET_DIR, WEB_DIR } from './lib/api-server.mjs';
import { lifecycleSteps, revokeAgentStep } from './lib/e2e-lifecycle.mjs';
import { clusterPageSteps, setpointWriteStep } from './lib/e2e-setpoint.mjs';
import { agentReportStep, clusterChoiceSteps, overviewRateStep } from './lib/e2e-fleet.mjs';
import { dataGapStep } from './lib/e2e-gaps.mjs';
import { latestValuesStep } from './lib/e2e-latest.mjs';
import { trendsStep } from './lib/e2e-trends.mjs';
import { credentialSteps } from './lib/e2e-credentials.mjs';
import { fleetPageSteps, fleetViewerChecks } from './lib/e2e-fleet-pages.mjs';
import { alarmAckSteps } from './lib/e2e-alerts-ack.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const MOSQUITTO = process.env.MOSQUITTO ?? '/usr/sbin/mosquitto';
const PG_URL = process.env.WEIR_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const OUT = join(WEB_DIR, 'test-results');
const DIST = join(WEB_DIR, 'dist');
const ORG = { name: 'Riverside Water', slug: 'riverside-water' };
const PROJECT = { name: 'North Plant', slug: 'north-plant' };
const GATEWAY = 'north-pump-station';
const VIEWER = { email: 'viewer@riverside.example', password: 'viewer-password-123', name: 'Vera Viewer' };

const SEED = {
  project: { name: 'South Plant', slug: 'south-plant' },
  cluster: 'south-broker',
  gateways: [
    { name: 'chlorination', site: 'Chlorine contact tank', device: 'chlorination-sim', tags: [['chlorine_residual', 'mg/L', 0.15, 1.6], ['dose_rate', 'kg/h', 1.5, 3.0]] },
    { name: 'clear-well', site: 'Clear water storage', device: 'clear-sim', tags: [['level', 'm', 2.0, 4.5]] },
  ],
  rules: [
    // [body, what the Rules page says it fires on]
    [{ name: 'Chlorine residual low', kind: 'threshold', gateway: 'chlorination', tag: 'chlorine_residual', op: '<', threshold: 0.3, for_secs: 10, severity: 'critical', summary: '{{gateway}}/{{tag}} is {{value}} mg/L (limit {{threshold}})' }, 'chlorination / chlorine_residual below 0.3 for 10 s'],
    [{ name: 'Clear well gateway offline', kind: 'gateway_offline', gateway: 'clear-well', for_secs: 0, severity: 'critical', summary: '{{gateway}} stopped reporting' }, 'gateway clear-well offline'],
    [{ name: 'South broker unreachable', kind: 'cluster_degraded', for_secs: 0, severity: 'warning', summary: 'MQTT cluster {{cluster}} cannot be reached' }, 'the MQTT cluster degraded'],
  ],
  channel: { name: 'Control room', kind: 'webhook', url: 'https://hooks.riverside.example/weir' },
  silence: { matchers: [{ name: 'gateway', value: 'clear-well' }], comment: 'Clear well pump replacement' },
  member: { email: 'olive@riverside.example', name: 'Olive Operator', password: 'olive-password-123', role: 'project-editor' },
  token: { name: 'South SCADA reader', role: 'project-viewer' },
};

const results = { passed: 0, failed: 0 };
const cleanups = [];
let doc = { paths: {} };

function has(method, path) {
  return !!doc.paths?.[path]?.[method.toLowerCase()];
}

async function shot(page, name) {
  try {
    await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
  } catch (e) {
    console.log(`   (screenshot ${name} failed: ${e.message})`);
  }
}

/**
 * Failed requests a step causes on purpose, so their console.error is
 * expected: { status, path, why }. Nothing else may reach console.error, and
 * no uncaught page error is ever allowed.
 */
function expected(problem, allow) {
  if (problem.kind !== 'console.error') return false;
  return allow.some((a) => problem.text.includes(`status of ${a.status}`) && (problem.url.includes(a.path) || problem.text.includes(a.path)));
}

/** Record the page's uncaught errors and console.error messages. */
function watch(page) {
  const seen = [];
  page.on('pageerror', (e) => seen.push({ kind: 'pageerror', text: e.stack ?? e.message, url: '' }));
  page.on('console', (m) => {
    if (m.type() === 'error') seen.push({ kind: 'console.error', text: m.text(), url: m.location()?.url ?? '' });
  });
  page.seen = seen;
}

/**
 * Run one step; `needs` lists [METHOD, path] the step calls. `allow` names
 * the failed requests the step makes on purpose (see `expected`).
 */
async function step(name, needs, fn, page, allow = []) {
  const missing = needs.filter(([m, p]) => !has(m, p));
  if (missing.length) {
    results.failed++;
    console.log(`e2e: FAIL ${name}: the api has no ${missing.map(([m, p]) => `${m} ${p}`).join(', ')}`);
    return false;
  }
  const t0 = Date.now();
  const from = page?.seen?.length ?? 0;
  try {
    await fn();
    const bad = (page?.seen ?? []).slice(from).filter((p) => !expected(p, allow));
    if (bad.length) throw new Error(`the page reported errors:\n${bad.map((p) => `  ${p.kind}: ${p.text}${p.url ? ` (${p.url})` : ''}`).join('\n')}`);
    results.passed++;
    console.log(`e2e: ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return true;
  } catch (e) {
    results.failed++;
    const errs = (page?.seen ?? []).slice(from).filter((p) => !expected(p, allow));
    const also = errs.length ? `\n  and the page reported:\n${errs.map((p) => `  ${p.kind}: ${p.text}`).join('\n')}` : '';
    console.log(`e2e: FAIL ${name}: ${e.stack ?? e}${also}`);
    if (page) await shot(page, `FAILED-${name.replace(/\W+/g, '-')}`);
    return false;
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

async function browserFor(baseURL) {
  const dir = mkdtempSync(join(tmpdir(), 'weir-chromium-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // A persistent context is how playwright takes a fresh --user-data-dir.
  const ctx = await chromium.launchPersistentContext(dir, {
    headless: true,
    executablePath: CHROMIUM,
    args: ARGS,
    baseURL,
    viewport: { width: 1360, height: 860 },
    acceptDownloads: true,
    locale: 'en-GB',
    timezoneId: 'Europe/London',
  });
  cleanups.push(() => ctx.close().catch(() => {}));
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => console.log(`   browser error: ${e.message}`));
  watch(page);
  return { ctx, page };
}

async function signIn(page, email, password) {
  await page.goto('/signin');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/signin'));
  await page.getByTestId('whoami').waitFor();
}

/** Call the api from inside the signed-in page (cookie + CSRF header). */
async function apiCall(page, method, path, body, { csrf = true } = {}) {
  return page.evaluate(
    async ({ method, path, body, csrf }) => {
      const token = document.cookie.split('; ').find((c) => c.startsWith('weir_csrf='))?.split('=')[1];
      const headers = { 'content-type': 'application/json' };
      if (csrf && token) headers['x-csrf-token'] = decodeURIComponent(token);
      const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
      let json = null;
      try {
        json = await r.json();
      } catch {}
      return { status: r.status, json };
    },
    { method, path, body, csrf },
  );
}

const agentBin = () => process.env.WEIR_AGENT_BIN ?? join(TARGET_DIR, 'debug', 'weir-agent');

function historianBin() {
  if (process.env.WEIR_HISTORIAN_BIN) return process.env.WEIR_HISTORIAN_BIN;
  const sibling = process.env.WEIR_AGENT_BIN && join(dirname(process.env.WEIR_AGENT_BIN), 'weir-historian');
  if (sibling && existsSync(sibling)) return sibling;
  return cargoBuild('weir-historian');
}

function tail(s, n = 3000) {
  return s.length > n ? s.slice(-n) : s;
}

async function waitPort(port, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((res) => {
      const c = connect(port, '127.0.0.1', () => (c.end(), res(true)));
      c.on('error', () => res(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

/**
 * The readings' way into PostgreSQL: a fresh database migrated by
 * weir-historian, a Mosquitto of our own, and weir-historian storing the
 * organization's readings. Returns { url, mqttUrl, logs() } or { error }.
 */
async function startHistorian() {
  try {
    if (!existsSync(MOSQUITTO)) throw new Error(`${MOSQUITTO} is missing: install Debian's mosquitto (or set MOSQUITTO)`);
    const bin = historianBin();
    const name = `weir_e2e_hist_${randomBytes(6).toString('hex')}`;
    const url = `${PG_URL.replace(/\/[^/]*$/, '')}/${name}`;
    const env = { ...process.env, WEIR_HISTORIAN_DATABASE_URL: url, RUST_LOG: 'info' };
    const m = spawnSync(bin, ['migrate', '--create-database'], { env, encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`weir-historian migrate failed (is PostgreSQL running at ${PG_URL}?):\n${tail(m.stderr ?? '')}`);
    cleanups.push(() => spawnSync('psql', [PG_URL, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' }));
    const dir = mkdtempSync(join(tmpdir(), 'weir-mosquitto-'));
    const port = await freePort();
    writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n`);
    let log = '';
    const keep = (who) => (b) => (log = tail(log + `[${who}] ${b}`, 20000));
    const broker = spawn(MOSQUITTO, ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    broker.stderr.on('data', keep('mosquitto'));
    cleanups.push(() => { broker.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); });
    await waitPort(port, 10000);
    const mqttUrl = `mqtt://127.0.0.1:${port}`;
    const sink = spawn(bin, [], {
      env: { ...env, WEIR_MQTT_URL: mqttUrl, WEIR_TENANT: ORG.slug, WEIR_HISTORIAN_CLIENT_ID: 'weir-historian-e2e', WEIR_HISTORIAN_METRICS_LISTEN: `127.0.0.1:${await freePort()}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    sink.stdout.on('data', keep('historian'));
    sink.stderr.on('data', keep('historian'));
    cleanups.push(() => sink.kill('SIGTERM'));
    console.log(`e2e: historian: mosquitto on ${mqttUrl}, weir-historian into database ${name}`);
    return { url, mqttUrl, logs: () => log };
  } catch (e) {
    console.log(`e2e: no historian (the chart step will fail): ${e.message}`);
    return { error: e.message };
  }
}

function agentHelp() {
  const bin = agentBin();
  return existsSync(bin) ? spawnSync(bin, ['--help'], { encoding: 'utf8' }).stdout ?? '' : '';
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`);
  if (!existsSync(join(DIST, 'index.html'))) {
    console.log('e2e: web/dist is missing; building the console');
    const r = spawnSync('npx', ['vite', 'build'], { cwd: WEB_DIR, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('vite build failed');
  }
  const hist = await startHistorian();
  // Loopback is allowed outbound: the setpoint step's cluster is the suite's own
  // broker, and the alarm steps' webhook receiver listens on 127.0.0.1.
  const api = await startApi({ webDir: DIST, env: { WEIR_OUTBOUND_ALLOW_CIDRS: '127.0.0.0/8', ...(hist.url ? { WEIR_HISTORIAN_URL: hist.url } : {}) } });
  cleanups.push(() => api.stop());
  console.log(`e2e: weir-api on ${api.url}`);
  doc = await (await fetch(`${api.url}/api/v1/openapi.json`)).json();
  const P = '/api/v1/orgs/{org}/projects/{project}';
  const G = `${P}/gateways/{gateway}`;

  const { page } = await browserFor(api.url);

  await step('sign-in page and local sign-in', [['POST', '/api/v1/auth/login'], ['GET', '/api/v1/me']], async () => {
    await page.goto('/');
    await page.waitForURL(/\/signin/);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await shot(page, '01-signin');
    await page.getByLabel('Email').fill(ADMIN_EMAIL);
    await page.getByLabel('Password').fill('wrong-password-here');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert').first();
    await alert.waitFor();
    const text = (await alert.textContent()) ?? '';
    check(!/\b(401|403)\b/.test(text) && text.length > 10, `wrong password should read in words, got "${text}"`);
    await shot(page, '01b-signin-wrong-password');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => !u.pathname.startsWith('/signin'));
    await page.getByTestId('whoami').waitFor();
  }, page, [
    { status: 401, path: '/api/v1/me', why: 'the console asks who is signed in before anyone is' },
    { status: 401, path: '/api/v1/auth/login', why: 'the wrong password, on purpose' },
  ]);

  await step('create an organization', [['POST', '/api/v1/orgs'], ['GET', '/api/v1/orgs']], async () => {
    await page.goto('/orgs');
    await page.getByRole('button', { name: 'New organization' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Name', { exact: true }).fill(ORG.name);
    check((await dlg.getByLabel('URL name').inputValue()) === ORG.slug, 'URL name should follow the name');
    await dlg.getByRole('button', { name: 'Create organization' }).click();
    await page.waitForURL(`**/o/${ORG.slug}`);
    await page.getByRole('heading', { name: 'Projects' }).waitFor();
  }, page);

  await step('create a project', [['POST', '/api/v1/orgs/{org}/projects']], async () => {
    await page.getByRole('button', { name: 'New project' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Name', { exact: true }).fill(PROJECT.name);
    await dlg.getByRole('button', { name: 'Create project' }).click();
    await page.waitForURL(`**/o/${ORG.slug}/p/${PROJECT.slug}`);
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    await page.waitForTimeout(500);
    await shot(page, '03-fleet-overview');
  }, page);

  const base = `/o/${ORG.slug}/p/${PROJECT.slug}`;
  const apiBase = `/api/v1/orgs/${ORG.slug}/projects/${PROJECT.slug}`;
  let gatewayMade = false;
  await step('create a gateway', [['POST', `${P}/gateways`], ['GET', G]], async () => {
    await page.goto(`${base}/gateways`);
    await page.getByRole('button', { name: 'New gateway' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Name', { exact: true }).fill(GATEWAY);
    await dlg.getByLabel('Site name').fill('North pump station');
    await dlg.getByRole('button', { name: 'Create gateway' }).click();
    await page.waitForURL(`**/gateways/${GATEWAY}`);
    gatewayMade = true;
    await shot(page, '05-gateway-overview');
  }, page);

  await step('device editor shows the api’s validation beside the field, then saves', [['PATCH', G]], async () => {
    check(gatewayMade, 'no gateway');
    await page.goto(`${base}/gateways/${GATEWAY}/config`);
    await page.getByRole('button', { name: 'Start with a simulated device' }).click();
    const interval = page.getByLabel('Poll every (ms)').first();
    await interval.fill('5');
    await page.getByLabel('What changed').fill('first device');
    await page.getByRole('button', { name: 'Save new version' }).click();
    await page.waitForFunction(() => document.querySelector('input[aria-invalid="true"]'));
    check((await interval.getAttribute('aria-invalid')) === 'true', 'the interval field should be marked invalid');
    const msg = await page.locator('.field:has(input[aria-invalid="true"]) .error').first().textContent();
    console.log(`   api said beside the field: "${msg}"`);
    await shot(page, '06-gateway-config-invalid');
    await interval.fill('1000');
    await page.getByRole('button', { name: 'Save new version' }).click();
    await page.getByText('Saved as a new version').waitFor();
    await shot(page, '06b-gateway-config-saved');
  }, page, [{ status: 422, path: `/gateways/${GATEWAY}`, why: 'a 5 ms poll interval, on purpose, to see the api’s objection beside the field' }]);

  await step('versions, diff and rollback', [['GET', `${G}/versions`], ['GET', `${G}/versions/{version}/diff`], ['POST', `${G}/rollback`]], async () => {
    await page.goto(`${base}/gateways/${GATEWAY}/versions`);
    await page.getByRole('table', { name: 'Versions' }).waitFor();
    const compare = page.getByRole('button', { name: 'Compare with current' }).first();
    if (await compare.count()) {
      await compare.click();
      await page.getByRole('heading', { name: /Changes from v/ }).waitFor();
    }
    await shot(page, '07-gateway-versions');
  }, page);

  let installCmd = null;
  await step('issue an enrollment token with a copyable install command', [['POST', `${G}/enrollment-tokens`]], async () => {
    await page.goto(`${base}/gateways/${GATEWAY}/enrollment`);
    await page.getByRole('button', { name: 'Issue enrollment token' }).click();
    const text = await page.getByTestId('install').getByTestId('copy-text').textContent();
    check(/weir-agent .*--server \S+ .*--token \S+/.test(text ?? ''), `install command looks wrong: ${text}`);
    installCmd = text;
    await shot(page, '08-gateway-enrollment');
  }, page);

  // A real agent with a simulated device, when the agent and enrollment exist.
  let help = agentHelp();
  if (!/\brun\b/.test(help) && has('POST', '/api/v1/enroll')) {
    cargoBuild('weir-agent');
    help = agentHelp();
  }
  if (!/\brun\b/.test(help)) {
    results.failed++;
    console.log('e2e: FAIL agent enrolls and turns online: weir-agent has no `run` command (or the api has no POST /api/v1/enroll)');
  }
  let agentOnline = false;
  const agentRan = /\brun\b/.test(help);
  if (agentRan) {
    await step('agent enrolls with the install command and turns online', [['POST', '/api/v1/enroll'], ['GET', `${P}/rollout`]], async () => {
      check(installCmd, 'no install command');
      const token = installCmd.match(/--token (\S+)/)[1];
      const dir = mkdtempSync(join(tmpdir(), 'weir-agent-'));
      const metricsPort = await freePort();
      const agent = spawn(agentBin(), ['run', '--server', api.url, '--token', token], {
        cwd: dir,
        env: { ...process.env, RUST_LOG: 'info', WEIR_DATA_DIR: join(dir, 'data'), WEIR_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, WEIR_HEARTBEAT_S: '2', ...(hist.mqttUrl ? { WEIR_MQTT_URL: hist.mqttUrl } : {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let alog = '';
      agent.stdout.on('data', (b) => (alog += b));
      agent.stderr.on('data', (b) => (alog += b));
      cleanups.push(() => { agent.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); });
      try {
        await page.goto(`${base}/gateways`);
        await page.getByRole('table', { name: 'Gateways' }).getByText('Online').waitFor({ timeout: 60000 });
        agentOnline = true;
        await shot(page, '09-gateways-online');
      } catch (e) {
        throw new Error(`${e.message}\n--- agent log ---\n${alog.slice(-3000)}`);
      }
    }, page);
    await step('the live readings chart fills', [['GET', `${G}/series`]], async () => {
      check(!hist.error, `no historian to read from: ${hist.error}`);
      check(agentOnline, 'the agent is not online');
      await page.goto(`${base}/gateways/${GATEWAY}/readings`);
      const picked = await page.getByRole('region', { name: 'Trends' }).getByRole('checkbox', { checked: true }).first().getAttribute('value');
      const [device, tag] = picked.split('/');
      const seriesPath = () => `/api/v1/orgs/${ORG.slug}/projects/${PROJECT.slug}/gateways/${GATEWAY}/series?series=${device}%2F${tag}&from=${new Date(Date.now() - 900e3).toISOString()}&step=5s&mode=buckets`;
      try {
        // The chart draws the api's readings (uPlot renders a canvas); more than one point in it.
        await page.waitForFunction(() => Number(document.querySelector('[data-testid=chart]')?.getAttribute('data-points') ?? 0) > 1 && !!document.querySelector('[data-testid=chart] canvas'), null, { timeout: 60000 });
      } catch (e) {
        const r = await apiCall(page, 'GET', seriesPath());
        throw new Error(`${e.message}\n--- series answer ---\n${JSON.stringify(r).slice(0, 1500)}\n--- historian log ---\n${tail(hist.logs(), 3000)}`);
      }
      // And the buckets hold the agent's readings, stored by the historian.
      const r = await apiCall(page, 'GET', seriesPath());
      check(r.status === 200 && r.json.mode === 'buckets', `series answered ${r.status} ${JSON.stringify(r.json)}`);
      const pts = r.json.series?.[0]?.points ?? [];
      check(pts.length > 1 && pts.every((p) => p.count > 0 && typeof p.avg === 'number'), `series has no readings: ${JSON.stringify(r.json).slice(0, 500)}`);
      console.log(`   ${device}/${tag}: ${pts.length} buckets of 5 s, ${pts.reduce((n, p) => n + p.count, 0)} readings, last average ${pts[pts.length - 1].avg}`);
      await page.waitForTimeout(300);
      await shot(page, '10-gateway-readings');
      // The chart shows the raw readings of the last 15 minutes (few enough);
      // the download holds them, one row per reading.
      const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
      const csvPath = join(OUT, 'readings-export.csv');
      await dl.saveAs(csvPath);
      const rows = readFileSync(csvPath, 'utf8').trim().split('\r\n');
      check(rows[0] === 'time,device,tag,value,value_text,error_code,error,unit', `unexpected CSV header: ${rows[0]}`);
      check(rows.length > 2 && rows.slice(1).every((l) => l.split(',')[1] === device && l.split(',')[2] === tag && l.split(',')[3] !== ''), `CSV rows: ${rows.slice(0, 4).join(' | ')}`);
      console.log(`   CSV export: ${rows.length - 1} readings, e.g. ${rows[1]}`);
    }, page);
    await latestValuesStep({ page, step, check, shot, apiCall }, { G, base, apiBase, gateway: GATEWAY, hist, agentOnline });
    await dataGapStep({ page, step, check, shot, apiCall }, { P, G, hist, tenant: ORG.slug, gateway: GATEWAY, base, apiBase, agentOnline });
    await agentReportStep({ page, step, check, shot, apiCall }, { G, url: `${base}/gateways/${GATEWAY}`, api: `${apiBase}/gateways/${GATEWAY}`, agentOnline });
    await overviewRateStep({ page, step, check, shot, apiCall }, { P, apiBase, base, agentOnline });
    await trendsStep({ page, step, check, shot, apiCall }, { G, base, apiBase, gateway: GATEWAY, hist, agentOnline, out: OUT });
  }
  await clusterChoiceSteps({ page, step, check, shot, apiCall, freePort }, { P, G, base, apiBase, gateway: GATEWAY });
  // After the cluster steps (they start from a gateway without a cluster):
  // the write moves the gateway to a cluster on the suite's own broker.
  if (agentRan) {
    await setpointWriteStep({ page, step, check, shot, apiCall, freePort, cleanups }, { G, base, apiBase, org: ORG.slug, gateway: GATEWAY, hist, agentOnline });
    await clusterPageSteps({ page, step, check, shot, apiCall }, { P, base, apiBase, org: ORG.slug });
    await revokeAgentStep({ page, step, check, shot }, { G, url: `${base}/gateways/${GATEWAY}`, agentOnline });
  }
  await credentialSteps({ page, step, check, shot, apiCall }, { P, base, apiBase });
  await fleetPageSteps({ page, step, check, shot, apiCall }, { P, base, apiBase, gateway: GATEWAY });

  let viewerAdded = false;
  await step('invite a project viewer', [['POST', '/api/v1/users'], ['POST', `${P}/members`]], async () => {
    const r = await apiCall(page, 'POST', '/api/v1/users', { email: VIEWER.email, name: VIEWER.name, password: VIEWER.password });
    check(r.status === 201, `creating the viewer account answered ${r.status} ${JSON.stringify(r.json)}`);
    await page.goto(`${base}/members`);
    await page.getByRole('button', { name: 'Invite member' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Email').fill(VIEWER.email);
    await dlg.getByLabel('Role').selectOption('project-viewer');
    await dlg.getByRole('button', { name: 'Send invitation' }).click();
    await page.getByText(`Added ${VIEWER.email}.`).waitFor();
    await page.getByRole('cell', { name: VIEWER.email }).waitFor();
    viewerAdded = true;
    await shot(page, '11-project-members');
  }, page);

  await step('the api refuses a forged request (no CSRF token)', [['POST', '/api/v1/orgs']], async () => {
    const forged = await apiCall(page, 'POST', '/api/v1/orgs', { slug: 'forged', name: 'Forged' }, { csrf: false });
    check(forged.status === 403, `a change without the CSRF header answered ${forged.status}`);
    check(String(forged.json?.type ?? '').endsWith('/csrf'), `expected a csrf problem, got ${JSON.stringify(forged.json)}`);
    const list = await apiCall(page, 'GET', '/api/v1/orgs');
    check(!JSON.stringify(list.json).includes('"forged"'), 'the forged organization was created');
  }, page, [{ status: 403, path: '/api/v1/orgs', why: 'the forged request without the CSRF header, on purpose' }]);

  await step('audit log lists the changes and exports CSV', [['GET', '/api/v1/orgs/{org}/audit']], async () => {
    await page.goto(`/o/${ORG.slug}/audit`);
    await page.getByRole('table', { name: 'Audit entries' }).waitFor();
    // The first entry is pages back by now: the Action filter finds it.
    const filters = page.getByRole('form', { name: 'Filters' });
    await filters.getByLabel('Action').fill('org.create');
    await filters.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByRole('table', { name: 'Audit entries' }).getByText('org.create').first().waitFor();
    await shot(page, '12-audit-log');
    await filters.getByRole('button', { name: 'Clear' }).click();
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const path = join(OUT, 'audit-export.csv');
    await dl.saveAs(path);
    const csv = readFileSync(path, 'utf8');
    check(csv.startsWith('seq,at,actor,action,target,outcome'), `unexpected CSV header: ${csv.slice(0, 80)}`);
    check(csv.includes('org.create'), 'CSV lacks the org.create entry');
  }, page);

  await step('screenshots of the remaining pages', [], async () => {
    const pages = [
      ['02-organizations', '/orgs', 'Organizations'],
      ['04-gateways', `${base}/gateways`, 'Edge gateways'],
      ['13-clusters', `${base}/clusters`, 'MQTT clusters'],
      ['14-cluster-wizard', `${base}/clusters/new`, null],
      ['15-alerts-active', `${base}/alerts/active`, 'Alerts'],
      ['16-alerts-rules', `${base}/alerts/rules`, 'Alerts'],
      ['17-alerts-channels', `${base}/alerts/channels`, 'Alerts'],
      ['18-org-members', `/o/${ORG.slug}/members`, 'Organization members'],
      ['19-api-tokens', `/o/${ORG.slug}/tokens`, 'API tokens'],
      ['20-account', '/account', 'Account'],
    ];
    for (const [name, url, heading] of pages) {
      await page.goto(url);
      if (heading) await page.getByRole('heading', { name: heading, exact: true }).waitFor();
      await page.waitForLoadState('networkidle');
      await shot(page, name);
    }
    await page.goto(`/o/${ORG.slug}/tokens`);
    await page.getByRole('button', { name: 'New token' }).click();
    await page.getByRole('dialog').getByLabel('Name', { exact: true }).fill('SCADA export');
    await page.getByRole('dialog').getByRole('button', { name: 'Create token' }).click();
    await page.getByText('It is shown only once').waitFor();
    await shot(page, '19b-api-token-created');
    await page.getByRole('button', { name: 'Done' }).click();
  }, page);

  if (viewerAdded) {
    const v = await browserFor(api.url);
    await step('a viewer sees no edit controls', [], async () => {
      await signIn(v.page, VIEWER.email, VIEWER.password);
      await v.page.goto(`/o/${ORG.slug}`);
      await v.page.getByRole('link', { name: PROJECT.name }).waitFor();
      check((await v.page.getByRole('button', { name: 'New project' }).count()) === 0, 'viewer is offered "New project"');
      await v.page.goto(`${base}/members`);
      await v.page.getByRole('cell', { name: VIEWER.email }).waitFor();
      check((await v.page.getByRole('button', { name: 'Invite member' }).count()) === 0, 'viewer is offered "Invite member"');
      check((await v.page.getByRole('button', { name: 'Remove' }).count()) === 0, 'viewer is offered "Remove"');
      check((await v.page.locator('select[aria-label^="Role of"]').count()) === 0, 'viewer is offered role changes');
      await shot(v.page, '21-viewer-members');
      if (has('GET', `${P}/gateways`)) {
        await v.page.goto(`${base}/gateways`);
        await v.page.getByRole('heading', { name: 'Edge gateways' }).waitFor();
        await v.page.waitForLoadState('networkidle');
        check((await v.page.getByRole('button', { name: 'New gateway' }).count()) === 0, 'viewer is offered "New gateway"');
        if (gatewayMade) {
          await v.page.goto(`${base}/gateways/${GATEWAY}/config`);
          await v.page.getByText('your role does not allow changing it').waitFor();
          check((await v.page.getByRole('button', { name: 'Save new version' }).count()) === 0, 'viewer is offered "Save new version"');
          check((await v.page.getByRole('button', { name: 'Delete gateway' }).count()) === 0, 'viewer is offered "Delete gateway"');
          await shot(v.page, '22-viewer-gateway-config');
        }
      }
      await fleetViewerChecks(v.page, check, base);
      // And the api agrees: a viewer's change is refused even with the CSRF token.
      const r = await apiCall(v.page, 'POST', '/api/v1/orgs/' + ORG.slug + '/projects', { slug: 'sneaky', name: 'Sneaky' });
      check(r.status === 403 || r.status === 404, `a viewer creating a project answered ${r.status}`);
    }, v.page, [
      { status: 401, path: '/api/v1/me', why: 'the sign-in page asks who is signed in before anyone is' },
      { status: 403, path: `/api/v1/orgs/${ORG.slug}/projects`, why: 'the viewer creating a project, on purpose' },
      { status: 404, path: `/api/v1/orgs/${ORG.slug}/projects`, why: 'the viewer creating a project, on purpose' },
    ]);
  } else {
    results.failed++;
    console.log('e2e: FAIL a viewer sees no edit controls: no viewer could be added');
  }

  // Password change, disabling the viewer, sign out everywhere (scripts/lib/e2e-lifecycle.mjs).
  await lifecycleSteps({ page, browserFor, baseURL: api.url, step, check, shot, signIn, admin: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD }, viewer: VIEWER });

  await seededProject(page);

  // Acknowledge and shelve alerts (scripts/lib/e2e-alerts-ack.mjs).
  await alarmAckSteps({ page, step, check, shot, apiCall }, { P, org: ORG.slug });
}

/** Call the api and insist on a 2xx answer. */
async function seedCall(page, method, path, body) {
  const r = await apiCall(page, method, path, body);
  if (r.status < 200 || r.status > 299) throw new Error(`seeding: ${method} ${path} answered ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

async function waitFor(what, ms, probe) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await probe();
    if (last.ok) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what}: not within ${ms / 1000} s; last seen ${JSON.stringify(last?.seen).slice(0, 1500)}`);
}

/** A project seeded like the demo's, and every page of it with its data. */
async function seededProject(page) {
  const o = `/api/v1/orgs/${ORG.slug}`;
  const p = `${o}/projects/${SEED.project.slug}`;
  const base = `/o/${ORG.slug}/p/${SEED.project.slug}`;
  let seeded = false;
  let firing = null;
  await step('seed a project like the demo through the api', [], async () => {
    await seedCall(page, 'POST', `${o}/projects`, { slug: SEED.project.slug, name: SEED.project.name, description: 'Chlorination and storage' });
    // A broker nobody listens on: the api's probe finds it unreachable.
    await seedCall(page, 'POST', `${p}/clusters`, { name: SEED.cluster, title: 'South Mosquitto', backend: 'external', url: `mqtt://127.0.0.1:${await freePort()}` });
    for (const g of SEED.gateways) {
      const spec = {
        site: { name: g.site, timezone: 'Europe/London' },
        mode: 'external',
        clusterRef: SEED.cluster,
        devices: [{ name: g.device, adapter: 'simulator', simulator: { seed: 7 }, groups: [{ name: 'main', intervalMs: 1000, tags: g.tags.map(([name, unit, min, max]) => ({ name, address: 'sim', dataType: 'float64', unit, signal: { kind: 'randomWalk', min, max, step: 0.02 } })) }] }],
        uplink: { lingerMs: 50 },
      };
      await seedCall(page, 'POST', `${p}/gateways`, { name: g.name, spec, comment: 'demo seed' });
      await seedCall(page, 'PATCH', `${p}/gateways/${g.name}`, { spec: { ...spec, uplink: { lingerMs: 100 } }, comment: 'linger 100 ms' });
      await seedCall(page, 'POST', `${p}/gateways/${g.name}/enrollment-tokens`, { expires_in_secs: 86400, max_uses: 1 });
    }
    // After the gateways: a rule may name only a gateway of its own project.
    for (const [rule] of SEED.rules) await seedCall(page, 'POST', `${p}/alerts/rules`, rule);
    await seedCall(page, 'POST', `${p}/alerts/channels`, SEED.channel);
    await seedCall(page, 'POST', `${p}/alerts/silences`, { ...SEED.silence, duration_secs: 4 * 3600 });
    await seedCall(page, 'POST', '/api/v1/users', { email: SEED.member.email, name: SEED.member.name, password: SEED.member.password });
    await seedCall(page, 'POST', `${p}/members`, { email: SEED.member.email, role: SEED.member.role });
    await seedCall(page, 'POST', `${p}/tokens`, SEED.token);
    const probed = await seedCall(page, 'POST', `${p}/clusters/${SEED.cluster}/probe`);
    check(probed.health && probed.health.reachable === false, `the probe should find ${SEED.cluster} unreachable: ${JSON.stringify(probed.health)}`);
    seeded = true;
    // The cluster-degraded rule fires on the probe's finding.
    const r = await waitFor('the cluster-degraded alert fires', 30000, async () => {
      const a = await apiCall(page, 'GET', `${p}/alerts/active`);
      return { ok: a.status === 200 && a.json.some((x) => x.state === 'firing'), seen: a };
    });
    firing = r.seen.json.find((x) => x.state === 'firing');
    console.log(`   firing: ${firing.summary} (${firing.series})`);
  }, page);

  /**
   * One page of the seeded project: load `start` afresh (so one broken page
   * does not hide the next), reach the page from the navigation, check what
   * a user looks for.
   */
  const visit = (name, start, fn) => step(`seeded: ${name}`, [], async () => {
    check(seeded, 'the project was not seeded');
    await page.goto(start);
    await page.getByTestId('whoami').waitFor();
    await fn();
    await page.waitForLoadState('networkidle');
    await shot(page, `30-seeded-${name.replace(/\W+/g, '-').toLowerCase()}`);
  }, page);
  const nav = async (link) => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: link, exact: true }).click();
  };
  const main = () => page.locator('.main');
  const sees = async (text, where = main()) => {
    await where.getByText(text, { exact: false }).first().waitFor();
  };

  await visit('fleet overview shows the gateways, the firing alert and the unreachable broker', base, async () => {
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    for (const g of SEED.gateways) await sees(g.name);
    check(firing, 'no firing alert');
    await sees(firing.summary);
    await sees(SEED.cluster);
    await sees('Unreachable');
  });
  await visit('Edge gateways lists both gateways with their sites', base, async () => {
    await nav('Edge gateways');
    const t = page.getByRole('table', { name: 'Gateways' });
    for (const g of SEED.gateways) {
      await t.getByRole('link', { name: g.name }).waitFor();
      await sees(g.site, t);
    }
  });
  await visit('a gateway’s versions list both config versions', `${base}/gateways`, async () => {
    await page.getByRole('table', { name: 'Gateways' }).getByRole('link', { name: SEED.gateways[0].name }).click();
    await page.getByRole('heading', { name: SEED.gateways[0].name }).waitFor();
    await page.goto(`${base}/gateways/${SEED.gateways[0].name}/versions`);
    const t = page.getByRole('table', { name: 'Versions' });
    await sees('linger 100 ms', t);
    await sees('demo seed', t);
  });
  await visit('a gateway’s devices show the seeded device and tags', `${base}/gateways/${SEED.gateways[0].name}/config`, async () => {
    await page.getByLabel('Device name').first().waitFor();
    check((await page.getByLabel('Device name').first().inputValue()) === SEED.gateways[0].device, 'the seeded device is not shown');
    const tags = await page.getByLabel('Tag name').evaluateAll((els) => els.map((e) => e.value));
    check(tags.includes('chlorine_residual') && tags.includes('dose_rate'), `tags shown: ${tags}`);
  });
  await visit('a gateway’s enrollment tab lists its usable token', `${base}/gateways/${SEED.gateways[1].name}/enrollment`, async () => {
    const t = page.getByRole('table', { name: 'Enrollment tokens' });
    await sees('0 of 1', t);
    await sees('usable', t);
  });
  await visit('MQTT clusters shows the broker as unreachable', base, async () => {
    await nav('MQTT clusters');
    await sees(SEED.cluster);
    await sees('Unreachable');
  });
  await visit('a cluster’s page says Weir cannot reach the broker', `${base}/clusters`, async () => {
    await main().getByRole('link', { name: SEED.cluster }).click();
    await page.getByRole('heading', { name: SEED.cluster }).waitFor();
    await sees('Weir cannot reach the broker');
  });
  await visit('Alerts → Active shows the firing alert', base, async () => {
    await nav('Alerts');
    await page.getByRole('heading', { name: 'Alerts', exact: true }).waitFor();
    const t = page.getByRole('table', { name: 'Active alerts' });
    await sees(firing.summary, t);
    await sees('firing', t);
  });
  const tab = (name) => page.getByRole('navigation', { name: 'Alert sections' }).getByRole('link', { name, exact: true }).click();
  await visit('Alerts → History shows the rule that fired', `${base}/alerts`, async () => {
    await tab('History');
    const t = page.getByRole('table', { name: 'Alert history' });
    await sees('South broker unreachable', t);
    await sees('firing', t);
  });
  await visit('Alerts → Rules shows each rule’s name and condition', `${base}/alerts`, async () => {
    await tab('Rules');
    const t = page.getByRole('table', { name: 'Alert rules' });
    for (const [rule, words] of SEED.rules) {
      const row = t.getByRole('row').filter({ hasText: rule.name });
      await row.waitFor();
      const text = (await row.textContent()) ?? '';
      check(text.includes(words), `the rule ${rule.name} should read "${words}", the row says "${text}"`);
      check(text.includes(rule.severity), `the rule ${rule.name} should show its severity ${rule.severity}: "${text}"`);
    }
  });
  await visit('Alerts → Silences shows the matcher and why', `${base}/alerts`, async () => {
    await tab('Silences');
    const t = page.getByRole('table', { name: 'Silences' });
    await sees('gateway=clear-well', t);
    await sees(SEED.silence.comment, t);
  });
  await visit('Alerts → Channels shows the channel and where it sends', `${base}/alerts`, async () => {
    await tab('Channels');
    const t = page.getByRole('table', { name: 'Channels' });
    await sees(SEED.channel.name, t);
    await sees(SEED.channel.url, t);
  });
  await visit('Project members lists the seeded member', base, async () => {
    await nav('Project members');
    await page.getByRole('cell', { name: SEED.member.email }).waitFor();
    await sees(SEED.member.name);
  });
  await visit('Projects lists the seeded project', base, async () => {
    await nav('Projects');
    await page.getByRole('link', { name: SEED.project.name }).waitFor();
  });
  await visit('API tokens of the project lists the seeded token', base, async () => {
    await nav('API tokens');
    await page.locator('#token-scope').selectOption(SEED.project.slug);
    await page.getByRole('table', { name: 'API tokens' }).getByText(SEED.token.name).waitFor();
  });
  await visit('Audit log lists the seeding', base, async () => {
    await nav('Audit log');
    const t = page.getByRole('table', { name: 'Audit entries' });
    await sees('gateway.update', t);
    await sees('gateway.create', t);
  });
  await visit('Members of the organization', base, async () => {
    await nav('Members');
    await page.getByRole('heading', { name: 'Organization members' }).waitFor();
    await page.getByRole('cell', { name: ADMIN_EMAIL }).waitFor();
  });
  await visit('All organizations lists the organization', base, async () => {
    await nav('All organizations');
    await page.getByRole('link', { name: ORG.name }).waitFor();
  });
  await visit('Account shows the user', base, async () => {
    await nav('Account');
    await sees(ADMIN_EMAIL);
  });
}

let fatal = null;
try {
  await main();
} catch (e) {
  fatal = e;
  results.failed++;
  console.log(`e2e: FAIL setup: ${e.stack ?? e}`);
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {}
  }
}
writeFileSync(join(OUT, 'e2e-summary.json'), JSON.stringify(results, null, 2));
console.log(`e2e: ${results.passed} passed, ${results.failed} failed (screenshots in web/test-results/)`);
process.exit(results.failed || fatal ? 1 : 0);
