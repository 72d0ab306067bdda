//! The api under external load tools, over a mix of reads, against the
//! release `weir-api` binary as its own process, on SQLite and on
//! PostgreSQL (a fresh database each).
//!
//! Data (made through the api, see `api_mix/seed.rs`): one org, one project
//! with 50 gateways (each a config of 2 simulated devices × 10 tags), 20
//! alert rules, the ~75 audit entries those writes leave, an org-admin API
//! token, one enrolled agent; the historian's `readings` table (PostgreSQL,
//! its own DDL) holds one hour at 1 s of 10 tags of gateway gw-00.
//!
//! The mix, equally weighted (8 endpoints): list gateways, one gateway,
//! series (one tag, one hour, default ~300 buckets), active alerts, alert
//! rules, an audit page of 50, projects (org-admin API token), and the
//! agent's config fetch (the agent's own bearer token).
//!
//! - Fixed rate: `oha` (crates.io), one process per endpoint at rate/8 each
//!   (oha sends one Authorization header, and the agent's differs), open
//!   loop with latency correction, 4 connections per process; p50/p99/max
//!   over every request of the 8 (exact samples from oha's per-request
//!   database), and per endpoint.
//! - Saturation: `wrk` (Debian) with a Lua script that sends the 8 requests
//!   in turn on 4 and on 32 connections (2 threads): req/s and p99.
//! - On PostgreSQL, each endpoint alone at saturation (wrk, 4 connections).
//!
//! Each line gives the CPU seconds of the load tool (it shares the
//! machine's cores with the api) and of weir-api, and weir-api's RSS. A
//! non-2xx answer or a transport error makes the run fail (exit non-zero)
//! after printing; a missed goal prints "goal missed" and does not.
//! The bench installs oha (cargo install, cached in ~/.cache/weir/tools) and
//! wrk (apt-get) when they are missing, and fails when it cannot.
//!
//! `cargo bench -p weir-api --bench api_mix`. Env: WEIR_BENCH_RPS (500),
//! WEIR_BENCH_SECS (15, fixed rate), WEIR_BENCH_SAT_SECS (10),
//! WEIR_BENCH_EP_SECS (5, per endpoint), WEIR_BENCH_BACKENDS
//! ("sqlite,postgres"), WEIR_TEST_PG_URL, WEIR_BENCH_OHA, WEIR_BENCH_WRK,
//! WEIR_BENCH_API_BIN (another weir-api binary to measure).

#[path = "api_mix/procs.rs"]
mod procs;
#[path = "api_mix/seed.rs"]
mod seed;
#[path = "api_mix/tools.rs"]
mod tools;

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sqlx::{self, Row};
use serde_json::Value;
use weir_testkit::{free_port, Proc};

use seed::{Seeded, ORG, PROJECT};

const GOAL_P99_MS: f64 = 10.0;
const GOAL_SAT_PG: f64 = 5_000.0;
const OHA_CONNS_PER_ENDPOINT: usize = 4;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One request of the mix.
struct Endpoint {
    name: &'static str,
    path: String,
    bearer: String,
}

fn endpoints(s: &Seeded, series_end: DateTime<Utc>) -> Vec<Endpoint> {
    let p = format!("/api/v1/orgs/{ORG}/projects/{PROJECT}");
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let from = fmt(series_end - chrono::Duration::hours(1));
    let to = fmt(series_end);
    let user = |name, path: String| Endpoint {
        name,
        path,
        bearer: s.token.clone(),
    };
    vec![
        user("gateways", format!("{p}/gateways")),
        user("gateway", format!("{p}/gateways/gw-07")),
        user(
            "series",
            format!("{p}/gateways/gw-00/series?tag=t0&from={from}&to={to}"),
        ),
        user("alerts-active", format!("{p}/alerts/active")),
        user("alert-rules", format!("{p}/alerts/rules")),
        user("audit-50", format!("/api/v1/orgs/{ORG}/audit?limit=50")),
        user("projects", format!("/api/v1/orgs/{ORG}/projects")),
        Endpoint {
            name: "agent-config",
            path: format!("/api/v1/agents/{}/config", s.agent_id),
            bearer: s.agent_token.clone(),
        },
    ]
}

struct Api {
    proc: Proc,
    base: String,
}

impl Api {
    async fn start(dir: &Path, db_url: &str, historian_url: &str) -> Result<Api> {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        // Another build of weir-api (e.g. before a change) may be measured
        // with the same bench.
        let bin = std::env::var_os("WEIR_BENCH_API_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_weir-api")));
        let mut cmd = Command::new(&bin);
        // Default settings but for where it listens and what it talks to.
        cmd.current_dir(dir)
            .env("WEIR_LISTEN", format!("127.0.0.1:{port}"))
            .env("WEIR_DATABASE_URL", db_url)
            .env("WEIR_HISTORIAN_URL", historian_url)
            .env("WEIR_PUBLIC_URL", &base)
            .env("WEIR_BOOTSTRAP_ADMIN_EMAIL", seed::ADMIN_EMAIL)
            .env("WEIR_BOOTSTRAP_ADMIN_PASSWORD", seed::ADMIN_PASSWORD)
            .env("WEIR_KUBE_TENANTS", "off")
            // Required with PostgreSQL (it encrypts the fleet signing keys).
            .env(
                "WEIR_MASTER_KEY",
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            );
        let proc = Proc::spawn("weir-api", &mut cmd, dir)?;
        let health = format!("{base}/healthz");
        let ready =
            weir_testkit::try_wait_until(Duration::from_secs(60), "weir-api /healthz", || {
                let url = health.clone();
                async move { matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success()) }
            })
            .await;
        if ready.is_err() {
            bail!("weir-api did not become healthy:\n{}", proc.log_text());
        }
        Ok(Api { proc, base })
    }

    fn sample(&self) -> Result<procs::Sample> {
        procs::sample(self.proc.id()).context("weir-api died")
    }
}

/// Every endpoint answers 2xx once before any load (else nothing is
/// measured); the size of each answer.
async fn check_each(base: &str, eps: &[Endpoint]) -> Result<Vec<usize>> {
    let http = reqwest::Client::new();
    let mut sizes = Vec::new();
    for e in eps {
        let r = http
            .get(format!("{base}{}", e.path))
            .bearer_auth(&e.bearer)
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("{} ({}) answered {status}: {body}", e.name, e.path);
        }
        sizes.push(body.len());
    }
    Ok(sizes)
}

/// Latency figures in ms.
struct Lat {
    p50: f64,
    p99: f64,
    max: f64,
}

fn lat_of(mut v: Vec<f64>) -> Lat {
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Lat {
        p50: pct(0.50),
        p99: pct(0.99),
        max: *v.last().unwrap_or(&0.0),
    }
}

struct Bad {
    non_2xx: u64,
    errors: u64,
}

/// Fixed rate with oha, one process per endpoint; returns whether every
/// request was answered 2xx.
fn fixed_rate(
    label: &str,
    api: &Api,
    eps: &[Endpoint],
    oha: &Path,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
) -> Result<bool> {
    let rps = env_u64("WEIR_BENCH_RPS", 500) as f64;
    let secs = env_u64("WEIR_BENCH_SECS", 15);
    let per = rps / eps.len() as f64;
    let before = api.sample()?;
    let mut runs = Vec::new();
    for (i, e) in eps.iter().enumerate() {
        let db = dir.join(format!("oha-{label}-{i}.db"));
        let _ = std::fs::remove_file(&db);
        let out = dir.join(format!("oha-{label}-{i}.json"));
        let times = dir.join(format!("oha-{label}-{i}.times"));
        let args: Vec<String> = vec![
            "-z".into(),
            format!("{secs}s"),
            "-q".into(),
            format!("{per}"),
            "-c".into(),
            OHA_CONNS_PER_ENDPOINT.to_string(),
            "--latency-correction".into(),
            "-w".into(),
            "--no-tui".into(),
            "--output-format".into(),
            "json".into(),
            "--worker-threads".into(),
            "1".into(),
            "--db-url".into(),
            db.display().to_string(),
            "-H".into(),
            format!("Authorization: Bearer {}", e.bearer),
            format!("{}{}", api.base, e.path),
        ];
        let child = procs::spawn_timed(oha, &args, &times, &out)?;
        runs.push((child, times, out, db));
    }
    let mut tool_cpu = 0.0;
    let mut all = Vec::new();
    let mut bad = Bad {
        non_2xx: 0,
        errors: 0,
    };
    let mut per_ep = Vec::new();
    for ((child, times, out, db), e) in runs.into_iter().zip(eps) {
        tool_cpu += procs::wait_timed(child, &times, &out)?;
        let j: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)
            .with_context(|| format!("oha output for {}", e.name))?;
        let mut ep_bad = Bad {
            non_2xx: 0,
            errors: 0,
        };
        if let Some(m) = j["statusCodeDistribution"].as_object() {
            for (code, n) in m {
                if !code.starts_with('2') {
                    ep_bad.non_2xx += n.as_u64().unwrap_or(0);
                }
            }
        }
        if let Some(m) = j["errorDistribution"].as_object() {
            for (what, n) in m {
                eprintln!("api_mix: {label} {}: {n} × {what}", e.name);
                ep_bad.errors += n.as_u64().unwrap_or(0);
            }
        }
        let samples = rt.block_on(oha_samples(&db))?;
        let l = lat_of(samples.clone());
        per_ep.push(format!(
            "{} {} req p50 {:.2} p99 {:.2} max {:.1} ms{}",
            e.name,
            samples.len(),
            l.p50,
            l.p99,
            l.max,
            if ep_bad.non_2xx + ep_bad.errors > 0 {
                format!(" non-2xx {} errors {}", ep_bad.non_2xx, ep_bad.errors)
            } else {
                String::new()
            }
        ));
        bad.non_2xx += ep_bad.non_2xx;
        bad.errors += ep_bad.errors;
        all.extend(samples);
    }
    let after = api.sample()?;
    let n = all.len();
    let l = lat_of(all);
    let verdict = if l.p99 <= GOAL_P99_MS {
        "goal met"
    } else {
        "goal missed"
    };
    println!(
        "api_mix {label:<8} fixed {rps:.0} req/s for {secs} s over the 8-endpoint mix (oha, 8 processes × {per:.1} req/s, {OHA_CONNS_PER_ENDPOINT} connections each, latency-corrected): \
         {n} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, non-2xx {}, errors {}; \
         goal p99 ≤ {GOAL_P99_MS} ms: {verdict}; oha CPU {tool_cpu:.1} s; weir-api CPU {:.1} s, RSS {:.0} MB (peak {:.0} MB)",
        l.p50,
        l.p99,
        l.max,
        bad.non_2xx,
        bad.errors,
        after.cpu_secs - before.cpu_secs,
        after.rss_mb,
        after.peak_mb,
    );
    println!(
        "api_mix {label:<8}   per endpoint at {per:.1} req/s: {}",
        per_ep.join("; ")
    );
    Ok(bad.non_2xx + bad.errors == 0)
}

/// Per-request latencies (ms, from the scheduled start) oha recorded.
async fn oha_samples(db: &Path) -> Result<Vec<f64>> {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let rows = sqlx::query(r#"SELECT "end" - coalesce(start_latency_correction, start) FROM oha"#)
        .fetch_all(&pool)
        .await?;
    pool.close().await;
    rows.iter()
        .map(|r| Ok(r.try_get::<f64, _>(0)? * 1e3))
        .collect()
}

/// The Lua script that makes wrk send `eps` in turn.
fn wrk_script(eps: &[&Endpoint], path: &Path) -> Result<()> {
    let mut reqs = String::new();
    for e in eps {
        reqs.push_str(&format!(
            "    wrk.format(\"GET\", {:?}, {{[\"Authorization\"] = \"Bearer {}\"}}),\n",
            e.path, e.bearer
        ));
    }
    let lua = format!(
        r#"-- written by api_mix: the mix, in turn
local reqs = {{}}
local i = 0
init = function(args)
  reqs = {{
{reqs}  }}
end
request = function()
  i = (i % #reqs) + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WEIR_RESULT %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#
    );
    std::fs::write(path, lua)?;
    Ok(())
}

struct WrkResult {
    rps: f64,
    requests: f64,
    lat: Lat,
    bad: Bad,
    tool_cpu: f64,
    api_cpu: f64,
}

fn wrk_run(
    api: &Api,
    eps: &[&Endpoint],
    conns: usize,
    secs: u64,
    wrk: &Path,
    dir: &Path,
    tag: &str,
) -> Result<WrkResult> {
    let script = dir.join(format!("wrk-{tag}.lua"));
    wrk_script(eps, &script)?;
    let out = dir.join(format!("wrk-{tag}.out"));
    let times = dir.join(format!("wrk-{tag}.times"));
    let args: Vec<String> = vec![
        "-t".into(),
        conns.min(2).to_string(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{secs}s"),
        // A request unanswered this long counts as an error (wrk's default
        // of 2 s would count a slow answer on a busy machine as lost).
        "--timeout".into(),
        "10s".into(),
        "-s".into(),
        script.display().to_string(),
        api.base.clone(),
    ];
    let before = api.sample()?;
    let child = procs::spawn_timed(wrk, &args, &times, &out)?;
    let tool_cpu = procs::wait_timed(child, &times, &out)?;
    let after = api.sample()?;
    let text = std::fs::read_to_string(&out)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WEIR_RESULT "))
        .with_context(|| format!("no result from wrk: {text}"))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(WrkResult {
        rps: f[0] / (f[1] / 1e6),
        requests: f[0],
        lat: Lat {
            p50: f[7] / 1e3,
            p99: f[8] / 1e3,
            max: f[9] / 1e3,
        },
        bad: Bad {
            non_2xx: f[2] as u64,
            errors: (f[3] + f[4] + f[5] + f[6]) as u64,
        },
        tool_cpu,
        api_cpu: after.cpu_secs - before.cpu_secs,
    })
}

struct Ctx<'a> {
    label: &'a str,
    api: &'a Api,
    wrk: &'a Path,
    dir: &'a Path,
}

/// Saturation over the mix; whether it was clean, and its req/s.
fn saturation(c: &Ctx, eps: &[Endpoint], conns: usize) -> Result<(bool, f64)> {
    let secs = env_u64("WEIR_BENCH_SAT_SECS", 10);
    let refs: Vec<&Endpoint> = eps.iter().collect();
    let r = wrk_run(
        c.api,
        &refs,
        conns,
        secs,
        c.wrk,
        c.dir,
        &format!("{}-sat{conns}", c.label),
    )?;
    let mem = c.api.sample()?;
    println!(
        "api_mix {:<8} saturation over the 8-endpoint mix, {conns} connections (wrk, {} threads, closed loop, {secs} s): \
         {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {:.0} requests, non-2xx {}, errors {}; \
         wrk CPU {:.1} s; weir-api CPU {:.1} s ({:.2} cores), RSS {:.0} MB (peak {:.0} MB)",
        c.label,
        conns.min(2),
        r.rps,
        r.lat.p50,
        r.lat.p99,
        r.lat.max,
        r.requests,
        r.bad.non_2xx,
        r.bad.errors,
        r.tool_cpu,
        r.api_cpu,
        r.api_cpu / secs as f64,
        mem.rss_mb,
        mem.peak_mb,
    );
    Ok((r.bad.non_2xx + r.bad.errors == 0, r.rps))
}

fn per_endpoint(c: &Ctx, eps: &[Endpoint]) -> Result<bool> {
    let secs = env_u64("WEIR_BENCH_EP_SECS", 5);
    let mut ok = true;
    for e in eps {
        let r = wrk_run(
            c.api,
            &[e],
            4,
            secs,
            c.wrk,
            c.dir,
            &format!("{}-ep-{}", c.label, e.name),
        )?;
        println!(
            "api_mix {:<8}   {:<13} alone, 4 connections (wrk, {secs} s): {:>6.0} req/s, p50 {:.2} ms, p99 {:.2} ms, non-2xx {}, errors {}; wrk CPU {:.1} s, weir-api CPU {:.1} s",
            c.label, e.name, r.rps, r.lat.p50, r.lat.p99, r.bad.non_2xx, r.bad.errors, r.tool_cpu, r.api_cpu
        );
        ok &= r.bad.non_2xx + r.bad.errors == 0;
    }
    Ok(ok)
}

/// One database backend: start, seed, load. Whether every request succeeded.
fn run_backend(
    label: &str,
    db_url: &str,
    historian_url: &str,
    series_end: DateTime<Utc>,
    tools: &(PathBuf, PathBuf),
    rt: &tokio::runtime::Runtime,
) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    let api = rt.block_on(Api::start(dir.path(), db_url, historian_url))?;
    let seeded = rt
        .block_on(seed::seed(&api.base))
        .context("seed through the api")?;
    let eps = endpoints(&seeded, series_end);
    let sizes = rt.block_on(check_each(&api.base, &eps))?;
    println!(
        "api_mix {label:<8} weir-api release binary, default settings, {label} database; data: {} gateways \
         (config {} simulated devices × {} tags), {} alert rules (none firing), an audit log of the seeding writes, \
         historian readings 1 h × {} tags at 1 s; answer bytes: {}",
        seed::GATEWAYS,
        seed::DEVICES,
        seed::TAGS_PER_DEVICE,
        seed::RULES,
        seed::SERIES_TAGS,
        eps.iter()
            .zip(&sizes)
            .map(|(e, n)| format!("{} {n}", e.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let c = Ctx {
        label,
        api: &api,
        wrk: &tools.1,
        dir: dir.path(),
    };
    // Warm connections, pools and caches; not reported.
    let refs: Vec<&Endpoint> = eps.iter().collect();
    wrk_run(&api, &refs, 4, 2, c.wrk, c.dir, &format!("{label}-warm"))?;
    let mut ok = fixed_rate(label, &api, &eps, &tools.0, dir.path(), rt)?;
    let (ok4, rps4) = saturation(&c, &eps, 4)?;
    let (ok32, rps32) = saturation(&c, &eps, 32)?;
    ok &= ok4 && ok32;
    if label == "postgres" {
        let best = rps4.max(rps32);
        println!(
            "api_mix {label:<8} goal ≥ {GOAL_SAT_PG:.0} req/s over the mix at saturation on PostgreSQL: {best:.0} req/s (best of 4 and 32 connections): {}",
            if best >= GOAL_SAT_PG { "goal met" } else { "goal missed" }
        );
        ok &= per_endpoint(&c, &eps)?;
    }
    api.sample().context("weir-api died during the run")?;
    if !ok {
        eprintln!("--- weir-api log (last lines) ---\n{}", api.proc.log_text());
    }
    Ok(ok)
}

fn main() -> Result<()> {
    let tools = (tools::oha()?, tools::wrk()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let historian = rt
        .block_on(support::temp_pg())
        .map_err(|e| anyhow::anyhow!("PostgreSQL (for the historian table): {e}"))?;
    let series_end = Utc::now();
    rt.block_on(seed::readings(&historian.url, series_end))
        .context("historian readings")?;
    let backends = std::env::var("WEIR_BENCH_BACKENDS").unwrap_or("sqlite,postgres".into());
    let mut ok = true;
    for b in backends.split(',').map(str::trim) {
        let result = match b {
            "sqlite" => {
                let d = tempfile::tempdir()?;
                let url = format!("sqlite://{}?mode=rwc", d.path().join("weir.db").display());
                run_backend(b, &url, &historian.url, series_end, &tools, &rt)
            }
            "postgres" => {
                let pg = rt
                    .block_on(support::temp_pg())
                    .map_err(|e| anyhow::anyhow!("PostgreSQL: {e}"))?;
                let r = run_backend(b, &pg.url, &historian.url, series_end, &tools, &rt);
                rt.block_on(pg.drop_db());
                r
            }
            other => bail!("WEIR_BENCH_BACKENDS: unknown backend {other}"),
        };
        match result {
            Ok(clean) => ok &= clean,
            Err(e) => {
                eprintln!("api_mix {b}: could not measure: {e:#}");
                ok = false;
            }
        }
    }
    rt.block_on(historian.drop_db());
    if !ok {
        bail!("api_mix: some requests failed or a run could not measure (see above)");
    }
    Ok(())
}
