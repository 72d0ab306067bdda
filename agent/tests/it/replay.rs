//! Issue 20 on the agent, through a real Mosquitto: readings wait for a
//! subscriber (PUBACK reason 16), replays republish kept frames and say what
//! is missing, and the uplink state goes out.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Subscriber;
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_agent::sample::{GroupSchema, Sample};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::{replay_topic, ReplayResponse, SeqRange, TagValue, UplinkState};

const TAGS: usize = 10;

fn runtime(dir: &tempfile::TempDir, url: String) -> Arc<Runtime> {
    Runtime::start(RuntimeOptions {
        queue_dir: dir.path().join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: BrokerCfg {
            urls: vec![url],
            client_id: format!("agent-{}", common::free_port()),
            username: None,
            password: None,
            ca_pem: None,
        },
        inflight: 100,
    })
    .unwrap()
}

/// `n` samples of each of `devices` devices, one frame each.
async fn feed(rt: &Runtime, devices: usize, n: usize) {
    let tx = rt.sample_sender();
    let schemas: Vec<_> = (0..devices)
        .map(|d| {
            Arc::new(GroupSchema {
                device: format!("dev-{d}"),
                group: "g".into(),
                tags: (0..TAGS).map(|t| format!("t{t}")).collect(),
            })
        })
        .collect();
    for i in 0..n {
        for s in &schemas {
            tx.send(Sample {
                schema: s.clone(),
                ts_ms: 1_700_000_000_000 + i as i64,
                values: (0..TAGS as u16)
                    .map(|t| (t, TagValue::Int(i as i64)))
                    .collect(),
                errors: vec![],
            })
            .await
            .unwrap();
        }
    }
}

async fn wait_for(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages the subscriber saw on a topic ending in `suffix`, parsed.
fn other<T: serde::de::DeserializeOwned>(sub: &Subscriber, suffix: &str) -> Vec<T> {
    sub.seen
        .lock()
        .unwrap()
        .other
        .iter()
        .filter(|(t, _)| t.ends_with(suffix))
        .map(|(_, p)| serde_json::from_slice(p).expect("parses"))
        .collect()
}

fn status(rt: &Runtime) -> weir_crds::agent_api::AgentStatus {
    weir_agent::status::snapshot(
        rt,
        &Mutex::new(None),
        Instant::now(),
        Duration::from_secs(10),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_wait_for_a_subscriber_and_then_all_arrive() {
    let broker = common::broker();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, broker.url());
    rt.apply(&GatewayConfig::default(), 1).await.unwrap();
    feed(&rt, 2, 50).await;
    let u = rt.uplink_stats.clone();
    wait_for(
        "a 'no matching subscribers' PUBACK",
        Duration::from_secs(10),
        || u.waiting_for_subscriber.load(Ordering::Relaxed),
    )
    .await;
    // Held, not delivered: nothing acknowledged, the status and metrics say why.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = status(&rt);
    assert!(st.waiting_for_subscriber);
    assert_eq!(st.readings_out, 0, "nothing counts as delivered");
    assert_eq!(st.last_acked_seq, None);
    assert_eq!(rt.queue.stats().depth_frames.load(Ordering::Relaxed), 100);
    let m = weir_agent::metrics::render(&rt);
    assert!(
        m.contains("weir_agent_uplink_waiting_for_subscriber 1"),
        "{m}"
    );
    let retries = u.no_subscriber_acks.load(Ordering::Relaxed);
    assert!(
        retries >= 2,
        "it retried with back-off ({retries} reason-16 PUBACKs)"
    );
    assert!(
        u.connected.load(Ordering::Relaxed),
        "the connection stays up"
    );
    assert_eq!(u.reconnects.load(Ordering::Relaxed), 0);

    // A reader attaches: every frame arrives, the agent stops waiting.
    let sub = Subscriber::start(broker.port, "weir/riverside/ps-1/+/+").await;
    sub.wait_until(Duration::from_secs(40), "all held readings", |s| {
        s.readings >= (100 * TAGS) as u64
    })
    .await;
    wait_for(
        "waiting_for_subscriber false",
        Duration::from_secs(5),
        || !status(&rt).waiting_for_subscriber,
    )
    .await;
    let origin = rt.queue.origin();
    wait_for(
        "the cursor past every frame",
        Duration::from_secs(5),
        || rt.queue.last_acked_seq() == Some(origin + 99),
    )
    .await;
    assert_eq!(sub.seen.lock().unwrap().readings, (100 * TAGS) as u64);
    let m = weir_agent::metrics::render(&rt);
    assert!(
        m.contains("weir_agent_uplink_waiting_for_subscriber 0"),
        "{m}"
    );
    assert!(m.contains("weir_agent_uplink_no_subscribers_total"), "{m}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_require_subscriber_readings_go_into_the_void() {
    let broker = common::broker();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, broker.url());
    let mut cfg = GatewayConfig::default();
    cfg.uplink.require_subscriber = false;
    rt.apply(&cfg, 1).await.unwrap();
    feed(&rt, 2, 50).await;
    let q = rt.queue.stats().clone();
    wait_for(
        "every reading acknowledged",
        Duration::from_secs(10),
        || q.acked_readings.load(Ordering::Relaxed) == (100 * TAGS) as u64,
    )
    .await;
    assert_eq!(q.depth_frames.load(Ordering::Relaxed), 0);
    assert!(!status(&rt).waiting_for_subscriber);
    assert_eq!(
        rt.uplink_stats.no_subscriber_acks.load(Ordering::Relaxed),
        0
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_republishes_kept_frames_and_names_what_is_missing() {
    let broker = common::broker();
    // The historian's side: readings and the agent's answers.
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, broker.url());
    let mut cfg = GatewayConfig::default();
    // 16 KiB segments, so retention works on several.
    cfg.uplink.buffer.max_bytes = 128 * 1024;
    rt.apply(&cfg, 1).await.unwrap();
    let origin = rt.queue.origin();
    feed(&rt, 2, 300).await;
    sub.wait_until(Duration::from_secs(20), "600 frames", |s| {
        s.readings >= (600 * TAGS) as u64
    })
    .await;
    wait_for("all acknowledged", Duration::from_secs(5), || {
        rt.queue.last_acked_seq() == Some(origin + 599)
    })
    .await;
    assert_eq!(rt.queue.first_kept(), origin, "everything retained");
    assert_eq!(status(&rt).retained_frames, 600);

    // A late reader sees exactly the replayed frames.
    let late = Subscriber::start(broker.port, "weir/riverside/ps-1/+/+").await;
    let ask = |from: u64, to: u64| {
        let c = sub.client.clone();
        let body = format!("{{\"fromSeq\":{from},\"toSeq\":{to}}}");
        async move {
            c.publish(
                replay_topic("weir", "riverside", "ps-1"),
                rumqttc::QoS::AtLeastOnce,
                false,
                body,
            )
            .await
            .unwrap()
        }
    };
    let answers = |n: usize| {
        let sub = &sub;
        async move {
            sub.wait_until(Duration::from_secs(20), "replay answers", |s| {
                s.other
                    .iter()
                    .filter(|(t, _)| t.ends_with("/cmd/replay/resp"))
                    .count()
                    >= n
            })
            .await;
            other::<ReplayResponse>(sub, "/cmd/replay/resp")
        }
    };
    ask(origin + 10, origin + 29).await;
    let r = answers(1).await;
    assert_eq!(
        r[0],
        ReplayResponse {
            from_seq: origin + 10,
            to_seq: origin + 29,
            replayed_frames: 20,
            missing: vec![],
            error: None
        }
    );
    late.wait_until(Duration::from_secs(5), "20 replayed frames", |s| {
        s.readings >= (20 * TAGS) as u64
    })
    .await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: BTreeSet<u64> = late
        .seen
        .lock()
        .unwrap()
        .frames
        .values()
        .flat_map(|f| f.keys().copied())
        .collect();
    assert_eq!(
        seen,
        (origin + 10..=origin + 29).collect(),
        "exactly those frames"
    );

    // Retention shrinks to nothing: only the active segment stays.
    cfg.uplink.buffer.retain.max_bytes = 0;
    rt.apply(&cfg, 2).await.unwrap();
    let kept = rt.queue.first_kept();
    assert!(
        kept > origin + 29 && kept < origin + 600,
        "first kept {kept}"
    );
    // A range from before the origin to past the end.
    ask(origin - 5, origin + 610).await;
    let r = answers(2).await;
    assert_eq!(r[1].replayed_frames, origin + 600 - kept);
    assert_eq!(
        r[1].missing,
        vec![
            SeqRange {
                from_seq: origin - 5,
                to_seq: kept - 1
            },
            SeqRange {
                from_seq: origin + 600,
                to_seq: origin + 610
            },
        ]
    );
    assert_eq!(r[1].error, None);
    // The live cursor did not move back: nothing is pending.
    assert_eq!(rt.queue.stats().depth_frames.load(Ordering::Relaxed), 0);

    // Malformed requests are answered with an error naming the field.
    sub.client
        .publish(
            replay_topic("weir", "riverside", "ps-1"),
            rumqttc::QoS::AtLeastOnce,
            false,
            "{\"fromSeq\":5}",
        )
        .await
        .unwrap();
    let r = answers(3).await;
    assert!(
        r[2].error.as_deref().unwrap().contains("toSeq"),
        "{:?}",
        r[2]
    );
    assert_eq!(r[2].replayed_frames, 0);
    ask(origin + 9, origin + 3).await;
    let r = answers(4).await;
    assert!(
        r[3].error.as_deref().unwrap().contains("fromSeq"),
        "{:?}",
        r[3]
    );
    assert_eq!(status(&rt).replays, 4);
    let m = weir_agent::metrics::render(&rt);
    assert!(m.contains("weir_agent_replays_total 4"), "{m}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uplink_state_goes_out_on_connect_and_every_few_seconds() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, broker.url());
    let origin = rt.queue.origin();
    sub.wait_until(Duration::from_secs(5), "the state on connect", |s| {
        s.other
            .iter()
            .any(|(t, _)| t.ends_with("/cmd/uplink/state"))
    })
    .await;
    let first = &other::<UplinkState>(&sub, "/cmd/uplink/state")[0];
    assert_eq!(first.origin_seq, origin);
    assert_eq!(first.last_acked_seq, None, "nothing sent yet");
    assert_eq!((first.first_kept_seq, first.next_seq), (origin, origin));
    assert!((first.timestamp - weir_agent::sample::now_ms()).abs() < 5_000);

    rt.apply(&GatewayConfig::default(), 1).await.unwrap();
    feed(&rt, 1, 40).await;
    sub.wait_until(
        Duration::from_secs(12),
        "a state naming the last frame",
        |s| {
            s.other.iter().any(|(t, p)| {
                t.ends_with("/cmd/uplink/state")
                    && serde_json::from_slice::<UplinkState>(p)
                        .unwrap()
                        .last_acked_seq
                        == Some(origin + 39)
            })
        },
    )
    .await;
    let states = other::<UplinkState>(&sub, "/cmd/uplink/state");
    let last = states.last().unwrap();
    assert_eq!(last.origin_seq, origin);
    assert_eq!(last.first_kept_seq, origin, "retained by default");
    assert_eq!(last.next_seq, origin + 40);
    assert!(states.len() >= 2);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_replay_beside_live_data_completes_and_live_data_arrives() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, broker.url());
    let mut cfg = GatewayConfig::default();
    // Small messages: the replay is many publishes.
    cfg.uplink.max_readings_per_message = 50;
    rt.apply(&cfg, 1).await.unwrap();
    let origin = rt.queue.origin();
    feed(&rt, 4, 2500).await;
    sub.wait_until(Duration::from_secs(30), "10,000 frames", |s| {
        s.readings >= (10_000 * TAGS) as u64
    })
    .await;
    let live_before = sub.seen.lock().unwrap().readings;
    sub.client
        .publish(
            replay_topic("weir", "riverside", "ps-1"),
            rumqttc::QoS::AtLeastOnce,
            false,
            format!("{{\"fromSeq\":{origin},\"toSeq\":{}}}", origin + 9_999),
        )
        .await
        .unwrap();
    // Live data meanwhile.
    feed(&rt, 4, 500).await;
    sub.wait_until(Duration::from_secs(30), "live data and the answer", |s| {
        s.readings >= live_before + (2_000 * TAGS) as u64
            && s.other.iter().any(|(t, _)| t.ends_with("/cmd/replay/resp"))
    })
    .await;
    let r = &other::<ReplayResponse>(&sub, "/cmd/replay/resp")[0];
    assert_eq!(r.replayed_frames, 10_000);
    assert!(r.missing.is_empty() && r.error.is_none(), "{r:?}");
    let dups = sub.seen.lock().unwrap().duplicates;
    assert!(
        dups >= (10_000 * TAGS) as u64,
        "every replayed reading came again ({dups})"
    );
    assert_eq!(
        rt.uplink_stats.reconnects.load(Ordering::Relaxed),
        0,
        "the replay never overflowed the client"
    );
    assert_eq!(rt.queue.last_acked_seq(), Some(origin + 11_999));
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_before_an_agent_restart_can_be_replayed() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir, broker.url());
    rt.apply(&GatewayConfig::default(), 1).await.unwrap();
    let origin = rt.queue.origin();
    feed(&rt, 2, 100).await;
    sub.wait_until(Duration::from_secs(20), "200 frames", |s| {
        s.readings >= (200 * TAGS) as u64
    })
    .await;
    wait_for("all acknowledged", Duration::from_secs(5), || {
        rt.queue.last_acked_seq() == Some(origin + 199)
    })
    .await;
    rt.shutdown().await;
    drop(rt);
    let states_before = other::<UplinkState>(&sub, "/cmd/uplink/state").len();

    // The same data dir: same origin, the acknowledged frames still kept.
    let rt = runtime(&dir, broker.url());
    rt.apply(&GatewayConfig::default(), 1).await.unwrap();
    assert_eq!(rt.queue.origin(), origin);
    assert_eq!(rt.queue.first_kept(), origin);
    assert_eq!(status(&rt).last_acked_seq, Some(origin + 199));
    assert_eq!(status(&rt).retained_frames, 200);
    sub.wait_until(Duration::from_secs(5), "a state after the restart", |s| {
        s.other
            .iter()
            .filter(|(t, _)| t.ends_with("/cmd/uplink/state"))
            .count()
            > states_before
    })
    .await;
    let st = other::<UplinkState>(&sub, "/cmd/uplink/state");
    let st = &st[states_before];
    assert_eq!(
        (
            st.origin_seq,
            st.last_acked_seq,
            st.first_kept_seq,
            st.next_seq
        ),
        (origin, Some(origin + 199), origin, origin + 200)
    );
    let late = Subscriber::start(broker.port, "weir/riverside/ps-1/+/+").await;
    sub.client
        .publish(
            replay_topic("weir", "riverside", "ps-1"),
            rumqttc::QoS::AtLeastOnce,
            false,
            format!("{{\"fromSeq\":{origin},\"toSeq\":{}}}", origin + 199),
        )
        .await
        .unwrap();
    sub.wait_until(Duration::from_secs(10), "the answer", |s| {
        s.other.iter().any(|(t, _)| t.ends_with("/cmd/replay/resp"))
    })
    .await;
    let r = &other::<ReplayResponse>(&sub, "/cmd/replay/resp")[0];
    assert_eq!((r.replayed_frames, r.missing.len()), (200, 0), "{r:?}");
    late.wait_until(Duration::from_secs(5), "the replayed frames", |s| {
        s.readings >= (200 * TAGS) as u64
    })
    .await;
    rt.shutdown().await;
}
