//! The detect-and-replay loop: about once a second, one replica at a time.
//!
//! Each pass is one transaction holding `pg_try_advisory_xact_lock`; a
//! replica that does not get the lock skips the pass (and reports no open
//! gaps, so the sum over replicas is right). Under the lock:
//! 1. runs in `seq_ranges` are merged per gateway (delete, merge, insert);
//! 2. holes are computed ([`super::detect`]); the parts of them an agent
//!    said it no longer holds (`seq_missing`) are recorded as
//!    `not-retained` gaps;
//! 3. the holes are matched with those stored in `seq_holes` (a hole that
//!    shrank or split keeps when it was first seen and asked for);
//! 4. a hole open longer than the grace period is asked for with replay
//!    requests (at most `replay_max_frames` each), again every retry
//!    interval; once asked for longer than the replay window it is recorded
//!    as an `agent-unreachable` gap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tokio_postgres::{Client, Transaction};
use tokio_util::sync::CancellationToken;
use weir_crds::message::{replay_topic, ReplayRequest};

use super::detect::{self, Hole, Run};
use crate::metrics::Metrics;
use crate::Config;

/// Only one replica checks at a time ("WEIRGAPS").
const GAPS_LOCK: i64 = 0x5745_4952_4741_5053;

/// A hole as kept between passes.
#[derive(Clone, Debug, PartialEq)]
struct Open {
    hole: Hole,
    first_seen_ms: i64,
    requests: i32,
    first_request_ms: Option<i64>,
    last_request_ms: Option<i64>,
}

type Key = (String, String);

/// Run passes until `stop` fires.
pub(crate) async fn run(
    cfg: Arc<Config>,
    pg: tokio_postgres::Config,
    mqtt: AsyncClient,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut client: Option<Client> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.gap_check_interval) => {}
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match crate::writer::connect(&pg).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "gap detection cannot connect to PostgreSQL; next try in one interval");
                    continue;
                }
            }
        }
        let c = client.as_mut().expect("connected above");
        if let Err(e) = pass(c, &cfg, &mqtt, &metrics).await {
            tracing::warn!(error = %e, "gap detection pass failed; next try in one interval");
            metrics.db_errors.inc();
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One pass; see the module doc.
async fn pass(
    client: &mut Client,
    cfg: &Config,
    mqtt: &AsyncClient,
    metrics: &Metrics,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&GAPS_LOCK])
        .await?
        .get(0);
    if !locked {
        metrics.gaps_open.set(0);
        metrics.gap_frames_open.set(0);
        return Ok(());
    }
    let now = now_ms();
    merge_runs(&tx).await?;
    let runs = by_gateway(&tx, "SELECT tenant, gateway, seq_from, seq_to, ts_from_ms, ts_to_ms FROM seq_ranges ORDER BY 1, 2, 3", |r| Run {
        from: r.get(2),
        to: r.get(3),
        ts_from_ms: r.get(4),
        ts_to_ms: r.get(5),
    })
    .await?;
    let acked = by_gateway(
        &tx,
        "SELECT tenant, gateway, last_acked_seq FROM seq_state WHERE last_acked_seq IS NOT NULL",
        |r| r.get::<_, i64>(2),
    )
    .await?;
    let origins = by_gateway(
        &tx,
        "SELECT tenant, gateway, origin_seq FROM seq_origins",
        |r| r.get::<_, i64>(2),
    )
    .await?;
    let recorded = by_gateway(
        &tx,
        // Only for gateways that can have a hole (several runs, or a tail
        // acknowledged beyond them): the table grows for ever, most
        // gateways have nothing missing.
        "SELECT g.tenant, g.gateway, g.seq_from, g.seq_to FROM reading_gaps g \
           JOIN (SELECT r.tenant, r.gateway FROM seq_ranges r \
                   LEFT JOIN seq_state s USING (tenant, gateway) \
                  GROUP BY 1, 2 \
                 HAVING count(*) > 1 OR max(r.seq_to) < max(s.last_acked_seq)) h \
             USING (tenant, gateway)",
        |r| (r.get::<_, i64>(2), r.get::<_, i64>(3)),
    )
    .await?;
    let missing = by_gateway(
        &tx,
        "DELETE FROM seq_missing RETURNING tenant, gateway, seq_from, seq_to",
        |r| (r.get::<_, i64>(2), r.get::<_, i64>(3)),
    )
    .await?;
    let old = by_gateway(&tx, "DELETE FROM seq_holes RETURNING tenant, gateway, seq_from, seq_to, ts_before_ms, ts_after_ms, first_seen_ms, requests, first_request_ms, last_request_ms", |r| Open {
        hole: Hole { from: r.get(2), to: r.get(3), ts_before_ms: r.get(4), ts_after_ms: r.get(5) },
        first_seen_ms: r.get(6),
        requests: r.get(7),
        first_request_ms: r.get(8),
        last_request_ms: r.get(9),
    })
    .await?;

    let (grace, retry, window) = (
        ms(cfg.gap_grace),
        ms(cfg.replay_retry),
        ms(cfg.replay_window),
    );
    let empty = Vec::new();
    let mut keep: Vec<(&Key, Open)> = Vec::new();
    let mut gaps: Vec<(&Key, Hole, &'static str)> = Vec::new();
    let mut requests: Vec<(&Key, ReplayRequest)> = Vec::new();
    let (mut open_gaps, mut open_frames) = (0i64, 0i64);
    for (key, runs) in &runs {
        let origins = origins.get(key).map(|v| v.as_slice()).unwrap_or(&[]);
        let recorded = recorded.get(key).cloned().unwrap_or_default();
        let last_acked = acked.get(key).and_then(|v| v.iter().copied().max());
        let mut holes = detect::holes(runs, last_acked, origins, &recorded);
        // What the agent no longer holds, as far as it is still missing.
        let mut not_retained = Vec::new();
        for &range in missing.get(key).unwrap_or(&empty) {
            not_retained.extend(detect::intersect(range, &holes));
        }
        if !not_retained.is_empty() {
            let spans: Vec<(i64, i64)> = not_retained.iter().map(|h| (h.from, h.to)).collect();
            holes = detect::holes(runs, last_acked, origins, &[recorded, spans].concat());
            gaps.extend(not_retained.into_iter().map(|h| (key, h, "not-retained")));
        }
        let old = old.get(key).map(|v| v.as_slice()).unwrap_or(&[]);
        for o in old.iter().filter(|o| o.requests > 0) {
            let got = detect::committed_within(runs, o.hole.from, o.hole.to);
            metrics.frames_recovered.inc_by(got as u64);
        }
        for hole in holes {
            let mut open = carry(hole, old, now);
            if now - open.first_seen_ms < grace {
                keep.push((key, open));
                continue;
            }
            if open.first_request_ms.is_some_and(|t| now - t >= window) {
                gaps.push((key, hole, "agent-unreachable"));
                continue;
            }
            open_gaps += 1;
            open_frames += hole.frames();
            if open.last_request_ms.is_none_or(|t| now - t >= retry) {
                let mut from = hole.from;
                while from <= hole.to {
                    let to = hole
                        .to
                        .min(from.saturating_add(cfg.replay_max_frames as i64 - 1));
                    requests.push((
                        key,
                        ReplayRequest {
                            from_seq: from as u64,
                            to_seq: to as u64,
                        },
                    ));
                    from = to + 1;
                }
                if open.requests == 0 {
                    tracing::warn!(tenant = %key.0, gateway = %key.1, seq_from = hole.from, seq_to = hole.to, frames = hole.frames(), "gap in a gateway's readings; asking the agent to replay it");
                }
                open.requests += 1;
                open.first_request_ms.get_or_insert(now);
                open.last_request_ms = Some(now);
            }
            keep.push((key, open));
        }
    }
    store_holes(&tx, &keep).await?;
    for (key, h, reason) in &gaps {
        let inserted = tx.execute(
            "INSERT INTO reading_gaps (tenant, gateway, seq_from, seq_to, ts_from, ts_to, reason) \
             VALUES ($1, $2, $3, $4, to_timestamp($5::int8 / 1000.0), to_timestamp($6::int8 / 1000.0), $7) \
             ON CONFLICT DO NOTHING",
            &[&key.0, &key.1, &h.from, &h.to, &h.ts_before_ms, &h.ts_after_ms, reason],
        )
        .await?;
        if inserted > 0 {
            tracing::warn!(tenant = %key.0, gateway = %key.1, seq_from = h.from, seq_to = h.to, frames = h.frames(), reason, "recorded a gap in a gateway's readings");
        }
    }
    // Published before the commit: a request whose pass then fails is only
    // asked again, while one recorded but never sent would wait a retry.
    for (key, req) in &requests {
        let topic = replay_topic(&cfg.topic_prefix, &key.0, &key.1);
        let payload = serde_json::to_vec(req).unwrap_or_default();
        match mqtt.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            Ok(()) => {
                metrics.replay_requests.inc();
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not queue a replay request; asked again at the next retry")
            }
        }
    }
    tx.commit().await?;
    for (_, _, reason) in &gaps {
        metrics.gap_recorded(reason);
    }
    metrics.gaps_open.set(open_gaps);
    metrics.gap_frames_open.set(open_frames);
    Ok(())
}

/// A hole with what is known about the stored holes it overlaps (it may be
/// what is left of one, or of several, after frames arrived).
fn carry(hole: Hole, old: &[Open], now: i64) -> Open {
    let mut open = Open {
        hole,
        first_seen_ms: now,
        requests: 0,
        first_request_ms: None,
        last_request_ms: None,
    };
    for o in old
        .iter()
        .filter(|o| o.hole.from <= hole.to && hole.from <= o.hole.to)
    {
        open.first_seen_ms = open.first_seen_ms.min(o.first_seen_ms);
        open.requests = open.requests.max(o.requests);
        open.first_request_ms = match (open.first_request_ms, o.first_request_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        open.last_request_ms = open.last_request_ms.max(o.last_request_ms);
    }
    open
}

/// Rows of a query grouped by their first two columns (tenant, gateway).
async fn by_gateway<T>(
    tx: &Transaction<'_>,
    sql: &str,
    f: impl Fn(&tokio_postgres::Row) -> T,
) -> Result<BTreeMap<Key, Vec<T>>, tokio_postgres::Error> {
    let mut out: BTreeMap<Key, Vec<T>> = BTreeMap::new();
    for r in tx.query(sql, &[]).await? {
        out.entry((r.get(0), r.get(1))).or_default().push(f(&r));
    }
    Ok(out)
}

/// Replace the runs of every gateway that has more than one by their merge.
/// The DELETE takes exactly the rows it returns; runs writers commit
/// meanwhile stay and are merged at the next pass.
async fn merge_runs(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let rows = by_gateway(
        tx,
        "DELETE FROM seq_ranges WHERE (tenant, gateway) IN \
           (SELECT tenant, gateway FROM seq_ranges GROUP BY 1, 2 HAVING count(*) > 1) \
         RETURNING tenant, gateway, seq_from, seq_to, ts_from_ms, ts_to_ms",
        |r| Run {
            from: r.get(2),
            to: r.get(3),
            ts_from_ms: r.get(4),
            ts_to_ms: r.get(5),
        },
    )
    .await?;
    let mut merged = Vec::new();
    for (k, runs) in &rows {
        for r in detect::merge(runs.clone()) {
            merged.push((
                k.0.as_str(),
                k.1.as_str(),
                r.from,
                r.to,
                r.ts_from_ms,
                r.ts_to_ms,
            ));
        }
    }
    super::track::insert_runs(tx, &merged).await?;
    Ok(())
}

async fn store_holes(
    tx: &Transaction<'_>,
    keep: &[(&Key, Open)],
) -> Result<(), tokio_postgres::Error> {
    for (k, o) in keep {
        tx.execute(
            "INSERT INTO seq_holes (tenant, gateway, seq_from, seq_to, ts_before_ms, ts_after_ms, first_seen_ms, requests, first_request_ms, last_request_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[&k.0, &k.1, &o.hole.from, &o.hole.to, &o.hole.ts_before_ms, &o.hole.ts_after_ms, &o.first_seen_ms, &o.requests, &o.first_request_ms, &o.last_request_ms],
        )
        .await?;
    }
    Ok(())
}
