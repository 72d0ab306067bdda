//! `GET /api/v1/agents/{id}/credentials/{name}`: an agent fetches a device
//! credential, and only one that its gateway's current config names in
//! some device's `opcUa.credential` — an agent cannot read the rest of its
//! project's credentials, nor another project's. Every fetch is audited
//! (actor `agent:{id}`), refused ones as denied; never the secret.
//!
//! The answer carries an ETag that changes when the credential is replaced;
//! an agent re-checking with `If-None-Match` gets 304 (not audited: nothing
//! was handed out), so it can look for replaced credentials often.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use weir_crds::agent_api::DeviceCredential;

use super::routes::find;
use super::{check_name, open};
use crate::audit::{self, AuditEvent, Outcome};
use crate::auth::ClientMeta;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiPath;
use crate::fleet::agents::AgentAuth;
use crate::fleet::entities::device_credential;
use crate::fleet::entities::gateway;
use crate::fleet::gateways::current_spec;
use crate::secrets::sha256_hex;
use crate::state::AppState;
use sea_orm::EntityTrait;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(agent_credential))
}

/// The credential names a gateway spec refers to (`devices[].opcUa.credential`).
pub fn named_credentials(spec: &Value) -> Vec<&str> {
    spec.get("devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("opcUa")?.get("credential")?.as_str())
        .collect()
}

/// A device credential named by this agent's gateway's current config.
#[utoipa::path(get, path = "/api/v1/agents/{id}/credentials/{name}", tag = "agents",
    params(("id" = String, Path), ("name" = String, Path, description = "As `devices[].opcUa.credential` names it"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of the copy the agent holds")),
    responses((status = 200, body = DeviceCredential, description = "The credential; ETag names this version of it"),
        (status = 304, description = "Unchanged since the ETag given"),
        (status = 404, description = "The config names no such credential, or the project has none by that name"),
        ProblemResponses))]
async fn agent_credential(
    State(st): State<AppState>,
    auth: AgentAuth,
    meta: ClientMeta,
    ApiPath((id, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth.own(&id)?;
    check_name(&name)?;
    let g = gateway::Entity::find_by_id(auth.agent.gateway_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let ev = AuditEvent::anonymous(
        &format!("agent:{}", auth.agent.id),
        "device_credential.fetch",
        format!("credential:{}/{name}", g.slug),
    )
    .org(g.org_id)
    .project(g.project_id);
    let row = match allowed(&st, &g, &name).await? {
        Ok(row) => row,
        Err(reason) => {
            let ev = ev
                .outcome(Outcome::Denied)
                .details(serde_json::json!({ "reason": reason }));
            append(&st, ev, &meta).await?;
            return Err(ApiError::NotFoundBecause(reason));
        }
    };
    let tag = etag(&row);
    let have = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if have == Some(tag.as_str()) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, header_value(&tag)?);
        return Ok(r);
    }
    let credential = open(st.fleet.master()?, &row)?;
    append(
        &st,
        ev.details(serde_json::json!({ "kind": row.kind })),
        &meta,
    )
    .await?;
    let mut r = Json(credential).into_response();
    r.headers_mut().insert(header::ETAG, header_value(&tag)?);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The credential row, if the gateway's current config names it and the
/// project has it; else the reason, in words.
async fn allowed(
    st: &AppState,
    g: &gateway::Model,
    name: &str,
) -> Result<Result<device_credential::Model, String>, ApiError> {
    let spec = current_spec(&st.db, g).await?;
    if !named_credentials(&spec).contains(&name) {
        return Ok(Err(format!(
            "gateway '{}' config (version {}) names no credential '{name}' in devices[].opcUa.credential",
            g.slug, g.config_version
        )));
    }
    Ok(find(st, g.project_id, name).await?.ok_or_else(|| {
        format!(
            "the gateway's project has no credential '{name}': create it in the console (Device credentials) or with PUT …/credentials/{name}"
        )
    }))
}

/// Changes with every replace: the sealed text has a fresh nonce each time.
fn etag(row: &device_credential::Model) -> String {
    format!("\"{}\"", &sha256_hex(&row.secret_enc)[..32])
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(ApiError::internal)
}

async fn append(st: &AppState, ev: AuditEvent, meta: &ClientMeta) -> Result<(), ApiError> {
    let tx = st.write().await?;
    audit::append(&*tx, ev, meta).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_opcua_devices_only() {
        let spec = serde_json::json!({"devices": [
            {"name": "a", "adapter": "opcUa", "opcUa": {"endpoint": "opc.tcp://h:4840", "credential": "plc-login"}},
            {"name": "b", "adapter": "opcUa", "opcUa": {"endpoint": "opc.tcp://h:4840"}},
            {"name": "c", "adapter": "modbusTcp", "modbus": {"host": "h"}}
        ]});
        assert_eq!(named_credentials(&spec), vec!["plc-login"]);
        assert!(named_credentials(&serde_json::json!({})).is_empty());
    }
}
