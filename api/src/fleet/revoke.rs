//! Revoke a gateway's agent: `DELETE .../gateways/{gateway}/agent`. For a
//! stolen or retired edge PC: its api sessions end and it can get no new
//! ones (its key is refused), and its broker identity stops — on an adopted
//! Mosquitto its dynamic-security client and role are deleted (the plugin
//! disconnects it). An agent on an apiJwt cluster keeps the JWT it already
//! holds until that expires (`WEIR_MQTT_JWT_TTL_SECS`), and cannot renew it.
//! The gateway stays; a new enrollment token enrolls a replacement.
//! Idempotent: revoking a gateway without an agent answers 204 too.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::entities::{agent, agent_session};
use super::gateways::find_gateway;
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiPath;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(revoke_agent))
}

/// Revoke the gateway's agent: its sessions end, its key is refused and its
/// broker identity is removed.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/agent", tag = "agents",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)),
    responses((status = 204, description = "Revoked (or there was no agent)"),
        (status = 503, description = "The broker could not be reached to remove the agent's login; nothing was changed"),
        ProblemResponses))]
async fn revoke_agent(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectWrite)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    let now = Utc::now();
    let ids: Vec<_> = agent::Entity::find()
        .filter(agent::Column::GatewayId.eq(g.id))
        .filter(agent::Column::RevokedAt.is_null())
        .all(&*tx)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    agent_session::Entity::delete_many()
        .filter(agent_session::Column::AgentId.is_in(ids.clone()))
        .exec(&*tx)
        .await?;
    agent::Entity::update_many()
        .col_expr(agent::Column::RevokedAt, Expr::value(now))
        .filter(agent::Column::Id.is_in(ids.clone()))
        .exec(&*tx)
        .await?;
    // Fails (and rolls back) when a broker cannot be reached: a login that
    // still works must not be forgotten.
    super::broker_identity::forget_gateway(&*tx, &st, g.id).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "agent.revoke",
            format!("gateway:{}/{}", o.slug, g.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"agent_ids": ids})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
