//! Agent → Mosquitto at QoS 1, acknowledged: throughput, replay after an
//! outage, and p99 device-read → subscriber latency at 100,000 readings/s.
//! Starts its own Mosquitto on a free port (no persistence; no limit on
//! queued or in-flight messages).
//!
//! The agent here is the library's runtime (pipeline task, disk queue,
//! uplink) in this process with two tokio workers; readings are fed into
//! the pipeline's channel as 100-tag frames of floats (no adapter, no rules),
//! as fast as the channel takes them. The throughput rows with a subscriber
//! count a reading when a QoS 1 subscriber of this bench (on a thread and
//! runtime of its own) has received it, and check that every frame arrived
//! exactly once; `requireSubscriber` is at its default (on). Each row says
//! readings per message, message size, in-flight window and fsync policy,
//! and the rate at which the broker PUBACKed (it queues for the subscriber
//! before it acknowledges): the subscriber, one rumqttc client parsing
//! every message on the same cores, can be slower than the agent.
//!
//! `cargo bench -p weir-agent --bench uplink`

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_agent::sample::{now_ms, GroupSchema, Sample};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::{TagValue, UplinkMessage};

const TAGS: usize = 100;

fn schemas(n: usize) -> Vec<Arc<GroupSchema>> {
    (0..n)
        .map(|d| {
            Arc::new(GroupSchema {
                device: format!("dev-{d}"),
                group: "g".into(),
                tags: (0..TAGS).map(|t| format!("t{t}")).collect(),
            })
        })
        .collect()
}

fn sample(s: &Arc<GroupSchema>, i: usize, ts: i64) -> Sample {
    Sample {
        schema: s.clone(),
        ts_ms: ts,
        values: (0..TAGS as u16)
            .map(|t| (t, TagValue::Float(i as f64 + f64::from(t) * 0.5)))
            .collect(),
        errors: vec![],
    }
}

fn runtime(dir: &std::path::Path, url: Option<String>) -> Arc<Runtime> {
    runtime_with(dir, url, 200)
}

/// `inflight`: MQTT messages awaiting PUBACK at most (`weir-agent run
/// --inflight`, default 100).
fn runtime_with(dir: &std::path::Path, url: Option<String>, inflight: u16) -> Arc<Runtime> {
    Runtime::start(RuntimeOptions {
        queue_dir: dir.join("queue"),
        fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
        tenant: "bench".into(),
        gateway: "gw".into(),
        broker: BrokerCfg {
            urls: url.into_iter().collect(),
            client_id: format!("bench-{}", common::free_port()),
            username: None,
            password: None,
            ca_pem: None,
        },
        inflight,
    })
    .unwrap()
}

fn uplink_config() -> GatewayConfig {
    let mut c = GatewayConfig::default();
    c.uplink.max_readings_per_message = 2000;
    c.uplink.max_bytes_per_message = 1024 * 1024;
    c.uplink.linger_ms = 5;
    c.uplink.buffer.max_bytes = 4 * 1024 * 1024 * 1024;
    // Throughput and replay-after-outage measure the broker's PUBACKs with
    // no reader attached (as before issue 20); a held queue would measure
    // nothing. Retention stays on (the default), as in production.
    c.uplink.require_subscriber = false;
    c
}

async fn wait_acked(rt: &Runtime, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while rt.queue.stats().acked_readings.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "not all readings acknowledged in time"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn throughput(broker: &common::Mosquitto) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), Some(broker.url()));
    rt.apply(&uplink_config(), 1).await.unwrap();
    // Wait for the connection so the figure is steady-state.
    while !rt.uplink_stats.connected.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let schemas = schemas(20);
    let samples = 20_000; // × 100 tags
    let total = (samples * TAGS) as u64;
    let tx = rt.sample_sender();
    let t = Instant::now();
    let feeder = tokio::spawn(async move {
        for i in 0..samples / schemas.len() {
            for s in &schemas {
                tx.send(sample(s, i, 1_700_000_000_000 + i as i64))
                    .await
                    .unwrap();
            }
        }
    });
    wait_acked(&rt, total, Duration::from_secs(120)).await;
    let secs = t.elapsed().as_secs_f64();
    feeder.await.unwrap();
    println!(
        "agent → mosquitto, tuned config (2000 readings/message, 200 in flight, linger 5 ms, fsync every 1000 ms), \
         NO subscriber (requireSubscriber off; Mosquitto discards every message): {:>10.0} readings/s PUBACKed \
         ({total} readings in {secs:.2} s, {} messages)",
        total as f64 / secs,
        rt.uplink_stats.messages_acked.load(Ordering::Relaxed)
    );
    rt.shutdown().await;
}

async fn replay(broker: &common::Mosquitto) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), None);
    rt.apply(&uplink_config(), 1).await.unwrap();
    let schemas = schemas(20);
    let samples = 20_000;
    let total = (samples * TAGS) as u64;
    let tx = rt.sample_sender();
    for i in 0..samples / schemas.len() {
        for s in &schemas {
            tx.send(sample(s, i, 1_700_000_000_000 + i as i64))
                .await
                .unwrap();
        }
    }
    while rt.queue.stats().appended_readings.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mb = rt.queue.stats().bytes.load(Ordering::Relaxed) as f64 / 1e6;
    // The broker comes back: time until everything is acknowledged.
    let t = Instant::now();
    rt.set_broker(BrokerCfg {
        urls: vec![broker.url()],
        client_id: format!("bench-{}", common::free_port()),
        username: None,
        password: None,
        ca_pem: None,
    });
    wait_acked(&rt, total, Duration::from_secs(120)).await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "replay after outage ({mb:.0} MB queued on disk):            {:>10.0} readings/s ({total} readings in {secs:.2} s, incl. connect)",
        total as f64 / secs
    );
    rt.shutdown().await;
}

async fn latency(broker: &common::Mosquitto) {
    let sub = common::Subscriber::start(broker.port, "weir/bench/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), Some(broker.url()));
    let mut cfg = uplink_config();
    cfg.uplink.linger_ms = 5;
    cfg.uplink.max_readings_per_message = 500;
    rt.apply(&cfg, 1).await.unwrap();
    while !rt.uplink_stats.connected.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 100,000 readings/s: 10 devices × 100 tags every 10 ms, for 10 s.
    let schemas = schemas(10);
    let tx = rt.sample_sender();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    let t = Instant::now();
    let mut lat: Vec<i64> = Vec::new();
    let mut seen_frames = std::collections::HashMap::<String, usize>::new();
    for i in 0..1000 {
        tick.tick().await;
        let ts = now_ms();
        for s in &schemas {
            tx.send(sample(s, i, ts)).await.unwrap();
            sent += TAGS as u64;
        }
        // Collect latencies of frames that arrived since the last tick.
        let now = now_ms();
        let g = sub.seen.lock().unwrap();
        for (dev, frames) in &g.frames {
            let done = seen_frames.entry(dev.clone()).or_default();
            for (_, (ts, _)) in frames.iter().skip(*done) {
                lat.push(now - ts);
            }
            *done = frames.len();
        }
    }
    sub.wait_until(Duration::from_secs(30), "all readings", |s| {
        s.readings >= sent
    })
    .await;
    let secs = t.elapsed().as_secs_f64();
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "latency at {:.0} readings/s (read → subscriber, ±10 ms sampling): p50 {} ms, p99 {} ms, max {} ms ({} frames)",
        sent as f64 / secs,
        p(0.5),
        p(0.99),
        lat.last().copied().unwrap_or_default(),
        lat.len()
    );
    let h = &rt.uplink_stats.latency;
    println!(
        "  publish → PUBACK mean {:.2} ms over {} messages",
        h.sum_us.load(Ordering::Relaxed) as f64
            / 1000.0
            / h.count.load(Ordering::Relaxed).max(1) as f64,
        h.count.load(Ordering::Relaxed)
    );
    rt.shutdown().await;
}

/// What a subscriber of the bench gateway's data topics received.
#[derive(Default)]
struct Counts {
    readings: u64,
    messages: u64,
    bytes: u64,
    duplicates: u64,
    /// (topic, seq) of every frame received.
    frames: HashSet<(String, u64)>,
    last: Option<Instant>,
}

/// A QoS 1 subscriber to `weir/bench/gw/+/+` (the data topics) on a thread
/// and current-thread runtime of its own, so its JSON parsing does not run
/// on the agent's two workers (it still shares the machine's cores).
struct Counting {
    counts: Arc<Mutex<Counts>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counting {
    fn start(port: u16) -> Self {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let c = counts.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut o = MqttOptions::new(
                    format!("bench-sub-{}", common::free_port()),
                    "127.0.0.1",
                    port,
                );
                o.set_keep_alive(Duration::from_secs(10));
                o.set_max_packet_size(256 * 1024 * 1024, 256 * 1024 * 1024);
                let (client, mut el) = AsyncClient::new(o, 1000);
                loop {
                    let ev = tokio::select! {
                        _ = &mut stop_rx => return,
                        ev = el.poll() => ev,
                    };
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client
                                .subscribe("weir/bench/gw/+/+", QoS::AtLeastOnce)
                                .await;
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            let _ = ready_tx.send(());
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let Ok(m) = serde_json::from_slice::<UplinkMessage>(&p.payload) else {
                                continue;
                            };
                            let mut g = c.lock().unwrap();
                            g.messages += 1;
                            g.bytes += p.payload.len() as u64;
                            for f in m.frames {
                                let n = (f.values.len() + f.errors.len()) as u64;
                                if g.frames.insert((p.topic.clone(), f.seq)) {
                                    g.readings += n;
                                } else {
                                    g.duplicates += n;
                                }
                            }
                            g.last = Some(Instant::now());
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the bench's subscriber subscribed");
        Self {
            counts,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One uplink configuration for the rows with a subscriber.
struct Case {
    name: &'static str,
    readings_per_message: u32,
    max_bytes_per_message: u32,
    linger_ms: u32,
    inflight: u16,
}

impl Case {
    /// Every uplink setting at its default: the CRD's (500 readings and
    /// 256 KiB per message, linger 20 ms) and `weir-agent run`'s (100 in
    /// flight, fsync every 1000 ms).
    fn defaults() -> Self {
        let u = weir_crds::gateway::Uplink::default();
        Self {
            name: "default config",
            readings_per_message: u.max_readings_per_message,
            max_bytes_per_message: u.max_bytes_per_message,
            linger_ms: u.linger_ms,
            inflight: 100,
        }
    }

    /// The tuned config of the rows before issue 21 (larger messages, a
    /// wider window, a shorter linger).
    fn tuned() -> Self {
        Self {
            name: "tuned config",
            readings_per_message: 2000,
            max_bytes_per_message: 1024 * 1024,
            linger_ms: 5,
            inflight: 200,
        }
    }

    fn config(&self) -> GatewayConfig {
        let mut c = GatewayConfig::default();
        c.uplink.max_readings_per_message = self.readings_per_message;
        c.uplink.max_bytes_per_message = self.max_bytes_per_message;
        c.uplink.linger_ms = self.linger_ms;
        // requireSubscriber and the 1 GiB buffer stay at their defaults.
        c
    }
}

/// Goal (issue 21): agent → broker with the defaults and a subscriber.
const GOAL_WITH_SUBSCRIBER: f64 = 500_000.0;

async fn throughput_with_subscriber(broker: &common::Mosquitto, case: &Case) {
    let sub = Counting::start(broker.port);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_with(dir.path(), Some(broker.url()), case.inflight);
    rt.apply(&case.config(), 1).await.unwrap();
    while !rt.uplink_stats.connected.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let schemas = schemas(20);
    let samples = 20_000; // × 100 tags
    let total = (samples * TAGS) as u64;
    let tx = rt.sample_sender();
    let t = Instant::now();
    let feeder = tokio::spawn(async move {
        for i in 0..samples / schemas.len() {
            for s in &schemas {
                tx.send(sample(s, i, 1_700_000_000_000 + i as i64))
                    .await
                    .unwrap();
            }
        }
    });
    wait_acked(&rt, total, Duration::from_secs(120)).await;
    let acked_secs = t.elapsed().as_secs_f64();
    feeder.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let received = sub.counts.lock().unwrap().readings;
        if received >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscriber received {received} of {total} readings"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // What the subscriber saw, out of its lock before the next await.
    let (last, duplicates, frames, messages, bytes) = {
        let g = sub.counts.lock().unwrap();
        (g.last, g.duplicates, g.frames.len(), g.messages, g.bytes)
    };
    let secs = last
        .expect("a message arrived")
        .duration_since(t)
        .as_secs_f64();
    assert_eq!(duplicates, 0, "frames received twice");
    assert_eq!(frames, samples, "frames received");
    let rate = total as f64 / secs;
    let verdict = if case.name == "default config" {
        if rate >= GOAL_WITH_SUBSCRIBER {
            format!("; goal >= {GOAL_WITH_SUBSCRIBER:.0}: met")
        } else {
            format!("; goal >= {GOAL_WITH_SUBSCRIBER:.0}: goal missed")
        }
    } else {
        String::new()
    };
    println!(
        "agent → mosquitto → subscriber, {} ({} readings/message, max {} bytes/message, linger {} ms, \
         {} in flight, QoS 1, fsync every 1000 ms, requireSubscriber on, one QoS 1 subscriber): \
         {rate:>10.0} readings/s received by the subscriber{verdict} ({total} readings of 100-tag \
         frames in {secs:.2} s, all PUBACKed after {acked_secs:.2} s = {:.0} readings/s into the broker; \
         {} messages of {:.0} bytes and {:.0} readings on average; every frame once)",
        case.name,
        case.readings_per_message,
        case.max_bytes_per_message,
        case.linger_ms,
        case.inflight,
        total as f64 / acked_secs,
        messages,
        bytes as f64 / messages.max(1) as f64,
        total as f64 / messages.max(1) as f64,
    );
    rt.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker = common::broker();
        throughput_with_subscriber(&broker, &Case::defaults()).await;
        throughput_with_subscriber(&broker, &Case::tuned()).await;
        throughput(&broker).await;
        replay(&broker).await;
        latency(&broker).await;
    });
}
