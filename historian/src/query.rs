//! Downsampled series straight from the historian's tables, for charts.
//!
//! The SQL is [`weir_crds::historian::SERIES_SQL`] (the api runs the same
//! query); this module runs it for code that depends on `weir-agent`.

use std::time::{Duration, SystemTime};

use tokio_postgres::GenericClient;

pub use weir_crds::historian::SERIES_SQL;

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
