//! Silences (label matchers over a time window) and inhibition (device
//! alerts of a gateway are muted while that gateway is offline).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::engine::AlertState;
use super::rules::{valid_label_name, RuleKind};
use crate::error::FieldError;
use crate::extract::{check as chk, Validate};

/// `label = value`, or `label =~ regex` when `regex` is true (anchored, as in Alertmanager).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[schema(schema_with = crate::extract::schema::label_name)]
    pub name: String,
    /// A regular expression (Rust `regex` syntax) when `regex` is true.
    #[schema(schema_with = crate::extract::schema::text::<0, 256>)]
    pub value: String,
    #[serde(default)]
    pub regex: bool,
}

/// Longest wait before a silence starts, and longest silence: a year
/// (the `maximum` of both fields in the document).
pub const MAX_SILENCE_SECS: u32 = 31_536_000;

// The window is relative to the server's clock: each rule is then one
// field's range, which the document states (absolute times would need "end
// after start" and "end in the future", which JSON Schema cannot say), and
// client clock skew is moot.
/// Body of `POST .../alerts/silences`: the silence starts `starts_in_secs`
/// from now and lasts `duration_secs`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSilence {
    /// All must match an alert's labels.
    #[schema(schema_with = matchers_schema)]
    pub matchers: Vec<Matcher>,
    /// Seconds from now until the silence starts (default 0: now).
    #[serde(default, deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 0, maximum = 31536000)]
    pub starts_in_secs: u32,
    /// How long the silence lasts, in seconds.
    #[serde(deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 1, maximum = 31536000)]
    pub duration_secs: u32,
    #[schema(schema_with = crate::extract::schema::text::<1, 1000>)]
    pub comment: String,
}

/// 1-16 matchers; a regex matcher's value is a regular expression
/// (`format: regex`: the fuzzers' regexes use only syntax that the `regex`
/// crate shares with ECMA-262 and Python).
fn matchers_schema() -> utoipa::openapi::schema::Array {
    let rule = serde_json::json!({"anyOf": [
        {"properties": {"regex": {"const": false}}},
        {"required": ["regex"], "properties": {"regex": {"const": true}, "value": {"format": "regex"}}}
    ]});
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(crate::extract::schema::fields_and_rule("Matcher", rule))
        .min_items(Some(1))
        .max_items(Some(16))
        .build()
}

impl Validate for CreateSilence {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if self.matchers.is_empty() || self.matchers.len() > 16 {
            e.push(FieldError::new("matchers", "between 1 and 16 matchers"));
        }
        for (i, m) in self.matchers.iter().enumerate() {
            if !valid_label_name(&m.name) {
                e.push(FieldError::new(
                    format!("matchers[{i}].name"),
                    "must be a label name",
                ));
            }
            chk::text(&mut e, &format!("matchers[{i}].value"), &m.value, 0, 256);
            if m.regex && regex::Regex::new(&anchored(&m.value)).is_err() {
                e.push(FieldError::new(
                    format!("matchers[{i}].value"),
                    "not a valid regular expression",
                ));
            }
        }
        if self.starts_in_secs > MAX_SILENCE_SECS {
            e.push(FieldError::new(
                "starts_in_secs",
                format!("must be between 0 and {MAX_SILENCE_SECS} seconds"),
            ));
        }
        if !(1..=MAX_SILENCE_SECS).contains(&self.duration_secs) {
            e.push(FieldError::new(
                "duration_secs",
                format!("must be between 1 and {MAX_SILENCE_SECS} seconds"),
            ));
        }
        chk::text(&mut e, "comment", &self.comment, 1, 1000);
        chk::finish(e)
    }
}

fn anchored(re: &str) -> String {
    format!("^(?:{re})$")
}

enum Match {
    Eq(String),
    Re(regex::Regex),
}

/// A silence ready to test alerts.
pub struct ActiveSilence {
    pub id: Uuid,
    pub project_id: Uuid,
    pub starts_ms: i64,
    pub ends_ms: i64,
    matchers: Vec<(String, Match)>,
}

impl ActiveSilence {
    pub fn new(
        id: Uuid,
        project_id: Uuid,
        matchers: &[Matcher],
        starts_ms: i64,
        ends_ms: i64,
    ) -> Self {
        let matchers = matchers
            .iter()
            .map(|m| {
                let k = if m.regex {
                    // Validated at creation; a bad stored pattern matches nothing.
                    regex::Regex::new(&anchored(&m.value))
                        .map(Match::Re)
                        .unwrap_or_else(|_| Match::Eq("\u{0}never".into()))
                } else {
                    Match::Eq(m.value.clone())
                };
                (m.name.clone(), k)
            })
            .collect();
        Self {
            id,
            project_id,
            starts_ms,
            ends_ms,
            matchers,
        }
    }

    pub fn active_at(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Every matcher matches (a missing label counts as the empty string).
    pub fn matches(&self, project_id: Uuid, labels: &BTreeMap<String, String>) -> bool {
        project_id == self.project_id
            && self.matchers.iter().all(|(k, m)| {
                let v = labels.get(k).map(String::as_str).unwrap_or("");
                match m {
                    Match::Eq(x) => x == v,
                    Match::Re(r) => r.is_match(v),
                }
            })
    }
}

/// Why an alert sends nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mute {
    None,
    Silenced,
    Inhibited,
    /// Acknowledged (see [`super::acknowledgements`]): no repeat notices,
    /// its resolution is still announced.
    Acknowledged,
    /// Shelved: nothing at all until the shelve ends, then announced as new.
    Shelved,
}

/// Why each alert is muted now: silences first, then inhibition of device
/// alerts while their gateway is offline: the fleet reports it offline
/// (`gateway_offline(project, gateway)`), or a gateway-offline alert of the
/// same project fires for it.
pub fn mute_fn<'a>(
    now_ms: i64,
    silences: &'a [ActiveSilence],
    alerts: impl Iterator<Item = (Uuid, RuleKind, AlertState, &'a BTreeMap<String, String>)>,
    gateway_offline: impl Fn(Uuid, &str) -> bool + 'a,
) -> impl Fn(Uuid, RuleKind, &BTreeMap<String, String>) -> Mute + 'a {
    let offline: HashSet<(Uuid, String)> = alerts
        .filter(|(_, k, s, _)| *k == RuleKind::GatewayOffline && *s == AlertState::Firing)
        .filter_map(|(p, _, _, l)| Some((p, l.get("gateway")?.clone())))
        .collect();
    move |project, kind, labels| {
        if silences
            .iter()
            .any(|s| s.active_at(now_ms) && s.matches(project, labels))
        {
            Mute::Silenced
        } else if kind.is_device_level()
            && labels.get("gateway").is_some_and(|g| {
                offline.contains(&(project, g.clone())) || gateway_offline(project, g)
            })
        {
            Mute::Inhibited
        } else {
            Mute::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_need_all_labels_and_anchor_regexes() {
        let p = Uuid::new_v4();
        let s = ActiveSilence::new(
            Uuid::new_v4(),
            p,
            &[
                Matcher {
                    name: "gateway".into(),
                    value: "ps-[12]".into(),
                    regex: true,
                },
                Matcher {
                    name: "severity".into(),
                    value: "warning".into(),
                    regex: false,
                },
            ],
            0,
            100,
        );
        let mut l = BTreeMap::new();
        l.insert("gateway".to_string(), "ps-1".to_string());
        l.insert("severity".to_string(), "warning".to_string());
        assert!(s.matches(p, &l));
        assert!(!s.matches(Uuid::new_v4(), &l), "other project");
        l.insert("gateway".to_string(), "ps-10".to_string());
        assert!(!s.matches(p, &l), "regex is anchored");
        assert!(s.active_at(0) && s.active_at(99) && !s.active_at(100));
    }

    /// The document's ranges are the checks' ranges, and the old fields
    /// are refused naming their replacement.
    #[test]
    fn body_ranges_match_the_document() {
        let doc = serde_json::to_value(<CreateSilence as utoipa::PartialSchema>::schema()).unwrap();
        let range = |f: &str| {
            let p = &doc["properties"][f];
            (p["minimum"].as_f64(), p["maximum"].as_f64())
        };
        let max = Some(f64::from(MAX_SILENCE_SECS));
        assert_eq!(range("starts_in_secs"), (Some(0.0), max));
        assert_eq!(range("duration_secs"), (Some(1.0), max));
        assert!(doc["properties"].get("ends_at").is_none());
        // A regex matcher's value is stated as a regular expression.
        let items = &doc["properties"]["matchers"]["items"]["allOf"];
        assert_eq!(items[0]["$ref"], "#/components/schemas/Matcher");
        assert_eq!(
            items[1]["anyOf"][1]["properties"]["value"]["format"],
            "regex"
        );
        let body = |extra: serde_json::Value| {
            let mut b = serde_json::json!({"matchers": [{"name": "gateway", "value": "ps-1"}], "comment": "c"});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<CreateSilence>(b)
                .unwrap()
                .validate()
        };
        let fields = |r: Result<(), Vec<FieldError>>| -> Vec<String> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert!(body(serde_json::json!({"duration_secs": MAX_SILENCE_SECS, "starts_in_secs": MAX_SILENCE_SECS})).is_ok());
        assert_eq!(
            fields(body(serde_json::json!({"duration_secs": 0}))),
            ["duration_secs"]
        );
        assert_eq!(
            fields(body(
                serde_json::json!({"duration_secs": MAX_SILENCE_SECS + 1, "starts_in_secs": MAX_SILENCE_SECS + 1})
            )),
            ["starts_in_secs", "duration_secs"]
        );
        // The old body's absolute times are unknown fields (a 400 naming them).
        let old = serde_json::json!({"matchers": [{"name": "gateway", "value": "ps-1"}],
            "comment": "c", "duration_secs": 60, "ends_at": "2099-01-01T00:00:00Z"});
        assert!(serde_json::from_value::<CreateSilence>(old).is_err());
        assert_eq!(
            doc["required"],
            serde_json::json!(["matchers", "duration_secs", "comment"])
        );
    }
}
