//! End-to-end delivery through a real Mosquitto: broker restarts, queue full.

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::Subscriber;
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_agent::sample::{GroupSchema, Sample};
use weir_crds::gateway::{GatewayConfig, OverflowPolicy};
use weir_crds::message::TagValue;

const DEVICES: usize = 10;
const TAGS: usize = 10;

fn schemas() -> Vec<Arc<GroupSchema>> {
    (0..DEVICES)
        .map(|d| {
            Arc::new(GroupSchema {
                device: format!("dev-{d}"),
                group: "g".into(),
                tags: (0..TAGS).map(|t| format!("t{t}")).collect(),
            })
        })
        .collect()
}

/// Sample `i` of a device: every tag carries `i`, so order and gaps show.
fn sample(schema: &Arc<GroupSchema>, i: usize) -> Sample {
    Sample {
        schema: schema.clone(),
        ts_ms: 1_700_000_000_000 + i as i64,
        values: (0..TAGS as u16)
            .map(|t| (t, TagValue::Int(i as i64)))
            .collect(),
        errors: vec![],
    }
}

fn runtime(dir: &tempfile::TempDir, url: Option<String>) -> Arc<Runtime> {
    Runtime::start(RuntimeOptions {
        queue_dir: dir.path().join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: BrokerCfg {
            urls: url.into_iter().collect(),
            client_id: format!("agent-{}", common::free_port()),
            username: None,
            password: None,
            ca_pem: None,
        },
        inflight: 100,
    })
    .unwrap()
}

/// Every device's values, in first-arrival order.
fn values_by_device(seen: &common::Seen) -> Vec<(String, Vec<i64>)> {
    let mut out: Vec<(String, Vec<i64>)> = seen
        .arrival
        .iter()
        .map(|(d, seqs)| {
            let frames = &seen.frames[d];
            let vals = seqs
                .iter()
                .map(|s| match frames[s].1["t0"] {
                    TagValue::Int(v) => v,
                    ref other => panic!("unexpected {other:?}"),
                })
                .collect();
            (d.clone(), vals)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_readings_survive_two_broker_restarts_in_order() {
    let mut broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, Some(broker.url()));
    rt.apply(&GatewayConfig::default(), 1).await.unwrap();
    let tx = rt.sample_sender();
    let schemas = schemas();
    let per_device = 100_000 / (DEVICES * TAGS); // 1000 samples per device
    let total = (per_device * DEVICES * TAGS) as u64;
    let feeder = tokio::spawn(async move {
        for i in 0..per_device {
            for s in &schemas {
                tx.send(sample(s, i)).await.unwrap();
            }
            // ~20 s of data at an even pace, so the outages hit mid-stream.
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    for outage in 1..=2u64 {
        sub.wait_until(Duration::from_secs(60), "readings before an outage", |s| {
            s.readings >= total * outage / 3
        })
        .await;
        broker.stop();
        tokio::time::sleep(Duration::from_millis(700)).await;
        broker.restart_blocking();
    }
    feeder.await.unwrap();
    sub.wait_until(Duration::from_secs(90), "all readings", |s| {
        s.readings >= total
    })
    .await;
    {
        let seen = sub.seen.lock().unwrap();
        assert_eq!(
            seen.readings, total,
            "every reading arrives exactly once after dedupe"
        );
        assert!(
            rt.uplink_stats.reconnects.load(Ordering::Relaxed) >= 2,
            "the agent saw the outages"
        );
        for (device, vals) in values_by_device(&seen) {
            let expect: Vec<i64> = (0..per_device as i64).collect();
            assert_eq!(vals, expect, "{device}: every sample, in order");
        }
        // QoS 1 may repeat what was in flight at each outage, nothing more.
        let bound = 2 * 100 * 500 * 2;
        assert!(
            seen.duplicates <= bound,
            "{} duplicates > {bound}",
            seen.duplicates
        );
        eprintln!("duplicates after 2 broker restarts: {}", seen.duplicates);
    }
    rt.shutdown().await;
}

async fn overflow_case(policy: OverflowPolicy) {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    // No broker yet: everything stays in the queue.
    let rt = runtime(&dir, None);
    let mut cfg = GatewayConfig::default();
    cfg.uplink.buffer.max_bytes = 1024 * 1024;
    cfg.uplink.buffer.overflow = policy;
    rt.apply(&cfg, 1).await.unwrap();
    let tx = rt.sample_sender();
    let schemas = schemas();
    let per_device = 3000;
    let total = (per_device * DEVICES * TAGS) as u64;
    for i in 0..per_device {
        for s in &schemas {
            tx.send(sample(s, i)).await.unwrap();
        }
    }
    let q = rt.queue.stats().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Drop-oldest writes every reading (and may drop it later); refuse-new
    // writes or refuses each one.
    let taken = |q: &weir_agent::queue::QueueStats| match policy {
        OverflowPolicy::DropOldest => q.appended_readings.load(Ordering::Relaxed),
        OverflowPolicy::RefuseNew => {
            q.appended_readings.load(Ordering::Relaxed) + q.dropped_readings.load(Ordering::Relaxed)
        }
    };
    while taken(&q) < total {
        assert!(
            std::time::Instant::now() < deadline,
            "pipeline did not take every reading"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dropped = q.dropped_readings.load(Ordering::Relaxed);
    assert!(dropped > 0, "3 MB of frames must overflow a 1 MiB queue");
    assert!(
        q.bytes.load(Ordering::Relaxed) <= 1024 * 1024,
        "the queue stays within its bound"
    );
    // Now let them out.
    rt.set_broker(BrokerCfg {
        urls: vec![broker.url()],
        client_id: format!("agent-{}", common::free_port()),
        username: None,
        password: None,
        ca_pem: None,
    });
    let qs = rt.queue.stats().clone();
    let us = rt.uplink_stats.clone();
    let mut last = 0;
    sub.wait_until(Duration::from_secs(60), "the kept readings", |s| {
        if s.readings < total - dropped && last != s.messages {
            last = s.messages;
            eprintln!(
                "want {} got {}: acked {} depth {} frames published {} connected {}",
                total - dropped,
                s.readings,
                qs.acked_readings.load(Ordering::Relaxed),
                qs.depth_frames.load(Ordering::Relaxed),
                us.frames_published.load(Ordering::Relaxed),
                us.connected.load(Ordering::Relaxed)
            );
        }
        s.readings >= total - dropped
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let seen = sub.seen.lock().unwrap();
        assert_eq!(
            seen.readings + dropped,
            total,
            "delivered + dropped = produced, exactly"
        );
        for (device, vals) in values_by_device(&seen) {
            assert!(
                vals.windows(2).all(|w| w[1] == w[0] + 1),
                "{device}: a contiguous run"
            );
            match policy {
                OverflowPolicy::DropOldest => assert_eq!(
                    *vals.last().unwrap(),
                    per_device as i64 - 1,
                    "{device}: newest kept"
                ),
                OverflowPolicy::RefuseNew => assert_eq!(vals[0], 0, "{device}: oldest kept"),
            }
        }
    }
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_oldest_and_counts_exactly() {
    overflow_case(OverflowPolicy::DropOldest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_new_and_counts_exactly() {
    overflow_case(OverflowPolicy::RefuseNew).await;
}

/// The broker comes back while the queue is full and readings keep coming:
/// sending, dropping and appending at once still account for every reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_oldest_while_sending() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, None);
    let mut cfg = GatewayConfig::default();
    cfg.uplink.buffer.max_bytes = 1024 * 1024;
    rt.apply(&cfg, 1).await.unwrap();
    let tx = rt.sample_sender();
    let schemas = schemas();
    let per_device = 3000;
    let total = (per_device * DEVICES * TAGS) as u64;
    for i in 0..per_device {
        if i == per_device / 2 {
            rt.set_broker(BrokerCfg {
                urls: vec![broker.url()],
                client_id: format!("agent-{}", common::free_port()),
                username: None,
                password: None,
                ca_pem: None,
            });
        }
        for s in &schemas {
            tx.send(sample(s, i)).await.unwrap();
        }
    }
    let q = rt.queue.stats().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while q.appended_readings.load(Ordering::Relaxed) < total {
        assert!(
            std::time::Instant::now() < deadline,
            "pipeline did not take every reading"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dropped = q.dropped_readings.load(Ordering::Relaxed);
        let got = sub.readings();
        if got + dropped == total && q.depth_frames.load(Ordering::Relaxed) == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivered {got} + dropped {dropped} != {total}; depth {} acked {} published frames {}",
            q.depth_frames.load(Ordering::Relaxed),
            q.acked_readings.load(Ordering::Relaxed),
            rt.uplink_stats.frames_published.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let seen = sub.seen.lock().unwrap();
        for (device, vals) in values_by_device(&seen) {
            assert_eq!(
                *vals.last().unwrap(),
                per_device as i64 - 1,
                "{device}: newest kept"
            );
            assert!(vals.windows(2).all(|w| w[1] > w[0]), "{device}: in order");
        }
    }
    rt.shutdown().await;
}
