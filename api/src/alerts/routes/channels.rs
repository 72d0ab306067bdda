//! Notification channels (webhook, email): list, create (the secret is
//! sealed under the master key and shown once), read, delete, "send test",
//! and each channel's delivery log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::target;
use crate::alerts::channel_from_row;
use lettre::transport::smtp::client::Certificate;

use crate::alerts::notify::email::{valid_mailbox, EmailConfig};
use crate::alerts::notify::{webhook, DeliveryResult};
use crate::alerts::rules::valid_label_name;
use crate::alerts::store::{alert_channel, alert_delivery};
use crate::audit;
use crate::auth::ClientMeta;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::secrets::channel;
use crate::state::AppState;

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

/// A webhook URL: http or https, a host name (its last label starting with
/// a letter, no "--"), an IPv4 address or a bracketed IPv6 address, an
/// optional port, path and query;
/// what this takes, the URL parser takes too.
pub const WEBHOOK_URL_PATTERN: &str = concat!(
    r"^https?://(([A-Za-z0-9]+(-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*",
    r"|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    r"|\[(([0-9A-Fa-f]{1,4}:){6}([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|::([0-9A-Fa-f]{1,4}:){5}([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|([0-9A-Fa-f]{1,4})?::([0-9A-Fa-f]{1,4}:){4}([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|(([0-9A-Fa-f]{1,4}:){0,1}[0-9A-Fa-f]{1,4})?::([0-9A-Fa-f]{1,4}:){3}([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|(([0-9A-Fa-f]{1,4}:){0,2}[0-9A-Fa-f]{1,4})?::([0-9A-Fa-f]{1,4}:){2}([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|(([0-9A-Fa-f]{1,4}:){0,3}[0-9A-Fa-f]{1,4})?::[0-9A-Fa-f]{1,4}:([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|(([0-9A-Fa-f]{1,4}:){0,4}[0-9A-Fa-f]{1,4})?::([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))|(([0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4})?::[0-9A-Fa-f]{1,4}|(([0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})?::)\])",
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?",
    r"(/[-A-Za-z0-9._~!$&'()*+,;=:@%/]*)?(\?[-A-Za-z0-9._~!$&'()*+,;=:@%/?]*)?$"
);
const URL_MAX: usize = 2048;
const SECRET_LEN: (usize, usize) = (16, 256);
const GROUP_BY_MAX: usize = 16;
const DAY: u64 = 24 * 3600;

static WEBHOOK_URL: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(WEBHOOK_URL_PATTERN).unwrap());

fn url_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(URL_MAX))
        .pattern(Some(WEBHOOK_URL_PATTERN))
        .build()
}

fn group_by_schema() -> Array {
    ArrayBuilder::new()
        .items(crate::extract::schema::label_name())
        .max_items(Some(GROUP_BY_MAX))
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    #[schema(example = "Control room", schema_with = crate::extract::schema::text::<1, 128>)]
    pub name: String,
    pub kind: ChannelType,
    /// Webhook: where to POST (http or https).
    #[serde(default)]
    #[schema(example = "https://hooks.example.org/weir", schema_with = url_schema)]
    pub url: Option<String>,
    /// Webhook: HMAC-SHA256 signing secret of 16-256 characters (generated
    /// when absent). Shown only in this response.
    #[serde(default)]
    #[schema(min_length = 16, max_length = 256)]
    pub secret: Option<String>,
    /// Email: SMTP settings and recipients.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Email: SMTP password (with `email.smtp_username`). Never shown again.
    #[serde(default)]
    pub smtp_password: Option<String>,
    /// Labels whose values make one group (one notice per group); up to 16.
    #[serde(default = "default_group_by")]
    #[schema(schema_with = group_by_schema)]
    pub group_by: Vec<String>,
    /// Wait before the first notice of a new group, seconds (default 30).
    #[serde(default = "default_wait", deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 0, maximum = 86400)]
    pub group_wait_secs: u64,
    /// Least time between notices of a changed group, seconds (default 300).
    #[serde(
        default = "default_interval",
        deserialize_with = "crate::extract::int::de"
    )]
    #[schema(minimum = 0, maximum = 86400)]
    pub group_interval_secs: u64,
    /// Send an unchanged firing group again after this many seconds (default 14400).
    #[serde(
        default = "default_repeat",
        deserialize_with = "crate::extract::int::de"
    )]
    #[schema(minimum = 1, maximum = 2592000)]
    pub repeat_interval_secs: u64,
}

// The kind decides the fields: a webhook needs `url` and takes no `email`;
// an email channel needs `email` and takes no `url` nor `secret` (null is
// the same as absent).
crate::body_rule!(
    CreateChannelBody,
    CreateChannel,
    serde_json::json!({"oneOf": [
        {"required": ["kind", "url"], "properties": {
            "kind": {"const": "webhook"}, "url": {"type": "string"}, "email": {"type": "null"},
        }},
        {"required": ["kind", "email"], "properties": {
            "kind": {"const": "email"}, "email": {"type": "object"},
            "url": {"type": "null"}, "secret": {"type": "null"},
        }},
    ]})
);

impl Validate for CreateChannel {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::text(&mut e, "name", &self.name, 1, 128);
        match self.kind {
            ChannelType::Webhook => {
                match self.url.as_deref() {
                    Some(u)
                        if u.len() <= URL_MAX
                            && WEBHOOK_URL.is_match(u)
                            && url::Url::parse(u).is_ok_and(|u| u.host_str().is_some()) => {}
                    _ => e.push(FieldError::new(
                        "url",
                        "required: an http or https URL with a host name or an IP address",
                    )),
                }
                if let Some(s) = &self.secret {
                    let n = s.chars().count();
                    if n < SECRET_LEN.0 || n > SECRET_LEN.1 {
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
                    if !valid_mailbox(&m.from) {
                        e.push(FieldError::new("email.from", "must be an email address"));
                    }
                    if m.to.is_empty() || m.to.len() > 50 {
                        e.push(FieldError::new("email.to", "between 1 and 50 recipients"));
                    }
                    for (i, t) in m.to.iter().enumerate() {
                        if !valid_mailbox(t) {
                            e.push(FieldError::new(
                                format!("email.to[{i}]"),
                                "must be an email address",
                            ));
                        }
                    }
                    if m.tls_ca_pem.as_ref().is_some_and(|p| {
                        p.chars().count() > 16_384 || Certificate::from_pem(p.as_bytes()).is_err()
                    }) {
                        e.push(FieldError::new(
                            "email.tls_ca_pem",
                            "a PEM certificate (at most 16 KiB)",
                        ));
                    }
                    if self.url.is_some() || self.secret.is_some() {
                        e.push(FieldError::new("url", "only for webhook channels"));
                    }
                }
            },
        }
        if self.group_by.len() > GROUP_BY_MAX || self.group_by.iter().any(|l| !valid_label_name(l))
        {
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
            .then(|| serde_json::from_value::<EmailConfig>(cfg).ok())
            .flatten()
            .map(|mut m| {
                m.tls = Some(m.tls_mode());
                m
            }),
        has_secret: !m.secret.is_empty(),
        group_by: serde_json::from_str(&m.group_by).unwrap_or_default(),
        group_wait_secs: m.group_wait_secs as u64,
        group_interval_secs: m.group_interval_secs as u64,
        repeat_interval_secs: m.repeat_interval_secs as u64,
        created_at: m.created_at,
    }
}

async fn find_channel(
    st: &AppState,
    c: &ProjectAccess,
    id: Uuid,
) -> Result<alert_channel::Model, ApiError> {
    alert_channel::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .filter(|r| r.project_id == c.project.id)
        .ok_or(ApiError::NotFound)
}

/// A target given as a literal address is judged by the outbound policy
/// now (names are judged when resolved, at every send). A refusal is 409:
/// it depends on this server's `WEIR_OUTBOUND_ALLOW_CIDRS`, which the
/// OpenAPI document cannot state.
fn check_target(st: &AppState, req: &CreateChannel) -> Result<(), ApiError> {
    let policy = st.config.outbound();
    if let Some(url) = &req.url {
        webhook::check_url(&policy, url)
            .map_err(|e| ApiError::outbound_refused("url", e.trim_start_matches("url: ")))?;
    }
    if let Some(m) = &req.email {
        policy
            .check_literal(&m.smtp_host)
            .map_err(|r| ApiError::outbound_refused("email.smtp_host", r.to_string()))?;
    }
    Ok(())
}

/// Notification channels of a project (secrets are never shown).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<NotificationChannel>), ProblemResponses))]
pub(super) async fn list_channels(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<NotificationChannel>>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
    let rows = alert_channel::Entity::find()
        .filter(alert_channel::Column::ProjectId.eq(c.project.id))
        .order_by_asc(alert_channel::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(rows.iter().map(channel_out).collect()))
}

/// Create a webhook or email channel.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels", tag = "alerts", request_body = CreateChannelBody,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = CreatedChannel), ProblemResponses))]
pub(super) async fn create_channel(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateChannel>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let c = scope.require(Permission::ProjectWrite).await?;
    check_target(&st, &req)?;
    let (kind, config, secret, shown) = match req.kind {
        ChannelType::Webhook => {
            let s = req
                .secret
                .clone()
                .unwrap_or_else(crate::secrets::random_token);
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
        channel::seal(st.fleet.master()?, id, &secret)
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
        c.event("alert_channel.create", target(&c, "alert-channel", m.id))
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
pub(super) async fn get_channel(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<Json<NotificationChannel>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
    Ok(Json(channel_out(&find_channel(&st, &c, id).await?)))
}

/// Delete a channel.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("channel" = Uuid, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
pub(super) async fn delete_channel(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let c = scope.require(Permission::ProjectWrite).await?;
    let m = find_channel(&st, &c, id).await?;
    let tx = st.write().await?;
    alert_channel::Entity::delete_by_id(id).exec(&*tx).await?;
    audit::append(
        &*tx,
        c.event("alert_channel.delete", target(&c, "alert-channel", id))
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
pub(super) async fn test_channel(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<Json<TestResult>, ApiError> {
    let c = scope.require(Permission::ProjectWrite).await?;
    let m = find_channel(&st, &c, id).await?;
    let ch = channel_from_row(&m, st.alerts.master_key()).ok_or_else(|| {
        ApiError::internal("stored channel is unreadable (its secret cannot be opened)")
    })?;
    let res = st.alerts.send_test(ch).await?;
    let tx = st.write().await?;
    audit::append(
        &*tx,
        c.event("alert_channel.test", target(&c, "alert-channel", id))
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
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Newest first; at most 1000 (default 100).
    pub limit: Option<u64>,
}

/// Delivery log of a channel, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/channels/{channel}/deliveries", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("channel" = Uuid, Path), DeliveriesQuery), responses((status = 200, body = Vec<Delivery>), ProblemResponses))]
pub(super) async fn list_deliveries(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_patterns_take_parses() {
        for u in [
            "http://a",
            "https://hooks.example.org:8443/weir?x=1&y=%20",
            "http://127.0.0.1:9/hook",
            "http://0x1.a-b.c9:0",
            "http://[::1]:9/x",
            "http://[::ffff:127.0.0.1]:9/x",
            "http://[fd00:ec2::254]/",
            "http://[1:2:3:4:5:6:7:8]",
            "http://[1::]",
            "https://x.y/a/b//c?q?r/s",
        ] {
            assert!(WEBHOOK_URL.is_match(u), "{u}");
            assert!(url::Url::parse(u).unwrap().host_str().is_some(), "{u}");
        }
        for u in [
            "http://1.2.3.256",
            "http://a.0x1",
            "http://xn--a.org",
            "http://a:65536",
            "ftp://a",
            " http://a",
            "http://[1:2:3:4:5:6:7:8:9]",
            "http://[:::1]",
        ] {
            assert!(!WEBHOOK_URL.is_match(u), "{u}");
        }
        for m in [
            "a@b",
            "o'neil+x@ex-1.example.org",
            "!#$%&'*+/=?^_`{|}~-.a@1.2.3.4",
        ] {
            assert!(valid_mailbox(m), "{m}");
        }
        let long = "OHNWT0#8W%^$0u.$rXwl.Z-^l&!~*2Sr#x.R5^0{$j-!Qw1.iPJ`W%0mJ5LAS&.w.{Ygwh2.&0@k";
        assert!(!valid_mailbox(long), "local part over 64");
        assert!(valid_mailbox(&format!("{}@k", "a".repeat(64))));
        for m in ["Ops <ops@example.org>", "a..b@c", "a@-b", "a@b."] {
            assert!(!valid_mailbox(m), "{m}");
        }
    }
}
