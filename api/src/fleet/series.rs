//! Readings of one gateway over time, for charts: `GET
//! /api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/series`,
//! downsampled in SQL into time buckets and answered from the historian's
//! PostgreSQL tables (`readings`, written by `weir-historian`) when
//! `WEIR_HISTORIAN_URL` names that database.
//!
//! The historian stores a reading under the tenant and gateway of its MQTT
//! topic, `weir/{tenant}/{gateway}/{device}/{group}`. An agent learns its
//! tenant at enrollment, and that is the organization's slug (see
//! `agents::mqtt_credentials` and `enrollment`), so a caller who may read
//! the gateway reads exactly the rows with `tenant = org slug` and `gateway
//! = gateway name` (gateway names are unique in an organization).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sea_orm::sqlx::Row;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::gateways::find_gateway;

use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{ApiPath, ApiQuery};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub use weir_crds::historian::SERIES_SQL;

/// Most buckets one answer may hold.
pub const MAX_BUCKETS: i64 = 10_000;
/// Buckets the default step aims for.
const DEFAULT_BUCKETS: f64 = 300.0;
/// Smallest step, in seconds.
const MIN_STEP_SECS: f64 = 0.001;
/// Range when `from` is not given.
const DEFAULT_RANGE_SECS: i64 = 3600;
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

    /// Run [`SERIES_SQL`].
    pub async fn series(&self, q: &Query<'_>) -> Result<Vec<SeriesPoint>, ApiError> {
        let pool = self.pool()?;
        let rows = sqlx::query(SERIES_SQL)
            .bind(q.tenant)
            .bind(q.gateway)
            .bind(q.tag)
            .bind(q.from)
            .bind(q.to)
            .bind(q.step_secs)
            .bind(q.device)
            .fetch_all(pool)
            .await
            .map_err(historian_error)?;
        rows.iter()
            .map(|r| {
                Ok(SeriesPoint {
                    t: r.try_get(0)?,
                    avg: r.try_get(1)?,
                    min: r.try_get(2)?,
                    max: r.try_get(3)?,
                    count: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::internal)
    }
}

/// What to read (see [`SERIES_SQL`]).
pub struct Query<'a> {
    pub tenant: &'a str,
    pub gateway: &'a str,
    pub device: Option<&'a str>,
    pub tag: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step_secs: f64,
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    /// Tag name, as in the gateway's config (e.g. `level`).
    #[param(min_length = 1, max_length = 128, example = "level")]
    pub tag: String,
    /// Only this device's readings of the tag (default: every device of the
    /// gateway that has a tag of this name).
    #[param(max_length = 128, example = "device-1")]
    pub device: Option<String>,
    /// Start, inclusive (RFC 3339, e.g. `2026-01-01T00:00:00Z`; encode `+` as
    /// `%2B`); also where the first bucket starts. Default: one hour before `to`.
    #[param(example = "2026-01-01T00:00:00Z")]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(example = "2026-01-01T01:00:00Z")]
    pub to: Option<String>,
    /// Bucket width: seconds (`60`, `0.5`) or a number with a unit `ms`, `s`,
    /// `m`, `h`, `d` (`500ms`, `15s`, `5m`, `1h`). At least 1 ms, and at
    /// most 10,000 buckets in the range. Default: a round width that makes
    /// about 300 buckets.
    #[param(example = "15s")]
    pub step: Option<String>,
}

/// A tag of one gateway over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub gateway: String,
    pub tag: String,
    /// The device filter, when one was asked for.
    pub device: Option<String>,
    /// Start of the range (inclusive), also the start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// Bucket width in seconds.
    pub step_seconds: f64,
    /// Buckets that hold at least one good reading, oldest first. Buckets
    /// without readings are left out (a gap in the chart).
    pub points: Vec<SeriesPoint>,
    /// Readings the historian recorded as lost for good whose time window
    /// overlaps the range, by `seq_from`: the chart shows them as gaps,
    /// never as interpolated data. `ts_from`/`ts_to` bound the window
    /// (null: no stored frame before/after it).
    pub gaps: Vec<crate::fleet_events::DataGapInfo>,
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

/// A tag over time in time buckets, from the historian (for charts).
///
/// Average, minimum, maximum and count of the good readings per bucket,
/// computed in PostgreSQL from the historian's `readings`, and the data
/// gaps (lost readings, `reading_gaps`) in the range. Any member of the
/// project may read it. 503 when the api has no historian database
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
    ApiQuery(q): ApiQuery<SeriesParams>,
) -> Result<Json<Series>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess { org: o, .. } = at;
    let v = validate(&q, Utc::now()).map_err(ApiError::Validation)?;
    let points = st
        .fleet
        .historian
        .series(&Query {
            tenant: &o.slug,
            gateway: &g.slug,
            device: q.device.as_deref(),
            tag: &q.tag,
            from: v.from,
            to: v.to,
            step_secs: v.step_secs,
        })
        .await?;
    let gaps = st
        .fleet
        .historian
        .gaps(&o.slug, &g.slug, v.from, v.to)
        .await?;
    Ok(Json(Series {
        gaps,
        gateway: g.slug,
        tag: q.tag,
        device: q.device,
        from: v.from,
        to: v.to,
        step_seconds: v.step_secs,
        points,
    }))
}

/// The checked range and step.
#[derive(Debug, PartialEq)]
pub struct Checked {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step_secs: f64,
}

/// Check the parameters (every problem at once, each naming its field).
pub fn validate(q: &SeriesParams, now: DateTime<Utc>) -> Result<Checked, Vec<FieldError>> {
    let mut errs = Vec::new();
    name(&mut errs, "tag", &q.tag);
    if let Some(d) = &q.device {
        name(&mut errs, "device", d);
    }
    let to = match q.to.as_deref() {
        None => Some(now),
        Some(s) => time(&mut errs, "to", s),
    };
    let from = match q.from.as_deref() {
        None => to.map(|t| t - chrono::Duration::seconds(DEFAULT_RANGE_SECS)),
        Some(s) => time(&mut errs, "from", s),
    };
    let step = match q.step.as_deref() {
        None => None,
        Some(s) => match parse_step(s) {
            Ok(v) => Some(v),
            Err(m) => {
                errs.push(FieldError::new("step", m));
                None
            }
        },
    };
    let (Some(from), Some(to)) = (from, to) else {
        return Err(errs);
    };
    if from >= to {
        errs.push(FieldError::new(
            "from",
            format!(
                "must be before `to` ({} is not before {})",
                from.to_rfc3339(),
                to.to_rfc3339()
            ),
        ));
        return Err(errs);
    }
    let range = (to - from).num_milliseconds() as f64 / 1000.0;
    // An invalid `step` is already in `errs`; the default then goes unused.
    let step_secs = match step {
        Some(s) => {
            let buckets = (range / s).ceil() as i64;
            if buckets > MAX_BUCKETS {
                let min = range / MAX_BUCKETS as f64;
                errs.push(FieldError::new(
                    "step",
                    format!(
                        "too small for the range: {range} s in steps of {s} s makes {buckets} \
                         buckets, at most {MAX_BUCKETS} are allowed; use a step of at least {}",
                        human_secs(min)
                    ),
                ));
            }
            s
        }
        None => default_step(range),
    };
    if errs.is_empty() {
        Ok(Checked {
            from,
            to,
            step_secs,
        })
    } else {
        Err(errs)
    }
}

fn name(errs: &mut Vec<FieldError>, field: &str, v: &str) {
    let n = v.chars().count();
    if n == 0 || n > 128 {
        errs.push(FieldError::new(field, "must be 1 to 128 characters"));
    } else if v
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '+' || c == '#')
    {
        errs.push(FieldError::new(
            field,
            "must not contain '/', '+', '#' or control characters",
        ));
    }
}

fn time(errs: &mut Vec<FieldError>, field: &str, s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    // An unencoded `+` in a query string arrives as a space.
    let parsed = DateTime::parse_from_rfc3339(s)
        .or_else(|e| DateTime::parse_from_rfc3339(&s.replacen(' ', "+", 1)).map_err(|_| e));
    match parsed {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            errs.push(FieldError::new(
                field,
                format!("must be an RFC 3339 time such as 2026-01-01T00:00:00Z ({e}; got {s:?})"),
            ));
            None
        }
    }
}

/// `60`, `0.5`, `500ms`, `15s`, `5m`, `1h`, `1d` → seconds.
pub fn parse_step(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?}: give seconds (60) or a number with ms, s, m, h or d (500ms, 15s, 5m, 1h)"
            ))
        }
    };
    let secs = num
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * factor)
        .filter(|secs| secs.is_finite())
        .ok_or_else(|| {
            format!("must be a duration such as 60, 500ms, 15s, 5m or 1h (got {s:?})")
        })?;
    if secs < MIN_STEP_SECS {
        return Err(format!("must be at least 1ms (got {s:?})"));
    }
    if secs > 366.0 * 86400.0 {
        return Err(format!("must be at most 366d (got {s:?})"));
    }
    // Whole milliseconds keep bucket starts exact.
    Ok((secs * 1000.0).round() / 1000.0)
}

/// The smallest round width that makes at most about 300 buckets.
pub fn default_step(range_secs: f64) -> f64 {
    const ROUND: [f64; 31] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
        86400.0, 172800.0, 604800.0, 2592000.0, 31536000.0,
    ];
    let want = range_secs / DEFAULT_BUCKETS;
    ROUND
        .iter()
        .copied()
        .find(|s| *s >= want)
        .unwrap_or_else(|| (want / 86400.0).ceil() * 86400.0)
}

fn human_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{}s", s.ceil())
    } else {
        format!("{}ms", (s * 1000.0).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>, step: Option<&str>) -> SeriesParams {
        SeriesParams {
            tag: "level".into(),
            device: None,
            from: from.map(Into::into),
            to: to.map(Into::into),
            step: step.map(Into::into),
        }
    }

    fn fields(r: Result<Checked, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn steps_parse() {
        assert_eq!(parse_step("60"), Ok(60.0));
        assert_eq!(parse_step("0.5"), Ok(0.5));
        assert_eq!(parse_step("500ms"), Ok(0.5));
        assert_eq!(parse_step("15s"), Ok(15.0));
        assert_eq!(parse_step("5m"), Ok(300.0));
        assert_eq!(parse_step(" 1h "), Ok(3600.0));
        assert_eq!(parse_step("1d"), Ok(86400.0));
        for bad in [
            "", "0", "-5s", "abc", "5w", "1e999", "NaN", "0.0001", "400d",
        ] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_rules() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = validate(&params(None, None, None), now).unwrap();
        assert_eq!(c.to, now);
        assert_eq!((c.to - c.from).num_seconds(), 3600);
        assert_eq!(c.step_secs, 15.0);
        let c = validate(
            &params(
                Some("2026-01-01T00:00:00 01:00"),
                Some("2026-01-01T00:00:00Z"),
                Some("1m"),
            ),
            now,
        )
        .unwrap();
        assert_eq!(c.step_secs, 60.0);
        assert_eq!((c.to - c.from).num_seconds(), 3600);
        assert_eq!(
            fields(validate(
                &params(
                    Some("2026-01-02T00:00:00Z"),
                    Some("2026-01-01T00:00:00Z"),
                    None
                ),
                now
            )),
            ["from"]
        );
        assert_eq!(
            fields(validate(
                &params(
                    Some("2026-01-01T00:00:00Z"),
                    Some("2026-01-02T00:00:00Z"),
                    Some("1s")
                ),
                now
            )),
            ["step"]
        );
        assert_eq!(
            fields(validate(
                &params(Some("yesterday"), Some("x"), Some("1y")),
                now
            )),
            ["to", "from", "step"]
        );
        let mut p = params(None, None, None);
        p.tag = "a/b".into();
        assert_eq!(fields(validate(&p, now)), ["tag"]);
    }

    #[test]
    fn default_steps_are_round() {
        assert_eq!(default_step(900.0), 5.0);
        assert_eq!(default_step(86400.0), 300.0);
        assert_eq!(default_step(7.0 * 86400.0), 3600.0);
    }
}
