//! What a batch adds to the contiguity tables, written in the batch's own
//! transaction: committed = tracked, exactly.
//!
//! Cheap by design: the batch's frames become runs of consecutive `seq`
//! per (tenant, gateway), merged inside the batch, and go in with one
//! multi-row `INSERT … SELECT FROM unnest(…)`; no read, no conflict check.
//! Overlaps with earlier runs (redeliveries, replays) are harmless: the
//! detect loop merges them.

use tokio_postgres::GenericClient;

use super::Control;
use crate::writer::MessageBatch;

/// `(tenant, gateway, from, to, ts_from_ms, ts_to_ms)`.
pub(crate) type RunOf<'a> = (&'a str, &'a str, i64, i64, i64, i64);

/// The runs of `seq` in these messages, merged per (tenant, gateway):
/// `(tenant, gateway, from, to, ts_from_ms, ts_to_ms)`.
pub(crate) fn runs<'a>(messages: &[&'a MessageBatch]) -> Vec<RunOf<'a>> {
    let mut runs: Vec<RunOf<'a>> = Vec::new();
    for m in messages {
        let (t, g) = (m.rows.tenant.as_str(), m.rows.gateway.as_str());
        for &(seq, ts) in &m.rows.frames {
            match runs.last_mut() {
                Some(last) if last.0 == t && last.1 == g && seq == last.3 + 1 => {
                    last.3 = seq;
                    last.5 = ts;
                }
                _ => runs.push((t, g, seq, seq, ts, ts)),
            }
        }
    }
    if runs.len() > 1 {
        runs.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let mut merged: Vec<RunOf<'a>> = Vec::with_capacity(runs.len());
        for r in runs {
            match merged.last_mut() {
                Some(last) if last.0 == r.0 && last.1 == r.1 && r.2 <= last.3 + 1 => {
                    if r.3 > last.3 {
                        last.3 = r.3;
                        last.5 = r.5;
                    }
                }
                _ => merged.push(r),
            }
        }
        runs = merged;
    }
    runs
}

/// Append runs to `seq_ranges` with one statement.
pub(crate) async fn insert_runs(
    tx: &impl GenericClient,
    runs: &[RunOf<'_>],
) -> Result<(), tokio_postgres::Error> {
    if runs.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut gateways) = (
        Vec::with_capacity(runs.len()),
        Vec::with_capacity(runs.len()),
    );
    let mut nums: [Vec<i64>; 4] = Default::default();
    for r in runs {
        tenants.push(r.0);
        gateways.push(r.1);
        for (col, v) in nums.iter_mut().zip([r.2, r.3, r.4, r.5]) {
            col.push(v);
        }
    }
    tx.execute(
        "INSERT INTO seq_ranges (tenant, gateway, seq_from, seq_to, ts_from_ms, ts_to_ms) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])",
        &[&tenants, &gateways, &nums[0], &nums[1], &nums[2], &nums[3]],
    )
    .await?;
    Ok(())
}

/// Record the batch's runs and control messages; call inside the batch's
/// transaction, before its commit.
pub(crate) async fn record(
    tx: &impl GenericClient,
    messages: &[&MessageBatch],
    controls: &[Control],
) -> Result<(), tokio_postgres::Error> {
    insert_runs(tx, &runs(messages)).await?;
    for c in controls {
        match c {
            Control::State {
                tenant,
                gateway,
                state,
            } => {
                // Values were checked to fit a bigint when parsed.
                let acked = state.last_acked_seq.map(|s| s as i64);
                let origin = state.origin_seq as i64;
                // The newest state wins, whatever order states arrive in.
                tx.execute(
                    "INSERT INTO seq_state (tenant, gateway, origin_seq, last_acked_seq, first_kept_seq, next_seq, state_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, gateway) DO UPDATE SET origin_seq = EXCLUDED.origin_seq, \
                       last_acked_seq = EXCLUDED.last_acked_seq, first_kept_seq = EXCLUDED.first_kept_seq, \
                       next_seq = EXCLUDED.next_seq, state_ms = EXCLUDED.state_ms \
                     WHERE seq_state.state_ms <= EXCLUDED.state_ms",
                    &[
                        tenant,
                        gateway,
                        &origin,
                        &acked,
                        &(state.first_kept_seq as i64),
                        &(state.next_seq as i64),
                        &state.timestamp,
                    ],
                )
                .await?;
                tx.execute(
                    "INSERT INTO seq_origins (tenant, gateway, origin_seq) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[tenant, gateway, &origin],
                )
                .await?;
            }
            Control::Replayed {
                tenant,
                gateway,
                answer,
            } => {
                if let Some(error) = &answer.error {
                    tracing::warn!(%tenant, %gateway, from_seq = answer.from_seq, to_seq = answer.to_seq, %error, "agent refused a replay request");
                }
                for r in &answer.missing {
                    tx.execute(
                        "INSERT INTO seq_missing (tenant, gateway, seq_from, seq_to) VALUES ($1, $2, $3, $4)",
                        &[tenant, gateway, &(r.from_seq as i64), &(r.to_seq as i64)],
                    )
                    .await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::MessageRows;

    fn msg(gateway: &str, frames: &[i64]) -> MessageBatch {
        MessageBatch {
            topic: String::new(),
            rows: MessageRows {
                tenant: "t".into(),
                gateway: gateway.into(),
                device: "d".into(),
                readings: Vec::new(),
                frames: frames.iter().map(|&s| (s, s * 10)).collect(),
            },
        }
    }

    #[test]
    fn a_batch_becomes_few_runs() {
        let (a, b, c, d) = (
            msg("gw-1", &[5, 6, 7]),
            msg("gw-2", &[1, 2]),
            msg("gw-1", &[1, 2, 3, 4]),
            msg("gw-1", &[9, 10]),
        );
        assert_eq!(
            runs(&[&a, &b, &c, &d]),
            vec![
                ("t", "gw-1", 1, 7, 10, 70),
                ("t", "gw-1", 9, 10, 90, 100),
                ("t", "gw-2", 1, 2, 10, 20),
            ]
        );
    }
}
