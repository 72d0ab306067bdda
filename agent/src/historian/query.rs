//! Downsampled series straight from the historian's tables, for charts.
//!
//! The api crate must not depend on this crate, so the SQL is a public
//! constant: copy [`SERIES_SQL`] (and the parameter list below) or call
//! [`series`] from code that may depend on `weir-agent`.
//!
//! ```sql
//! SELECT date_bin(make_interval(secs => $6::float8), ts, $4::timestamptz) AS bucket,
//!        avg(value), min(value), max(value), count(*)
//!   FROM readings
//!  WHERE tenant = $1 AND gateway = $2 AND tag = $3
//!    AND ts >= $4 AND ts < $5
//!    AND ($7::text IS NULL OR device = $7)
//!    AND quality = 0
//!  GROUP BY bucket
//!  ORDER BY bucket
//! ```
//!
//! Parameters: `$1` tenant (text), `$2` gateway (text), `$3` tag (text),
//! `$4` from (timestamptz, inclusive, also the bucket origin), `$5` to
//! (timestamptz, exclusive), `$6` step in seconds (double precision, > 0), `$7` device (text or NULL for every device of the gateway that has
//! this tag). Rows: `bucket timestamptz` (start of the bucket), `avg`, `min`,
//! `max` (double precision, NULL when the bucket only has text readings),
//! `count bigint` (good readings in the bucket). Empty buckets are absent.
//!
//! Only good readings (`quality = 0`) are aggregated. The query reads the
//! unique index `(tenant, gateway, tag, ts, device, seq)` in order, so it
//! costs the rows in the range, not the table. `date_bin` needs PostgreSQL 14
//! or later.

use std::time::{Duration, SystemTime};

use tokio_postgres::GenericClient;

/// See the module documentation for parameters and result columns.
pub const SERIES_SQL: &str =
    "SELECT date_bin(make_interval(secs => $6::float8), ts, $4::timestamptz) AS bucket, \
        avg(value), min(value), max(value), count(*) \
   FROM readings \
  WHERE tenant = $1 AND gateway = $2 AND tag = $3 \
    AND ts >= $4 AND ts < $5 \
    AND ($7::text IS NULL OR device = $7) \
    AND quality = 0 \
  GROUP BY bucket \
  ORDER BY bucket";

/// One bucket of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub start: SystemTime,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub count: i64,
}

/// What to read.
#[derive(Clone, Debug)]
pub struct SeriesQuery<'a> {
    pub tenant: &'a str,
    pub gateway: &'a str,
    pub device: Option<&'a str>,
    pub tag: &'a str,
    pub from: SystemTime,
    pub to: SystemTime,
    pub step: Duration,
}

/// Run [`SERIES_SQL`].
pub async fn series(
    client: &impl GenericClient,
    q: &SeriesQuery<'_>,
) -> Result<Vec<Bucket>, tokio_postgres::Error> {
    let step = q.step.as_secs_f64();
    let rows = client
        .query(
            SERIES_SQL,
            &[
                &q.tenant, &q.gateway, &q.tag, &q.from, &q.to, &step, &q.device,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Bucket {
            start: r.get(0),
            avg: r.get(1),
            min: r.get(2),
            max: r.get(3),
            count: r.get(4),
        })
        .collect())
}
