//! Status conditions shared by every weir.dev kind, in the shape of
//! `metav1.Condition` so that `kubectl describe` and tooling read them as usual.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation about a resource (Ready, Progressing, Degraded, Paused, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in CamelCase, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// Machine-readable reason in CamelCase, e.g. `StorageClassMissing`.
    pub reason: String,
    /// What a person should know or do, in words.
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: now_rfc3339(Utc::now()),
            observed_generation,
        }
    }
}

pub fn now_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Insert or replace the condition of the same type. The transition time is
/// kept when the status did not change, so that writing the same condition
/// twice yields identical objects (and no needless status write).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of the given type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_status_keeps_transition_time() {
        let mut conds = vec![];
        let mut first = Condition::new("Ready", ConditionStatus::True, "Up", "all good", Some(1));
        first.last_transition_time = "2020-01-01T00:00:00Z".into();
        set_condition(&mut conds, first);
        set_condition(
            &mut conds,
            Condition::new("Ready", ConditionStatus::True, "Up", "still good", Some(2)),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(conds[0].message, "still good");
        set_condition(
            &mut conds,
            Condition::new("Ready", ConditionStatus::False, "Down", "gone", Some(3)),
        );
        assert_ne!(conds[0].last_transition_time, "2020-01-01T00:00:00Z");
    }
}
