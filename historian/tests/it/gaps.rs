//! Issue 20 on the historian's side, with real processes: the
//! `weir-historian` binary, Mosquitto and PostgreSQL. The test plays the
//! agent with a plain MQTT client: it publishes frames (skipping some), its
//! uplink state, and answers the replay requests it receives.
//!
//! Small flags keep it quick: a hole is a gap after 1 s, checked every
//! 200 ms, asked again every 2 s and recorded as `agent-unreachable` 5 s
//! after the first request.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use weir_crds::message::{
    replay_response_topic, replay_topic, uplink_state_topic, Frame, ReplayRequest, ReplayResponse,
    SeqRange, TagValue, UplinkMessage, UplinkState,
};

use crate::support::*;

const TENANT: &str = "riverside";
const FLAGS: &[&str] = &[
    "--gap-grace-secs",
    "1",
    "--gap-check-ms",
    "200",
    "--replay-retry-secs",
    "2",
    "--replay-window-secs",
    "5",
];

/// The agent's part: frames, uplink state, replay answers.
struct FakeAgent {
    gateway: String,
    client: AsyncClient,
    requests: mpsc::UnboundedReceiver<ReplayRequest>,
    base_ms: i64,
}

impl FakeAgent {
    async fn connect(port: u16, gateway: &str) -> FakeAgent {
        let mut opts = MqttOptions::new(format!("agent-{gateway}"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (tx, requests) = mpsc::unbounded_channel();
        let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
        let topic = replay_topic("weir", TENANT, gateway);
        client
            .subscribe(topic.clone(), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                        let req: ReplayRequest = serde_json::from_slice(&p.payload)
                            .expect("a replay request the contract describes");
                        if tx.send(req).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), sub_rx.recv())
            .await
            .expect("the fake agent subscribes");
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 600_000;
        FakeAgent {
            gateway: gateway.into(),
            client,
            requests,
            base_ms,
        }
    }

    fn ts(&self, seq: u64) -> i64 {
        self.base_ms + (seq % 1_000_000) as i64 * 100
    }

    /// Publish frames `seqs`, five per message, each frame one reading.
    async fn frames(&self, seqs: impl IntoIterator<Item = u64>) {
        let seqs: Vec<u64> = seqs.into_iter().collect();
        for chunk in seqs.chunks(5) {
            let frames = chunk
                .iter()
                .map(|&seq| Frame {
                    seq,
                    timestamp: self.ts(seq),
                    values: [("level".to_string(), TagValue::Float(seq as f64))].into(),
                    errors: Default::default(),
                })
                .collect();
            let payload = serde_json::to_vec(&UplinkMessage { frames }).unwrap();
            let topic = format!("weir/{TENANT}/{}/pump-1/fast", self.gateway);
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    }

    async fn state(&self, origin_seq: u64, last_acked_seq: u64) {
        let state = UplinkState {
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
            origin_seq,
            last_acked_seq: Some(last_acked_seq),
            first_kept_seq: origin_seq,
            next_seq: last_acked_seq + 1,
        };
        let topic = uplink_state_topic("weir", TENANT, &self.gateway);
        let payload = serde_json::to_vec(&state).unwrap();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    async fn answer(&self, req: ReplayRequest, replayed: u64, missing: Vec<SeqRange>) {
        let resp = ReplayResponse {
            from_seq: req.from_seq,
            to_seq: req.to_seq,
            replayed_frames: replayed,
            missing,
            error: None,
        };
        let topic = replay_response_topic("weir", TENANT, &self.gateway);
        let payload = serde_json::to_vec(&resp).unwrap();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    async fn next_request(&mut self, within: Duration) -> ReplayRequest {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("no replay request for {} within {within:?}", self.gateway))
            .expect("agent task alive")
    }

    /// Requests received so far, without waiting.
    fn drain(&mut self) -> Vec<ReplayRequest> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }
}

fn req(from_seq: u64, to_seq: u64) -> ReplayRequest {
    ReplayRequest { from_seq, to_seq }
}

/// Rows of `reading_gaps`: (gateway, from, to, reason, ts_from ms, ts_to ms).
async fn gaps(db: &TestDb) -> Vec<(String, i64, i64, String, Option<i64>, Option<i64>)> {
    let c = db.client().await;
    let ms =
        |t: Option<SystemTime>| t.map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64);
    c.query(
        "SELECT gateway, seq_from, seq_to, reason, ts_from, ts_to FROM reading_gaps ORDER BY gateway, seq_from",
        &[],
    )
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), ms(r.get(4)), ms(r.get(5))))
            .collect()
    })
    .unwrap_or_default()
}

async fn open_holes(db: &TestDb) -> i64 {
    let c = db.client().await;
    match c.query_one("SELECT count(*) FROM seq_holes", &[]).await {
        Ok(r) => r.get(0),
        Err(_) => -1,
    }
}

/// Every reading of `gateway` once: seq → number of rows.
async fn rows_per_seq(db: &TestDb, gateway: &str) -> BTreeMap<i64, i64> {
    let c = db.client().await;
    c.query(
        "SELECT seq, count(*) FROM readings WHERE gateway = $1 GROUP BY seq",
        &[&gateway],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn start(broker: &Mosquitto, db: &TestDb, logs: &std::path::Path, name: &str) -> Sink {
    start_with(broker, db, logs, name, FLAGS).await
}

async fn start_with(
    broker: &Mosquitto,
    db: &TestDb,
    logs: &std::path::Path,
    name: &str,
    flags: &[&str],
) -> Sink {
    let sink = Sink::start_with(&broker.url(), &db.url, TENANT, name, logs, name, flags);
    sink.wait_subscribed().await;
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_range_is_asked_for_and_filled_once() {
    let (db, broker, logs) = (
        test_db().await,
        broker().await,
        tempfile::tempdir().unwrap(),
    );
    let sink = start(&broker, &db, logs.path(), "hist-fill").await;
    let mut agent = FakeAgent::connect(broker.port, "gw-fill").await;
    agent.frames(1..=10).await;
    agent.frames(21..=30).await;
    // The hole 11..=20 is asked for after the grace, exactly.
    assert_eq!(
        agent.next_request(Duration::from_secs(15)).await,
        req(11, 20)
    );
    agent.frames(11..=20).await;
    agent.answer(req(11, 20), 10, vec![]).await;
    let dbr = &db;
    wait_until(Duration::from_secs(15), "the hole to close", || async move {
        open_holes(dbr).await == 0 && rows_per_seq(dbr, "gw-fill").await.len() == 30
    })
    .await;
    let rows = rows_per_seq(&db, "gw-fill").await;
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    assert!(rows.values().all(|&n| n == 1), "every row once: {rows:?}");
    // Closed for good: no gap, no further request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(gaps(&db).await, vec![]);
    assert_eq!(
        agent.drain(),
        vec![],
        "nothing asked once the hole is filled"
    );
    assert_eq!(
        sink.metric("weir_historian_frames_recovered_total").await,
        Some(10.0)
    );
    assert_eq!(sink.metric("weir_historian_gaps_open").await, Some(0.0));
    assert!(sink.metric("weir_historian_replay_requests_total").await >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_agent_no_longer_holds_is_recorded_as_not_retained() {
    let (db, broker, logs) = (
        test_db().await,
        broker().await,
        tempfile::tempdir().unwrap(),
    );
    let sink = start(&broker, &db, logs.path(), "hist-missing").await;
    let mut agent = FakeAgent::connect(broker.port, "gw-missing").await;
    agent.frames(1..=5).await;
    agent.frames(11..=15).await;
    let r = agent.next_request(Duration::from_secs(15)).await;
    assert_eq!(r, req(6, 10));
    // It still holds 6 and 7, not 8..=10.
    agent.frames(6..=7).await;
    agent
        .answer(
            r,
            2,
            vec![SeqRange {
                from_seq: 8,
                to_seq: 10,
            }],
        )
        .await;
    let dbr = &db;
    wait_until(
        Duration::from_secs(15),
        "the gap to be recorded",
        || async move { !gaps(dbr).await.is_empty() && open_holes(dbr).await == 0 },
    )
    .await;
    // Bordered by the read times of frames 7 and 11.
    assert_eq!(
        gaps(&db).await,
        vec![(
            "gw-missing".into(),
            8,
            10,
            "not-retained".into(),
            Some(agent.ts(7)),
            Some(agent.ts(11))
        )]
    );
    let seqs: Vec<i64> = rows_per_seq(&db, "gw-missing").await.into_keys().collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        agent.drain(),
        vec![],
        "a recorded gap is not asked for again"
    );
    let text = metrics_text(sink.metrics_port).await;
    assert!(
        text.contains(r#"weir_historian_gaps_recorded_total{reason="not-retained"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tail_is_seen_and_without_an_answer_recorded_as_agent_unreachable() {
    let (db, broker, logs) = (
        test_db().await,
        broker().await,
        tempfile::tempdir().unwrap(),
    );
    let sink = start(&broker, &db, logs.path(), "hist-tail").await;
    let mut agent = FakeAgent::connect(broker.port, "gw-tail").await;
    agent.frames(1..=5).await;
    // The broker acknowledged up to 8, but 6..=8 never reached the historian.
    agent.state(1, 8).await;
    assert_eq!(agent.next_request(Duration::from_secs(15)).await, req(6, 8));
    // No answer: asked again after the retry interval …
    assert_eq!(agent.next_request(Duration::from_secs(10)).await, req(6, 8));
    // … and recorded once the replay window has passed.
    let dbr = &db;
    wait_until(
        Duration::from_secs(20),
        "the gap to be recorded",
        || async move { !gaps(dbr).await.is_empty() },
    )
    .await;
    assert_eq!(
        gaps(&db).await,
        vec![(
            "gw-tail".into(),
            6,
            8,
            "agent-unreachable".into(),
            Some(agent.ts(5)),
            None
        )]
    );
    assert_eq!(open_holes(&db).await, 0);
    // Recorded for good: not asked for again.
    agent.drain();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(agent.drain(), vec![]);
    let log = sink.log_text();
    assert!(
        log.contains("recorded a gap")
            && log.contains("gw-tail")
            && log.contains("agent-unreachable"),
        "the gap is logged with its gateway and reason: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sequence_origin_is_not_a_gap() {
    let (db, broker, logs) = (
        test_db().await,
        broker().await,
        tempfile::tempdir().unwrap(),
    );
    let _sink = start(&broker, &db, logs.path(), "hist-origin").await;
    let mut agent = FakeAgent::connect(broker.port, "gw-origin").await;
    agent.state(1, 5).await;
    agent.frames(1..=5).await;
    // A new data directory: a new sequence far above the old one.
    let origin = 1_765_000_000_000_000;
    agent.state(origin, origin + 4).await;
    agent.frames(origin..=origin + 4).await;
    let dbr = &db;
    wait_until(
        Duration::from_secs(15),
        "both sequences stored",
        || async move { rows_per_seq(dbr, "gw-origin").await.len() == 10 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        agent.drain(),
        vec![],
        "no replay request for never-issued numbers"
    );
    assert_eq!(gaps(&db).await, vec![]);
    assert_eq!(open_holes(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_historians_sharing_the_subscription_see_no_false_gaps() {
    let (db, broker, logs) = (
        test_db().await,
        broker().await,
        tempfile::tempdir().unwrap(),
    );
    // A grace of 3 s: a batch delayed by a busy machine is not what this
    // test is about; a hole left by the split between instances would
    // stay open for good and be asked for all the same.
    let flags = [&["--gap-grace-secs", "3"], &FLAGS[2..]].concat();
    let a = start_with(&broker, &db, logs.path(), "hist-a", &flags).await;
    let b = start_with(&broker, &db, logs.path(), "hist-b", &flags).await;
    let mut agents = Vec::new();
    for g in 0..3 {
        agents.push(FakeAgent::connect(broker.port, &format!("gw-{g}")).await);
    }
    // Frames for 4 s, the messages split between the two instances.
    for round in 0..40u64 {
        for agent in &agents {
            agent.frames(round * 25 + 1..=round * 25 + 25).await;
            agent.state(1, round * 25 + 25).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dbr = &db;
    wait_until(
        Duration::from_secs(30),
        "every frame stored",
        || async move {
            let mut all = true;
            for g in 0..3 {
                all &= rows_per_seq(dbr, &format!("gw-{g}")).await.len() == 1000;
            }
            all
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for agent in &mut agents {
        assert_eq!(
            agent.drain(),
            vec![],
            "no replay request for {}",
            agent.gateway
        );
    }
    assert_eq!(gaps(&db).await, vec![]);
    assert_eq!(open_holes(&db).await, 0);
    // Both took part.
    for s in [&a, &b] {
        assert!(s.metric("weir_historian_rows_written_total").await > Some(0.0));
    }
    let recovered = a
        .metric("weir_historian_frames_recovered_total")
        .await
        .unwrap_or(0.0)
        + b.metric("weir_historian_frames_recovered_total")
            .await
            .unwrap_or(0.0);
    assert_eq!(recovered, 0.0);
}

/// The whole `/metrics` text (for labelled metrics).
async fn metrics_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn a_version_1_database_is_upgraded_once_by_concurrent_instances() {
    let db = test_db().await;
    weir_historian::migrate(&db.url).await.unwrap();
    // Back to what version 1 had, with a reading in it.
    let c = db.client().await;
    c.batch_execute(
        "DROP TABLE reading_gaps, seq_ranges, seq_state, seq_origins, seq_missing, seq_holes;
         UPDATE weir_historian_meta SET value = '1' WHERE key = 'version';
         CREATE TABLE readings_p20250101 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2025-01-02');
         INSERT INTO readings (tenant, gateway, device, tag, ts, value, quality, seq)
              VALUES ('t', 'g', 'd', 'x', '2025-01-01T00:00:00Z', 1, 0, 1)",
    )
    .await
    .unwrap();
    let (a, b) = tokio::join!(
        weir_historian::migrate(&db.url),
        weir_historian::migrate(&db.url)
    );
    a.unwrap();
    b.unwrap();
    let version: String = c
        .query_one(
            "SELECT value FROM weir_historian_meta WHERE key = 'version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, weir_historian::schema::SCHEMA_VERSION.to_string());
    assert_eq!(version, "2");
    for table in [
        "reading_gaps",
        "seq_ranges",
        "seq_state",
        "seq_origins",
        "seq_missing",
        "seq_holes",
    ] {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{table} after the upgrade: {e}"))
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    let kept: i64 = c
        .query_one("SELECT count(*) FROM readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the upgrade keeps the readings");
    // The api reads gaps with the contract's query.
    c.query(
        weir_crds::historian::GAPS_SQL,
        &[&"t", &"g", &SystemTime::UNIX_EPOCH, &SystemTime::now()],
    )
    .await
    .unwrap();
}
