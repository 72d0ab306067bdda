//! Alarm acknowledgement and shelving (issue 23).
//!
//! One row per alert (rule and series) in `alert_acknowledgements` holds
//! the latest `POST .../alerts/acknowledgements` for it:
//!
//! - **Acknowledged** (no `shelve_until`): the alert stays in the active
//!   list, marked; its repeat notices stop, its resolution is still
//!   announced (to the channels that were told it fired). The row names the
//!   alert instance (its `since`), so when the series fires again later that
//!   is a new, unacknowledged alert.
//! - **Shelved** (`shelve_until` in the future): hidden from the default
//!   active list and silent (no firing, repeat nor resolved notice) until
//!   then, whatever instance fires meanwhile; then it behaves as any alert:
//!   if still firing it is announced again, as new.
//!
//! The latest post wins: acknowledging a shelved alert ends its shelve.
//! The worker keeps the rows in memory ([`Acks`]), re-read when any replica
//! records one (`Signal::Acks`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::alert_acknowledgement;
use crate::error::{ApiError, FieldError};
use crate::extract::{check as chk, Validate};

/// The longest shelve: 30 days.
pub const MAX_SHELVE_SECS: i64 = 30 * 24 * 3600;

/// Body of `POST .../alerts/acknowledgements`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    /// The alert's rule.
    pub rule_id: Uuid,
    /// The alert's series (`gateway/device/tag`, as the active list shows it).
    #[schema(schema_with = crate::extract::schema::text::<1, 1024>)]
    pub series: String,
    /// Why (shown in the active list and the history, and audited).
    #[schema(schema_with = crate::extract::schema::text::<1, 1000>)]
    pub comment: String,
    /// Shelve instead of acknowledging: hidden and silent until this time
    /// (RFC 3339; in the future, at most 30 days ahead).
    #[serde(default)]
    pub shelve_until: Option<DateTime<Utc>>,
}

impl Validate for Acknowledge {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::text(&mut e, "series", &self.series, 1, 1024);
        chk::text(&mut e, "comment", &self.comment, 1, 1000);
        chk::finish(e)
    }
}

impl Acknowledge {
    /// `shelve_until` against the alerts' clock: after now, at most
    /// [`MAX_SHELVE_SECS`] ahead (the document cannot state "in the future").
    pub fn check_shelve(&self, now_ms: i64) -> Result<(), ApiError> {
        let Some(t) = self.shelve_until else {
            return Ok(());
        };
        let ms = t.timestamp_millis();
        if ms <= now_ms {
            return Err(ApiError::invalid("shelve_until", "must be in the future"));
        }
        if ms - now_ms > MAX_SHELVE_SECS * 1000 {
            return Err(ApiError::invalid(
                "shelve_until",
                "at most 30 days ahead (2592000 seconds)",
            ));
        }
        Ok(())
    }
}

/// An alert's acknowledgement or shelve, as the active list shows it.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct Acknowledgement {
    pub rule_id: Uuid,
    pub series: String,
    /// Who (email).
    pub by: String,
    pub at: DateTime<Utc>,
    pub comment: String,
    /// Set for a shelve: hidden and silent until then.
    pub shelve_until: Option<DateTime<Utc>>,
}

impl From<&alert_acknowledgement::Model> for Acknowledgement {
    fn from(m: &alert_acknowledgement::Model) -> Self {
        Acknowledgement {
            rule_id: m.rule_id,
            series: m.series.clone(),
            by: m.author.clone(),
            at: m.created_at,
            comment: m.comment.clone(),
            shelve_until: m.shelve_until,
        }
    }
}

/// What an acknowledgement row does to one alert now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckState {
    None,
    /// This instance was acknowledged: no repeat notices.
    Acknowledged,
    /// Shelved until a time still ahead: hidden and silent.
    Shelved,
}

/// One row as the checks need it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    since_ms: i64,
    shelve_until_ms: Option<i64>,
}

/// The acknowledgement rows, by rule, then series.
#[derive(Default)]
pub struct Acks {
    rows: HashMap<Uuid, HashMap<String, Entry>>,
}

impl Acks {
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a alert_acknowledgement::Model>) -> Self {
        let mut out: HashMap<Uuid, HashMap<String, Entry>> = HashMap::new();
        for m in rows {
            let e = Entry {
                since_ms: m.alert_since.timestamp_millis(),
                shelve_until_ms: m.shelve_until.map(|t| t.timestamp_millis()),
            };
            out.entry(m.rule_id)
                .or_default()
                .insert(m.series.clone(), e);
        }
        Acks { rows: out }
    }

    pub async fn load(db: &DatabaseConnection) -> Result<Self, ApiError> {
        let rows = alert_acknowledgement::Entity::find().all(db).await?;
        Ok(Self::from_rows(&rows))
    }

    /// The alert `rule_id`/`series` whose condition holds since `since_ms`, at `now_ms`.
    pub fn state(&self, rule_id: Uuid, series: &str, since_ms: i64, now_ms: i64) -> AckState {
        match self.rows.get(&rule_id).and_then(|m| m.get(series)) {
            Some(e) => entry_state(*e, since_ms, now_ms),
            None => AckState::None,
        }
    }
}

fn entry_state(e: Entry, since_ms: i64, now_ms: i64) -> AckState {
    match e.shelve_until_ms {
        Some(until) if now_ms < until => AckState::Shelved,
        // An ended shelve leaves the alert as it was before: not acknowledged.
        Some(_) => AckState::None,
        None if e.since_ms == since_ms => AckState::Acknowledged,
        None => AckState::None,
    }
}

/// What a stored row does to the alert instance that began at `since_ms`.
pub fn row_state(m: &alert_acknowledgement::Model, since_ms: i64, now_ms: i64) -> AckState {
    entry_state(
        Entry {
            since_ms: m.alert_since.timestamp_millis(),
            shelve_until_ms: m.shelve_until.map(|t| t.timestamp_millis()),
        },
        since_ms,
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::store::to_time;

    fn row(since: i64, until: Option<i64>) -> alert_acknowledgement::Model {
        alert_acknowledgement::Model {
            rule_id: Uuid::nil(),
            series: "ps-1/tank/level".into(),
            project_id: Uuid::nil(),
            alert_since: to_time(since),
            author: "op@example.org".into(),
            comment: "seen".into(),
            created_at: to_time(since),
            shelve_until: until.map(to_time),
        }
    }

    #[test]
    fn an_ack_holds_for_its_instance_and_a_shelve_for_its_time() {
        let acks = Acks::from_rows(&[row(1_000, None)]);
        let s = "ps-1/tank/level";
        assert_eq!(
            acks.state(Uuid::nil(), s, 1_000, 5_000),
            AckState::Acknowledged
        );
        assert_eq!(
            acks.state(Uuid::nil(), s, 9_000, 9_500),
            AckState::None,
            "fired again later: a new alert"
        );
        assert_eq!(
            acks.state(Uuid::nil(), "other", 1_000, 5_000),
            AckState::None
        );
        let shelf = Acks::from_rows(&[row(1_000, Some(60_000))]);
        assert_eq!(
            shelf.state(Uuid::nil(), s, 1_000, 59_999),
            AckState::Shelved
        );
        assert_eq!(
            shelf.state(Uuid::nil(), s, 7_000, 8_000),
            AckState::Shelved,
            "any instance while shelved"
        );
        assert_eq!(
            shelf.state(Uuid::nil(), s, 1_000, 60_000),
            AckState::None,
            "after the shelve: as before it, not acknowledged"
        );
    }

    #[test]
    fn shelve_until_is_bounded() {
        let body = |until: Option<i64>| Acknowledge {
            rule_id: Uuid::nil(),
            series: "a/b/c".into(),
            comment: "c".into(),
            shelve_until: until.map(to_time),
        };
        let now = 1_000_000;
        assert!(body(None).check_shelve(now).is_ok());
        assert!(body(Some(now + 1)).check_shelve(now).is_ok());
        assert!(body(Some(now + MAX_SHELVE_SECS * 1000))
            .check_shelve(now)
            .is_ok());
        for bad in [now, now - 1, now + MAX_SHELVE_SECS * 1000 + 1] {
            let e = body(Some(bad)).check_shelve(now).unwrap_err();
            let ApiError::Validation(f) = e else {
                panic!("422 expected")
            };
            assert_eq!(f[0].field, "shelve_until");
        }
        let blank = Acknowledge {
            comment: " ".into(),
            series: String::new(),
            ..body(None)
        };
        let fields: Vec<String> = blank
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["series", "comment"]);
    }
}
