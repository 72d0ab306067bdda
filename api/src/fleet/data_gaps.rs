//! Data gaps (issue 20): ranges of a gateway's readings the historian
//! recorded as lost for good in its `reading_gaps` table
//! ([`weir_crds::historian::READING_GAPS_DDL`]). Like a gateway going
//! offline, every gap is a fleet event (`data_gap`, in `fleet_events` and
//! `GET .../fleet-events`) without any rule; a `data_gap` alert rule
//! notifies about it.
//!
//! The poller reads new rows ([`NEW_GAPS_SQL`]) every
//! `WEIR_DATA_GAP_POLL_MS` when `WEIR_HISTORIAN_URL` is set. A gap's
//! tenant is an organization slug and its gateway a gateway name of that
//! organization (see the module doc of [`super::series`]); gaps of unknown
//! ones are skipped. Exactly once across restarts and replicas: each gap
//! is claimed by inserting its key (tenant, gateway, seq_from) into
//! `fleet_data_gaps` in the transaction that records its fleet event; a
//! replica that finds the key taken does nothing (the offline sweep's
//! compare-and-set, as a row). The cursor is the newest `detected_at`
//! claimed, read back with a margin ([`OVERLAP`]), because a historian
//! transaction that started earlier may commit a row after a later one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::sqlx::{self, Row};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;
use weir_crds::historian::{GAPS_SQL, NEW_GAPS_SQL};

use super::entities::{fleet_event, gateway};
use super::series::{historian_error, Historian};
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet_events::{DataGapInfo, FleetEvent, FleetEventRecord, DATA_GAP};
use crate::state::AppState;

/// Gaps read per query.
const PAGE: i64 = 500;
/// How far before the newest claimed gap the next read starts.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(120);

/// One gap claimed by the api (table `fleet_data_gaps`).
pub mod fleet_data_gap {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_data_gaps")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub gateway: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq_from: i64,
        pub detected_at: DateTimeUtc,
        /// The project the gap was recorded in; none for unknown gateways.
        pub project_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn gap_from_row(r: &sqlx::postgres::PgRow, at: usize) -> Result<DataGapInfo, sqlx::Error> {
    Ok(DataGapInfo {
        seq_from: r.try_get(at)?,
        seq_to: r.try_get(at + 1)?,
        ts_from: r.try_get(at + 2)?,
        ts_to: r.try_get(at + 3)?,
        detected_at: r.try_get(at + 4)?,
        reason: r.try_get(at + 5)?,
    })
}

impl Historian {
    /// Gaps of one gateway whose time window overlaps `from..to` ([`GAPS_SQL`]);
    /// none when the historian has no `reading_gaps` table yet.
    pub async fn gaps(
        &self,
        tenant: &str,
        gateway: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DataGapInfo>, ApiError> {
        let rows = match sqlx::query(GAPS_SQL)
            .bind(tenant)
            .bind(gateway)
            .bind(from)
            .bind(to)
            .fetch_all(self.pool()?)
            .await
        {
            Ok(rows) => rows,
            // A historian from before issue 20 records no gaps: none to show.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                tracing::debug!("series: the historian database has no reading_gaps table");
                return Ok(vec![]);
            }
            Err(e) => return Err(historian_error(e)),
        };
        rows.iter()
            .map(|r| gap_from_row(r, 0))
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)
    }

    /// Gaps detected after `after`, oldest first ([`NEW_GAPS_SQL`]):
    /// (tenant, gateway, gap).
    pub async fn new_gaps(
        &self,
        after: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String, DataGapInfo)>, ApiError> {
        let rows = sqlx::query(NEW_GAPS_SQL)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool()?)
            .await
            .map_err(historian_error)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, gap_from_row(r, 2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::internal)
    }
}

/// One pass: every gap not claimed yet becomes a `data_gap` fleet event
/// (and alert input); returns the events recorded by this replica.
pub async fn poll_once(st: &AppState) -> Result<Vec<FleetEventRecord>, ApiError> {
    let newest = fleet_data_gap::Entity::find()
        .order_by_desc(fleet_data_gap::Column::DetectedAt)
        .one(&st.db)
        .await?;
    let mut after = newest.map_or(DateTime::<Utc>::UNIX_EPOCH, |g| g.detected_at - OVERLAP);
    let mut recorded = Vec::new();
    loop {
        let page = st.fleet.historian.new_gaps(after, PAGE).await?;
        for (tenant, gw, gap) in &page {
            if let Some(ev) = claim(st, tenant, gw, gap).await? {
                recorded.push(ev);
            }
        }
        match page.last() {
            // Read the last instant again (rows of it may be on the next
            // page), unless that would not move the cursor: then move past it.
            Some((_, _, last)) if page.len() as i64 == PAGE => {
                let again = last.detected_at - chrono::Duration::microseconds(1);
                after = if again > after {
                    again
                } else {
                    last.detected_at
                };
            }
            _ => return Ok(recorded),
        }
    }
}

/// Record one gap unless it is claimed already.
async fn claim(
    st: &AppState,
    tenant: &str,
    gw: &str,
    gap: &DataGapInfo,
) -> Result<Option<FleetEventRecord>, ApiError> {
    let key = (tenant.to_string(), gw.to_string(), gap.seq_from);
    if fleet_data_gap::Entity::find_by_id(key)
        .one(&st.db)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let g = match org::Entity::find()
        .filter(org::Column::Slug.eq(tenant))
        .one(&st.db)
        .await?
    {
        Some(o) => {
            gateway::Entity::find()
                .filter(gateway::Column::OrgId.eq(o.id))
                .filter(gateway::Column::Slug.eq(gw))
                .one(&st.db)
                .await?
        }
        None => None,
    };
    if g.is_none() {
        tracing::debug!(
            tenant,
            gateway = gw,
            seq_from = gap.seq_from,
            "data gap of an unknown tenant or gateway: skipped"
        );
    }
    let tx = st.write().await?;
    let claimed = fleet_data_gap::Entity::insert(fleet_data_gap::ActiveModel {
        tenant: Set(tenant.to_string()),
        gateway: Set(gw.to_string()),
        seq_from: Set(gap.seq_from),
        detected_at: Set(gap.detected_at),
        project_id: Set(g.as_ref().map(|g| g.project_id)),
    })
    .on_conflict(
        OnConflict::columns([
            fleet_data_gap::Column::Tenant,
            fleet_data_gap::Column::Gateway,
            fleet_data_gap::Column::SeqFrom,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(&*tx)
    .await?;
    let Some(g) = g.filter(|_| claimed == 1) else {
        tx.commit().await?;
        return Ok(None);
    };
    let m = fleet_event::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(g.org_id),
        project_id: Set(g.project_id),
        gateway_id: Set(g.id),
        gateway: Set(g.slug.clone()),
        kind: Set(DATA_GAP.to_string()),
        // When the api recorded it (the alerts runtime replays recent ones
        // by this time, see `fleet_events::recent_data_gaps`); the
        // historian's time is `detected_at` in the details.
        at: Set(Utc::now()),
        details: Set(serde_json::to_string(gap).map_err(ApiError::internal)?),
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    let ev = super::rollout::to_event(m);
    tracing::info!(
        gateway = %ev.gateway,
        seq_from = gap.seq_from,
        seq_to = gap.seq_to,
        reason = %gap.reason,
        "data gap"
    );
    let _ = st.fleet.events.send(ev.clone());
    st.alerts
        .fleet_event(FleetEvent::DataGap {
            project: g.project_id,
            gateway: g.slug,
            seq_from: gap.seq_from,
            seq_to: gap.seq_to,
            reason: gap.reason.clone(),
        })
        .await;
    Ok(Some(ev))
}

/// Poll every `WEIR_DATA_GAP_POLL_MS` (0: never) while a historian
/// database is configured.
pub fn spawn(st: &AppState) {
    let every_ms = st.fleet.config.data_gap_poll_ms;
    if every_ms == 0 || !st.fleet.historian.configured() {
        return;
    }
    // A historian not started yet has no `reading_gaps`: failures are
    // logged once per streak (and every 100th), not every poll.
    let every = Duration::from_millis(every_ms.max(100));
    super::spawn_periodic(st, every, "data gap poll", |st| async move {
        poll_once(&st).await.map(drop)
    });
}
