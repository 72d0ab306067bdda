//! The PostgreSQL side: one connection per writer, batches written with
//! binary COPY, each batch committed exactly once.
//!
//! Three ways to write a batch, cheapest first:
//! 1. **fast**: `COPY readings FROM STDIN (FORMAT binary)` straight into the
//!    partitioned table inside `BEGIN … COMMIT`. The unique key
//!    `readings_series_key` makes it fail with `unique_violation` when any
//!    row is already stored; nothing of the batch is then kept.
//! 2. **dedupe**: used for batches with a re-delivered message (MQTT `dup`)
//!    or after a fast attempt hit a duplicate: COPY into a temporary staging
//!    table, then `INSERT INTO readings SELECT … ON CONFLICT DO NOTHING`, in
//!    one transaction. Duplicates — against stored rows or inside the batch —
//!    are skipped and counted.
//! 3. **isolate**: when PostgreSQL refuses the batch as *data* (SQLSTATE
//!    class 22, e.g. a value it cannot store), each message is written on its
//!    own with the dedupe method, and a message that still fails is counted as
//!    rejected, logged with its topic and acknowledged, so one bad message
//!    cannot stop the stream.
//!
//! Any other failure (connection closed, `pg_terminate_backend`, server
//! restart, lock timeout, …) drops the connection and retries the same batch
//! with backoff. Retrying is always safe: whatever was committed before the
//! failure collides with the unique key and is skipped by the dedupe method.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{pin_mut, SinkExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, CopyInSink, NoTls};
use tokio_util::bytes::{BufMut, Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use crate::gaps::{track, Control};
use crate::metrics::Metrics;
use crate::rows::{MessageRows, Reading};
use crate::schema::{self, Layout};

const COLUMNS: &str = "tenant, gateway, device, tag, ts, value, value_text, quality, seq";
const STAGE: &str = "weir_readings_stage";

/// A message's rows with the topic they came from (for logs).
#[derive(Debug)]
pub(crate) struct MessageBatch {
    pub topic: String,
    pub rows: MessageRows,
}

/// The unit of one commit.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub messages: Vec<MessageBatch>,
    pub rows: usize,
    /// Contains a message the broker marked as re-delivered.
    pub dup: bool,
    /// Uplink states and replay answers, stored in the batch's transaction.
    pub controls: Vec<Control>,
    /// When each of `messages` was received (µs since the epoch), for
    /// `--lag-samples`; empty when that is off. Beside `messages` rather than
    /// in them, so a `MessageBatch` stays what the tables are written from.
    pub received_us: Vec<i64>,
}

/// Outcome of writing a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub inserted: u64,
    pub duplicates: u64,
    pub rejected_messages: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Fast,
    Dedupe,
    Isolate,
}

enum Failure {
    /// Some row is already stored: use the dedupe method.
    Duplicate,
    /// A row's day has no partition (dropped by retention since we looked).
    NoPartition,
    /// PostgreSQL refused the data itself.
    Data(tokio_postgres::Error),
    /// Anything else: reconnect and retry.
    Other(tokio_postgres::Error),
}

fn classify(e: tokio_postgres::Error) -> Failure {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Failure::Duplicate,
        Some(c) if *c == SqlState::CHECK_VIOLATION => Failure::NoPartition,
        Some(c) if c.code().starts_with("22") || *c == SqlState::NOT_NULL_VIOLATION => {
            Failure::Data(e)
        }
        _ => Failure::Other(e),
    }
}

/// Days for which partitions exist, shared by writers and maintenance.
pub(crate) type PartitionCache = Arc<Mutex<BTreeSet<i64>>>;

/// Signature, flags and header extension length of a binary COPY stream.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Rows are encoded into chunks of about this size, each sent to the server
/// as soon as it is full so that PostgreSQL works while we encode the next.
const COPY_CHUNK: usize = 256 * 1024;
/// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix milliseconds.
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// The rows of `messages` as (message, reading) indexes in the order of the
/// unique key `(tenant, gateway, tag, ts, device, seq)`.
///
/// Every row inserts into that B-tree, and on this schema the insert is most
/// of the server's work (PostgreSQL 15, 1M rows, backend CPU per row: 0.74 µs
/// without the index, 3.6–4.4 µs with it in receive order). Rows in key
/// order walk the tree from leaf to neighbouring leaf with its pages still
/// in the CPU cache: 3.2 µs sorted in batches of 20,000 rows, 2.0 µs when a
/// series' run is 1,250 rows long. Text columns have the "C" collation,
/// i.e. byte order, which is also `str`'s order here. The order only
/// matters for speed, never for what is stored.
fn key_order(messages: &[&MessageBatch]) -> Vec<(u32, u32)> {
    // Sorting by the strings themselves chases two `Reading`s and their tag
    // strings per comparison, about 300,000 comparisons for a batch of
    // 20,000 rows. Instead every string column is replaced by its rank among
    // the batch's distinct values (byte order, as the "C" collation), and
    // the rows are sorted by a compact integer key.
    let series = ranks(
        messages
            .iter()
            .map(|m| (m.rows.tenant.as_str(), m.rows.gateway.as_str())),
    );
    let devices = ranks(messages.iter().map(|m| m.rows.device.as_str()));
    let tags = ranks(
        messages
            .iter()
            .flat_map(|m| m.rows.readings.iter().map(|r| r.tag.as_str())),
    );
    let rows: usize = messages.iter().map(|m| m.rows.readings.len()).sum();
    // (series, tag, ts, device, seq, message, reading)
    let mut keys: Vec<(u32, u32, i64, u32, i64, u32, u32)> = Vec::with_capacity(rows);
    let mut tag = tags.into_iter();
    for (mi, m) in messages.iter().enumerate() {
        let (s, d) = (series[mi], devices[mi]);
        for (ri, r) in m.rows.readings.iter().enumerate() {
            let t = tag.next().expect("one rank per reading");
            keys.push((s, t, r.ts_ms, d, r.seq, mi as u32, ri as u32));
        }
    }
    keys.sort_unstable();
    keys.into_iter().map(|k| (k.5, k.6)).collect()
}

/// The rank of each value among the distinct values, in `Ord` order.
fn ranks<T: Ord + std::hash::Hash + Copy>(values: impl Iterator<Item = T>) -> Vec<u32> {
    let mut ids: HashMap<T, u32> = HashMap::new();
    let mut distinct: Vec<T> = Vec::new();
    let mut first_ids: Vec<u32> = Vec::new();
    // Runs of one value are common (consecutive messages of one gateway or
    // device): look it up only when the value changes.
    let mut last: Option<(T, u32)> = None;
    for v in values {
        let id = match last {
            Some((l, id)) if l == v => id,
            _ => *ids.entry(v).or_insert_with(|| {
                distinct.push(v);
                distinct.len() as u32 - 1
            }),
        };
        last = Some((v, id));
        first_ids.push(id);
    }
    let mut by_value: Vec<u32> = (0..distinct.len() as u32).collect();
    by_value.sort_unstable_by(|&a, &b| distinct[a as usize].cmp(&distinct[b as usize]));
    let mut rank = vec![0u32; distinct.len()];
    for (r, &id) in by_value.iter().enumerate() {
        rank[id as usize] = r as u32;
    }
    first_ids.iter().map(|&id| rank[id as usize]).collect()
}

fn put_text(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}

/// One row in PostgreSQL's binary COPY format, columns as in [`COLUMNS`].
fn encode_row(buf: &mut BytesMut, m: &MessageRows, r: &Reading) {
    buf.put_i16(9);
    put_text(buf, &m.tenant);
    put_text(buf, &m.gateway);
    put_text(buf, &m.device);
    put_text(buf, &r.tag);
    // timestamptz: microseconds since 2000-01-01 UTC. `ts_ms` is limited to
    // years 1..9999 by the parser, far inside i64 microseconds.
    buf.put_i32(8);
    buf.put_i64((r.ts_ms - PG_EPOCH_MS) * 1000);
    match r.value {
        Some(v) => {
            buf.put_i32(8);
            buf.put_f64(v);
        }
        None => buf.put_i32(-1),
    }
    match &r.value_text {
        Some(t) => put_text(buf, t),
        None => buf.put_i32(-1),
    }
    buf.put_i32(4);
    buf.put_i32(r.quality);
    buf.put_i32(8);
    buf.put_i64(r.seq);
}

/// Stream the rows of `messages`, in key order, into a binary COPY and
/// finish it; returns the rows stored.
async fn copy_rows(
    sink: CopyInSink<Bytes>,
    messages: &[&MessageBatch],
) -> Result<u64, tokio_postgres::Error> {
    pin_mut!(sink);
    let order = key_order(messages);
    let mut buf = BytesMut::with_capacity(COPY_CHUNK + 4096);
    buf.put_slice(COPY_HEADER);
    for (mi, ri) in order {
        let m = &messages[mi as usize].rows;
        encode_row(&mut buf, m, &m.readings[ri as usize]);
        if buf.len() >= COPY_CHUNK {
            let full = std::mem::replace(&mut buf, BytesMut::with_capacity(COPY_CHUNK + 4096));
            sink.send(full.freeze()).await?;
        }
    }
    buf.put_i16(-1);
    sink.send(buf.freeze()).await?;
    sink.finish().await
}

/// One PostgreSQL connection and the state to write batches on it.
pub(crate) struct Writer {
    pg: tokio_postgres::Config,
    layout: Layout,
    client: Option<Client>,
    stage_ready: bool,
    partitions: PartitionCache,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    id: usize,
}

/// Set on each writer connection. COPY writes the table's pages out of its
/// own ring of buffers; with PostgreSQL's default (`backend_flush_after =
/// 0`) they sit dirty in the OS page cache until the kernel writes them back
/// in a burst, and a COMMIT's WAL flush queued behind that burst stalled
/// for 100–200 ms (the end-to-end bench's p99.9). Asking the kernel to
/// write them back every 512 kB keeps the disk queue short. A per-session
/// setting: the server's configuration is left alone.
const SESSION_SETTINGS: &str = "SET backend_flush_after = '512kB'";

/// Connect and drive the connection in the background.
pub(crate) async fn connect(pg: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

impl Writer {
    pub fn new(
        id: usize,
        pg: tokio_postgres::Config,
        layout: Layout,
        partitions: PartitionCache,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Writer {
            pg,
            layout,
            client: None,
            stage_ready: false,
            partitions,
            metrics,
            shutdown,
            id,
        }
    }

    /// Write a batch, retrying until it is committed. `None` only when
    /// shutdown was requested while the database kept failing: the batch is
    /// then not acknowledged and the broker re-delivers it later.
    pub async fn write(&mut self, batch: &Batch) -> Option<Written> {
        let mut method = if batch.dup {
            Method::Dedupe
        } else {
            Method::Fast
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            let result = match method {
                Method::Isolate => self.isolate(batch).await,
                m => self.attempt(batch, m).await.map(|inserted| Written {
                    inserted,
                    duplicates: batch.rows as u64 - inserted,
                    rejected_messages: 0,
                }),
            };
            match result {
                Ok(written) => {
                    self.record(batch, &written, started);
                    return Some(written);
                }
                Err(Failure::Duplicate) => {
                    tracing::debug!(
                        writer = self.id,
                        "batch holds stored rows; writing it with dedupe"
                    );
                    method = Method::Dedupe;
                    continue;
                }
                Err(Failure::NoPartition) => {
                    // Our cache is stale (retention dropped a day): reload.
                    self.partitions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    self.metrics.db_errors.inc();
                }
                Err(Failure::Data(e)) => {
                    tracing::warn!(writer = self.id, error = %e, "PostgreSQL refused data in a batch; writing its messages one by one");
                    method = Method::Isolate;
                    continue;
                }
                Err(Failure::Other(e)) => {
                    self.metrics.db_errors.inc();
                    tracing::warn!(writer = self.id, error = %e, retry_in = ?backoff, "writing a batch failed; reconnecting and retrying");
                    self.client = None;
                }
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn record(&self, batch: &Batch, written: &Written, started: Instant) {
        let m = &self.metrics;
        m.rows_written.inc_by(written.inserted);
        m.duplicate_rows.inc_by(written.duplicates);
        m.batch_rows.observe(batch.rows as f64);
        m.commit_seconds.observe(started.elapsed().as_secs_f64());
        let committed = SystemTime::now();
        m.observe_lags(
            batch.messages.iter().enumerate().flat_map(|(i, msg)| {
                let received = batch.received_us.get(i).copied().unwrap_or(0);
                msg.rows.readings.iter().map(move |r| (r.ts_ms, received))
            }),
            committed,
        );
    }

    async fn client(&mut self) -> Result<&Client, Failure> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let client = connect(&self.pg).await.map_err(Failure::Other)?;
            client
                .batch_execute(SESSION_SETTINGS)
                .await
                .map_err(Failure::Other)?;
            self.client = Some(client);
            self.stage_ready = false;
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    /// Make sure every day in `messages` has its partition (native layout).
    async fn ensure_partitions<'a>(
        &mut self,
        messages: impl Iterator<Item = &'a MessageBatch>,
    ) -> Result<(), Failure> {
        if self.layout != Layout::Native {
            return Ok(());
        }
        let mut days = BTreeSet::new();
        let mut last = None;
        for m in messages {
            for r in &m.rows.readings {
                let day = schema::day_of(r.ts_ms);
                if last != Some(day) {
                    days.insert(day);
                    last = Some(day);
                }
            }
        }
        let cache_empty;
        let missing: Vec<i64> = {
            let cache = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            cache_empty = cache.is_empty();
            days.into_iter().filter(|d| !cache.contains(d)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.client().await?;
        let client = self.client.as_ref().expect("connected above");
        if cache_empty {
            let existing = schema::existing_partitions(client)
                .await
                .map_err(Failure::Other)?;
            self.partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(existing);
        }
        schema::ensure_partitions(client, missing.iter().copied())
            .await
            .map_err(classify)?;
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(missing);
        Ok(())
    }

    /// One attempt with the fast or the dedupe method; rows inserted.
    async fn attempt(&mut self, batch: &Batch, method: Method) -> Result<u64, Failure> {
        self.write_messages(batch.messages.iter().collect(), &batch.controls, method)
            .await
    }

    async fn write_messages(
        &mut self,
        messages: Vec<&MessageBatch>,
        controls: &[Control],
        method: Method,
    ) -> Result<u64, Failure> {
        self.ensure_partitions(messages.iter().copied()).await?;
        self.client().await?;
        let stage_ready = self.stage_ready;
        let client = self.client.as_mut().expect("connected above");
        if method == Method::Fast {
            // An explicit transaction, because `finish()` returns at the
            // COPY's CommandComplete, before an implicit transaction commits
            // at Sync: a connection lost in between would lose rows we had
            // counted as stored. `commit()` returns once COMMIT is durable.
            let tx = client.transaction().await.map_err(classify)?;
            let sink = tx
                .copy_in(&format!(
                    "COPY readings ({COLUMNS}) FROM STDIN (FORMAT binary)"
                ))
                .await
                .map_err(classify)?;
            let inserted = copy_rows(sink, &messages).await.map_err(classify)?;
            track::record(&tx, &messages, controls)
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            return Ok(inserted);
        }
        if !stage_ready {
            // A temporary table lives as long as the connection; rows vanish
            // at each commit.
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                ))
                .await
                .map_err(classify)?;
        }
        let tx = client.transaction().await.map_err(classify)?;
        let sink = tx
            .copy_in(&format!(
                "COPY {STAGE} ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(classify)?;
        copy_rows(sink, &messages).await.map_err(classify)?;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO readings ({COLUMNS}) SELECT {COLUMNS} FROM {STAGE} ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .await
            .map_err(classify)?;
        track::record(&tx, &messages, controls)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        self.stage_ready = true;
        Ok(inserted)
    }

    /// Write each message alone; reject those PostgreSQL refuses as data.
    async fn isolate(&mut self, batch: &Batch) -> Result<Written, Failure> {
        let mut written = Written::default();
        for m in &batch.messages {
            let rows = m.rows.readings.len() as u64;
            match self.write_messages(vec![m], &[], Method::Dedupe).await {
                Ok(inserted) => {
                    written.inserted += inserted;
                    written.duplicates += rows - inserted;
                }
                Err(Failure::Data(e)) => {
                    self.metrics.rejected_messages.inc();
                    tracing::error!(topic = %m.topic, error = %e, rows, "PostgreSQL rejected a message; acknowledged and skipped");
                    written.rejected_messages += 1;
                }
                // Retried from the first message; the ones already written
                // are then skipped as duplicates.
                Err(other) => return Err(other),
            }
        }
        if !batch.controls.is_empty() {
            self.write_messages(Vec::new(), &batch.controls, Method::Dedupe)
                .await?;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{MessageRows, Reading};

    fn msg(gateway: &str, device: &str, rows: &[(&str, i64, i64)]) -> MessageBatch {
        MessageBatch {
            topic: String::new(),
            rows: MessageRows {
                tenant: "t".into(),
                gateway: gateway.into(),
                device: device.into(),
                readings: rows
                    .iter()
                    .map(|&(tag, ts_ms, seq)| Reading {
                        tag: tag.into(),
                        ts_ms,
                        value: Some(1.0),
                        value_text: None,
                        quality: 0,
                        seq,
                    })
                    .collect(),
                frames: Vec::new(),
            },
        }
    }

    #[test]
    fn key_order_is_the_unique_keys_order() {
        let messages = [
            msg("gw-2", "d", &[("b", 5, 2), ("a", 5, 2), ("B", 6, 3)]),
            msg("gw-1", "e", &[("a", 5, 1), ("b", 4, 1)]),
            msg("gw-1", "d", &[("a", 5, 7), ("a", 3, 8), ("é", 1, 9)]),
            msg("gw-10", "d", &[("a", 1, 1)]),
        ];
        let refs: Vec<&MessageBatch> = messages.iter().collect();
        let key = |&(mi, ri): &(u32, u32)| {
            let m = &refs[mi as usize].rows;
            let r = &m.readings[ri as usize];
            (
                m.tenant.clone(),
                m.gateway.clone(),
                r.tag.clone(),
                r.ts_ms,
                m.device.clone(),
                r.seq,
            )
        };
        let order = key_order(&refs);
        let mut expected = order.clone();
        expected.sort_by_key(key);
        assert_eq!(order.len(), 9);
        assert_eq!(
            order.iter().map(key).collect::<Vec<_>>(),
            expected.iter().map(key).collect::<Vec<_>>()
        );
    }
}
