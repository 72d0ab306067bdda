//! `GET /api/v1/agents/{id}/credentials/{name}`: an agent fetches a device
//! credential, and only one that its gateway's current config names in
//! some device's `opcUa.credential` — an agent cannot read the rest of its
//! project's credentials, nor another project's. Every fetch is audited
//! (actor `agent:{id}`), refused ones as denied; never the secret.

use axum::extract::State;
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
use crate::fleet::entities::gateway;
use crate::fleet::gateways::current_spec;
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
    params(("id" = String, Path), ("name" = String, Path, description = "As `devices[].opcUa.credential` names it")),
    responses((status = 200, body = DeviceCredential),
        (status = 404, description = "The config names no such credential, or the project has none by that name"),
        ProblemResponses))]
async fn agent_credential(
    State(st): State<AppState>,
    auth: AgentAuth,
    meta: ClientMeta,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<Json<DeviceCredential>, ApiError> {
    auth.own(&id)?;
    check_name(&name)?;
    let g = gateway::Entity::find_by_id(auth.agent.gateway_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let spec = current_spec(&st.db, &g).await?;
    let refusal = if !named_credentials(&spec).contains(&name.as_str()) {
        Some(format!(
            "gateway '{}' config (version {}) names no credential '{name}' in devices[].opcUa.credential",
            g.slug, g.config_version
        ))
    } else {
        None
    };
    let row = match refusal {
        Some(_) => None,
        None => find(&st, g.project_id, &name).await?,
    };
    let reason = match (&refusal, &row) {
        (Some(r), _) => r.clone(),
        (None, None) => format!(
            "the gateway's project has no credential '{name}': create it in the console (Credentials) or with PUT …/credentials/{name}"
        ),
        (None, Some(_)) => String::new(),
    };
    let ev = AuditEvent::anonymous(
        &format!("agent:{}", auth.agent.id),
        "device_credential.fetch",
        format!("credential:{}/{name}", g.slug),
    )
    .org(g.org_id)
    .project(g.project_id);
    let Some(row) = row else {
        let ev = ev
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "reason": reason }));
        append(&st, ev, &meta).await?;
        return Err(ApiError::NotFoundBecause(reason));
    };
    let credential = open(st.fleet.master()?, &row)?;
    append(
        &st,
        ev.details(serde_json::json!({ "kind": row.kind })),
        &meta,
    )
    .await?;
    Ok(Json(credential))
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
