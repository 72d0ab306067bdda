//! Deleting a cluster (never while gateways use it) and moving it to
//! another project of the organization.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, Set,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{find_cluster, share, Cluster, BACKEND_KUBERNETES};
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::project;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::fleet::entities::{cluster, gateway};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

/// The raw request body (possibly empty), for DELETE's optional confirmation.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|_| ApiError::PayloadTooLarge)
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// The cluster's name again, as confirmation.
    pub confirm: Option<String>,
}

/// Delete a cluster. `?confirm=<name>` (or body `{"confirm": "<name>"}`) must
/// repeat its name; gateways must not use it.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path), DeleteQuery),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
pub(super) async fn delete_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectUpdate)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    // The confirmation comes as `?confirm=` or as a JSON body `{"confirm": ...}`.
    let confirm = match q.confirm {
        Some(c) => Some(c),
        None if !body.is_empty() => crate::extract::parse_json::<DeleteQuery>(&body)?.confirm,
        None => None,
    };
    if confirm.as_deref() != Some(c.slug.as_str()) {
        return Err(ApiError::invalid(
            "confirm",
            "must repeat the cluster's name to confirm the deletion",
        ));
    }
    let tx = st.write().await?;
    let users = gateway::Entity::find()
        .filter(gateway::Column::ClusterId.eq(c.id))
        .count(&*tx)
        .await?;
    if users > 0 {
        return Err(ApiError::conflict(
            format!("{users} gateway(s) use this cluster; point them elsewhere first"),
            None,
        ));
    }
    cluster::Entity::delete_by_id(c.id).exec(&*tx).await?;
    if c.backend == BACKEND_KUBERNETES {
        if let Some(client) = &st.fleet.kube {
            crate::fleet::kube_backend::delete_cluster(client, &o.slug, &c.slug).await?;
        }
    }
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "cluster.delete",
            format!("cluster:{}/{}", o.slug, c.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferCluster {
    /// Slug of the project (same organization) that takes the cluster over.
    #[schema(schema_with = crate::extract::schema::slug)]
    pub project: String,
}

impl Validate for TransferCluster {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "project", &self.project);
        chk::finish(e)
    }
}

/// Move a cluster to another project of the organization (needs the right to change both).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}/transfer", tag = "fleet", request_body = TransferCluster,
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
pub(super) async fn transfer_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<TransferCluster>,
) -> Result<Json<Cluster>, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectUpdate)?;
    let target = project::Entity::find()
        .filter(project::Column::OrgId.eq(at.org.id))
        .filter(project::Column::Slug.eq(req.project.as_str()))
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::invalid("project", "no such project in this organization"))?;
    if !at.grants.sees_project(at.org.id, target.id) {
        return Err(ApiError::Forbidden);
    }
    at.require_in(Permission::ProjectUpdate, &target)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    let mut am = c.clone().into_active_model();
    am.project_id = Set(target.id);
    am.updated_at = Set(Utc::now());
    let c2 = am.update(&*tx).await?;
    // The object's project label follows, or the watch would move it back.
    if let (BACKEND_KUBERNETES, Some(client), Some(spec)) =
        (c2.backend.as_str(), &st.fleet.kube, c2.spec.as_deref())
    {
        let spec: weir_crds::MqttClusterSpec =
            serde_json::from_str(spec).map_err(ApiError::internal)?;
        crate::fleet::kube_backend::apply_cluster(client, &o.slug, &target.slug, &c2.slug, &spec)
            .await?;
    }
    // The new owner's gateways use it as their own; other shares stay, and
    // gateways of the old project keep it only if it was shared with it.
    share::drop_share(&*tx, c.id, target.id).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "cluster.transfer",
            format!("cluster:{}/{}", o.slug, c.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"from": p.slug, "to": target.slug})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(Json(Cluster::load(&st.db, &o, &target, c2).await?))
}
