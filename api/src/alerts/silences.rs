//! Silences (label matchers over a time window) and inhibition (device
//! alerts of a gateway are muted while that gateway is offline).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
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

/// Body of `POST .../alerts/silences`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSilence {
    /// All must match an alert's labels.
    #[schema(min_items = 1, max_items = 16)]
    pub matchers: Vec<Matcher>,
    /// Default: now.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
    #[schema(schema_with = crate::extract::schema::text::<1, 1000>)]
    pub comment: String,
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
        if let Some(s) = self.starts_at {
            if s >= self.ends_at {
                e.push(FieldError::new("ends_at", "must be after starts_at"));
            }
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
}
