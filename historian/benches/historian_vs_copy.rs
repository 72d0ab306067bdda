//! The historian as a ratio of the machine's limit, in one run, on one
//! database (the historian's own schema: partitioned `readings` with its one
//! unique index `readings_series_key`):
//!
//! 1. **raw COPY**: the same rows, generated in memory beforehand, written
//!    by plain binary COPY — no MQTT, no JSON, no `seq` tracking, no dedupe —
//!    with the historian's default batch size and number of connections,
//!    each batch `BEGIN; COPY … (FORMAT binary); COMMIT` and its rows in the
//!    key order the historian also sends. This is what PostgreSQL on this
//!    machine takes; measured before and after the historian to bracket
//!    drift on a shared machine.
//! 2. **historian**: its sink (library, default settings) draining the same
//!    readings from Mosquitto, where they wait for its persistent session.
//! 3. **dedupe**: the same messages published again (as an agent resending
//!    after a crash would), drained the same way; every row is a duplicate
//!    and must be skipped; afterwards the table must hold each row once.
//!
//! Between phases `readings` is emptied (TRUNCATE) and a CHECKPOINT taken,
//! so each timed phase starts from an empty table and index.
//!
//! Run: `cargo bench -p weir-historian --bench historian_vs_copy`
//! Env: `WEIR_BENCH_READINGS` (default 3,000,000).
//!
//! Prints the figures; a missed goal is printed as such and does not fail.
//! Exits non-zero when it could not measure (lost or duplicated rows, a
//! phase that did not finish, a part that did not start).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use futures::{pin_mut, SinkExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_postgres::NoTls;
use tokio_util::bytes::{BufMut, Bytes, BytesMut};
use tokio_util::sync::CancellationToken;
use weir_historian::{self as historian, Config, Metrics};
use weir_testkit::{wait_until, Mosquitto, TestDb};

const GATEWAYS: usize = 8;
const FRAMES: usize = 10;
const TAGS: usize = 100; // 1,000 readings per message
const TENANT: &str = "bench";
const DEVICE: &str = "dev";
const PG_EPOCH_MS: i64 = 946_684_800_000;
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const COPY_CHUNK: usize = 256 * 1024;
const COLUMNS: &str = "tenant, gateway, device, tag, ts, value, value_text, quality, seq";

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

/// Message `i` of the backlog: (gateway, first seq).
fn message(i: usize) -> (usize, u64) {
    (i % GATEWAYS, (i / GATEWAYS * FRAMES) as u64 + 1)
}

fn value(gw: usize, t: usize, seq: u64) -> String {
    format!("{}.{}", gw * 1000 + t, seq % 1000)
}

/// The uplink JSON of message `i` (as `weir-agent` writes it).
fn payload(i: usize, ts: i64) -> Vec<u8> {
    let (gw, first_seq) = message(i);
    let mut s = String::with_capacity(FRAMES * TAGS * 20 + 64);
    s.push_str("{\"frames\":[");
    for f in 0..FRAMES {
        if f > 0 {
            s.push(',');
        }
        let seq = first_seq + f as u64;
        s.push_str(&format!("{{\"seq\":{seq},\"timestamp\":{ts},\"values\":{{"));
        for t in 0..TAGS {
            if t > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"t{t:03}\":{}", value(gw, t, seq)));
        }
        s.push_str("}}");
    }
    s.push_str("]}");
    s.into_bytes()
}

fn topic(i: usize) -> String {
    format!("weir/{TENANT}/gw-{}/{DEVICE}/fast", message(i).0)
}

/// One row of the raw COPY, the columns of [`COLUMNS`].
struct Row {
    gateway: String,
    tag: String,
    value: f64,
    seq: i64,
}

/// The rows of the backlog cut into batches of whole messages of about
/// `batch_rows` rows (as the historian's batcher cuts them), each batch in
/// the key order `(tenant, gateway, tag, ts, device, seq)`.
fn raw_batches(msgs: usize, batch_rows: usize) -> Vec<Vec<Row>> {
    let per_batch = (batch_rows / (FRAMES * TAGS)).max(1);
    let mut batches = Vec::new();
    for first in (0..msgs).step_by(per_batch) {
        let mut rows = Vec::with_capacity(per_batch * FRAMES * TAGS);
        for i in first..(first + per_batch).min(msgs) {
            let (gw, first_seq) = message(i);
            for f in 0..FRAMES {
                let seq = first_seq + f as u64;
                for t in 0..TAGS {
                    rows.push(Row {
                        gateway: format!("gw-{gw}"),
                        tag: format!("t{t:03}"),
                        value: value(gw, t, seq).parse().expect("a number"),
                        seq: seq as i64,
                    });
                }
            }
        }
        // Every row of the backlog has the same ts and device.
        rows.sort_unstable_by(|a, b| (&a.gateway, &a.tag, a.seq).cmp(&(&b.gateway, &b.tag, b.seq)));
        batches.push(rows);
    }
    batches
}

fn put_text(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}

fn encode(buf: &mut BytesMut, r: &Row, ts_ms: i64) {
    buf.put_i16(9);
    put_text(buf, TENANT);
    put_text(buf, &r.gateway);
    put_text(buf, DEVICE);
    put_text(buf, &r.tag);
    buf.put_i32(8);
    buf.put_i64((ts_ms - PG_EPOCH_MS) * 1000);
    buf.put_i32(8);
    buf.put_f64(r.value);
    buf.put_i32(-1); // value_text NULL
    buf.put_i32(4);
    buf.put_i32(0); // quality good
    buf.put_i32(8);
    buf.put_i64(r.seq);
}

/// `connections` clients take batches in turn and write each with
/// `BEGIN; COPY; COMMIT`. Returns the seconds taken.
async fn raw_copy(
    url: &str,
    batches: Arc<Vec<Vec<Row>>>,
    connections: usize,
    ts_ms: i64,
) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(conn);
        clients.push(client);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        let (next, batches) = (next.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(rows) = batches.get(i) else {
                    return Ok::<_, tokio_postgres::Error>(());
                };
                let tx = client.transaction().await?;
                let sink = tx
                    .copy_in::<_, Bytes>(&format!(
                        "COPY readings ({COLUMNS}) FROM STDIN (FORMAT binary)"
                    ))
                    .await?;
                pin_mut!(sink);
                let mut buf = BytesMut::with_capacity(COPY_CHUNK + 4096);
                buf.put_slice(COPY_HEADER);
                for r in rows {
                    encode(&mut buf, r, ts_ms);
                    if buf.len() >= COPY_CHUNK {
                        let full =
                            std::mem::replace(&mut buf, BytesMut::with_capacity(COPY_CHUNK + 4096));
                        sink.send(full.freeze()).await?;
                    }
                }
                buf.put_i16(-1);
                sink.send(buf.freeze()).await?;
                sink.finish().await?;
                tx.commit().await?;
            }
        }));
    }
    for t in tasks {
        t.await?.context("raw COPY")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Publish the backlog with QoS 1; returns when the broker acknowledged all.
async fn publish(port: u16, id: &str, msgs: usize, ts: i64) -> Result<()> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    opts.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let sender = tokio::spawn(async move {
        for i in 0..msgs {
            client
                .publish(topic(i), QoS::AtLeastOnce, false, payload(i, ts))
                .await?;
        }
        Ok::<_, rumqttc::ClientError>(client)
    });
    let mut acked = 0;
    while acked < msgs {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.context("publisher")? {
            acked += 1;
        }
    }
    let client = sender.await??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    Ok(())
}

fn sink_config(port: u16, db_url: &str) -> Config {
    Config {
        mqtt_url: format!("mqtt://127.0.0.1:{port}"),
        database_url: db_url.to_owned(),
        tenant: TENANT.into(),
        client_id: "historian-vs-copy".into(),
        metrics_listen: None,
        ..Config::default()
    }
}

/// Start the sink on the queued backlog and time it until `done` says the
/// backlog is through; returns (seconds, rows inserted or skipped as
/// duplicates by then, metrics).
async fn drain(
    port: u16,
    db_url: &str,
    done: impl Fn(&Metrics) -> bool,
) -> Result<(f64, u64, Arc<Metrics>)> {
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let started = Instant::now();
    let sink = tokio::spawn(historian::run_with_metrics(
        sink_config(port, db_url),
        metrics.clone(),
        stop.clone(),
    ));
    while !done(&metrics) {
        if sink.is_finished() {
            bail!(
                "the historian's sink ended while draining: {:?}",
                sink.await
            );
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the backlog was not drained within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let processed = metrics.rows_written.get() + metrics.duplicate_rows.get();
    stop.cancel();
    sink.await?.context("the historian's sink")?;
    Ok((elapsed, processed, metrics))
}

async fn empty_readings(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute("TRUNCATE readings; CHECKPOINT").await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cfg = Config::default();
    let msgs = (env_or("WEIR_BENCH_READINGS", 3_000_000) as usize).div_ceil(FRAMES * TAGS);
    let backlog = msgs * FRAMES * TAGS;
    let broker = Mosquitto::builder()
        .config("max_queued_messages 0")
        .config("max_queued_bytes 0")
        .start()
        .await;
    let port = broker.port;
    let db = TestDb::create("weir_hist_vs_copy").await;
    let url = db.url.clone();
    historian::migrate(&url).await?;
    let admin = db.client().await;

    // Register the persistent session (and let the sink create the day's
    // partitions), then stop the sink.
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let sink = tokio::spawn(historian::run_with_metrics(
        sink_config(port, &url),
        metrics.clone(),
        stop.clone(),
    ));
    wait_until(Duration::from_secs(30), "the sink to subscribe", || {
        let up = metrics.mqtt_connected.get() == 1;
        async move { up }
    })
    .await;
    stop.cancel();
    sink.await?.context("the historian's sink")?;

    let ts = now_ms();
    let batches = Arc::new(raw_batches(msgs, cfg.batch_rows));
    ensure!(
        batches.iter().map(Vec::len).sum::<usize>() == backlog,
        "raw batches hold the backlog"
    );
    // The sink's maintenance created the partitions of today and the days
    // ahead; a missing one would fail the raw COPY.

    // --- 1. raw COPY, the machine's limit ---
    empty_readings(&admin).await?;
    let raw1 = raw_copy(&url, batches.clone(), cfg.writers, ts).await?;
    let stored: i64 = admin
        .query_one("SELECT count(*) FROM readings", &[])
        .await?
        .get(0);
    ensure!(
        stored as usize == backlog,
        "raw COPY stored {stored} of {backlog} rows"
    );

    // --- 2. the historian draining the same readings ---
    empty_readings(&admin).await?;
    publish(port, "bench-backlog", msgs, ts).await?;
    admin.batch_execute("CHECKPOINT").await?;
    let (hist, _, _) = drain(port, &url, |m| m.rows_written.get() >= backlog as u64).await?;

    // --- 3. the same messages again: every row a duplicate ---
    publish(port, "bench-again", msgs, ts).await?;
    admin.batch_execute("CHECKPOINT").await?;
    let (dedupe, processed, dm) = drain(port, &url, |m| {
        m.duplicate_rows.get() + m.rows_written.get() >= backlog as u64
    })
    .await?;
    let row = admin
        .query_one(
            "SELECT count(*), count(DISTINCT (gateway, seq, tag)) FROM readings",
            &[],
        )
        .await?;
    let (stored, distinct): (i64, i64) = (row.get(0), row.get(1));
    ensure!(
        stored as usize == backlog && distinct == stored,
        "after redelivery the table holds {stored} rows ({distinct} distinct) for {backlog} readings"
    );
    ensure!(
        dm.rows_written.get() == 0,
        "redelivery inserted {} rows",
        dm.rows_written.get()
    );

    // --- 4. raw COPY again, to bracket drift ---
    empty_readings(&admin).await?;
    let raw2 = raw_copy(&url, batches.clone(), cfg.writers, ts).await?;
    let stored: i64 = admin
        .query_one("SELECT count(*) FROM readings", &[])
        .await?
        .get(0);
    ensure!(
        stored as usize == backlog,
        "raw COPY stored {stored} of {backlog} rows"
    );
    drop(admin);
    drop(db);

    let rate = |s: f64| backlog as f64 / s;
    let (r1, r2, h) = (rate(raw1), rate(raw2), rate(hist));
    let d = processed as f64 / dedupe;
    let raw = (r1 + r2) / 2.0;
    let ratio = h / raw;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    let (w, b) = (cfg.writers, cfg.batch_rows);
    println!(
        "historian_vs_copy ({cpus} CPUs, load {load}; {backlog} readings: {GATEWAYS} gateways, messages of {FRAMES} frames x {TAGS} tags = {} readings, {msgs} messages; PostgreSQL table readings with its unique index, partitioned by day, synchronous_commit as the server has it)",
        FRAMES * TAGS
    );
    println!(
        "  raw COPY (machine limit): {w} connections, batches of {b} rows (whole messages) in key order, BEGIN; COPY binary; COMMIT; rows generated in memory beforehand; no MQTT, no JSON, no seq tracking: {r1:.0} rows/s before the historian, {r2:.0} after, mean {raw:.0}"
    );
    println!(
        "  historian (library sink, default settings: {w} writers, batches up to {b} rows, linger {} ms, COPY binary fast path, seq tracking on, MQTT QoS 1 from Mosquitto, backlog queued for its persistent session): {h:.0} rows/s = {ratio:.2} x raw COPY (goal >= 0.90){}",
        cfg.linger.as_millis(),
        if ratio >= 0.9 { "" } else { ": goal missed" }
    );
    println!(
        "  dedupe (the same {msgs} messages published again, every row already stored: fast COPY refused by the unique key, then COPY into a staging table + INSERT ... ON CONFLICT DO NOTHING, seq tracking on): {processed} redelivered rows skipped in {dedupe:.2}s = {d:.0} rows/s ({:.2} x raw COPY), 0 inserted{}; table holds each of the {backlog} rows once",
        d / raw,
        match processed.saturating_sub(backlog as u64) {
            0 => String::new(),
            extra => format!(
                " ({extra} of them from the first pass: messages whose PUBACK had not reached the broker when the sink stopped, re-delivered)"
            ),
        }
    );
    Ok(())
}
