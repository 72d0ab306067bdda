//! End-to-end latency through the real binaries (DESIGN.md goal: p99 device
//! read → row committed in PostgreSQL ≤ 50 ms at 100,000 readings/s).
//!
//! The path, all separate processes on this machine (release builds):
//! devices → `weir-agent` (the binary, enrolled through `weir-api`, NO
//! uplink settings: the CRD defaults, and the binary's defaults for the
//! in-flight window and fsync policy) → Mosquitto (no persistence) →
//! `weir-historian` (the binary, default settings, the only subscriber) →
//! PostgreSQL at 127.0.0.1:5432 (a fresh database).
//!
//! Load: 4 devices × 10 groups × 25 tags every 10 ms = 100,000 readings/s
//! (1,000 tags is the most one gateway may read), one frame of 25 readings
//! (one MQTT topic) per group read. Two rows:
//! * `simulator`: the agent's simulated devices (float64 random walks);
//! * `modbus`: 4 Modbus TCP servers (the in-repo tokio-modbus
//!   `MemoryDevice`, run inside this bench process, one per device), each
//!   with 10 groups × 25 float32 holding registers (one request per group)
//!   polled every 10 ms.
//!
//! Each reading carries the time the agent stamped when it read the device
//! (ms resolution; a Modbus group is stamped before its first request). The
//! historian runs with `--lag-samples FILE` (off by default): after each
//! commit it writes, per frame, the read time, the time the commit returned
//! and the rows. The figures are row-weighted over every row committed in
//! the measuring window (exact samples, not histogram buckets): p50, p99,
//! p99.9, max, mean. The read stamp is truncated to the millisecond, so the
//! lags are over-stated by up to 1 ms.
//!
//! Also printed: readings/s committed in the window, CPU seconds and memory
//! (peak VmHWM, steady VmRSS) of weir-agent, weir-historian and mosquitto.
//! After the window the traffic is stopped and every frame the agent issued
//! must be in the table exactly once; the bench fails (exit 1) if not, or if
//! a process died. Missing the latency goal is printed ("goal missed"), not
//! a failure.
//!
//! Run: `cargo build --release -p weir-agent -p weir-api -p weir-historian`,
//! then `cargo bench -p weir-e2e --bench e2e_latency`. Env:
//! `WEIR_BENCH_WARMUP_SECS` (default 10), `WEIR_BENCH_MEASURE_SECS` (default
//! 30), `WEIR_BENCH_E2E_ROWS` (`simulator,modbus`, the default, or one),
//! `WEIR_BENCH_AGENT_BIN` (another weir-agent binary, to compare a change
//! against a build of the code before it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use weir_agent::adapters::modbus::server::{serve, MemoryDevice};
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, patch_spec, seed_project, wait_applied};
use weir_e2e::historian::Historian;
use weir_e2e::proc_stats::{clock_ticks, cpu_seconds, find_pid, vm_mib};
use weir_e2e::uplink_watch::{Committed, UplinkWatch};
use weir_e2e::{broker_in_memory, ApiClient};
use weir_testkit::postgres::connect;
use weir_testkit::{bin, free_port, Proc, TestDb};

const TENANT: &str = "bench";
const GW: &str = "plant";
const DEVICES: usize = 4;
// A gateway reads at most 1,000 tags (crds `limits::TAGS_PER_GATEWAY`) and a
// device at most 16 groups: 100,000 readings/s from one agent is its 1,000
// tags every 10 ms.
const GROUPS: usize = 10;
const TAGS: usize = 25;
const INTERVAL_MS: u64 = 10;
const RATE: usize = DEVICES * GROUPS * TAGS * 1000 / INTERVAL_MS as usize;
const GOAL_P99_MS: f64 = 50.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Simulator,
    Modbus,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Simulator => "simulator",
            Source::Modbus => "modbus",
        }
    }
}

/// The gateway's spec: no `uplink` key, so every uplink setting is the
/// CRD's default. `ports` are the Modbus servers' (one per device).
fn spec(source: Source, devices: usize, ports: &[u16]) -> Value {
    let devices: Vec<Value> = (0..devices)
        .map(|d| {
            let groups: Vec<Value> = (0..GROUPS)
                .map(|g| {
                    let tags: Vec<Value> = (0..TAGS)
                        .map(|t| match source {
                            Source::Simulator => json!({
                                "name": format!("t{t}"), "address": "sim", "dataType": "float64",
                                "signal": {"kind": "randomWalk", "min": 0.0, "max": 10.0}}),
                            // Two registers per float32, groups one after another.
                            Source::Modbus => json!({
                                "name": format!("t{t}"),
                                "address": format!("1!4{:05}", 1 + (g * TAGS + t) * 2),
                                "dataType": "float32"}),
                        })
                        .collect();
                    json!({"name": format!("g{g}"), "intervalMs": INTERVAL_MS, "tags": tags})
                })
                .collect();
            match source {
                Source::Simulator => {
                    json!({"name": format!("d{d}"), "adapter": "simulator", "groups": groups})
                }
                Source::Modbus => json!({
                    "name": format!("d{d}"), "adapter": "modbusTcp",
                    "modbus": {"host": "127.0.0.1", "port": ports[d]},
                    "groups": groups}),
            }
        })
        .collect();
    json!({"mode": "external", "clusterRef": "broker", "devices": devices})
}

/// `[default: X]` of `flag` in a binary's `--help`, so the printed settings
/// are the binary's own defaults and cannot drift from them.
fn help_default(help: &str, flag: &str) -> String {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(flag));
    let first = lines.next().unwrap_or_default();
    std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with('-')))
        .find_map(|l| {
            let (_, rest) = l.split_once("[default: ")?;
            Some(rest.split(']').next()?.to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn help(binary: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(bin(binary))
        .args(args)
        .arg("--help")
        .output()
        .with_context(|| format!("{binary} --help"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The defaults the run uses, for the printed lines.
fn settings_line() -> Result<String> {
    let uplink = weir_crds::gateway::Uplink::default();
    let agent = help("weir-agent", &["run"])?;
    let hist = help("weir-historian", &[])?;
    Ok(format!(
        "agent defaults: {} readings/message max, {} in flight, linger {} ms, fsync {}, QoS {}, \
         requireSubscriber {}; historian defaults: {} writers, batch {} rows, linger {} ms, \
         {} in flight from the broker; subscriber present: the historian",
        uplink.max_readings_per_message,
        help_default(&agent, "--inflight"),
        uplink.linger_ms,
        help_default(&agent, "--fsync"),
        uplink.qos,
        uplink.require_subscriber,
        help_default(&hist, "--writers"),
        help_default(&hist, "--batch-rows"),
        help_default(&hist, "--linger-ms"),
        help_default(&hist, "--mqtt-inflight"),
    ))
}

/// `weir-agent run`, enrolled with `token`, as `weir_e2e::fleet::start_agent`
/// starts it (1 s heartbeat, metrics on), from `WEIR_BENCH_AGENT_BIN` if set.
fn start_agent(dir: &Path, server: &str, token: &str) -> Result<(Proc, String)> {
    let binary = std::env::var_os("WEIR_BENCH_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| bin("weir-agent"));
    let mut cmd = Command::new(&binary);
    cmd.arg("run")
        .arg("--server")
        .arg(server)
        .arg("--data-dir")
        .arg(dir.join(format!("agent-{GW}")))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--heartbeat-s")
        .arg("1")
        .arg("--token")
        .arg(token)
        .env("RUST_LOG", "info");
    Ok((
        Proc::spawn(&format!("agent-{GW}"), &mut cmd, dir)?,
        binary.display().to_string(),
    ))
}

async fn frames_in_table(db_url: &str) -> Result<i64> {
    Ok(connect(db_url)
        .await
        .query_one(
            "SELECT count(*) FROM readings WHERE tenant = $1 AND gateway = $2 AND tag = 't0'",
            &[&TENANT, &GW],
        )
        .await?
        .get(0))
}

/// One process's figures over the window.
struct Usage {
    name: &'static str,
    pid: u32,
    cpu0: f64,
    rss: Vec<f64>,
}

/// Row-weighted lag percentiles (ms) of `(lag_us, rows)`.
struct Lags {
    rows: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

fn lags(mut samples: Vec<(i64, u64)>) -> Option<Lags> {
    samples.sort_unstable();
    let rows: u64 = samples.iter().map(|s| s.1).sum();
    if rows == 0 {
        return None;
    }
    let at = |q: f64| {
        let want = (q * rows as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(lag, n) in &samples {
            seen += n;
            if seen >= want {
                return lag as f64 / 1000.0;
            }
        }
        samples.last().map_or(0.0, |s| s.0 as f64 / 1000.0)
    };
    let sum: f64 = samples.iter().map(|&(l, n)| l as f64 * n as f64).sum();
    Some(Lags {
        rows,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: samples.last().map_or(0.0, |s| s.0 as f64 / 1000.0),
        mean: sum / rows as f64 / 1000.0,
    })
}

/// Row-weighted samples (µs, rows) of rows committed in `[from_us, to_us)`:
/// read → commit, read → received by the historian (agent and broker), and
/// received → commit (historian and PostgreSQL).
#[derive(Default)]
struct Samples {
    total: Vec<(i64, u64)>,
    to_historian: Vec<(i64, u64)>,
    in_historian: Vec<(i64, u64)>,
}

fn read_lag_file(path: &Path, from_us: i64, to_us: i64) -> Result<Samples> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the historian's lag samples {}", path.display()))?;
    let mut out = Samples::default();
    for line in text.lines() {
        let f: Vec<i64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("lag sample line {line:?}"))?;
        let [read_ms, received_us, commit_us, rows] = f[..] else {
            bail!("lag sample line {line:?}: expected 4 numbers");
        };
        if commit_us >= from_us && commit_us < to_us {
            let rows = rows as u64;
            out.total.push((commit_us - read_ms * 1000, rows));
            out.to_historian.push((received_us - read_ms * 1000, rows));
            out.in_historian.push((commit_us - received_us, rows));
        }
    }
    Ok(out)
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as i64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = std::env::var("WEIR_BENCH_E2E_ROWS").unwrap_or_else(|_| "simulator,modbus".into());
    let mut failed = false;
    for row in rows.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let source = match row {
            "simulator" => Source::Simulator,
            "modbus" => Source::Modbus,
            other => {
                eprintln!("e2e_latency: unknown row {other:?} in WEIR_BENCH_E2E_ROWS");
                std::process::exit(2);
            }
        };
        if let Err(e) = run(source).await {
            eprintln!("e2e_latency {} FAILED: {e:#}", source.name());
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

async fn run(source: Source) -> Result<()> {
    let warmup = env_secs("WEIR_BENCH_WARMUP_SECS", 10);
    let measure = env_secs("WEIR_BENCH_MEASURE_SECS", 30);
    let settings = settings_line()?;
    let dir = tempfile::tempdir()?;
    let pg = TestDb::create("bench_e2e").await;
    let broker = broker_in_memory().await;
    let (_api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "works", &broker.url()).await?;
    let watch = UplinkWatch::start(broker.port, "weir", TENANT);
    let lag_file = dir.path().join("lag-samples.txt");
    let lag_env = lag_file.display().to_string();
    let historian = Historian::start(
        dir.path(),
        &broker.url(),
        &pg.url,
        TENANT,
        "bench-e2e-historian",
        &[("WEIR_LAG_SAMPLES", &lag_env)],
    )
    .await?;

    // The Modbus devices: float32 1.5 (0x3FC0_0000) in every register pair.
    let mut ports = Vec::new();
    let mut devices = Vec::new();
    if source == Source::Modbus {
        let words: Vec<u16> = (0..GROUPS * TAGS).flat_map(|_| [0x3FC0, 0]).collect();
        for _ in 0..DEVICES {
            let d = MemoryDevice::default();
            d.set_holding(0, &words);
            ports.push(serve(d.clone()).await?.port());
            devices.push(d);
        }
    }

    let token = gateway_with_token(&admin, &base, GW, spec(source, DEVICES, &ports)).await?;
    let (mut agent, agent_bin) = start_agent(dir.path(), &base_url, &token)?;
    wait_applied(&admin, &base, GW, Duration::from_secs(60)).await?;
    let start = Instant::now();
    while frames_in_table(&pg.url).await? == 0 {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no readings reached PostgreSQL within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(warmup).await;

    let ticks = clock_ticks();
    let historian_pid =
        find_pid(&pg.url).context("the weir-historian process (by its database URL)")?;
    let conf = broker.dir().join("mosquitto.conf").display().to_string();
    let broker_pid = find_pid(&conf).context("the mosquitto process (by its config file)")?;
    let mut usage = Vec::new();
    for (name, pid) in [
        ("weir-agent", agent.id()),
        ("weir-historian", historian_pid),
        ("mosquitto", broker_pid),
        ("bench process (Modbus servers, if any)", std::process::id()),
    ] {
        usage.push(Usage {
            name,
            pid,
            cpu0: cpu_seconds(pid, ticks)?,
            rss: Vec::new(),
        });
    }
    let t0 = SystemTime::now();
    let i0 = Instant::now();
    while i0.elapsed() < measure {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !agent.is_running() {
            bail!("weir-agent exited during the measurement");
        }
        for u in usage.iter_mut() {
            u.rss
                .push(vm_mib(u.pid, "VmRSS").with_context(|| format!("{} died", u.name))?);
        }
    }
    let t1 = SystemTime::now();
    let window = i0.elapsed().as_secs_f64();
    let mut usage_lines = Vec::new();
    for u in &usage {
        let cpu = cpu_seconds(u.pid, ticks).with_context(|| format!("{} died", u.name))? - u.cpu0;
        let hwm = vm_mib(u.pid, "VmHWM")?;
        let steady = u.rss.iter().sum::<f64>() / u.rss.len().max(1) as f64;
        usage_lines.push(format!(
            "{}: {cpu:.1} CPU s in {window:.0} s ({:.0} % of a core), RSS steady {steady:.1} MiB \
             (mean of {} samples), peak VmHWM {hwm:.1} MiB",
            u.name,
            cpu / window * 100.0,
            u.rss.len()
        ));
    }

    // Stop the traffic; every frame issued must be in the table once.
    patch_spec(&admin, &base, GW, spec(source, 0, &ports)).await?;
    wait_applied(&admin, &base, GW, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let Committed {
        issued,
        frames,
        rows,
    } = watch
        .all_issued_committed(
            &pg.url,
            TENANT,
            GW,
            stopped,
            TAGS as i64,
            Duration::from_secs(120),
        )
        .await?;
    let errors: i64 = connect(&pg.url)
        .await
        .query_one(
            "SELECT count(*) FROM readings WHERE tenant = $1 AND gateway = $2 AND value IS NULL",
            &[&TENANT, &GW],
        )
        .await?
        .get(0);

    let samples = read_lag_file(&lag_file, unix_us(t0), unix_us(t1))?;
    let l = lags(samples.total).context("no lag samples in the measuring window")?;
    let a = lags(samples.to_historian).context("no lag samples")?;
    let h = lags(samples.in_historian).context("no lag samples")?;
    let rate = l.rows as f64 / window;
    let verdict = if l.p99 <= GOAL_P99_MS {
        "goal met"
    } else {
        "goal missed"
    };
    let what = match source {
        Source::Simulator => "simulated devices (float64)",
        Source::Modbus => "Modbus TCP servers (tokio-modbus MemoryDevice in the bench process, float32 holding registers, 1 request per group)",
    };
    println!(
        "e2e_latency {} (weir-agent -> Mosquitto, no persistence -> weir-historian -> PostgreSQL; \
         {DEVICES} {what} x {GROUPS} groups x {TAGS} tags every {INTERVAL_MS} ms = {RATE} readings/s offered, \
         one frame of {TAGS} readings per group read)",
        source.name()
    );
    println!("  settings: {settings}; agent heartbeat 1 s; agent binary {agent_bin}");
    println!(
        "  e2e {} read -> commit: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms, mean {:.1} ms \
         over {} rows committed in {window:.0} s after {} s warm-up ({rate:.0} readings/s committed; \
         goal p99 <= {GOAL_P99_MS} ms: {verdict})",
        source.name(),
        l.p50,
        l.p99,
        l.p999,
        l.max,
        l.mean,
        l.rows,
        warmup.as_secs()
    );
    println!(
        "  where it goes: read -> received by the historian (agent, Mosquitto) p50 {:.1} ms, \
         p99 {:.1} ms, mean {:.1} ms; received -> committed (historian, PostgreSQL) p50 {:.1} ms, \
         p99 {:.1} ms, mean {:.1} ms",
        a.p50, a.p99, a.mean, h.p50, h.p99, h.mean
    );
    println!(
        "  checked: {issued} frames issued by the agent, {frames} in the table once each ({rows} rows, \
         {errors} of them read errors); nothing dropped"
    );
    for line in usage_lines {
        println!("  {line}");
    }
    drop(devices);
    drop(historian);
    Ok(())
}
