//! Running [`TRENDS_SQL`] and shaping its rows into series; checking the
//! asked-for pairs against the gateway's config first.

use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use sea_orm::sqlx::Row;

use super::params::{Checked, Mode, Pair, MAX_RAW_PER_SERIES};
use super::{historian_error, AnswerMode, Historian, RawReading, SeriesPoint, TagSeries};
use super::{ReadError, TRENDS_SQL};

use crate::error::{ApiError, FieldError};
use crate::fleet::entities::gateway;
use crate::fleet::latest::{config_tags, DeviceLatest};
use crate::state::AppState;

/// One empty series per pair, with the tag's unit and decimals from the
/// gateway's current config. A `series=` pair must name a device and a tag
/// of that config (422 naming `series`, listing what there is); the older
/// `tag=` form is not checked, so readings of a tag since removed stay
/// readable.
pub(super) async fn describe(
    st: &AppState,
    g: &gateway::Model,
    pairs: &[Pair],
) -> Result<Vec<TagSeries>, ApiError> {
    let devices = config_tags(st, g).await?;
    let mut errs = Vec::new();
    let series = pairs
        .iter()
        .map(|p| {
            let tag = find(&devices, p);
            if p.from_series && tag.is_none() {
                errs.push(unknown(&devices, p, g.config_version));
            }
            TagSeries {
                device: p.device.clone(),
                tag: p.tag.clone(),
                unit: tag.and_then(|t| t.unit.clone()),
                decimals: tag.and_then(|t| t.decimals),
                points: Vec::new(),
                readings: Vec::new(),
            }
        })
        .collect();
    if errs.is_empty() {
        Ok(series)
    } else {
        Err(ApiError::Validation(errs))
    }
}

/// The config's tag a pair names (without a device: the first device's tag
/// of that name).
fn find<'a>(devices: &'a [DeviceLatest], p: &Pair) -> Option<&'a crate::fleet::latest::TagLatest> {
    devices
        .iter()
        .filter(|d| p.device.as_deref().is_none_or(|n| n == d.name))
        .flat_map(|d| d.tags.iter())
        .find(|t| t.name == p.tag)
}

fn unknown(devices: &[DeviceLatest], p: &Pair, version: i64) -> FieldError {
    let device = p.device.as_deref().unwrap_or_default();
    let list = |names: Vec<&str>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let message = match devices.iter().find(|d| d.name == device) {
        None if version == 0 => format!(
            "\"{device}/{}\": the gateway has no config yet, so it has no tags to read",
            p.tag
        ),
        None => format!(
            "\"{device}/{}\": the gateway's config (version {version}) has no device \
             \"{device}\" (devices: {})",
            p.tag,
            list(devices.iter().map(|d| d.name.as_str()).collect())
        ),
        Some(d) => format!(
            "\"{device}/{}\": device \"{device}\" has no tag \"{}\" in the gateway's config \
             (version {version}; its tags: {})",
            p.tag,
            p.tag,
            list(d.tags.iter().map(|t| t.name.as_str()).collect())
        ),
    };
    FieldError::new("series", message)
}

/// One row of [`TRENDS_SQL`].
struct Row9 {
    bucketed: bool,
    i: i64,
    t: Option<DateTime<Utc>>,
    value: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    count: Option<i64>,
    value_text: Option<String>,
    quality: i32,
}

impl Historian {
    /// Fill `series` (in the order of `q.pairs`) with raw readings or
    /// buckets in one query; says which. `mode=raw` with too many readings
    /// is 422 naming `mode`.
    pub(super) async fn trends(
        &self,
        tenant: &str,
        gateway: &str,
        q: &Checked,
        series: &mut [TagSeries],
    ) -> Result<AnswerMode, ApiError> {
        let pool = self.pool()?;
        let devices: Vec<Option<&str>> = q.pairs.iter().map(|p| p.device.as_deref()).collect();
        let tags: Vec<&str> = q.pairs.iter().map(|p| p.tag.as_str()).collect();
        let limit = match q.mode {
            Mode::Buckets => -1,
            Mode::Auto | Mode::Raw => MAX_RAW_PER_SERIES,
        };
        let rows = sqlx::query(TRENDS_SQL)
            .bind(tenant)
            .bind(gateway)
            .bind(devices)
            .bind(tags)
            .bind(q.from)
            .bind(q.to)
            .bind(q.step_secs)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(historian_error)?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(Row9 {
                    bucketed: r.try_get(0)?,
                    i: r.try_get(1)?,
                    t: r.try_get(2)?,
                    value: r.try_get(3)?,
                    min: r.try_get(4)?,
                    max: r.try_get(5)?,
                    count: r.try_get(6)?,
                    value_text: r.try_get(7)?,
                    quality: r.try_get(8)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(ApiError::internal)?;
        // The first row (series 0) carries the decision, readings or not.
        let bucketed = rows.first().is_some_and(|r| r.bucketed);
        if bucketed && q.mode == Mode::Raw {
            return Err(too_many(&rows, series));
        }
        for r in rows {
            let (Some(t), Some(s)) = (r.t, usize::try_from(r.i - 1).ok()) else {
                continue;
            };
            let Some(s) = series.get_mut(s) else {
                return Err(ApiError::internal(format!(
                    "series index {} out of range",
                    r.i
                )));
            };
            if r.bucketed {
                s.points.push(SeriesPoint {
                    t,
                    avg: r.value,
                    min: r.min,
                    max: r.max,
                    count: r.count.unwrap_or_default(),
                });
            } else {
                s.readings.push(RawReading {
                    t,
                    value: r.value,
                    value_text: r.value_text,
                    error: (r.quality != 0).then(|| ReadError::of(r.quality)),
                });
            }
        }
        Ok(if bucketed {
            AnswerMode::Buckets
        } else {
            AnswerMode::Raw
        })
    }
}

/// `mode=raw` over more readings than a raw answer holds: name the series
/// whose buckets count more good readings than that (errors aside, the
/// bucket counts are what the query returned).
fn too_many(rows: &[Row9], series: &[TagSeries]) -> ApiError {
    let over: Vec<String> = series
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let n: i64 = rows
                .iter()
                .filter(|r| r.i == *i as i64 + 1)
                .filter_map(|r| r.count)
                .sum();
            n > MAX_RAW_PER_SERIES
        })
        .map(|(_, s)| match &s.device {
            Some(d) => format!("{d}/{}", s.tag),
            None => s.tag.clone(),
        })
        .collect();
    let which = if over.is_empty() {
        "a series".to_string()
    } else {
        over.join(", ")
    };
    ApiError::Validation(vec![FieldError::new(
        "mode",
        format!(
            "raw answers hold at most {MAX_RAW_PER_SERIES} readings per series and {which} \
             has more in this range: choose a shorter range, or mode=auto or mode=buckets"
        ),
    )])
}
