//! Write-back latency (DESIGN.md goal: p99 ≤ 50 ms; Neuron publishes an
//! average of 523 ms): an MQTT write command → the register written on a
//! Modbus TCP device → the agent's answer received.
//!
//! The path, all real parts on this machine: this bench publishes a
//! `WriteRequest` (JSON, QoS 1) on `weir/{tenant}/{gateway}/cmd/write` to
//! Mosquitto (no ACLs, anonymous) → the release `weir-agent` binary
//! (enrolled through `weir-api`, default settings) → Modbus TCP
//! `WriteSingleRegister` to weir-agent's in-repo tokio-modbus server
//! (`MemoryDevice`, run inside this bench process, which stamps the moment
//! the register is written) → the agent's `WriteResponse` on
//! `.../cmd/write/resp` (QoS 1) → this bench's subscriber.
//!
//! While the writes run, the agent also polls the same device: 4 groups of
//! 100 float32 holding registers every 100 ms (4,000 readings/s, 8 read
//! requests per round), published to Mosquitto (nobody subscribes to the
//! readings). The writable tag `sp` (int16, holding register 1001) is in a
//! fifth group polled every second.
//!
//! Runs: writes one at a time (the next sent when the answer is in), the
//! same with 16 in flight, and one at a time again with the device
//! answering every request after 5 ms (a PLC's usual turn-around), where a
//! write can wait behind a poll round. Each prints p50, p99 and max of
//! command published → register written and → answer received.
//!
//! Run: `cargo build --release -p weir-agent -p weir-api`, then
//! `cargo bench -p weir-e2e --bench write_back`. Env: `WEIR_BENCH_WRITES`
//! (writes per run, default 1000, at most 30000).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use weir_agent::adapters::modbus::server::{serve, MemoryDevice};
use weir_crds::message::{TagValue, WriteRequest, WriteResponse};
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, seed_project, start_agent, wait_applied};
use weir_e2e::{broker_in_memory, ApiClient};

const TENANT: &str = "bench";
const GW: &str = "plant";
const DEVICE: &str = "plc";
const GROUPS: usize = 4;
const TAGS: usize = 100;
const POLL_MS: u64 = 100;
/// Holding register of `sp` (Modbus address 1!401001, zero-based 1000).
const SP_REGISTER: u16 = 1000;
const GOAL_P99_MS: f64 = 50.0;

/// One Modbus device: the polled float32 groups and the writable setpoint.
fn spec(port: u16) -> Value {
    let mut groups: Vec<Value> = (0..GROUPS)
        .map(|g| {
            let tags: Vec<Value> = (0..TAGS)
                .map(|t| {
                    let reg = 400001 + (g * TAGS + t) * 2;
                    json!({"name": format!("t{t}"), "address": format!("1!{reg}"),
                           "dataType": "float32"})
                })
                .collect();
            json!({"name": format!("g{g}"), "intervalMs": POLL_MS, "tags": tags})
        })
        .collect();
    groups.push(json!({"name": "ctl", "intervalMs": 1000, "tags": [
        {"name": "sp", "address": format!("1!{}", 400001 + u32::from(SP_REGISTER)),
         "dataType": "int16", "attributes": ["read", "write"]}
    ]}));
    json!({
        "mode": "external",
        "clusterRef": "broker",
        "devices": [{"name": DEVICE, "adapter": "modbusTcp",
                     "modbus": {"host": "127.0.0.1", "port": port},
                     "groups": groups}],
        "uplink": {}
    })
}

/// Answers by correlation id, each to the writer waiting for it.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<(Instant, WriteResponse)>>>>;

/// Our MQTT side: publishes commands, routes answers to their writers.
struct Commander {
    client: AsyncClient,
    waiting: Waiting,
}

impl Commander {
    async fn connect(port: u16) -> Result<Commander> {
        let mut opts = MqttOptions::new("bench-write-back", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut el) = AsyncClient::new(opts, 1000);
        // As an operator console would: without TCP_NODELAY this client's
        // PUBACK for one answer holds the next command back until the
        // broker's delayed ACK (~40 ms), which is the client's, not Weir's.
        let mut net = el.network_options();
        net.set_tcp_nodelay(true);
        el.set_network_options(net);
        let waiting: Waiting = Arc::default();
        let w = waiting.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        // Stamped before parsing: the answer is in.
                        let at = Instant::now();
                        if let Ok(r) = serde_json::from_slice::<WriteResponse>(&p.payload) {
                            if let Some(tx) = w.lock().unwrap().remove(&r.correlation_id) {
                                let _ = tx.send((at, r));
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("write_back: bench MQTT client: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let resp = weir_crds::message::command_response_topic("weir", TENANT, GW);
        client.subscribe(resp, QoS::AtLeastOnce).await?;
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .context("no SUBACK from Mosquitto within 10 s")??;
        Ok(Commander { client, waiting })
    }

    /// Publish one write of `sp` = `value`; returns when it was published
    /// and the answer with when it arrived.
    async fn write(
        &self,
        id: String,
        value: i64,
        timeout: Duration,
    ) -> Result<(Instant, Instant, WriteResponse)> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        let payload = serde_json::to_vec(&WriteRequest {
            correlation_id: id.clone(),
            device: DEVICE.into(),
            tag: "sp".into(),
            value: TagValue::Int(value),
        })?;
        let topic = weir_crds::message::command_topic("weir", TENANT, GW);
        let sent = Instant::now();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((at, r))) => Ok((sent, at, r)),
            _ => {
                self.waiting.lock().unwrap().remove(&id);
                bail!("no answer to write {id} within {timeout:?}")
            }
        }
    }
}

/// Times of the setpoint's writes on the device, by value written.
type WrittenAt = Arc<Mutex<HashMap<u16, Instant>>>;

fn watch_device(device: &MemoryDevice) -> WrittenAt {
    let mut rx = device.watch_writes();
    let seen: WrittenAt = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(w) = rx.recv().await {
            if w.addr == SP_REGISTER {
                if let Some(v) = w.words.first() {
                    s.lock().unwrap().insert(*v, w.at);
                }
            }
        }
    });
    seen
}

struct Timings {
    written: Vec<Duration>,
    answered: Vec<Duration>,
    elapsed: Duration,
}

/// `n` writes of values 1..=n with `concurrency` in flight.
async fn run_writes(
    cmd: &Arc<Commander>,
    written_at: &WrittenAt,
    run: &str,
    n: usize,
    concurrency: usize,
) -> Result<Timings> {
    written_at.lock().unwrap().clear();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (cmd, next, run) = (cmd.clone(), next.clone(), run.to_string());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                let value = i as i64 + 1;
                let (sent, answered, r) = cmd
                    .write(format!("{run}-{i}"), value, Duration::from_secs(10))
                    .await?;
                if !r.ok {
                    bail!("write {run}-{i} refused: {:?}", r.error);
                }
                out.push((value as u16, sent, answered));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = start.elapsed();
    let seen = written_at.lock().unwrap().clone();
    let mut t = Timings {
        written: Vec::with_capacity(n),
        answered: Vec::with_capacity(n),
        elapsed,
    };
    for (value, sent, answered) in all {
        let at = seen
            .get(&value)
            .with_context(|| format!("the device never saw sp = {value} written"))?;
        t.written.push(at.saturating_duration_since(sent));
        t.answered.push(answered.saturating_duration_since(sent));
    }
    Ok(t)
}

/// Nearest-rank percentile in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn report(what: &str, mut t: Timings) -> f64 {
    t.written.sort();
    t.answered.sort();
    let n = t.answered.len();
    let p99 = pct(&t.answered, 0.99);
    println!("  {what}: {n} writes in {:.1} s", t.elapsed.as_secs_f64());
    println!(
        "    command published -> register written: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&t.written, 0.5),
        pct(&t.written, 0.99),
        pct(&t.written, 1.0)
    );
    println!(
        "    command published -> answer received:  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         (goal p99 <= {GOAL_P99_MS} ms{})",
        pct(&t.answered, 0.5),
        p99,
        pct(&t.answered, 1.0),
        if p99 <= GOAL_P99_MS {
            ", met"
        } else {
            ": goal missed"
        }
    );
    p99
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("write_back FAILED: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let n: usize = std::env::var("WEIR_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 30_000);
    let dir = tempfile::tempdir()?;
    let broker = broker_in_memory().await;
    let (_api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "works", &broker.url()).await?;

    // float32 1.5 in every polled register pair.
    let plc = MemoryDevice::default();
    let words: Vec<u16> = (0..GROUPS * TAGS).flat_map(|_| [0x3FC0, 0]).collect();
    plc.set_holding(0, &words);
    let written_at = watch_device(&plc);
    let port = serve(plc.clone()).await?.port();

    let token = gateway_with_token(&admin, &base, GW, spec(port)).await?;
    let mut agent = start_agent(dir.path(), GW, &base_url, Some(&token))?;
    wait_applied(&admin, &base, GW, Duration::from_secs(60)).await?;
    let cmd = Arc::new(Commander::connect(broker.port).await?);

    // The agent subscribes to its command topic when it connects: repeat a
    // first write until it is answered.
    let start = Instant::now();
    let mut k = 0;
    loop {
        k += 1;
        match cmd
            .write(format!("hello-{k}"), 30_000, Duration::from_millis(500))
            .await
        {
            Ok((_, _, r)) if r.ok => break,
            Ok((_, _, r)) => bail!("the first write was refused: {:?}", r.error),
            Err(_) if start.elapsed() < Duration::from_secs(30) => {}
            Err(e) => return Err(e.context("the agent never answered a write within 30 s")),
        }
    }
    // Warm-up, not counted.
    run_writes(&cmd, &written_at, "warm", 50, 1).await?;

    println!(
        "write_back (MQTT QoS 1 WriteRequest -> weir-agent (release binary, enrolled, default \
         settings) -> Modbus TCP WriteSingleRegister on the in-repo tokio-modbus server (in the \
         bench process) -> WriteResponse QoS 1 to the bench's subscriber; Mosquitto without ACLs; \
         meanwhile the agent polls the same device: {GROUPS} groups x {TAGS} float32 every \
         {POLL_MS} ms = {} readings/s, {} read requests per round)",
        GROUPS * TAGS * 1000 / POLL_MS as usize,
        GROUPS * 2
    );
    let mut worst: f64 = 0.0;
    let t = run_writes(&cmd, &written_at, "seq", n, 1).await?;
    worst = worst.max(report("one at a time, device answers at once", t));
    let t = run_writes(&cmd, &written_at, "conc", n, 16).await?;
    let rate = t.answered.len() as f64 / t.elapsed.as_secs_f64();
    worst = worst.max(report("16 in flight, device answers at once", t));
    println!("    ({rate:.0} writes/s answered)");
    plc.set_delay(Duration::from_millis(5));
    let t = run_writes(&cmd, &written_at, "slow", n, 1).await?;
    worst = worst.max(report(
        "one at a time, device answers every request (reads too) after 5 ms",
        t,
    ));
    plc.set_delay(Duration::ZERO);

    if plc.holding(SP_REGISTER) != n as u16 {
        bail!(
            "sp holds {} after the last write of {n}",
            plc.holding(SP_REGISTER)
        );
    }
    if !agent.is_running() {
        bail!("weir-agent died during the run:\n{}", agent.log_text());
    }
    println!(
        "  write-back p99 over all runs: {worst:.2} ms (goal <= {GOAL_P99_MS} ms{})",
        if worst <= GOAL_P99_MS {
            ", met"
        } else {
            ": goal missed"
        }
    );
    Ok(())
}
