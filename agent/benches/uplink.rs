//! Agent → Mosquitto at QoS 1, acknowledged: throughput, replay after an
//! outage, and p99 device-read → subscriber latency at 100,000 readings/s.
//! Starts its own Mosquitto on a free port.
//!
//! `cargo bench -p weir-agent --bench uplink`

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_agent::sample::{now_ms, GroupSchema, Sample};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::TagValue;

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
        inflight: 200,
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
        "agent → mosquitto (pipeline + disk queue + QoS1 PUBACK): {:>10.0} readings/s ({total} readings in {secs:.2} s, {} messages)",
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker = common::broker();
        throughput(&broker).await;
        replay(&broker).await;
        latency(&broker).await;
    });
}
