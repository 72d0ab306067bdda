//! A gateway's data gaps as its status shows them (issue 20): `GET
//! /api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/data-gaps`.
//!
//! `open`: holes in the gateway's `seq` the historian is asking the agent
//! to replay right now (its `seq_holes` rows with at least one replay
//! request, [`OPEN_GAPS_SQL`]); a hole younger than the historian's grace
//! period has no request yet and is left out, because reordered frames
//! usually fill it on their own. `recorded`: the latest ranges it gave up
//! on (`reading_gaps`, also `data_gap` fleet events). Tenant and gateway
//! map as for `/series` (org slug, gateway name; see [`super::series`]).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, Row};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use weir_crds::historian::OPEN_GAPS_SQL;

use super::gateways::find_gateway;
use super::series::{historian_error, Historian};
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiPath;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

/// Recorded gaps one answer lists.
pub const RECORDED_LIMIT: i64 = 20;

/// The latest gaps of one gateway, newest first. Parameters: `$1` tenant,
/// `$2` gateway, `$3` limit. Columns as in
/// [`weir_crds::historian::READING_GAPS_DDL`].
const RECENT_GAPS_SQL: &str = "SELECT seq_from, seq_to, ts_from, ts_to, detected_at, reason \
   FROM reading_gaps WHERE tenant = $1 AND gateway = $2 \
   ORDER BY detected_at DESC, seq_from DESC LIMIT $3";

/// What the gateway's status says about missing readings.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayDataGaps {
    /// The api reads a historian database (`WEIR_HISTORIAN_URL`); without
    /// one both lists are empty.
    pub historian: bool,
    /// Ranges the historian is asking the agent to replay now, by `seq_from`.
    pub open: Vec<OpenGap>,
    /// The latest ranges recorded as lost for good (at most 20), newest first.
    pub recorded: Vec<RecordedGap>,
}

/// Frames the historian is missing and asking the agent to replay.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct OpenGap {
    /// First missing frame (`seq`), inclusive.
    pub seq_from: i64,
    /// Last missing frame, inclusive.
    pub seq_to: i64,
    /// Missing frames (`seq_to - seq_from + 1`).
    pub frames: i64,
    /// When the historian first saw the hole.
    pub since: DateTime<Utc>,
    /// Replay requests sent so far.
    pub replay_requests: i32,
    /// When the last replay request was sent.
    pub last_request_at: Option<DateTime<Utc>>,
}

/// A range of readings lost for good.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct RecordedGap {
    pub seq_from: i64,
    pub seq_to: i64,
    /// Lost frames (`seq_to - seq_from + 1`).
    pub frames: i64,
    /// Read time of the last frame stored before the gap (null: none).
    pub ts_from: Option<DateTime<Utc>>,
    /// Read time of the first frame stored after the gap (null: none yet).
    pub ts_to: Option<DateTime<Utc>>,
    /// When the historian gave up on the range.
    pub detected_at: DateTime<Utc>,
    /// `not-retained` or `agent-unreachable`.
    pub reason: String,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Run a query of the historian; a historian from before schema v2 (no
/// `seq_holes`) or issue 20 (no `reading_gaps`) has no gaps: none, not 503.
async fn rows(
    h: &Historian,
    q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<sqlx::postgres::PgRow>, ApiError> {
    match q.fetch_all(h.pool()?).await {
        Ok(rows) => Ok(rows),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
            tracing::debug!(
                "data gaps: the historian database lacks a table: {}",
                db.message()
            );
            Ok(vec![])
        }
        Err(e) => Err(historian_error(e)),
    }
}

impl Historian {
    /// Holes of one gateway being replayed now ([`OPEN_GAPS_SQL`]).
    pub async fn open_gaps(&self, tenant: &str, gateway: &str) -> Result<Vec<OpenGap>, ApiError> {
        let q = sqlx::query(OPEN_GAPS_SQL).bind(tenant).bind(gateway);
        rows(self, q)
            .await?
            .iter()
            .map(|r| {
                let (from, to): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                Ok(OpenGap {
                    seq_from: from,
                    seq_to: to,
                    frames: to - from + 1,
                    since: from_ms(r.try_get(2)?),
                    replay_requests: r.try_get(3)?,
                    last_request_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::internal)
    }

    /// The latest `limit` recorded gaps of one gateway, newest first.
    pub async fn recent_gaps(
        &self,
        tenant: &str,
        gateway: &str,
        limit: i64,
    ) -> Result<Vec<RecordedGap>, ApiError> {
        let q = sqlx::query(RECENT_GAPS_SQL)
            .bind(tenant)
            .bind(gateway)
            .bind(limit);
        rows(self, q)
            .await?
            .iter()
            .map(|r| {
                let (from, to): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                Ok(RecordedGap {
                    seq_from: from,
                    seq_to: to,
                    frames: to - from + 1,
                    ts_from: r.try_get(2)?,
                    ts_to: r.try_get(3)?,
                    detected_at: r.try_get(4)?,
                    reason: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::internal)
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_data_gaps))
}

/// The gateway's open and recorded data gaps, from the historian.
///
/// `open`: ranges of frames the historian is missing and asking the agent
/// to replay right now (past its grace period); `recorded`: the latest 20
/// ranges lost for good, newest first. Any member of the project may read
/// it. Without a historian database (`WEIR_HISTORIAN_URL`) `historian` is
/// false and both lists are empty; 503 when it is configured but
/// unreachable.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/data-gaps", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)),
    responses((status = 200, body = GatewayDataGaps),
        (status = 503, description = "The historian database is configured but unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
        ProblemResponses))]
async fn get_data_gaps(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<Json<GatewayDataGaps>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess { org: o, .. } = at;
    let h = &st.fleet.historian;
    if !h.configured() {
        return Ok(Json(GatewayDataGaps {
            historian: false,
            open: vec![],
            recorded: vec![],
        }));
    }
    let open = h.open_gaps(&o.slug, &g.slug).await?;
    let recorded = h.recent_gaps(&o.slug, &g.slug, RECORDED_LIMIT).await?;
    Ok(Json(GatewayDataGaps {
        historian: true,
        open,
        recorded,
    }))
}
