//! Alert rules: list, create, read, replace, delete (a change reloads the
//! runtime; a deleted rule's firing alerts resolve).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::target;
use crate::alerts::engine::AlertState;
use crate::alerts::rules::RuleSpec;
use crate::alerts::store::{alert_acknowledgement, alert_channel, alert_rule, alert_state};
use crate::audit;
use crate::auth::ClientMeta;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::{ApiJson, ApiPath};
use crate::fleet::entities::gateway;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

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

/// A rule may name only a gateway of its own project: readings of another
/// project's gateway never reach it (projects are walls), and naming one
/// must not tell whether it exists elsewhere.
async fn check_gateway(st: &AppState, project: Uuid, spec: &RuleSpec) -> Result<(), ApiError> {
    let Some(g) = &spec.gateway else {
        return Ok(());
    };
    let found = gateway::Entity::find()
        .filter(gateway::Column::ProjectId.eq(project))
        .filter(gateway::Column::Slug.eq(g.as_str()))
        .select_only()
        .column(gateway::Column::Id)
        .into_tuple::<Uuid>()
        .one(&st.db)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid(
            "gateway",
            format!("no gateway named {g} in this project"),
        )),
    }
}

async fn find_rule(
    st: &AppState,
    c: &ProjectAccess,
    id: Uuid,
) -> Result<alert_rule::Model, ApiError> {
    alert_rule::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .filter(|r| r.project_id == c.project.id)
        .ok_or(ApiError::NotFound)
}

/// Alert rules of a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Rule>), ProblemResponses))]
pub(super) async fn list_rules(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<Rule>>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
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
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules", tag = "alerts", request_body = crate::alerts::rules::RuleSpecBody,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Rule), ProblemResponses))]
pub(super) async fn create_rule(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    let spec = spec.with_sorted_band();
    let c = scope.require(Permission::ProjectWrite).await?;
    check_gateway(&st, c.project.id, &spec).await?;
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
        c.event("alert_rule.create", target(&c, "alert-rule", m.id))
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
pub(super) async fn get_rule(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<Json<Rule>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
    Ok(Json(rule_out(find_rule(&st, &c, id).await?)?))
}

/// Replace an alert rule (its alerts keep their state).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/projects/{project}/alerts/rules/{rule}", tag = "alerts", request_body = crate::alerts::rules::RuleSpecBody,
    params(("org" = String, Path), ("project" = String, Path), ("rule" = Uuid, Path)), responses((status = 200, body = Rule), ProblemResponses))]
pub(super) async fn update_rule(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<Json<Rule>, ApiError> {
    let spec = spec.with_sorted_band();
    let c = scope.require(Permission::ProjectWrite).await?;
    let old = find_rule(&st, &c, id).await?;
    check_gateway(&st, c.project.id, &spec).await?;
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
        c.event("alert_rule.update", target(&c, "alert-rule", id))
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
pub(super) async fn delete_rule(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let c = scope.require(Permission::ProjectWrite).await?;
    let r = find_rule(&st, &c, id).await?;
    let tx = st.write().await?;
    alert_rule::Entity::delete_by_id(id).exec(&*tx).await?;
    // Pending alerts just vanish; firing ones resolve through the engine.
    alert_state::Entity::delete_many()
        .filter(alert_state::Column::RuleId.eq(id))
        .filter(alert_state::Column::State.eq(AlertState::Pending.as_str()))
        .exec(&*tx)
        .await?;
    alert_acknowledgement::Entity::delete_many()
        .filter(alert_acknowledgement::Column::RuleId.eq(id))
        .exec(&*tx)
        .await?;
    audit::append(
        &*tx,
        c.event("alert_rule.delete", target(&c, "alert-rule", id))
            .details(serde_json::json!({"name": r.name})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok(StatusCode::NO_CONTENT)
}
