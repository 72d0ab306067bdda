//! Weir side by side with Node-RED on the same machine, the same load, the
//! same broker, the same PostgreSQL (DESIGN.md goal: ≥ 20× Node-RED's
//! readings/s per core at a quarter of its memory).
//!
//! Node-RED is the pinned install of `e2e/node-red/package.json` (+ lock):
//! node-red 4.1.15, node-red-contrib-modbus 5.23.3, its built-in MQTT nodes,
//! and pg 8 in a function node (node-red-contrib-postgresql is not on the
//! registry this project reaches; see that package.json). This bench
//! installs it with `npm ci` into `$HOME/.cache/weir/node-red` and runs the
//! committed flows `e2e/node-red/flow-*.json` with `e2e/node-red/settings.js`
//! (editor off). It fails if `node`/`npm` are missing or the install fails.
//!
//! A. **Modbus → MQTT.** The same Modbus TCP servers (weir-agent's in-repo
//!    tokio-modbus `MemoryDevice`, run in this bench process): 2 devices ×
//!    5 groups × 50 float32 holding registers (one 100-register request per
//!    group), polled every `WEIR_BENCH_NR_POLL_MS` (default 50 ms). Weir:
//!    the release `weir-agent` (enrolled through `weir-api`, default
//!    settings: QoS 1, up to 500 readings per message, linger 20 ms, disk
//!    queue with fsync every 1000 ms). Node-RED: one `modbus-read` per group,
//!    a function node building one JSON message per poll with its 50
//!    readings, `mqtt out` QoS 1. A subscriber in this bench (QoS 1) counts
//!    readings and takes read → received per frame: Weir stamps a frame
//!    before its group's read, Node-RED's function node after it (Node-RED's
//!    path is the shorter one by the read time).
//! B. **MQTT → PostgreSQL.** This bench publishes `WEIR_BENCH_NR_RATE`
//!    readings/s (default 20,000) as messages of 50 readings at QoS 1:
//!    Weir's frame format (with `seq`) on `weir/...` for the release
//!    `weir-historian` (default settings: binary COPY, 2 writers, ack after
//!    commit), the same readings as JSON on `nodered/...` for Node-RED
//!    (`mqtt in` QoS 1 → join of 20 messages or 100 ms → function node
//!    with one multi-row INSERT through a pg 8 pool of 2; Node-RED acks
//!    each message on arrival, before its rows are written). Both write into
//!    tables of the same shape and index (`readings` and `nr_readings`),
//!    each with an extra column `ingested timestamptz DEFAULT
//!    clock_timestamp()`: latency per row = ingested − publish time.
//!
//! Each side runs alone (the other stopped) for a warm-up and a
//! `WEIR_BENCH_NR_SECS` window (default 20 s). Per side: readings/s in the
//! window, CPU seconds of the process (utime + stime from /proc/PID/stat) per
//! second, readings/s per core = readings/s ÷ CPU s per s, latency p50/p99/
//! max, and memory (VmHWM at the end; VmRSS at the end of the window).
//!
//! Run: `cargo build --release -p weir-agent -p weir-api -p weir-historian`,
//! then `cargo bench -p weir-e2e --bench node_red`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use weir_agent::adapters::modbus::server::{serve, MemoryDevice};
use weir_crds::message::{uplink_state_topic, UplinkMessage, UplinkState};
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, seed_project, start_agent, wait_applied};
use weir_e2e::historian::Historian;
use weir_e2e::proc_stats::{clock_ticks, cpu_seconds, find_pid, vm_mib};
use weir_e2e::{broker_in_memory, ApiClient};
use weir_testkit::postgres::connect;
use weir_testkit::{free_port, Proc, TestDb};

const TENANT: &str = "bench";
const GW: &str = "plant";
const DEVICES: usize = 2;
const GROUPS: usize = 5;
const TAGS: usize = 50;
const GOAL_PER_CORE: f64 = 20.0;
const GOAL_MEMORY: f64 = 0.25;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

// ---- Node-RED: install and start --------------------------------------

/// Where the pinned Node-RED lives between runs.
fn install_dir() -> Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/weir/node-red"))
}

fn committed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node-red")
        .join(file)
}

/// `npm ci` the committed package.json + lock unless that lock is already
/// installed; copies settings.js beside it. Returns the install directory.
fn install_node_red() -> Result<(PathBuf, String)> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .context("`node` is not installed (Node.js >= 18.5 is needed to run Node-RED)")?;
    ensure!(node.status.success(), "`node --version` failed");
    let version = String::from_utf8_lossy(&node.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    ensure!(
        major >= 18,
        "Node-RED 4 needs Node.js >= 18.5; found {version}"
    );
    Command::new("npm")
        .arg("--version")
        .output()
        .context("`npm` is not installed (needed to install Node-RED)")?;
    let dir = install_dir()?;
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::read(committed("package-lock.json"))?;
    for f in ["package.json", "package-lock.json", "settings.js"] {
        std::fs::copy(committed(f), dir.join(f)).with_context(|| format!("copy {f}"))?;
    }
    let stamp = dir.join("node_modules/.weir-installed-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        eprintln!("node_red: npm ci into {}", dir.display());
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .context("running npm ci")?;
        if !out.status.success() {
            bail!(
                "npm ci of e2e/node-red failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(&stamp, &lock)?;
    }
    Ok((dir, version))
}

/// Start Node-RED on `flow` (a committed template; `{{NAME}}` replaced from
/// `subs`) and wait until its flows run.
fn start_node_red(
    install: &Path,
    log_dir: &Path,
    flow: &str,
    subs: &[(&str, String)],
    env: &[(&str, &str)],
) -> Result<Proc> {
    let mut text = std::fs::read_to_string(committed(flow))?;
    for (k, v) in subs {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    ensure!(
        !text.contains("{{"),
        "{flow}: a placeholder was left unfilled"
    );
    let flow_file = format!("bench-{flow}");
    std::fs::write(install.join(&flow_file), text)?;
    let mut cmd = Command::new("node");
    cmd.arg(install.join("node_modules/node-red/red.js"))
        .arg("--settings")
        .arg(install.join("settings.js"))
        .arg("--userDir")
        .arg(install)
        .arg("--port")
        .arg(free_port().to_string())
        .arg(&flow_file)
        .envs(env.iter().copied());
    let name = format!("node-red-{}", flow.trim_end_matches(".json"));
    let mut p = Proc::spawn(&name, &mut cmd, log_dir)?;
    let start = Instant::now();
    loop {
        let log = p.log_text();
        if log.contains("Started flows") {
            break;
        }
        if !p.is_running() || start.elapsed() > Duration::from_secs(60) {
            bail!("Node-RED did not start its flows:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(p)
}

// ---- one side's figures -------------------------------------------------

struct Side {
    name: String,
    readings_per_s: f64,
    cpu_per_s: f64,
    latency_ms: [f64; 3],
    hwm_mib: f64,
    rss_mib: f64,
}

impl Side {
    fn per_core(&self) -> f64 {
        self.readings_per_s / self.cpu_per_s.max(1e-9)
    }

    fn print(&self, latency: &str) {
        println!(
            "    {}: {:.0} readings/s, CPU {:.3} s/s -> {:.0} readings/s per core; {latency} \
             p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; memory peak (VmHWM) {:.1} MiB, \
             steady (VmRSS) {:.1} MiB",
            self.name,
            self.readings_per_s,
            self.cpu_per_s,
            self.per_core(),
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
            self.hwm_mib,
            self.rss_mib
        );
    }
}

fn compare(what: &str, weir: &Side, nr: &Side) {
    let per_core = weir.per_core() / nr.per_core().max(1e-9);
    let memory = weir.hwm_mib / nr.hwm_mib.max(1e-9);
    let met = per_core >= GOAL_PER_CORE && memory <= GOAL_MEMORY;
    println!(
        "    {what}: Weir/Node-RED readings/s per core {per_core:.1}x (goal >= \
         {GOAL_PER_CORE}x); peak memory Weir/Node-RED {memory:.2} (steady {:.2}; goal <= \
         {GOAL_MEMORY}){}",
        weir.rss_mib / nr.rss_mib.max(1e-9),
        if met { ": met" } else { ": goal missed" }
    );
}

/// CPU and the reading count at the start and end of the window.
async fn window<F, Fut>(pid: u32, secs: u64, mut count: F) -> Result<(f64, f64, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let ticks = clock_ticks();
    let (c0, n0, t0) = (cpu_seconds(pid, ticks)?, count().await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, n1, t1) = (cpu_seconds(pid, ticks)?, count().await?, Instant::now());
    let dt = t1 - t0;
    Ok((
        (n1 - n0) as f64 / dt.as_secs_f64(),
        (c1 - c0) / dt.as_secs_f64(),
        dt,
    ))
}

fn memory(pid: u32) -> Result<(f64, f64)> {
    Ok((vm_mib(pid, "VmHWM")?, vm_mib(pid, "VmRSS")?))
}

fn percentiles(mut v: Vec<i64>) -> Result<[f64; 3]> {
    ensure!(!v.is_empty(), "no latency samples");
    v.sort_unstable();
    let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64;
    Ok([at(0.5), at(0.99), at(1.0)])
}

// ---- A: Modbus -> MQTT ----------------------------------------------------

/// What the subscriber saw: per frame (received at, readings, latency ms).
#[derive(Default)]
struct Seen {
    frames: Vec<(Instant, u64, i64)>,
}

type Shared = Arc<Mutex<HashMap<&'static str, Seen>>>;

async fn subscriber(port: u16) -> Result<Shared> {
    let mut opts = MqttOptions::new("bench-nr-subscriber", "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 100);
    for t in ["weir/bench/plant/+/+", "nodered/bench/plant/+/+"] {
        client.subscribe(t, QoS::AtLeastOnce).await?;
    }
    let seen: Shared = Arc::default();
    let s = seen.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    let mut subacks = 0;
    tokio::spawn(async move {
        let _client = client;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == 2 {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let (at, ms) = (Instant::now(), now_ms());
                    let topic = p.topic.clone();
                    let mut g = s.lock().unwrap();
                    if topic.starts_with("weir/") {
                        if let Ok(m) = serde_json::from_slice::<UplinkMessage>(&p.payload) {
                            let e = g.entry("weir").or_default();
                            for f in m.frames {
                                let n = (f.values.len() + f.errors.len()) as u64;
                                e.frames.push((at, n, ms - f.timestamp));
                            }
                        }
                    } else if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        let n = v["values"].as_object().map_or(0, |o| o.len()) as u64;
                        let ts = v["timestamp"].as_i64().unwrap_or(ms);
                        g.entry("nodered")
                            .or_default()
                            .frames
                            .push((at, n, ms - ts));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("node_red: subscriber: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("no SUBACK within 10 s")??;
    Ok(seen)
}

/// Readings and latencies of `side` received within `[from, to]`.
fn received(seen: &Shared, side: &str, from: Instant, to: Instant) -> (u64, Vec<i64>) {
    let g = seen.lock().unwrap();
    let mut n = 0;
    let mut lat = Vec::new();
    if let Some(s) = g.get(side) {
        for &(at, k, l) in &s.frames {
            if at >= from && at <= to {
                n += k;
                lat.push(l);
            }
        }
    }
    (n, lat)
}

fn total(seen: &Shared, side: &str) -> u64 {
    let g = seen.lock().unwrap();
    g.get(side)
        .map_or(0, |s| s.frames.iter().map(|f| f.1).sum())
}

/// Wait until `side`'s readings arrive, then the warm-up, then measure.
async fn measure_a(
    seen: &Shared,
    side: &'static str,
    name: &str,
    pid: u32,
    warmup: u64,
    secs: u64,
) -> Result<Side> {
    let start = Instant::now();
    while total(seen, side) == 0 {
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "no readings from {name} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let from = Instant::now();
    let (_, cpu_per_s, dt) = window(pid, secs, || async { Ok(0) }).await?;
    let to = from + dt;
    // Frames read within the window may still be on their way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (hwm_mib, rss_mib) = memory(pid)?;
    let (n, lat) = received(seen, side, from, to);
    Ok(Side {
        name: name.to_string(),
        readings_per_s: n as f64 / dt.as_secs_f64(),
        cpu_per_s,
        latency_ms: percentiles(lat)?,
        hwm_mib,
        rss_mib,
    })
}

fn agent_spec(ports: &[u16]) -> Value {
    let devices: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(d, port)| {
            let groups: Vec<Value> = (0..GROUPS)
                .map(|g| {
                    let tags: Vec<Value> = (0..TAGS)
                        .map(|t| {
                            let reg = 400001 + g * TAGS * 2 + t * 2;
                            json!({"name": format!("t{t}"), "address": format!("1!{reg}"),
                                   "dataType": "float32"})
                        })
                        .collect();
                    json!({"name": format!("g{g}"), "intervalMs": poll_ms(), "tags": tags})
                })
                .collect();
            json!({"name": format!("d{d}"), "adapter": "modbusTcp",
                   "modbus": {"host": "127.0.0.1", "port": port}, "groups": groups})
        })
        .collect();
    json!({"mode": "external", "clusterRef": "broker", "devices": devices, "uplink": {}})
}

fn poll_ms() -> u64 {
    env_or("WEIR_BENCH_NR_POLL_MS", 50).max(1)
}

// ---- B: MQTT -> PostgreSQL ------------------------------------------------

/// Publish `rate` readings/s as messages of `TAGS` readings for `secs`,
/// cycling over the devices and groups; returns the readings published.
async fn publish_load(
    port: u16,
    client_id: &str,
    rate: u64,
    secs: u64,
    mut message: impl FnMut(u64, usize, usize, i64) -> (String, Vec<u8>),
) -> Result<u64> {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    opts.set_inflight(100);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => return Err::<(), _>(e),
            }
        }
    });
    let per_s = (rate / TAGS as u64).max(1);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * per_s as f64) as u64;
        while sent < due {
            let k = sent as usize;
            let (topic, payload) = message(sent, k % DEVICES, (k / DEVICES) % GROUPS, now_ms());
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
            sent += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < sent {
        ensure!(!poller.is_finished(), "the publisher lost its connection");
        ensure!(
            Instant::now() < deadline,
            "Mosquitto did not acknowledge every message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    Ok(sent * TAGS as u64)
}

fn values_json(seq: u64) -> String {
    let mut s = String::from("{");
    for t in 0..TAGS {
        if t > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"t{t}\":{}.{}", seq % 1000, t + 1));
    }
    s.push('}');
    s
}

async fn rows(db: &str, table: &str) -> Result<u64> {
    Ok(connect(db)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get::<_, i64>(0) as u64)
}

/// p50, p99, max of (ingested − publish time) over rows published in the
/// window.
async fn row_latency(db: &str, table: &str, from_ms: i64, to_ms: i64) -> Result<[f64; 3]> {
    let r = connect(db)
        .await
        .query_one(
            &format!(
                "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY l),
                        percentile_disc(0.99) WITHIN GROUP (ORDER BY l), max(l)
                   FROM (SELECT (extract(epoch FROM ingested - ts) * 1000)::float8 AS l FROM {table}
                          WHERE ts >= to_timestamp($1::float8 / 1000)
                            AND ts < to_timestamp($2::float8 / 1000)) x"
            ),
            &[&(from_ms as f64), &(to_ms as f64)],
        )
        .await?;
    let get = |i: usize| -> Result<f64> {
        let v: Option<f64> = r.try_get::<_, Option<f64>>(i).ok().flatten();
        v.context("no rows in the window")
    };
    Ok([get(0)?, get(1)?, get(2)?])
}

/// Publish for warm-up + window at `rate`, measure the process `pid` and
/// the table over the window, then check every published row arrived.
#[allow(clippy::too_many_arguments)]
async fn measure_b(
    name: &str,
    pid: u32,
    db: &str,
    table: &str,
    broker_port: u16,
    rate: u64,
    warmup: u64,
    secs: u64,
    message: impl FnMut(u64, usize, usize, i64) -> (String, Vec<u8>) + Send + 'static,
) -> Result<Side> {
    let before = rows(db, table).await?;
    let total_secs = warmup + secs + 1;
    let client_id = format!("bench-nr-publisher-{table}");
    let publisher = tokio::spawn(async move {
        publish_load(broker_port, &client_id, rate, total_secs, message).await
    });
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let from_ms = now_ms();
    let (rows_per_s, cpu_per_s, _) = window(pid, secs, || rows(db, table)).await?;
    let to_ms = now_ms();
    let (hwm_mib, rss_mib) = memory(pid)?;
    let published = publisher.await??;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = rows(db, table).await? - before;
        if n == published {
            break;
        }
        if Instant::now() > deadline {
            bail!("{name}: {n} of {published} published readings reached {table} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Side {
        name: name.to_string(),
        readings_per_s: rows_per_s,
        cpu_per_s,
        latency_ms: row_latency(db, table, from_ms, to_ms).await?,
        hwm_mib,
        rss_mib,
    })
}

// ---- the run ----------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("node_red FAILED: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let secs = env_or("WEIR_BENCH_NR_SECS", 20).max(1);
    let warmup = env_or("WEIR_BENCH_NR_WARMUP_SECS", 5);
    let rate = env_or("WEIR_BENCH_NR_RATE", 20_000).max(TAGS as u64);
    let (install, node_version) = install_node_red()?;
    let dir = tempfile::tempdir()?;
    let broker = broker_in_memory().await;
    let seen = subscriber(broker.port).await?;

    // The Modbus devices both sides poll: float32 1.5 in every register pair.
    let words: Vec<u16> = (0..GROUPS * TAGS).flat_map(|_| [0x3FC0, 0]).collect();
    let mut ports = Vec::new();
    for _ in 0..DEVICES {
        let d = MemoryDevice::default();
        d.set_holding(0, &words);
        ports.push(serve(d).await?.port());
    }
    let offered = (DEVICES * GROUPS * TAGS) as f64 * 1000.0 / poll_ms() as f64;

    // A, Weir.
    let (api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "works", &broker.url()).await?;
    let token = gateway_with_token(&admin, &base, GW, agent_spec(&ports)).await?;
    let mut agent = start_agent(dir.path(), GW, &base_url, Some(&token))?;
    wait_applied(&admin, &base, GW, Duration::from_secs(60)).await?;
    let weir_a = measure_a(&seen, "weir", "weir-agent", agent.id(), warmup, secs).await?;
    ensure!(agent.is_running(), "weir-agent died:\n{}", agent.log_text());
    agent.kill();
    drop(api);

    // A, Node-RED.
    let mut subs = vec![
        ("MQTT_PORT", broker.port.to_string()),
        ("POLL_MS", poll_ms().to_string()),
    ];
    for (d, p) in ports.iter().enumerate() {
        subs.push((["MODBUS_PORT_0", "MODBUS_PORT_1"][d], p.to_string()));
    }
    let mut nr = start_node_red(&install, dir.path(), "flow-modbus-mqtt.json", &subs, &[])?;
    let nr_a = measure_a(&seen, "nodered", "Node-RED", nr.id(), warmup, secs).await?;
    ensure!(nr.is_running(), "Node-RED died:\n{}", nr.log_text());
    nr.kill();

    // B: one database, two tables of the historian's shape.
    let pg = TestDb::create("bench_node_red").await;
    let historian = Historian::start(
        dir.path(),
        &broker.url(),
        &pg.url,
        TENANT,
        "bench-nr-historian",
        &[],
    )
    .await?;
    let historian_pid =
        find_pid("bench-nr-historian").context("the weir-historian process is not found")?;
    {
        let c = connect(&pg.url).await;
        c.batch_execute(&format!(
            "ALTER TABLE readings ADD COLUMN ingested timestamptz DEFAULT clock_timestamp();
             CREATE TABLE nr_readings ({});
             {};
             ALTER TABLE nr_readings ADD COLUMN ingested timestamptz DEFAULT clock_timestamp();",
            weir_crds::historian::READINGS_COLUMNS,
            weir_crds::historian::SERIES_INDEX
                .replace("readings_series_key", "nr_readings_series_key")
                .replace(" ON readings ", " ON nr_readings ")
        ))
        .await?;
    }
    // The stream starts here: nothing below `origin` was ever issued.
    let origin = now_ms() as u64 * 1000;
    {
        let state = UplinkState {
            timestamp: now_ms(),
            origin_seq: origin,
            last_acked_seq: None,
            first_kept_seq: origin,
            next_seq: origin,
        };
        let mut opts = MqttOptions::new("bench-nr-state", "127.0.0.1", broker.port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (c, mut el) = AsyncClient::new(opts, 10);
        c.publish(
            uplink_state_topic("weir", TENANT, GW),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&state)?,
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
                Ok(Ok(_)) if Instant::now() < deadline => {}
                other => bail!("publishing the uplink state: {other:?}"),
            }
        }
    }
    let weir_b = measure_b(
        "weir-historian",
        historian_pid,
        &pg.url,
        "readings",
        broker.port,
        rate,
        warmup,
        secs,
        move |i, d, g, ts| {
            let body = format!(
                "{{\"frames\":[{{\"seq\":{},\"timestamp\":{ts},\"values\":{}}}]}}",
                origin + i,
                values_json(i)
            );
            (format!("weir/{TENANT}/{GW}/d{d}/g{g}"), body.into_bytes())
        },
    )
    .await?;
    drop(historian);

    let pg_env = pg.url.clone();
    let mut nr = start_node_red(
        &install,
        dir.path(),
        "flow-mqtt-postgres.json",
        &[("MQTT_PORT", broker.port.to_string())],
        &[("WEIR_NR_PG_URL", &pg_env)],
    )?;
    // Node-RED connects to the broker after "Started flows".
    let start = Instant::now();
    while !nr.log_text().contains("Connected to broker") {
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "Node-RED did not connect to Mosquitto:\n{}",
            nr.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let nr_b = measure_b(
        "Node-RED",
        nr.id(),
        &pg.url,
        "nr_readings",
        broker.port,
        rate,
        warmup,
        secs,
        move |i, d, g, ts| {
            let body = format!(
                "{{\"device\":\"d{d}\",\"group\":\"g{g}\",\"seq\":{i},\"timestamp\":{ts},\"values\":{}}}",
                values_json(i)
            );
            (format!("nodered/{TENANT}/{GW}/d{d}/g{g}"), body.into_bytes())
        },
    )
    .await?;
    ensure!(nr.is_running(), "Node-RED died:\n{}", nr.log_text());
    if nr.log_text().contains("error") {
        eprintln!("node_red: Node-RED logged errors:\n{}", nr.log_text());
    }
    nr.kill();

    println!(
        "node_red (Weir release binaries beside Node-RED 4.1.15 on Node.js {node_version}, same \
         machine, one side at a time, {secs} s windows after {warmup} s warm-up; CPU = utime + \
         stime of the one process; Mosquitto without persistence)"
    );
    println!(
        "  A. Modbus TCP -> MQTT QoS 1: {DEVICES} devices x {GROUPS} groups x {TAGS} float32 \
         (one 100-register read per group) every {} ms = {offered:.0} readings/s offered, on \
         weir-agent's tokio-modbus server; a QoS 1 subscriber attached. weir-agent: enrolled, \
         default uplink (up to 500 readings/message, linger 20 ms, fsync 1000 ms). Node-RED: \
         modbus-read per group -> function (one JSON message of {TAGS} readings per poll) -> \
         mqtt out",
        poll_ms()
    );
    weir_a.print("read (stamped before the read) -> received");
    nr_a.print("read (stamped after the read) -> received");
    compare("A", &weir_a, &nr_a);
    println!(
        "  B. MQTT QoS 1 -> PostgreSQL: {rate} readings/s offered as messages of {TAGS} \
         readings. weir-historian: defaults (binary COPY, 2 writers, ack after commit). \
         Node-RED: mqtt in -> join (20 messages or 100 ms) -> function with one multi-row \
         INSERT via a pg 8 pool of 2 (acks on arrival, before the insert); CPU is the one \
         process, not PostgreSQL's backends (parsing a multi-row INSERT costs them more than \
         a binary COPY)"
    );
    weir_b.print("publish -> row inserted");
    nr_b.print("publish -> row inserted");
    compare("B", &weir_b, &nr_b);
    Ok(())
}
