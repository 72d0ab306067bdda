//! Memory of the `weir-agent` PROCESS (the release binary), enrolled through
//! `weir-api` and running as in production: default uplink settings (QoS 1,
//! 500 readings per message, linger 20 ms, 100 in flight, 1 GiB disk queue,
//! fsync every 1000 ms, requireSubscriber on), the metrics endpoint scraped
//! every 5 s, heartbeats every 15 s (the default), publishing to Mosquitto
//! with a QoS 1 subscriber of this bench attached to `weir/#` that counts
//! every reading.
//!
//! Figures, from `/proc/<agent pid>`: the peak (VmHWM, the most resident
//! memory the process ever had, config fetch, verification and compile
//! included), the steady resident set (VmRSS sampled every second after a
//! warm-up: min, median, max), the threads, and CPU (utime + stime over the
//! steady window, as % of one core).
//!
//! A gateway reads at most 1,000 tags (`weir_crds::gateway::limits::
//! TAGS_PER_GATEWAY`; the api and the agent refuse more), so the 10,000
//! tags of the DESIGN goal cannot be one agent's config. Two runs:
//! 1,000 tags (10 devices × 1 group × 100 float tags, the largest config
//! allowed by tag count) read every 1 s, and the same 1,000 tags read every
//! 100 ms, which is the reading rate of 10,000 tags at 1 s (10,000
//! readings/s) through the same per-tag state.
//!
//! Run: `cargo build --release -p weir-agent -p weir-api`, then
//! `cargo bench -p weir-e2e --bench agent_memory`. Env:
//! `WEIR_BENCH_MEMORY_SECS` (steady window, default 30),
//! `WEIR_BENCH_AGENT_BIN` (another `weir-agent` build to measure),
//! `WEIR_BENCH_MEMORY_INTERVALS_MS` (the runs' read intervals, default
//! `1000,100`).
//!
//! It exits non-zero when it could not measure: a process died, the config
//! was not applied, or the subscriber lost readings.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use weir_crds::message::UplinkMessage;
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, seed_project, wait_applied};
use weir_e2e::{broker_in_memory, ApiClient};
use weir_testkit::{bin, free_port, Proc};

const TENANT: &str = "bench";
/// The DESIGN goal: peak RSS of the agent process.
const GOAL_MB: f64 = 30.0;
/// Samples before this are the warm-up (config applied, queue and
/// connection filling their buffers).
const WARMUP: Duration = Duration::from_secs(10);

struct Load {
    devices: usize,
    groups: usize,
    tags: usize,
    interval_ms: u64,
}

impl Load {
    fn total_tags(&self) -> usize {
        self.devices * self.groups * self.tags
    }
    fn rate(&self) -> f64 {
        self.total_tags() as f64 * 1000.0 / self.interval_ms as f64
    }
    /// The gateway spec: simulated float tags, default uplink.
    fn spec(&self) -> Value {
        let devices: Vec<Value> = (0..self.devices)
            .map(|d| {
                let groups: Vec<Value> = (0..self.groups)
                    .map(|g| {
                        let tags: Vec<Value> = (0..self.tags)
                            .map(|t| {
                                json!({"name": format!("t{t}"), "address": "sim", "dataType": "float64",
                                       "signal": {"kind": "randomWalk", "min": 0.0, "max": 10.0}})
                            })
                            .collect();
                        json!({"name": format!("g{g}"), "intervalMs": self.interval_ms, "tags": tags})
                    })
                    .collect();
                json!({"name": format!("d{d}"), "adapter": "simulator", "groups": groups})
            })
            .collect();
        json!({"mode": "external", "clusterRef": "broker", "devices": devices, "uplink": {}})
    }
}

/// One reading of `/proc/<pid>`.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    /// utime + stime, clock ticks.
    cpu_ticks: u64,
}

fn proc_sample(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("weir-agent (pid {pid}) is gone"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in ")".
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/pid/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> u64 { rest.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Ok(ProcSample {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        threads: field("Threads:"),
        // utime and stime are fields 14 and 15 of stat; rest starts at field 3.
        cpu_ticks: ticks(11) + ticks(12),
    })
}

/// `/proc/<pid>/smaps_rollup` lines worth showing (anonymous vs file-backed).
fn smaps_rollup(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter(|l| {
            ["Rss:", "Anonymous:", "Private_Dirty:", "Shared_Clean:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A QoS 1 subscriber to `weir/#` counting readings (values + errors).
struct Counter {
    readings: Arc<AtomicU64>,
    messages: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    async fn start(port: u16) -> Result<Self> {
        let mut o = MqttOptions::new(format!("bench-sub-{}", free_port()), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(256 * 1024 * 1024, 256 * 1024 * 1024);
        let (client, mut el) = AsyncClient::new(o, 1000);
        let (readings, messages, bytes) = Default::default();
        let (r, m, b): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>) = (
            Arc::clone(&readings),
            Arc::clone(&messages),
            Arc::clone(&bytes),
        );
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.subscribe("weir/#", QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = ready_tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        m.fetch_add(1, Ordering::Relaxed);
                        b.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                        // Uplink data only (state and replay topics share weir/#).
                        if let Ok(msg) = serde_json::from_slice::<UplinkMessage>(&p.payload) {
                            let n: usize = msg
                                .frames
                                .iter()
                                .map(|f| f.values.len() + f.errors.len())
                                .sum();
                            r.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .context("the bench's subscriber did not subscribe")??;
        Ok(Self {
            readings,
            messages,
            bytes,
            task,
        })
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `weir-agent run --server --token` with the metrics endpoint on a free
/// port and every other setting at its default (heartbeat 15 s, fsync
/// 1000 ms, 100 in flight).
fn start_agent(
    dir: &std::path::Path,
    name: &str,
    server: &str,
    token: &str,
) -> Result<(Proc, u16)> {
    let metrics = free_port();
    // Another build of the agent to compare with (before/after a change).
    let exe = std::env::var_os("WEIR_BENCH_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| bin("weir-agent"));
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--server")
        .arg(server)
        .arg("--token")
        .arg(token)
        .arg("--data-dir")
        .arg(dir.join(format!("agent-{name}")))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics}"));
    Ok((
        Proc::spawn(&format!("agent-{name}"), &mut cmd, dir)?,
        metrics,
    ))
}

fn pct(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn measure(load: &Load, steady: Duration, n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = broker_in_memory().await;
    let (_api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "works", &broker.url()).await?;
    let counter = Counter::start(broker.port).await?;
    let gw = format!("mem{n}");
    let token = gateway_with_token(&admin, &base, &gw, load.spec()).await?;
    let (mut agent, metrics_port) = start_agent(dir.path(), &gw, &base_url, &token)?;
    let pid = agent.id();
    wait_applied(&admin, &base, &gw, Duration::from_secs(60))
        .await
        .context("the agent did not apply its config")?;
    let applied = proc_sample(pid)?;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let http = reqwest::Client::new();
    let tck = clock_ticks_per_sec();

    tokio::time::sleep(WARMUP).await;
    let start = proc_sample(pid)?;
    let readings0 = counter.readings.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut rss: Vec<u64> = Vec::new();
    let mut last = start;
    let mut scrape_bytes = 0usize;
    let mut i = 0u64;
    while t0.elapsed() < steady {
        tokio::time::sleep(Duration::from_secs(1)).await;
        i += 1;
        if !agent.is_running() {
            bail!(
                "weir-agent exited during the run; log: {}",
                agent.log.display()
            );
        }
        // What Prometheus would do, more often than its default 15 s.
        if i.is_multiple_of(5) {
            scrape_bytes = http
                .get(&metrics_url)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?
                .len();
        }
        last = proc_sample(pid)?;
        rss.push(last.rss_kb);
    }
    let secs = t0.elapsed().as_secs_f64();
    let received = counter.readings.load(Ordering::Relaxed) - readings0;
    let rollup = smaps_rollup(pid);
    agent.terminate();
    let cpu = (last.cpu_ticks - start.cpu_ticks) as f64 / tck / secs * 100.0;
    rss.sort_unstable();
    let mb = |kb: u64| kb as f64 / 1024.0;
    let peak = mb(last.hwm_kb);
    let verdict = if peak <= GOAL_MB {
        "goal met"
    } else {
        "goal missed"
    };
    println!(
        "agent_memory: weir-agent (release binary, enrolled; default uplink: QoS 1, 500 readings/message, \
         linger 20 ms, 100 in flight, fsync every 1000 ms, requireSubscriber on; heartbeat 15 s; \
         /metrics scraped every 5 s; a QoS 1 subscriber on weir/#) with {} simulated float tags \
         ({} devices x {} groups x {} tags) read every {} ms = {:.0} readings/s",
        load.total_tags(),
        load.devices,
        load.groups,
        load.tags,
        load.interval_ms,
        load.rate()
    );
    println!(
        "  peak RSS (VmHWM) {peak:.1} MB (goal <= {GOAL_MB} MB: {verdict}); VmHWM when the config was \
         applied {:.1} MB",
        mb(applied.hwm_kb)
    );
    println!(
        "  steady RSS (VmRSS every 1 s for {secs:.0} s after a {} s warm-up): min {:.1} MB, median {:.1} MB, \
         max {:.1} MB; {} threads; CPU {cpu:.1} % of one core",
        WARMUP.as_secs(),
        mb(rss[0]),
        mb(pct(&rss, 0.5)),
        mb(rss[rss.len() - 1]),
        last.threads
    );
    let rate = received as f64 / secs;
    println!(
        "  subscriber received {received} readings in the window ({rate:.0}/s, {} messages, {} bytes \
         since start); /metrics answer {scrape_bytes} bytes; smaps_rollup at the end: {rollup}",
        counter.messages.load(Ordering::Relaxed),
        counter.bytes.load(Ordering::Relaxed)
    );
    // Not a measurement of memory if the readings did not flow.
    if rate < load.rate() * 0.9 {
        bail!(
            "the subscriber received {rate:.0} readings/s, expected {:.0}: the agent is not keeping up or lost data",
            load.rate()
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let steady = Duration::from_secs(
        std::env::var("WEIR_BENCH_MEMORY_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    );
    let intervals: Vec<u64> = std::env::var("WEIR_BENCH_MEMORY_INTERVALS_MS")
        .unwrap_or_else(|_| "1000,100".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let loads: Vec<Load> = intervals
        .into_iter()
        .map(|interval_ms| Load {
            devices: 10,
            groups: 1,
            tags: 100,
            interval_ms,
        })
        .collect();
    for (n, load) in loads.iter().enumerate() {
        // A missed goal is printed, not a failure; not measuring is.
        if let Err(e) = measure(load, steady, n).await {
            eprintln!("agent_memory FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}
