//! The ingest path from received messages to acknowledged rows:
//! MQTT → batcher → writers → acker.
//!
//! ```text
//! mqtt::consume ──(bounded: inflight msgs)──▶ batcher ──(bounded: 1 batch)──▶ writer 1..N ──▶ acker
//! ```
//!
//! * The batcher closes a batch at `batch_rows` rows, `linger` after its
//!   first message, or at once when a writer is idle — whichever comes
//!   first (see [`batcher`]): batches are as small as the load allows and
//!   as large as it needs.
//! * Writers share one queue; each owns a PostgreSQL connection, so one batch
//!   can be copied while the previous one commits.
//! * The acker acknowledges batches in the order they were formed (MQTT wants
//!   PUBACKs in receive order), each only after its rows are committed.
//!
//! Backpressure: every queue is bounded. When PostgreSQL is slow the writers
//! stop taking batches, the batcher blocks, `consume` blocks and stops
//! reading from the socket, and the broker — already limited to `inflight`
//! unacknowledged messages — holds the rest. Memory stays bounded by
//! `inflight` messages plus `writers + 2` batches.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::mqtt::{AckToken, Acker, Received};
use crate::rows::Malformed;
use crate::writer::{Batch, MessageBatch, Writer};

/// A batch numbered in formation order with the acks it releases.
pub(crate) struct Numbered {
    no: u64,
    batch: Batch,
    acks: Vec<AckToken>,
}

/// Writers waiting for a batch, so the batcher can hand one over at once
/// instead of lingering while a connection sits idle.
#[derive(Default)]
pub(crate) struct IdleWriters {
    count: AtomicUsize,
    changed: Notify,
}

impl IdleWriters {
    fn waiting(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Group received messages into batches.
///
/// A batch is handed to the writers when it holds `batch_rows` rows, when
/// `linger` has passed since its first message, or as soon as a writer is
/// idle and no other batch is already queued for it — whichever comes
/// first. Under light load every message is thus committed right away
/// (`linger` is not waited for); under heavy load batches grow while the
/// writers are busy, up to `batch_rows`, which is what amortises COPY and
/// the durable commit. Messages already received are always taken into the
/// batch before it is handed over.
pub(crate) async fn batcher(
    mut rx: mpsc::Receiver<Received>,
    tx: mpsc::Sender<Numbered>,
    idle: Arc<IdleWriters>,
    batch_rows: usize,
    linger: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut no = 0;
    let mut batch = Batch::default();
    let mut acks = Vec::new();
    let mut deadline: Option<Instant> = None;
    let add = |r: Received, batch: &mut Batch, acks: &mut Vec<AckToken>| {
        match r.rows {
            Ok(rows) => {
                batch.rows += rows.readings.len();
                batch.dup |= r.dup;
                batch.messages.push(MessageBatch {
                    topic: r.topic,
                    rows,
                });
                if r.received_us != 0 {
                    batch.received_us.push(r.received_us);
                }
            }
            // Commands share the readings' topic depth: skipped, not counted;
            // uplink states and replay answers are stored with the batch.
            Err(Malformed::Command) => {
                if let Some(c) = r.control {
                    batch.controls.push(c);
                }
                tracing::trace!(topic = %r.topic, "command message; acknowledged and skipped");
            }
            Err(e) => {
                metrics.malformed_messages.inc();
                tracing::warn!(topic = %r.topic, error = %e, "malformed message; acknowledged and skipped");
            }
        }
        // Malformed messages are acknowledged with the batch they fall in,
        // which keeps acks in receive order.
        acks.push(r.ack);
    };
    loop {
        // A writer is free and nothing is queued for it: hand over now.
        let queued = tx.max_capacity() - tx.capacity();
        let hand_over = !acks.is_empty() && idle.waiting() > queued;
        if !hand_over {
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => None,
                // Re-check above when a writer becomes idle.
                _ = idle.changed.notified(), if !acks.is_empty() => continue,
                r = rx.recv() => match r {
                    Some(r) => Some(r),
                    None => break,
                },
            };
            if let Some(r) = event {
                add(r, &mut batch, &mut acks);
                // Take what has already arrived before deciding.
                while batch.rows < batch_rows {
                    match rx.try_recv() {
                        Ok(r) => add(r, &mut batch, &mut acks),
                        Err(_) => break,
                    }
                }
                deadline.get_or_insert_with(|| Instant::now() + linger);
                if batch.rows < batch_rows {
                    continue;
                }
            }
        }
        // Full batch, linger expired or an idle writer.
        let full = Numbered {
            no,
            batch: std::mem::take(&mut batch),
            acks: std::mem::take(&mut acks),
        };
        no += 1;
        deadline = None;
        if tx.send(full).await.is_err() {
            return;
        }
    }
    // Shutting down: hand over what we have so it is committed and acked.
    if !acks.is_empty() {
        let _ = tx.send(Numbered { no, batch, acks }).await;
    }
}

/// Take batches from the shared queue and write them.
pub(crate) async fn writer(
    mut w: Writer,
    rx: Arc<Mutex<mpsc::Receiver<Numbered>>>,
    idle: Arc<IdleWriters>,
    done: mpsc::Sender<(u64, Vec<AckToken>)>,
) {
    loop {
        idle.count.fetch_add(1, Ordering::AcqRel);
        idle.changed.notify_one();
        let next = rx.lock().await.recv().await;
        idle.count.fetch_sub(1, Ordering::AcqRel);
        let Some(Numbered { no, batch, acks }) = next else {
            return;
        };
        let acks = match w.write(&batch).await {
            Some(_) => acks,
            // Abandoned at shutdown: not acknowledged, re-delivered later.
            None => Vec::new(),
        };
        if done.send((no, acks)).await.is_err() {
            return;
        }
    }
}

/// Acknowledge committed batches in formation order.
pub(crate) async fn acker(mut rx: mpsc::Receiver<(u64, Vec<AckToken>)>, acker: Acker) {
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Vec<AckToken>> = BTreeMap::new();
    let mut stale = 0u64;
    while let Some((no, acks)) = rx.recv().await {
        waiting.insert(no, acks);
        while let Some(acks) = waiting.remove(&next) {
            for a in &acks {
                if !acker.ack(a) {
                    stale += 1;
                }
            }
            next += 1;
        }
    }
    if stale > 0 {
        tracing::info!(
            stale,
            "acks dropped because their connection had ended; those messages are re-delivered and deduplicated"
        );
    }
}
