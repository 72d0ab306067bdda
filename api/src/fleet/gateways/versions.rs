//! A gateway's config versions: the list, one version, the diff between
//! two, and rollback (a new version equal to an old one).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    empty_object, find_gateway, validate_spec, version_spec, write_version, Author, Gateway,
};
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::fleet::entities::{gateway, gateway_version};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(diff_versions))
        .routes(routes!(rollback))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayVersion {
    pub version: i64,
    pub author: String,
    pub author_id: Option<Uuid>,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// The config of this version (only in `GET …/versions/{version}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
}

impl GatewayVersion {
    fn from_model(v: gateway_version::Model, spec: Option<Value>) -> Self {
        Self {
            version: v.version,
            author: v.author,
            author_id: v.author_id,
            comment: v.comment,
            created_at: v.created_at,
            spec,
        }
    }
}

/// Every version of a gateway's config, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/versions", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 200, body = Vec<GatewayVersion>), ProblemResponses))]
async fn list_versions(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<Json<Vec<GatewayVersion>>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let rows = gateway_version::Entity::find()
        .filter(gateway_version::Column::GatewayId.eq(g.id))
        .order_by_desc(gateway_version::Column::Version)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|v| GatewayVersion::from_model(v, None))
            .collect(),
    ))
}

/// One version, with its config.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/versions/{version}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path), ("version" = i64, Path)), responses((status = 200, body = GatewayVersion), ProblemResponses))]
async fn get_version(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw, version)): ApiPath<(String, String, String, i64)>,
) -> Result<Json<GatewayVersion>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let (v, spec) = version_spec(&st.db, g.id, version)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(GatewayVersion::from_model(v, Some(spec))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The version to compare with (the "before"); default: the previous one
    /// (for version 1, an empty spec).
    pub against: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDiff {
    pub from: i64,
    pub to: i64,
    /// JSON Patch (RFC 6902) operations turning `from` into `to`; paths are JSON pointers into the spec.
    #[schema(value_type = Vec<Object>)]
    pub changes: Value,
}

/// What changed between two versions.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/versions/{version}/diff", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path), ("version" = i64, Path), DiffQuery),
    responses((status = 200, body = VersionDiff), ProblemResponses))]
async fn diff_versions(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw, version)): ApiPath<(String, String, String, i64)>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Json<VersionDiff>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let (_, to) = version_spec(&st.db, g.id, version)
        .await?
        .ok_or(ApiError::NotFound)?;
    let against = q.against.unwrap_or(version - 1);
    let from = if against == 0 {
        empty_object()
    } else {
        version_spec(&st.db, g.id, against)
            .await?
            .ok_or_else(|| {
                ApiError::invalid("against", format!("no version {against} of this gateway"))
            })?
            .1
    };
    let patch = json_patch::diff(&from, &to);
    Ok(Json(VersionDiff {
        from: against,
        to: version,
        changes: serde_json::to_value(&patch).map_err(ApiError::internal)?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version whose config becomes the new latest version.
    #[serde(deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 1)]
    pub version: i64,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 1000>)]
    pub comment: String,
}

impl Validate for RollbackRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if self.version < 1 {
            e.push(FieldError::new("version", "must be at least 1"));
        }
        chk::text(&mut e, "comment", &self.comment, 0, 1000);
        chk::finish(e)
    }
}

/// Roll back: a new version equal to an old one.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/rollback", tag = "fleet", request_body = RollbackRequest,
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 200, body = Gateway), ProblemResponses))]
async fn rollback(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> Result<Json<Gateway>, ApiError> {
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
    let g = gateway::Entity::find_by_id(g.id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (_, old) = version_spec(&*tx, g.id, req.version)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "version",
                format!("no version {} of this gateway", req.version),
            )
        })?;
    let spec = validate_spec(&old)?;
    let comment = if req.comment.is_empty() {
        format!("rollback to version {}", req.version)
    } else {
        req.comment.clone()
    };
    let g = match write_version(
        &*tx,
        &st,
        &o,
        g.clone(),
        &spec,
        &Author::from(&auth),
        &comment,
    )
    .await?
    {
        Some(g2) => {
            audit::append(
                &*tx,
                AuditEvent::by(
                    &auth,
                    "gateway.rollback",
                    format!("gateway:{}/{}", o.slug, g2.slug),
                )
                .org(o.id)
                .project(p.id)
                .details(
                    serde_json::json!({"to_version": req.version, "version": g2.config_version}),
                ),
                &meta,
            )
            .await?;
            g2
        }
        None => g,
    };
    tx.commit().await?;
    let _ = st.fleet.bundles.send(g.id);
    let spec = serde_json::to_value(&spec).map_err(ApiError::internal)?;
    Ok(Json(Gateway::build(&o, &p, g, spec)))
}
