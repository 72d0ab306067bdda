//! `/api/v1/orgs/{org}/projects/{project}/alerts/...`: rules, active alerts,
//! history, silences, channels (with "send test" and the delivery log).
//! Viewers read (`project.read`), editors change (`project.write`); every
//! change is audited.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::engine::AlertState;
use super::notify::email::{parse_mailbox, EmailConfig};
use super::notify::DeliveryResult;
use super::rules::{valid_label_name, RuleKind, RuleSpec};
use super::silences::{CreateSilence, Matcher, Mute};
use super::store::{
    alert_channel, alert_delivery, alert_history, alert_rule, alert_silence, alert_state,
};
use super::{channel_from_row, mute_fn, silence_from_row};
use crate::audit::{self, AuditEvent};
use crate::auth::{check, load_project, Auth, ClientMeta};
use crate::db::entities::{org, project};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(list_active))
        .routes(routes!(list_history))
        .routes(routes!(list_silences, create_silence))
        .routes(routes!(expire_silence))
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, delete_channel))
        .routes(routes!(test_channel))
        .routes(routes!(list_deliveries))
}

struct Ctx {
    org: org::Model,
    project: project::Model,
}

async fn ctx(
    st: &AppState,
    auth: &Auth,
    org: &str,
    project: &str,
    perm: Permission,
) -> Result<Ctx, ApiError> {
    let (o, p, grants) = load_project(st, auth, org, project).await?;
    check(
        &grants,
        st,
        perm,
        Domain::Project {
            org: o.id,
            project: p.id,
        },
    )?;
    Ok(Ctx { org: o, project: p })
}

impl Ctx {
    fn event(&self, auth: &Auth, action: &str, target: String) -> AuditEvent {
        AuditEvent::by(auth, action, target)
            .org(self.org.id)
            .project(self.project.id)
    }
    fn target(&self, what: &str, id: Uuid) -> String {
        format!("{what}:{}/{}/{id}", self.org.slug, self.project.slug)
    }
}

// ---------------------------------------------------------------- rules

#[derive(Debug, Serialize, ToSchema)]
pub struct Rule {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn rule_out(m: alert_rule::Model) -> Result<Rule, ApiError> {
    Ok(Rule {
        id: m.id,
        spec: serde_json::from_str(&m.spec).map_err(ApiError::internal)?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

async fn check_channels(st: &AppState, project: Uuid, spec: &RuleSpec) -> Result<(), ApiError> {
    for (i, c) in spec.channels.iter().enumerate() {
        let found = alert_channel::Entity::find_by_id(*c).one(&st.db).await?;
        if found.is_none_or(|ch| ch.project_id != project) {
            return Err(ApiError::invalid(
                &format!("channels[{i}]"),
                "no such channel in this project",
            ));
        }
    }
    Ok(())
}

async fn find_rule(st: &AppState, c: &Ctx, id: Uuid) -> Result<alert_rule::Model, ApiError> {
    alert_rule::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .filter(|r| r.project_id == c.project.id)
        .ok_or(ApiError::NotFound)
}

/// Alert rules of a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Rule>), ProblemResponses))]
async fn list_rules(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project)): ApiPath<(String, String)>,
) -> Result<Json<Vec<Rule>>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    let rows = alert_rule::Entity::find()
        .filter(alert_rule::Column::ProjectId.eq(c.project.id))
        .order_by_asc(alert_rule::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter().map(rule_out).collect::<Result<_, _>>()?,
    ))
}

/// Create an alert rule.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules", tag = "alerts", request_body = RuleSpec,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Rule), ProblemResponses))]
async fn create_rule(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    check_channels(&st, c.project.id, &spec).await?;
    let now = Utc::now();
    let tx = st.write().await?;
    let m = alert_rule::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(c.project.id),
        org_id: Set(c.org.id),
        name: Set(spec.name.clone()),
        spec: Set(serde_json::to_string(&spec).map_err(ApiError::internal)?),
        enabled: Set(spec.enabled),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await?;
    audit::append(
        &*tx,
        c.event(&auth, "alert_rule.create", c.target("alert-rule", m.id))
            .details(serde_json::json!({"name": spec.name, "kind": spec.kind})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok((StatusCode::CREATED, Json(rule_out(m)?)))
}

/// One alert rule.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules/{rule}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("rule" = Uuid, Path)), responses((status = 200, body = Rule), ProblemResponses))]
async fn get_rule(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<Json<Rule>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    Ok(Json(rule_out(find_rule(&st, &c, id).await?)?))
}

/// Replace an alert rule (its alerts keep their state).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules/{rule}", tag = "alerts", request_body = RuleSpec,
    params(("org" = String, Path), ("project" = String, Path), ("rule" = Uuid, Path)), responses((status = 200, body = Rule), ProblemResponses))]
async fn update_rule(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<Json<Rule>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let old = find_rule(&st, &c, id).await?;
    check_channels(&st, c.project.id, &spec).await?;
    let tx = st.write().await?;
    let mut am: alert_rule::ActiveModel = old.into();
    am.name = Set(spec.name.clone());
    am.spec = Set(serde_json::to_string(&spec).map_err(ApiError::internal)?);
    am.enabled = Set(spec.enabled);
    am.updated_at = Set(Utc::now());
    let m = am.update(&*tx).await?;
    audit::append(
        &*tx,
        c.event(&auth, "alert_rule.update", c.target("alert-rule", id))
            .details(serde_json::to_value(&spec).unwrap_or_default()),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok(Json(rule_out(m)?))
}

/// Delete an alert rule; its firing alerts resolve.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules/{rule}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("rule" = Uuid, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_rule(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let r = find_rule(&st, &c, id).await?;
    let tx = st.write().await?;
    alert_rule::Entity::delete_by_id(id).exec(&*tx).await?;
    // Pending alerts just vanish; firing ones resolve through the engine.
    alert_state::Entity::delete_many()
        .filter(alert_state::Column::RuleId.eq(id))
        .filter(alert_state::Column::State.eq(AlertState::Pending.as_str()))
        .exec(&*tx)
        .await?;
    audit::append(
        &*tx,
        c.event(&auth, "alert_rule.delete", c.target("alert-rule", id))
            .details(serde_json::json!({"name": r.name})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- active + history

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
    /// When the condition started to hold.
    pub since: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
}

/// Pending and firing alerts, with whether they are silenced or inhibited.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/active", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<ActiveAlert>), ProblemResponses))]
async fn list_active(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project)): ApiPath<(String, String)>,
) -> Result<Json<Vec<ActiveAlert>>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    let now = st.alerts.now_ms();
    let kinds: HashMap<Uuid, RuleKind> = alert_rule::Entity::find()
        .filter(alert_rule::Column::ProjectId.eq(c.project.id))
        .all(&st.db)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.id, serde_json::from_str::<RuleSpec>(&r.spec).ok()?.kind)))
        .collect();
    let rows = alert_state::Entity::find()
        .filter(alert_state::Column::ProjectId.eq(c.project.id))
        .filter(
            alert_state::Column::State
                .is_in([AlertState::Pending.as_str(), AlertState::Firing.as_str()]),
        )
        .order_by_asc(alert_state::Column::Since)
        .all(&st.db)
        .await?;
    let silences: Vec<_> = alert_silence::Entity::find()
        .filter(alert_silence::Column::ProjectId.eq(c.project.id))
        .all(&st.db)
        .await?
        .iter()
        .map(silence_from_row)
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
        .map(|(r, state, kind, labels)| {
            let status = match mute(c.project.id, *kind, labels) {
                Mute::None => AlertStatus::Active,
                Mute::Silenced => AlertStatus::Silenced,
                Mute::Inhibited => AlertStatus::Inhibited,
            };
            ActiveAlert {
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
                since: r.since,
                fired_at: r.fired_at,
            }
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
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
    pub summary: String,
    pub labels: BTreeMap<String, String>,
}

/// State transitions, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/history", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), HistoryQuery), responses((status = 200, body = Vec<HistoryEntry>), ProblemResponses))]
async fn list_history(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
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
    Ok(Json(
        rows.into_iter()
            .map(|h| HistoryEntry {
                id: h.id,
                rule_id: h.rule_id,
                rule_name: h.rule_name,
                series: h.series,
                from: AlertState::parse(&h.from_state).unwrap_or(AlertState::Inactive),
                to: AlertState::parse(&h.to_state).unwrap_or(AlertState::Inactive),
                at: h.at,
                value: h.value,
                summary: h.summary,
                labels: serde_json::from_str(&h.labels).unwrap_or_default(),
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------- silences

#[derive(Debug, Serialize, ToSchema)]
pub struct Silence {
    pub id: Uuid,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub author: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// In effect now.
    pub active: bool,
}

fn silence_out(m: alert_silence::Model, now_ms: i64) -> Silence {
    Silence {
        id: m.id,
        matchers: serde_json::from_str(&m.matchers).unwrap_or_default(),
        active: m.starts_at.timestamp_millis() <= now_ms && now_ms < m.ends_at.timestamp_millis(),
        starts_at: m.starts_at,
        ends_at: m.ends_at,
        author: m.author,
        comment: m.comment,
        created_at: m.created_at,
    }
}

/// Silences of a project, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/silences", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Silence>), ProblemResponses))]
async fn list_silences(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project)): ApiPath<(String, String)>,
) -> Result<Json<Vec<Silence>>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    let now = st.alerts.now_ms();
    let rows = alert_silence::Entity::find()
        .filter(alert_silence::Column::ProjectId.eq(c.project.id))
        .order_by_desc(alert_silence::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter().map(|m| silence_out(m, now)).collect(),
    ))
}

/// Silence alerts whose labels match, from `starts_at` (default now) to `ends_at`.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/silences", tag = "alerts", request_body = CreateSilence,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Silence), ProblemResponses))]
async fn create_silence(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateSilence>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let now_ms = st.alerts.now_ms();
    let starts = req
        .starts_at
        .unwrap_or_else(|| super::store::to_time(now_ms));
    if req.ends_at <= starts {
        return Err(ApiError::invalid("ends_at", "must be after starts_at"));
    }
    let tx = st.write().await?;
    let m = alert_silence::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(c.project.id),
        matchers: Set(serde_json::to_string(&req.matchers).map_err(ApiError::internal)?),
        starts_at: Set(starts),
        ends_at: Set(req.ends_at),
        author: Set(auth.user.email.clone()),
        comment: Set(req.comment.clone()),
        created_at: Set(Utc::now()),
    }
    .insert(&*tx)
    .await?;
    audit::append(
        &*tx,
        c.event(&auth, "alert_silence.create", c.target("alert-silence", m.id))
            .details(serde_json::json!({"matchers": req.matchers, "starts_at": starts, "ends_at": req.ends_at, "comment": req.comment})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok((StatusCode::CREATED, Json(silence_out(m, now_ms))))
}

/// End a silence now (it stays in the list, inactive).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/alerts/silences/{silence}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("silence" = Uuid, Path)), responses((status = 204, description = "Expired"), ProblemResponses))]
async fn expire_silence(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let m = alert_silence::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .filter(|s| s.project_id == c.project.id)
        .ok_or(ApiError::NotFound)?;
    let now = super::store::to_time(st.alerts.now_ms());
    let tx = st.write().await?;
    let mut am: alert_silence::ActiveModel = m.clone().into();
    if m.ends_at > now {
        am.ends_at = Set(now.max(m.starts_at));
        am.update(&*tx).await?;
    }
    audit::append(
        &*tx,
        c.event(&auth, "alert_silence.expire", c.target("alert-silence", id)),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- channels

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Webhook,
    Email,
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".into()]
}
fn default_wait() -> u64 {
    30
}
fn default_interval() -> u64 {
    300
}
fn default_repeat() -> u64 {
    4 * 3600
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    #[schema(min_length = 1, max_length = 128, example = "Control room")]
    pub name: String,
    pub kind: ChannelType,
    /// Webhook: where to POST (http or https).
    #[serde(default)]
    #[schema(example = "https://hooks.example.org/weir")]
    pub url: Option<String>,
    /// Webhook: HMAC-SHA256 signing secret (generated when absent). Shown only in this response.
    #[serde(default)]
    pub secret: Option<String>,
    /// Email: SMTP settings and recipients.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Email: SMTP password (with `email.smtp_username`). Never shown again.
    #[serde(default)]
    pub smtp_password: Option<String>,
    /// Labels whose values make one group (one notice per group).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// Wait before the first notice of a new group, seconds.
    #[serde(default = "default_wait")]
    pub group_wait_secs: u64,
    /// Least time between notices of a changed group, seconds.
    #[serde(default = "default_interval")]
    pub group_interval_secs: u64,
    /// Send an unchanged firing group again after this many seconds.
    #[serde(default = "default_repeat")]
    pub repeat_interval_secs: u64,
}

const DAY: u64 = 24 * 3600;

impl Validate for CreateChannel {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::text(&mut e, "name", &self.name, 1, 128);
        match self.kind {
            ChannelType::Webhook => {
                match self.url.as_deref().map(url::Url::parse) {
                    Some(Ok(u))
                        if matches!(u.scheme(), "http" | "https")
                            && u.host_str().is_some()
                            && self.url.as_ref().is_some_and(|s| s.len() <= 2048) => {}
                    _ => e.push(FieldError::new("url", "required: an http or https URL")),
                }
                if let Some(s) = &self.secret {
                    if s.len() < 16 || s.len() > 256 {
                        e.push(FieldError::new("secret", "between 16 and 256 characters"));
                    }
                }
                if self.email.is_some() {
                    e.push(FieldError::new("email", "only for email channels"));
                }
            }
            ChannelType::Email => match &self.email {
                None => e.push(FieldError::new("email", "required for email channels")),
                Some(m) => {
                    chk::text(&mut e, "email.smtp_host", &m.smtp_host, 1, 253);
                    if m.smtp_port == 0 {
                        e.push(FieldError::new("email.smtp_port", "must be 1-65535"));
                    }
                    if parse_mailbox(&m.from).is_none() {
                        e.push(FieldError::new("email.from", "must be an email address"));
                    }
                    if m.to.is_empty() || m.to.len() > 50 {
                        e.push(FieldError::new("email.to", "between 1 and 50 recipients"));
                    }
                    for (i, t) in m.to.iter().enumerate() {
                        if parse_mailbox(t).is_none() {
                            e.push(FieldError::new(
                                format!("email.to[{i}]"),
                                "must be an email address",
                            ));
                        }
                    }
                    if self.url.is_some() || self.secret.is_some() {
                        e.push(FieldError::new("url", "only for webhook channels"));
                    }
                }
            },
        }
        if self.group_by.len() > 16 || self.group_by.iter().any(|l| !valid_label_name(l)) {
            e.push(FieldError::new("group_by", "up to 16 label names"));
        }
        if self.group_wait_secs > DAY {
            e.push(FieldError::new("group_wait_secs", "at most 86400"));
        }
        if self.group_interval_secs > DAY {
            e.push(FieldError::new("group_interval_secs", "at most 86400"));
        }
        if self.repeat_interval_secs == 0 || self.repeat_interval_secs > 30 * DAY {
            e.push(FieldError::new(
                "repeat_interval_secs",
                "between 1 and 2592000",
            ));
        }
        chk::finish(e)
    }
}

/// A channel as shown: never with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationChannel {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// A secret is set (webhook signing secret or SMTP password).
    pub has_secret: bool,
    pub group_by: Vec<String>,
    pub group_wait_secs: u64,
    pub group_interval_secs: u64,
    pub repeat_interval_secs: u64,
    pub created_at: DateTime<Utc>,
}

/// The answer to creating a channel: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: NotificationChannel,
    /// Webhook signing secret (verify `X-Weir-Signature: sha256=<hex HMAC-SHA256 of the body>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn channel_out(m: &alert_channel::Model) -> NotificationChannel {
    let cfg: serde_json::Value = serde_json::from_str(&m.config).unwrap_or_default();
    let kind = if m.kind == "email" {
        ChannelType::Email
    } else {
        ChannelType::Webhook
    };
    NotificationChannel {
        id: m.id,
        name: m.name.clone(),
        kind,
        url: (kind == ChannelType::Webhook).then(|| {
            cfg.get("url")
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .to_string()
        }),
        email: (kind == ChannelType::Email)
            .then(|| serde_json::from_value(cfg).ok())
            .flatten(),
        has_secret: !m.secret.is_empty(),
        group_by: serde_json::from_str(&m.group_by).unwrap_or_default(),
        group_wait_secs: m.group_wait_secs as u64,
        group_interval_secs: m.group_interval_secs as u64,
        repeat_interval_secs: m.repeat_interval_secs as u64,
        created_at: m.created_at,
    }
}

async fn find_channel(st: &AppState, c: &Ctx, id: Uuid) -> Result<alert_channel::Model, ApiError> {
    alert_channel::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .filter(|r| r.project_id == c.project.id)
        .ok_or(ApiError::NotFound)
}

/// Notification channels of a project (secrets are never shown).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<NotificationChannel>), ProblemResponses))]
async fn list_channels(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project)): ApiPath<(String, String)>,
) -> Result<Json<Vec<NotificationChannel>>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    let rows = alert_channel::Entity::find()
        .filter(alert_channel::Column::ProjectId.eq(c.project.id))
        .order_by_asc(alert_channel::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(rows.iter().map(channel_out).collect()))
}

/// Create a webhook or email channel.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels", tag = "alerts", request_body = CreateChannel,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = CreatedChannel), ProblemResponses))]
async fn create_channel(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateChannel>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let (kind, config, secret, shown) = match req.kind {
        ChannelType::Webhook => {
            let s = req
                .secret
                .clone()
                .unwrap_or_else(crate::auth::secrets::random_token);
            (
                "webhook",
                serde_json::json!({"url": req.url}),
                s.clone(),
                Some(s),
            )
        }
        ChannelType::Email => (
            "email",
            serde_json::to_value(&req.email).map_err(ApiError::internal)?,
            req.smtp_password.clone().unwrap_or_default(),
            None,
        ),
    };
    // The secret is stored sealed under the master key, bound to this row.
    let id = Uuid::new_v4();
    let sealed = if secret.is_empty() {
        String::new()
    } else {
        super::secrets::seal(st.fleet.master()?, id, &secret)
    };
    drop(secret);
    let tx = st.write().await?;
    let m = alert_channel::ActiveModel {
        id: Set(id),
        project_id: Set(c.project.id),
        name: Set(req.name.trim().to_string()),
        kind: Set(kind.into()),
        config: Set(config.to_string()),
        secret: Set(sealed),
        group_by: Set(serde_json::to_string(&req.group_by).map_err(ApiError::internal)?),
        group_wait_secs: Set(req.group_wait_secs as i64),
        group_interval_secs: Set(req.group_interval_secs as i64),
        repeat_interval_secs: Set(req.repeat_interval_secs as i64),
        created_at: Set(Utc::now()),
    }
    .insert(&*tx)
    .await?;
    // The audit entry names the channel and its settings, never the secret.
    audit::append(
        &*tx,
        c.event(
            &auth,
            "alert_channel.create",
            c.target("alert-channel", m.id),
        )
        .details(serde_json::json!({"name": m.name, "kind": kind, "config": config})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannel {
            channel: channel_out(&m),
            secret: shown,
        }),
    ))
}

/// One channel (without its secret).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("channel" = Uuid, Path)), responses((status = 200, body = NotificationChannel), ProblemResponses))]
async fn get_channel(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<Json<NotificationChannel>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    Ok(Json(channel_out(&find_channel(&st, &c, id).await?)))
}

/// Delete a channel.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("channel" = Uuid, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_channel(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let m = find_channel(&st, &c, id).await?;
    let tx = st.write().await?;
    alert_channel::Entity::delete_by_id(id).exec(&*tx).await?;
    audit::append(
        &*tx,
        c.event(&auth, "alert_channel.delete", c.target("alert-channel", id))
            .details(serde_json::json!({"name": m.name})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub ok: bool,
    pub attempts: u32,
    /// HTTP status of the last webhook attempt.
    pub http_status: Option<i32>,
    pub error: String,
}

impl From<DeliveryResult> for TestResult {
    fn from(r: DeliveryResult) -> Self {
        Self {
            ok: r.ok,
            attempts: r.attempts,
            http_status: r.http_status,
            error: r.error,
        }
    }
}

/// Send a test notification through the channel now (with retries) and tell how it went.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}/test", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("channel" = Uuid, Path)), responses((status = 200, body = TestResult), ProblemResponses))]
async fn test_channel(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<Json<TestResult>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectWrite).await?;
    let m = find_channel(&st, &c, id).await?;
    let ch = channel_from_row(&m, st.alerts.master_key()).ok_or_else(|| {
        ApiError::internal("stored channel is unreadable (its secret cannot be opened)")
    })?;
    let res = st.alerts.send_test(ch).await?;
    let tx = st.write().await?;
    audit::append(
        &*tx,
        c.event(&auth, "alert_channel.test", c.target("alert-channel", id))
            .outcome(if res.ok { audit::Outcome::Success } else { audit::Outcome::Failure })
            .details(serde_json::json!({"attempts": res.attempts, "http_status": res.http_status, "error": res.error})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(res.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// firing, resolved or test
    pub kind: String,
    pub group_key: String,
    pub alerts: i32,
    pub attempts: i32,
    pub ok: bool,
    pub http_status: Option<i32>,
    pub error: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Newest first; at most 1000 (default 100).
    pub limit: Option<u64>,
}

/// Delivery log of a channel, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}/deliveries", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("channel" = Uuid, Path), DeliveriesQuery), responses((status = 200, body = Vec<Delivery>), ProblemResponses))]
async fn list_deliveries(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath((org, project, id)): ApiPath<(String, String, Uuid)>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let c = ctx(&st, &auth, &org, &project, Permission::ProjectRead).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "between 1 and 1000"));
    }
    find_channel(&st, &c, id).await?;
    let rows = alert_delivery::Entity::find()
        .filter(alert_delivery::Column::ChannelId.eq(id))
        .order_by_desc(alert_delivery::Column::At)
        .limit(limit)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|d| Delivery {
                id: d.id,
                at: d.at,
                kind: d.kind,
                group_key: d.group_key,
                alerts: d.alerts,
                attempts: d.attempts,
                ok: d.ok,
                http_status: d.http_status,
                error: d.error,
            })
            .collect(),
    ))
}
