//! Setpoint writes: `POST
//! /api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/writes` with
//! `{device, tag, value, comment}`.
//!
//! The tag must be in the gateway's current config with the `write`
//! attribute, and the value must fit its type and its `writeMin`/`writeMax`
//! ([`weir_crds::gateway::write::check_write`], which the agent applies
//! again). The api then publishes the request on the gateway's command
//! topic with its own broker identity ([`broker`]: the api's row of the ACL
//! table, never an admin login), waits for the agent's answer
//! (`WEIR_WRITE_TIMEOUT_MS`, [`command`]) and returns it.
//!
//! Who: `project.operate` (operators, editors, admins). Every write that
//! reaches the broker is audited (`gateway.write`) with the old value (the
//! historian's newest reading, when there is one), the new value, the
//! result and the comment, whatever the agent answered, also when it did
//! not answer. Refusals before that (no such tag, a value out of limits)
//! change nothing and are not audited, like other invalid requests.

pub mod broker;
pub mod command;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::{Duration, Instant};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use weir_crds::gateway::Tag;
use weir_crds::message::{command_response_topic, command_topic, TagValue, WriteRequest};

use super::entities::gateway;
use super::gateways::{current_spec, find_gateway};
use crate::audit::{self, Outcome};
use crate::auth::ClientMeta;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;
use command::CommandError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_write))
}

/// Body of `POST …/writes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteBody {
    /// A device of the gateway's current config.
    #[schema(schema_with = crate::extract::schema::text::<1, 63>)]
    pub device: String,
    /// A tag of that device with the `write` attribute.
    #[schema(schema_with = crate::extract::schema::text::<1, 64>)]
    pub tag: String,
    /// The new value, in the tag's unit (scale and offset are undone by
    /// the agent): a number, a bool (true/false) or text for string tags.
    #[schema(schema_with = value_schema)]
    pub value: TagValue,
    /// Why, for the audit log (up to 500 characters).
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 500>)]
    pub comment: Option<String>,
}

/// A number, a bool or text (utoipa has no `oneOf` of bare types: the
/// keyword rides along on a typeless schema, as in `fields_and_rule`).
fn value_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType};
    let Value::Object(keywords) = json!({"oneOf": [
        {"type": "number"},
        {"type": "boolean"},
        {"type": "string", "maxLength": 256}
    ]}) else {
        unreachable!("a JSON object")
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .extensions(Some(keywords.into_iter().collect()))
        .build()
}

impl Validate for WriteBody {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::text(&mut e, "device", &self.device, 1, 63);
        chk::text(&mut e, "tag", &self.tag, 1, 64);
        if let TagValue::Text(t) = &self.value {
            if t.chars().count() > 256 {
                e.push(FieldError::new("value", "at most 256 characters"));
            }
        }
        if let Some(c) = &self.comment {
            chk::text(&mut e, "comment", c, 0, 500);
        }
        chk::finish(e)
    }
}

/// The tag's newest reading before the write, from the historian.
#[derive(Debug, Serialize, ToSchema, Clone)]
pub struct OldValue {
    pub ts: DateTime<Utc>,
    /// Its number (bools as 1 or 0); null for text and read errors.
    pub value: Option<f64>,
    /// Its text, for text tags.
    pub value_text: Option<String>,
    /// The agent's error code when that reading was a read error.
    pub error_code: Option<i32>,
}

/// The agent's answer to a write.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResult {
    pub device: String,
    pub tag: String,
    /// The value sent to the agent (bools given as 1/0 are sent as bools,
    /// whole numbers for integer tags as integers).
    #[schema(schema_with = value_schema)]
    pub value: TagValue,
    /// The newest reading before the write; null when the historian has
    /// none (or the api has no historian database).
    pub old_value: Option<OldValue>,
    /// The agent wrote the value to the device.
    pub ok: bool,
    /// Why the agent or the device refused it, when `ok` is false.
    pub error: Option<String>,
    /// The request's id on the command topic (also in the audit entry).
    pub correlation_id: String,
    /// From the request reaching the api to the agent's answer.
    pub answered_in_ms: u64,
}

/// Write a setpoint to a tag, through the gateway's agent.
///
/// Checks the tag (in the current config, with the `write` attribute) and
/// the value (its type, `writeMin`/`writeMax`), publishes the request on
/// the gateway's `cmd/write` topic with the api's own broker identity,
/// and returns the agent's answer: `ok` true when the device took the
/// value, false with the agent's reason when it (or the device) refused.
/// 504 when no answer came within `WEIR_WRITE_TIMEOUT_MS` (the write may or
/// may not have reached the device); 503 when the broker cannot be
/// reached; 409 when the gateway has no cluster or the config refuses the
/// tag or value. Needs `project.operate`; every write that reached the
/// broker is audited (`gateway.write`) with old and new value, result and
/// comment.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/writes", tag = "fleet",
    request_body = WriteBody,
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)),
    responses((status = 200, body = WriteResult),
        (status = 503, description = "The gateway's broker cannot be reached with the api's identity", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "The agent did not answer in time", body = crate::error::Problem, content_type = "application/problem+json"),
        ProblemResponses))]
async fn post_write(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<WriteBody>,
) -> Result<Json<WriteResult>, ApiError> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(st.fleet.config.write_timeout_ms);
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectOperate)?;
    let spec = current_spec(&st.db, &g).await?;
    let tag = find_tag(&spec, &g, &body.device, &body.tag)?;
    let value = weir_crds::gateway::write::check_write(&tag, &body.value)
        .map_err(|e| refused("value", e))?;
    let prefix = spec["uplink"]["topicPrefix"]
        .as_str()
        .unwrap_or("weir")
        .to_string();
    let opts = broker::options(&st, &at.org, &g).await?;
    let old_value = old_value(&st, &at, &g, &body).await;
    let req = WriteRequest {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        device: body.device.clone(),
        tag: body.tag.clone(),
        value: value.clone(),
    };
    let topic = command_topic(&prefix, &at.org.slug, &g.slug);
    let resp_topic = command_response_topic(&prefix, &at.org.slug, &g.slug);
    let answer = command::round_trip(opts, &topic, &resp_topic, &req, deadline).await;
    let elapsed = started.elapsed().as_millis() as u64;
    let (answer, result) = match answer {
        Ok(r) if r.ok => (Some(r), "ok"),
        Ok(r) => (Some(r), "refused"),
        Err(CommandError::NoAnswer) => (None, "timeout"),
        Err(CommandError::Broker(e)) => {
            tracing::warn!(gateway = %g.slug, error = %e, "write: the gateway's broker cannot be reached");
            return Err(ApiError::Unavailable(format!(
                "cannot reach gateway '{}' through its MQTT broker: {e}",
                g.slug
            )));
        }
    };
    let error = answer.as_ref().and_then(|r| r.error.clone());
    let target = format!(
        "gateway:{}/{}/{}/{}/{}",
        at.org.slug, at.project.slug, g.slug, body.device, body.tag
    );
    let details = json!({
        "device": body.device,
        "tag": body.tag,
        "old_value": old_value,
        "new_value": req.value,
        "result": result,
        "error": error,
        "comment": body.comment,
        "correlation_id": req.correlation_id,
    });
    audit_write(&st, &at, &meta, target, result == "ok", details).await?;
    let Some(answer) = answer else {
        return Err(ApiError::Timeout(format!(
            "the agent of gateway '{}' did not answer within {} ms; the write may or may not \
             have reached the device (is the agent online?)",
            g.slug, st.fleet.config.write_timeout_ms
        )));
    };
    Ok(Json(WriteResult {
        device: body.device,
        tag: body.tag,
        value,
        old_value,
        ok: answer.ok,
        error,
        correlation_id: req.correlation_id,
        answered_in_ms: elapsed,
    }))
}

fn refused(field: &str, message: String) -> ApiError {
    ApiError::Refused {
        kind: "write-refused",
        detail: message.clone(),
        fields: vec![FieldError::new(field, message)],
    }
}

/// The tag `device`/`tag` of the gateway's current config.
fn find_tag(spec: &Value, g: &gateway::Model, device: &str, tag: &str) -> Result<Tag, ApiError> {
    let version = g.config_version;
    let d = spec["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == device)
        .ok_or_else(|| {
            refused(
                "device",
                format!(
                    "no device '{device}' in gateway '{}' (config version {version})",
                    g.slug
                ),
            )
        })?;
    let t = d["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|gr| gr["tags"].as_array().into_iter().flatten())
        .find(|t| t["name"] == tag)
        .ok_or_else(|| refused("tag", format!("device '{device}' has no tag '{tag}'")))?;
    serde_json::from_value(t.clone()).map_err(|e| {
        refused(
            "tag",
            format!("tag '{tag}' in the stored config cannot be read: {e}"),
        )
    })
}

/// The newest reading before the write; none without a historian.
async fn old_value(
    st: &AppState,
    at: &ProjectAccess,
    g: &gateway::Model,
    body: &WriteBody,
) -> Option<OldValue> {
    let pair = [(body.device.as_str(), body.tag.as_str())];
    match st
        .fleet
        .historian
        .latest(&at.org.slug, &g.slug, &pair)
        .await
    {
        Ok(mut v) => v
            .pop()
            .flatten()
            .map(|(ts, value, value_text, q)| OldValue {
                ts,
                value,
                value_text,
                error_code: (q != 0).then_some(q),
            }),
        Err(e) => {
            tracing::debug!(error = %e, "write: no old value from the historian");
            None
        }
    }
}

/// One `gateway.write` audit entry, in its own transaction (after the
/// agent's answer: the write lock is not held while waiting for it).
async fn audit_write(
    st: &AppState,
    at: &ProjectAccess,
    meta: &ClientMeta,
    target: String,
    ok: bool,
    details: Value,
) -> Result<(), ApiError> {
    let outcome = if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let tx = st.write().await?;
    audit::append(
        &*tx,
        at.event("gateway.write", target)
            .outcome(outcome)
            .details(details),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
