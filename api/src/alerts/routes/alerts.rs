//! Alert instances: the pending and firing alerts of a project (with
//! whether they are silenced, inhibited, acknowledged or shelved), and
//! their history (transitions, acknowledgements and shelves).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::alerts::acknowledgements::{row_state, AckState, Acknowledgement};
use crate::alerts::engine::AlertState;
use crate::alerts::rules::{RuleKind, RuleSpec};
use crate::alerts::silences::Mute;
use crate::alerts::store::{
    alert_acknowledgement, alert_history, alert_rule, alert_silence, alert_state,
};
use crate::alerts::{mute_fn, silence_from_row};
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiQuery;
use crate::rbac::Permission;
use crate::scope::ProjectScope;
use crate::state::AppState;

/// What an active alert does now.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Notifications go out.
    Active,
    /// A silence matches: nothing is sent.
    Silenced,
    /// Its gateway is offline: nothing is sent.
    Inhibited,
    /// Acknowledged: no repeat notices; its resolution is announced.
    Acknowledged,
    /// Shelved: hidden from the default list, nothing is sent until
    /// `acknowledgement.shelve_until`.
    Shelved,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveAlert {
    pub rule_id: Uuid,
    /// `gateway/device/tag`.
    pub series: String,
    pub state: AlertState,
    pub status: AlertStatus,
    /// Silences that match it now.
    pub silenced_by: Vec<Uuid>,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub value: Option<f64>,
    /// The value with the decimals and unit of its tag in the gateway's
    /// current config ("0.18 mg/L"), as the summary shows it.
    pub value_text: Option<String>,
    /// When the condition started to hold.
    pub since: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    /// Who acknowledged this alert, or shelved it (with until when); null
    /// when neither holds now.
    pub acknowledgement: Option<Acknowledgement>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActiveQuery {
    /// Also list shelved alerts (status `shelved`); by default they are left out.
    #[serde(default)]
    pub include_shelved: bool,
}

/// The kind of each rule of a project (a deleted rule's alerts read as
/// threshold ones).
async fn rule_kinds(st: &AppState, project: Uuid) -> Result<HashMap<Uuid, RuleKind>, ApiError> {
    Ok(alert_rule::Entity::find()
        .filter(alert_rule::Column::ProjectId.eq(project))
        .all(&st.db)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.id, serde_json::from_str::<RuleSpec>(&r.spec).ok()?.kind)))
        .collect())
}

/// Pending and firing alerts, with whether they are silenced, inhibited,
/// acknowledged or shelved (shelved ones only with `include_shelved=true`).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/active", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ActiveQuery), responses((status = 200, body = Vec<ActiveAlert>), ProblemResponses))]
pub(super) async fn list_active(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiQuery(q): ApiQuery<ActiveQuery>,
) -> Result<Json<Vec<ActiveAlert>>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
    let now = st.alerts.now_ms();
    let rows = alert_state::Entity::find()
        .filter(alert_state::Column::ProjectId.eq(c.project.id))
        .filter(
            alert_state::Column::State
                .is_in([AlertState::Pending.as_str(), AlertState::Firing.as_str()]),
        )
        .order_by_asc(alert_state::Column::Since)
        .all(&st.db)
        .await?;
    // Nothing pending or firing (the usual answer): no rules nor silences to read.
    if rows.is_empty() {
        return Ok(Json(Vec::new()));
    }
    let kinds = rule_kinds(&st, c.project.id).await?;
    let silences: Vec<_> = alert_silence::Entity::find()
        .filter(alert_silence::Column::ProjectId.eq(c.project.id))
        .all(&st.db)
        .await?
        .iter()
        .map(silence_from_row)
        .collect();
    let acks: HashMap<(Uuid, String), alert_acknowledgement::Model> =
        alert_acknowledgement::Entity::find()
            .filter(alert_acknowledgement::Column::ProjectId.eq(c.project.id))
            .all(&st.db)
            .await?
            .into_iter()
            .map(|a| ((a.rule_id, a.series.clone()), a))
            .collect();
    let parsed: Vec<(
        alert_state::Model,
        AlertState,
        RuleKind,
        BTreeMap<String, String>,
    )> = rows
        .into_iter()
        .filter_map(|r| {
            let state = AlertState::parse(&r.state)?;
            let kind = kinds
                .get(&r.rule_id)
                .copied()
                .unwrap_or(RuleKind::Threshold);
            let labels = serde_json::from_str(&r.labels).unwrap_or_default();
            Some((r, state, kind, labels))
        })
        .collect();
    let mute = mute_fn(
        now,
        &silences,
        parsed.iter().map(|(_, s, k, l)| (c.project.id, *k, *s, l)),
        |p, g| st.alerts.gateway_offline(p, g),
    );
    let out = parsed
        .iter()
        .filter_map(|(r, state, kind, labels)| {
            let ack = acks.get(&(r.rule_id, r.series.clone())).and_then(|a| {
                match row_state(a, r.since.timestamp_millis(), now) {
                    AckState::None => None,
                    held => Some((held, a)),
                }
            });
            let status = match (ack.map(|(h, _)| h), mute(c.project.id, *kind, labels)) {
                (Some(AckState::Shelved), _) => AlertStatus::Shelved,
                (_, Mute::Silenced) => AlertStatus::Silenced,
                (_, Mute::Inhibited) => AlertStatus::Inhibited,
                (Some(AckState::Acknowledged), _) => AlertStatus::Acknowledged,
                _ => AlertStatus::Active,
            };
            if status == AlertStatus::Shelved && !q.include_shelved {
                return None;
            }
            Some(ActiveAlert {
                rule_id: r.rule_id,
                series: r.series.clone(),
                state: *state,
                status,
                silenced_by: silences
                    .iter()
                    .filter(|s| s.active_at(now) && s.matches(c.project.id, labels))
                    .map(|s| s.id)
                    .collect(),
                labels: labels.clone(),
                summary: r.summary.clone(),
                value: r.value,
                value_text: st.alerts.value_text(c.project.id, *kind, labels, r.value),
                since: r.since,
                fired_at: r.fired_at,
                acknowledgement: ack.map(|(_, a)| Acknowledgement::from(a)),
            })
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this rule.
    pub rule: Option<Uuid>,
    /// Newest first; at most 1000 (default 100).
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub rule_name: String,
    pub series: String,
    pub from: AlertState,
    pub to: AlertState,
    pub at: DateTime<Utc>,
    pub value: Option<f64>,
    /// The value with the decimals and unit of its tag in the gateway's
    /// current config ("0.18 mg/L").
    pub value_text: Option<String>,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    /// A state transition (`from` → `to`), or an acknowledgement or
    /// shelve of the alert (`from` = `to` = its state then).
    pub event: HistoryEvent,
    /// Who acknowledged or shelved (email).
    pub by: Option<String>,
    pub comment: Option<String>,
    /// Until when it was shelved.
    pub shelve_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HistoryEvent {
    Transition,
    Acknowledged,
    Shelved,
}

/// State transitions, acknowledgements and shelves, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/history", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), HistoryQuery), responses((status = 200, body = Vec<HistoryEntry>), ProblemResponses))]
pub(super) async fn list_history(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "between 1 and 1000"));
    }
    let mut sel =
        alert_history::Entity::find().filter(alert_history::Column::ProjectId.eq(c.project.id));
    if let Some(r) = q.rule {
        sel = sel.filter(alert_history::Column::RuleId.eq(r));
    }
    let rows = sel
        .order_by_desc(alert_history::Column::At)
        .limit(limit)
        .all(&st.db)
        .await?;
    let kinds = rule_kinds(&st, c.project.id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|h| {
                let labels = serde_json::from_str(&h.labels).unwrap_or_default();
                HistoryEntry {
                    id: h.id,
                    rule_id: h.rule_id,
                    rule_name: h.rule_name,
                    series: h.series,
                    from: AlertState::parse(&h.from_state).unwrap_or(AlertState::Inactive),
                    to: AlertState::parse(&h.to_state).unwrap_or(AlertState::Inactive),
                    at: h.at,
                    value_text: st.alerts.value_text(
                        c.project.id,
                        kinds
                            .get(&h.rule_id)
                            .copied()
                            .unwrap_or(RuleKind::Threshold),
                        &labels,
                        h.value,
                    ),
                    value: h.value,
                    summary: h.summary,
                    labels,
                    event: match h.event.as_str() {
                        "acknowledged" => HistoryEvent::Acknowledged,
                        "shelved" => HistoryEvent::Shelved,
                        _ => HistoryEvent::Transition,
                    },
                    by: h.actor,
                    comment: h.comment,
                    shelve_until: h.shelve_until,
                }
            })
            .collect(),
    ))
}
