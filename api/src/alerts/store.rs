//! The writes the alerts runtime does (state per rule and series, history
//! of transitions, notification log, delivery log), and the sealing of
//! channel secrets stored in plain text by older versions. The tables are
//! in [`super::entities`] (re-exported here) and made by the migration
//! `db::migrations::m0100_alerts`.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

pub use super::entities::{
    alert_acknowledgement, alert_channel, alert_delivery, alert_history, alert_nflog, alert_rule,
    alert_silence, alert_state,
};

use super::engine::{AlertState, Transition};
use crate::error::ApiError;
use crate::secrets::{channel, MasterKey};

pub fn to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Record transitions: the history row, and the current state of the
/// series (a pending→inactive series has no row; a resolved one keeps its
/// row until its notice is out, see [`forget_resolved`]).
pub async fn record<C: ConnectionTrait>(db: &C, ts: &[Transition]) -> Result<(), DbErr> {
    if ts.is_empty() {
        return Ok(());
    }
    let rows = ts.iter().map(|tr| alert_history::ActiveModel {
        id: Set(Uuid::new_v4()),
        rule_id: Set(tr.rule_id),
        project_id: Set(tr.project_id),
        rule_name: Set(tr.rule_name.clone()),
        series: Set(tr.series.clone()),
        from_state: Set(tr.from.as_str().into()),
        to_state: Set(tr.to.as_str().into()),
        at: Set(to_time(tr.at_ms)),
        value: Set(tr.value),
        summary: Set(tr.summary.clone()),
        labels: Set(serde_json::to_string(&tr.labels).unwrap_or_default()),
        event: Set("transition".into()),
        actor: Set(None),
        comment: Set(None),
        shelve_until: Set(None),
    });
    alert_history::Entity::insert_many(rows).exec(db).await?;
    for tr in ts {
        if tr.to == AlertState::Inactive {
            alert_state::Entity::delete_many()
                .filter(alert_state::Column::RuleId.eq(tr.rule_id))
                .filter(alert_state::Column::Series.eq(tr.series.clone()))
                .exec(db)
                .await?;
            continue;
        }
        let row = alert_state::ActiveModel {
            rule_id: Set(tr.rule_id),
            series: Set(tr.series.clone()),
            project_id: Set(tr.project_id),
            state: Set(tr.to.as_str().into()),
            since: Set(to_time(tr.since_ms)),
            fired_at: Set((tr.to == AlertState::Firing).then(|| to_time(tr.at_ms))),
            value: Set(tr.value),
            labels: Set(serde_json::to_string(&tr.labels).unwrap_or_default()),
            summary: Set(tr.summary.clone()),
            updated_at: Set(to_time(tr.at_ms)),
        };
        let mut cols = vec![
            alert_state::Column::State,
            alert_state::Column::Since,
            alert_state::Column::Value,
            alert_state::Column::Labels,
            alert_state::Column::Summary,
            alert_state::Column::UpdatedAt,
        ];
        // Keep when it first fired across the resolved row.
        if tr.to == AlertState::Firing {
            cols.push(alert_state::Column::FiredAt);
        }
        alert_state::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([alert_state::Column::RuleId, alert_state::Column::Series])
                    .update_columns(cols)
                    .to_owned(),
            )
            .exec(db)
            .await?;
    }
    Ok(())
}

/// A resolved alert whose notices are all out: drop its state row (unless
/// it fired again meanwhile).
pub async fn forget_resolved<C: ConnectionTrait>(
    db: &C,
    rule_id: Uuid,
    series: &str,
) -> Result<(), DbErr> {
    let gone = alert_state::Entity::delete_many()
        .filter(alert_state::Column::RuleId.eq(rule_id))
        .filter(alert_state::Column::Series.eq(series))
        .filter(alert_state::Column::State.eq(AlertState::Resolved.as_str()))
        .exec(db)
        .await?;
    if gone.rows_affected == 0 {
        return Ok(());
    }
    // Its acknowledgement goes with it (a later firing is a new alert); a
    // shelve stays until its time.
    alert_acknowledgement::Entity::delete_many()
        .filter(alert_acknowledgement::Column::RuleId.eq(rule_id))
        .filter(alert_acknowledgement::Column::Series.eq(series))
        .filter(alert_acknowledgement::Column::ShelveUntil.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Remember which alerts a group's last notice carried.
pub async fn save_nflog<C: ConnectionTrait>(
    db: &C,
    channel_id: Uuid,
    group_key: &str,
    at_ms: i64,
    sent: &[String],
) -> Result<(), DbErr> {
    if sent.is_empty() {
        alert_nflog::Entity::delete_many()
            .filter(alert_nflog::Column::ChannelId.eq(channel_id))
            .filter(alert_nflog::Column::GroupKey.eq(group_key))
            .exec(db)
            .await?;
        return Ok(());
    }
    let row = alert_nflog::ActiveModel {
        channel_id: Set(channel_id),
        group_key: Set(group_key.to_string()),
        last_sent_at: Set(to_time(at_ms)),
        sent: Set(serde_json::to_string(sent).unwrap_or_default()),
    };
    alert_nflog::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                alert_nflog::Column::ChannelId,
                alert_nflog::Column::GroupKey,
            ])
            .update_columns([alert_nflog::Column::LastSentAt, alert_nflog::Column::Sent])
            .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
/// Re-write plain-text secrets of older rows sealed; returns how many.
pub async fn seal_legacy(
    db: &sea_orm::DatabaseConnection,
    key: &MasterKey,
) -> Result<usize, ApiError> {
    let rows = alert_channel::Entity::find().all(db).await?;
    let mut n = 0;
    for m in rows.into_iter().filter(|m| !channel::is_sealed(&m.secret)) {
        let sealed = channel::seal(key, m.id, &m.secret);
        // Only if nobody changed the row meanwhile.
        let res = alert_channel::Entity::update_many()
            .col_expr(
                alert_channel::Column::Secret,
                sea_orm::sea_query::Expr::value(sealed),
            )
            .filter(alert_channel::Column::Id.eq(m.id))
            .filter(alert_channel::Column::Secret.eq(m.secret.as_str()))
            .exec(db)
            .await?;
        n += res.rows_affected as usize;
    }
    Ok(n)
}
