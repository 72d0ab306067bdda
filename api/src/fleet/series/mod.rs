//! Readings of one gateway over time, for charts: `GET
//! /api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/series`, up to
//! [`MAX_SERIES`] series (device/tag pairs across the gateway's devices) in
//! one query: the raw readings when each series has few enough of them in
//! the range, else downsampled in SQL into time buckets. Answered from the
//! historian's PostgreSQL tables (`readings`, written by `weir-historian`)
//! when `WEIR_HISTORIAN_URL` names that database.
//!
//! `params` reads and checks the query, `read` runs
//! [`weir_crds::historian::TRENDS_SQL`] and checks the pairs against the
//! gateway's config.
//!
//! The historian stores a reading under the tenant and gateway of its MQTT
//! topic, `weir/{tenant}/{gateway}/{device}/{group}`. An agent learns its
//! tenant at enrollment, and that is the organization's slug (see
//! `agents::mqtt_credentials` and `enrollment`), so a caller who may read
//! the gateway reads exactly the rows with `tenant = org slug` and `gateway
//! = gateway name` (gateway names are unique in an organization).

mod params;
mod read;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::gateways::find_gateway;
use super::latest::ReadError;

use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiPath;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub use params::{
    default_step, parse_step, Mode, SeriesParams, MAX_BUCKETS, MAX_RAW_PER_SERIES, MAX_SERIES,
};
pub use weir_crds::historian::TRENDS_SQL;

/// Server-side limit of one series query.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The historian's database, as configured by `WEIR_HISTORIAN_URL`.
#[derive(Clone)]
pub struct Historian {
    pool: Result<PgPool, String>,
}

impl Historian {
    /// A lazy pool: the api starts (and answers 503 on this route) while the
    /// historian database is down; it connects on first use.
    pub fn new(url: Option<&str>) -> Arc<Historian> {
        let pool = match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Err(
                "no historian database is configured: start weir-api with WEIR_HISTORIAN_URL \
                 (--historian-url) naming the PostgreSQL database weir-historian writes to"
                    .to_string(),
            ),
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                Err(
                    "WEIR_HISTORIAN_URL is not a usable PostgreSQL URL: it must start with \
                     postgres:// (e.g. postgres://user@host:5432/weir)"
                        .to_string(),
                )
            }
            Some(url) => PgConnectOptions::from_str(url)
                .map(|o| {
                    let o = o.options([(
                        "statement_timeout",
                        STATEMENT_TIMEOUT.as_millis().to_string(),
                    )]);
                    PgPoolOptions::new()
                        .max_connections(8)
                        .min_connections(0)
                        .acquire_timeout(Duration::from_secs(5))
                        .idle_timeout(Duration::from_secs(300))
                        .connect_lazy_with(o)
                })
                .map_err(|e| format!("WEIR_HISTORIAN_URL is not a usable PostgreSQL URL: {e}")),
        };
        if let Err(e) = &pool {
            if url.is_some() {
                tracing::warn!("series: {e}");
            }
        }
        Arc::new(Historian { pool })
    }

    /// A usable URL is configured (the database may still be down).
    pub fn configured(&self) -> bool {
        self.pool.is_ok()
    }

    pub(super) fn pool(&self) -> Result<&PgPool, ApiError> {
        self.pool
            .as_ref()
            .map_err(|e| ApiError::Unavailable(e.clone()))
    }
}

/// The database being down, missing or not the historian's is 503 with the
/// reason in words; anything else is a bug (500, logged).
pub(super) fn historian_error(e: sqlx::Error) -> ApiError {
    let unavailable = |why: String| {
        tracing::warn!("series: {why}");
        ApiError::Unavailable(why)
    };
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                "42P01" => unavailable(format!(
                    "the historian database has no `{}` table: point WEIR_HISTORIAN_URL at \
                     the database weir-historian writes to (it creates its tables on start, \
                     or run `weir-historian migrate`)",
                    if db.message().contains("reading_gaps") {
                        "reading_gaps"
                    } else {
                        "readings"
                    }
                )),
                "42883" => unavailable(format!(
                    "the historian database cannot bucket readings (PostgreSQL 14 or later is \
                     needed for date_bin): {}",
                    db.message()
                )),
                "57014" => unavailable(format!(
                    "the historian query ran longer than {} s; choose a shorter range or a larger step",
                    STATEMENT_TIMEOUT.as_secs()
                )),
                c if c.starts_with("08")
                    || c.starts_with("28")
                    || c.starts_with("3D")
                    || c.starts_with("53")
                    || c.starts_with("57P") =>
                {
                    unavailable(format!(
                        "the historian database (WEIR_HISTORIAN_URL) refused us: {}",
                        db.message()
                    ))
                }
                _ => ApiError::internal(format!("historian query: {e}")),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Configuration(_) => unavailable(format!(
            "the historian database (WEIR_HISTORIAN_URL) is unreachable: {e}"
        )),
        _ => ApiError::internal(format!("historian query: {e}")),
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_series))
}

/// Series of one gateway over a range, raw or in buckets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub gateway: String,
    /// Start of the range (inclusive), also the start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// `raw`: each series' `readings` are the stored readings; `buckets`:
    /// each series' `points` are time buckets (`auto` answers raw when every
    /// series has at most `raw_limit` readings in the range).
    pub mode: AnswerMode,
    /// Bucket width in seconds (in a raw answer: the width buckets would
    /// have had).
    pub step_seconds: f64,
    /// Most readings per series a raw answer holds.
    pub raw_limit: i64,
    /// One entry per series asked for, in the order asked.
    pub series: Vec<TagSeries>,
    /// Readings the historian recorded as lost for good whose time window
    /// overlaps the range, by `seq_from`: the chart shows them as gaps,
    /// never as interpolated data. `ts_from`/`ts_to` bound the window
    /// (null: no stored frame before/after it).
    pub gaps: Vec<crate::fleet_events::DataGapInfo>,
}

/// Which kind of data an answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    Raw,
    Buckets,
}

/// One device's tag over the range.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct TagSeries {
    /// The device (null: every device of the gateway with this tag, from
    /// the older `tag=` form without `device`).
    pub device: Option<String>,
    pub tag: String,
    /// The tag's unit in the gateway's current config, if any.
    pub unit: Option<String>,
    /// Decimals the config rounds the tag to, if any: show it with as many.
    pub decimals: Option<u8>,
    /// Buckets answer: buckets that hold at least one good reading, oldest
    /// first; buckets without readings are left out (a gap in the chart).
    /// Empty in a raw answer.
    pub points: Vec<SeriesPoint>,
    /// Raw answer: every reading in the range, oldest first, read errors
    /// included. Empty in a buckets answer.
    pub readings: Vec<RawReading>,
}

/// One time bucket.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub t: DateTime<Utc>,
    /// Mean of the numeric readings (null when the bucket only holds text readings).
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Good readings in the bucket.
    pub count: i64,
}

/// One stored reading.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct RawReading {
    /// When the agent read it.
    pub t: DateTime<Utc>,
    /// Its number (bools as 1 or 0); null for text and read errors.
    pub value: Option<f64>,
    /// Its text, for text tags.
    pub value_text: Option<String>,
    /// Set when the reading is a read error (the agent's code and its meaning).
    pub error: Option<ReadError>,
}

/// Several tags of a gateway over time, from the historian (for charts).
///
/// Up to 8 series (`series=device/tag`, repeated) across the gateway's
/// devices, each a tag of its current config, read in one query. With
/// `mode=auto` (default) the answer holds the raw readings (time, value,
/// read error) when every series has at most 2,000 of them in the range,
/// else average, minimum, maximum and count of the good readings per time
/// bucket; `mode` in the answer says which. Also the data gaps (lost
/// readings, `reading_gaps`) in the range. Any member of the project may
/// read it. 503 when the api has no historian database
/// (`WEIR_HISTORIAN_URL`) or cannot reach it.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/series", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path), SeriesParams),
    responses((status = 200, body = Series),
        (status = 503, description = "No historian database configured, or it is unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
        ProblemResponses))]
async fn get_series(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Series>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess { org: o, .. } = at;
    let q = params::parse(raw.as_deref())?;
    let v = params::validate(&q, Utc::now()).map_err(ApiError::Validation)?;
    let mut series = read::describe(&st, &g, &v.pairs).await?;
    let mode = st
        .fleet
        .historian
        .trends(&o.slug, &g.slug, &v, &mut series)
        .await?;
    let gaps = st
        .fleet
        .historian
        .gaps(&o.slug, &g.slug, v.from, v.to)
        .await?;
    Ok(Json(Series {
        gateway: g.slug,
        from: v.from,
        to: v.to,
        mode,
        step_seconds: v.step_secs,
        raw_limit: MAX_RAW_PER_SERIES,
        series,
        gaps,
    }))
}
