//! Historian end-to-end benchmark against a real Mosquitto and PostgreSQL.
//!
//! 1. Throughput: a backlog of readings waits in Mosquitto for the
//!    historian's persistent session; the sink is started and we time how
//!    fast it moves the backlog into PostgreSQL (rows/s, goal ≥ 300,000).
//! 2. Latency: readings are published at a steady 100,000 readings/s, each
//!    stamped with its read time; p50/p99 of (commit time − read time) per
//!    row (goal p99 ≤ 50 ms).
//!
//! Run: `cargo bench -p weir-historian --bench historian_throughput`
//! Env: `WEIR_BENCH_READINGS` (backlog size, default 3,000,000),
//! `WEIR_BENCH_SECONDS` (latency phase, default 10), `WEIR_BENCH_WRITERS`
//! (PostgreSQL connections, default: the historian's default).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;
use weir_historian::{self as historian, Config, Metrics};
use weir_testkit::{wait_until, Mosquitto, TestDb};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn payload(gw: usize, first_seq: u64, frames: usize, tags: usize, ts: i64) -> Vec<u8> {
    let mut s = String::with_capacity(frames * tags * 20 + 64);
    s.push_str("{\"frames\":[");
    for f in 0..frames {
        if f > 0 {
            s.push(',');
        }
        let seq = first_seq + f as u64;
        s.push_str(&format!("{{\"seq\":{seq},\"timestamp\":{ts},\"values\":{{"));
        for t in 0..tags {
            if t > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"t{t:03}\":{}.{}", gw * 1000 + t, seq % 1000));
        }
        s.push_str("}}");
    }
    s.push_str("]}");
    s.into_bytes()
}

/// Publish QoS 1 messages; `pace` = messages per 10 ms tick (None: as fast as
/// possible). Returns when all are acknowledged by the broker.
async fn publish(
    port: u16,
    id: &str,
    count: usize,
    pace: Option<usize>,
    make: impl Fn(usize) -> (String, Vec<u8>) + Send + 'static,
) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    opts.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..count {
            if let Some(p) = pace {
                if i % p == 0 {
                    tick.tick().await;
                }
            }
            let (topic, body) = make(i);
            client
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < count {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("publisher") {
            acked += 1;
        }
    }
    let client = sender.await.unwrap();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

fn sink_config(port: u16, db_url: &str) -> Config {
    Config {
        mqtt_url: format!("mqtt://127.0.0.1:{port}"),
        database_url: db_url.to_owned(),
        tenant: "bench".into(),
        client_id: "historian-bench".into(),
        metrics_listen: None,
        writers: env_or("WEIR_BENCH_WRITERS", Config::default().writers as u64) as usize,
        ..Config::default()
    }
}

fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let backlog = env_or("WEIR_BENCH_READINGS", 3_000_000) as usize;
    let seconds = env_or("WEIR_BENCH_SECONDS", 10) as usize;
    // The backlog waits in the broker for the sink's session: no limit on
    // what it queues.
    let broker = Mosquitto::builder()
        .config("max_queued_messages 0")
        .config("max_queued_bytes 0")
        .start()
        .await;
    let port = broker.port;
    let db = TestDb::create("weir_hist_bench").await;
    let db_url = db.url.clone();
    historian::migrate(&db_url).await.unwrap();

    // Register the persistent session, then stop the sink.
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let sink = tokio::spawn(historian::run_with_metrics(
        sink_config(port, &db_url),
        metrics.clone(),
        stop.clone(),
    ));
    wait_until(Duration::from_secs(30), "the sink to subscribe", || {
        let up = metrics.mqtt_connected.get() == 1;
        async move { up }
    })
    .await;
    stop.cancel();
    sink.await.unwrap().unwrap();

    // --- throughput: drain a backlog ---
    const GATEWAYS: usize = 8;
    const FRAMES: usize = 10;
    const TAGS: usize = 100; // 1,000 readings per message
    let per_msg = FRAMES * TAGS;
    let msgs = backlog.div_ceil(per_msg);
    let backlog = msgs * per_msg;
    let ts = now_ms();
    let t0 = Instant::now();
    publish(port, "bench-backlog", msgs, None, move |i| {
        let gw = i % GATEWAYS;
        let first_seq = (i / GATEWAYS * FRAMES) as u64 + 1;
        (
            format!("weir/bench/gw-{gw}/dev/fast"),
            payload(gw, first_seq, FRAMES, TAGS, ts),
        )
    })
    .await;
    eprintln!(
        "backlog: {backlog} readings in {msgs} messages queued in {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    let metrics = Arc::new(Metrics::new().record_lag_samples());
    let stop = CancellationToken::new();
    let started = Instant::now();
    let sink = tokio::spawn(historian::run_with_metrics(
        sink_config(port, &db_url),
        metrics.clone(),
        stop.clone(),
    ));
    let mut first_row: Option<Instant> = None;
    while metrics.rows_written.get() < backlog as u64 {
        if first_row.is_none() && metrics.rows_written.get() > 0 {
            first_row = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "drain too slow"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = backlog as f64 / elapsed;
    let _ = metrics.take_lag_samples();

    // --- latency at 100,000 readings/s ---
    const LAT_TAGS: usize = 100; // 1 frame of 100 readings per message
    let per_tick = 10; // 10 messages per 10 ms = 100,000 readings/s
    let lat_msgs = seconds * 100 * per_tick;
    let base_seq = 10_000_000u64;
    publish(port, "bench-latency", lat_msgs, Some(per_tick), move |i| {
        let gw = i % GATEWAYS;
        let seq = base_seq + (i / GATEWAYS) as u64;
        (
            format!("weir/bench/gw-{gw}/dev/fast"),
            payload(gw, seq, 1, LAT_TAGS, now_ms()),
        )
    })
    .await;
    let want = (backlog + lat_msgs * LAT_TAGS) as u64;
    let latency_started = Instant::now();
    while metrics.rows_written.get() < want {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            latency_started.elapsed() < Duration::from_secs(600),
            "latency phase too slow"
        );
    }
    let mut lags = metrics.take_lag_samples();
    lags.sort_by(|a, b| a.total_cmp(b));
    stop.cancel();
    sink.await.unwrap().unwrap();

    let rows: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, want, "every reading stored once");
    drop(db);

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("historian_throughput (Mosquitto -> weir-historian -> PostgreSQL, {cpus} CPUs)");
    println!(
        "  throughput: {backlog} readings drained in {elapsed:.2}s = {throughput:.0} rows/s (goal >= 300000){}",
        first_row
            .map(|f| format!(
                "; first commit after {:.0} ms",
                (f - started).as_secs_f64() * 1000.0
            ))
            .unwrap_or_default()
    );
    println!(
        "  latency at 100000 readings/s over {seconds}s ({} rows): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 <= 50 ms)",
        lags.len(),
        percentile(&lags, 0.50) * 1000.0,
        percentile(&lags, 0.99) * 1000.0,
        percentile(&lags, 1.0) * 1000.0,
    );
}
