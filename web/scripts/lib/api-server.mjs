// Build and start a real weir-api for scripts (gen:api, check:api, e2e):
// a random port, a throwaway SQLite database, a known bootstrap admin.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_DIR = resolve(WEB_DIR, '..');
export const TARGET_DIR =
  process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'weir', 'target-web');

export const ADMIN_EMAIL = 'admin@weir.test';
export const ADMIN_PASSWORD = 'correct-horse-battery-staple';

export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** cargo build a package's binary; returns the path of the binary. */
export function cargoBuild(pkg, bin = pkg) {
  const t0 = Date.now();
  process.stderr.write(`building ${pkg} (CARGO_TARGET_DIR=${TARGET_DIR}) ...\n`);
  const r = spawnSync('cargo', ['build', '-q', '-p', pkg], {
    cwd: REPO_DIR,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, CARGO_TARGET_DIR: TARGET_DIR },
  });
  if (r.status !== 0) throw new Error(`cargo build -p ${pkg} failed (exit ${r.status})`);
  const path = join(TARGET_DIR, 'debug', bin);
  if (!existsSync(path)) throw new Error(`cargo built ${pkg} but ${path} is missing`);
  process.stderr.write(`built ${pkg} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  return path;
}

function hasServeSubcommand(binary) {
  const r = spawnSync(binary, ['--help'], { encoding: 'utf8' });
  return /^\s+serve\b/m.test(r.stdout || '');
}

async function waitReady(url, child, ms) {
  const end = Date.now() + ms;
  let last = '';
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`weir-api exited with ${child.exitCode} before it was ready`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return;
      last = `healthz ${r.status}`;
    } catch (e) {
      last = String(e.cause?.code ?? e.message);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`weir-api did not become ready at ${url} (${last})`);
}

/**
 * Start weir-api. Returns { url, dir, stop(), logs() }.
 * opts.env adds environment variables; opts.quiet keeps its log in memory only.
 */
export async function startApi(opts = {}) {
  const binary = opts.binary ?? process.env.WEIR_API_BIN ?? cargoBuild('weir-api');
  const dir = mkdtempSync(join(tmpdir(), 'weir-web-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = hasServeSubcommand(binary) ? ['serve'] : [];
  let log = '';
  const child = spawn(binary, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      WEIR_LISTEN: `127.0.0.1:${port}`,
      WEIR_PUBLIC_URL: url,
      WEIR_DATABASE_URL: `sqlite://${join(dir, 'gen.db')}?mode=rwc`,
      WEIR_BOOTSTRAP_ADMIN_EMAIL: ADMIN_EMAIL,
      WEIR_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      WEIR_WEB_DIR: opts.webDir ?? join(WEB_DIR, 'dist'),
      WEIR_KUBE_TENANTS: 'off',
      ...(opts.env ?? {}),
    },
  });
  const keep = (b) => {
    log += b.toString();
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r();
        }, 5000);
        child.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(url, child, opts.readyTimeoutMs ?? 60_000);
  } catch (e) {
    await stop();
    throw new Error(`${e.message}\n--- weir-api log ---\n${log.slice(-4000)}`);
  }
  return { url, dir, port, child, stop, logs: () => log };
}
