//! The query of `/series`: which series (`series=device/tag`, repeated, or
//! the older single `tag`/`device`), the range, the bucket width and the
//! mode, parsed by hand because a repeated key is not something serde's
//! query deserializer reads. Unparseable input is 400, a broken rule 422,
//! each naming its parameter.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, FieldError};

/// Most series one request may ask for.
pub const MAX_SERIES: usize = 8;
/// Most readings per series a raw answer holds; beyond it `auto` answers in
/// buckets and `raw` is refused.
pub const MAX_RAW_PER_SERIES: i64 = 2_000;
/// Most buckets one answer may hold.
pub const MAX_BUCKETS: i64 = 10_000;
/// Buckets the default step aims for.
const DEFAULT_BUCKETS: f64 = 300.0;
/// Smallest step, in seconds.
const MIN_STEP_SECS: f64 = 0.001;
/// Range when `from` is not given.
const DEFAULT_RANGE_SECS: i64 = 3600;

const KNOWN: [&str; 7] = ["series", "tag", "device", "from", "to", "step", "mode"];

/// The query parameters (documentation; [`parse`] reads them).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// One series as `device/tag` (names as in the gateway's config, e.g.
    /// `dosing/chlorine`); repeat the parameter for more, across devices of
    /// the gateway: `series=dosing/chlorine&series=filter-1/turbidity`. 1
    /// to 8, each named once, each a tag of the gateway's current config.
    #[param(style = Form, explode, example = json!(["dosing/chlorine", "filter-1/turbidity"]))]
    pub series: Option<Vec<String>>,
    /// Instead of `series`: one tag name. Not checked against the config
    /// (readings of a tag no longer configured can still be read).
    #[param(min_length = 1, max_length = 128, example = "level")]
    pub tag: Option<String>,
    /// With `tag`: only this device's readings (default: every device of
    /// the gateway that has a tag of this name, as one series).
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
    /// about 300 buckets. Not allowed with `mode=raw`.
    #[param(example = "15s")]
    pub step: Option<String>,
    /// `auto` (default): the raw readings when every series has at most
    /// 2,000 in the range, else buckets; `buckets`: always buckets; `raw`:
    /// always the raw readings (422 when a series has more than 2,000).
    #[param(inline, value_type = Option<Mode>)]
    pub mode: Option<String>,
}

/// `auto` (raw readings when few enough, else buckets), `raw` or `buckets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Auto,
    Raw,
    Buckets,
}

/// One series asked for: a device (None: every device with the tag, only
/// from the older `tag` form) and a tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub device: Option<String>,
    pub tag: String,
    /// Named with `series=` (checked against the config), not `tag=`.
    pub from_series: bool,
}

/// The checked query.
#[derive(Debug, PartialEq)]
pub struct Checked {
    pub pairs: Vec<Pair>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step_secs: f64,
    pub mode: Mode,
}

/// Read the raw query string: unknown or repeated (other than `series`)
/// parameters are 400 naming them.
pub fn parse(raw: Option<&str>) -> Result<SeriesParams, ApiError> {
    let mut p = SeriesParams::default();
    let bad = |field: &str, message: String| ApiError::BadRequest {
        detail: format!("invalid query: {message}"),
        fields: vec![FieldError::new(field, message)],
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let slot = match k.as_ref() {
            "series" => {
                p.series.get_or_insert_with(Vec::new).push(v.into_owned());
                continue;
            }
            "tag" => &mut p.tag,
            "device" => &mut p.device,
            "from" => &mut p.from,
            "to" => &mut p.to,
            "step" => &mut p.step,
            "mode" => &mut p.mode,
            other => {
                return Err(bad(
                    other,
                    format!(
                        "unknown parameter `{other}`, expected one of {}",
                        KNOWN.join(", ")
                    ),
                ))
            }
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(bad(
                &k,
                format!("`{k}` is given twice; only `series` may be repeated"),
            ));
        }
    }
    if p.series.is_none() && p.tag.is_none() {
        return Err(bad(
            "series",
            "name what to read: series=device/tag (repeat it for up to 8 series), or tag=".into(),
        ));
    }
    Ok(p)
}

/// Check the parameters (every problem at once, each naming its field).
pub fn validate(q: &SeriesParams, now: DateTime<Utc>) -> Result<Checked, Vec<FieldError>> {
    let mut errs = Vec::new();
    let pairs = pairs(&mut errs, q);
    let mode = match q.mode.as_deref().map(str::trim) {
        None | Some("auto") => Mode::Auto,
        Some("raw") => Mode::Raw,
        Some("buckets") => Mode::Buckets,
        Some(m) => {
            errs.push(FieldError::new(
                "mode",
                format!("must be auto, raw or buckets (got {m:?})"),
            ));
            Mode::Auto
        }
    };
    if mode == Mode::Raw && q.step.is_some() {
        errs.push(FieldError::new(
            "step",
            "a raw answer has no buckets: leave out step, or use mode=auto or mode=buckets",
        ));
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
            pairs,
            from,
            to,
            step_secs,
            mode,
        })
    } else {
        Err(errs)
    }
}

/// The series asked for, from `series=` or the older `tag`/`device`.
fn pairs(errs: &mut Vec<FieldError>, q: &SeriesParams) -> Vec<Pair> {
    let series = q.series.as_deref().unwrap_or_default();
    if q.tag.is_some() || q.device.is_some() {
        if !series.is_empty() {
            let field = if q.tag.is_some() { "tag" } else { "device" };
            errs.push(FieldError::new(
                field,
                "give either series=device/tag or tag= (with device=), not both",
            ));
            return Vec::new();
        }
        let tag = q.tag.clone().unwrap_or_default();
        name(errs, "tag", &tag);
        if let Some(d) = &q.device {
            name(errs, "device", d);
        }
        return vec![Pair {
            device: q.device.clone(),
            tag,
            from_series: false,
        }];
    }
    if series.len() > MAX_SERIES {
        errs.push(FieldError::new(
            "series",
            format!(
                "at most {MAX_SERIES} series per request, {} were given",
                series.len()
            ),
        ));
        return Vec::new();
    }
    let mut out: Vec<Pair> = Vec::new();
    for s in series {
        let Some((device, tag)) = s.split_once('/').filter(|(_, t)| !t.contains('/')) else {
            errs.push(FieldError::new(
                "series",
                format!("{s:?} is not device/tag (one '/' between the device and the tag name, e.g. dosing/chlorine)"),
            ));
            continue;
        };
        let before = errs.len();
        name(errs, "series", device);
        name(errs, "series", tag);
        for e in &mut errs[before..] {
            e.message = format!("{s:?}: the device and the tag name {}", e.message);
        }
        let pair = Pair {
            device: Some(device.to_string()),
            tag: tag.to_string(),
            from_series: true,
        };
        if out.contains(&pair) {
            errs.push(FieldError::new(
                "series",
                format!("{s:?} is asked for twice"),
            ));
        } else if errs.len() == before {
            out.push(pair);
        }
    }
    out
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
            tag: Some("level".into()),
            from: from.map(Into::into),
            to: to.map(Into::into),
            step: step.map(Into::into),
            ..Default::default()
        }
    }

    fn fields(r: Result<Checked, Vec<FieldError>>) -> Vec<String> {
        r.expect_err("refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
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
        p.tag = Some("a/b".into());
        assert_eq!(fields(validate(&p, now)), ["tag"]);
        p.mode = Some("fast".into());
        assert_eq!(fields(validate(&p, now)), ["tag", "mode"]);
    }

    fn query(q: &str) -> Result<Checked, Vec<FieldError>> {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        match parse(Some(q)) {
            Ok(p) => validate(&p, now),
            Err(ApiError::BadRequest { fields, .. }) => Err(fields),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn several_series() {
        let c = query("series=d1/level&series=d2%2Fflow&mode=raw").unwrap();
        let names: Vec<_> = c
            .pairs
            .iter()
            .map(|p| (p.device.as_deref(), p.tag.as_str(), p.from_series))
            .collect();
        assert_eq!(
            names,
            [(Some("d1"), "level", true), (Some("d2"), "flow", true)]
        );
        assert_eq!(c.mode, Mode::Raw);
        let c = query("tag=level").unwrap();
        assert_eq!(c.pairs[0].device, None);
        assert_eq!(c.mode, Mode::Auto);
        let nine = (0..9)
            .map(|i| format!("series=d/t{i}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(fields(query(&nine)), ["series"]);
        for bad in [
            "series=level",
            "series=a/b/c",
            "series=/x",
            "series=d/",
            "series=d/t&series=d/t",
        ] {
            assert_eq!(fields(query(bad)), ["series"], "{bad}");
        }
        assert_eq!(fields(query("series=d/t&tag=t")), ["tag"]);
        assert_eq!(fields(query("series=d/t&mode=raw&step=5s")), ["step"]);
        assert_eq!(fields(query("from=2026-01-01T00:00:00Z")), ["series"]);
        assert_eq!(fields(query("tag=a&tag=b")), ["tag"]);
        assert_eq!(fields(query("tag=a&form=x")), ["form"]);
    }

    #[test]
    fn default_steps_are_round() {
        assert_eq!(default_step(900.0), 5.0);
        assert_eq!(default_step(86400.0), 300.0);
        assert_eq!(default_step(7.0 * 86400.0), 3600.0);
    }
}
