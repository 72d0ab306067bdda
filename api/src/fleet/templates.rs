//! Gateway config templates and batch changes. A template is a partial
//! spec applied as a JSON merge patch (RFC 7396): the fields it names
//! (devices, pipelines, uplink, agentVersion, ...) replace the gateway's,
//! the rest (site, clusterRef) stay. `POST …/gateways:batch` applies a
//! template or a merge patch to many gateways, each in its own transaction,
//! and answers per gateway.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::entities::{gateway, template};
use super::gateways::{current_spec, validate_spec, write_version, Author};
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::project;
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(batch))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub title: String,
    pub description: String,
    /// Partial `EdgeGatewaySpec`, applied as a JSON merge patch.
    #[schema(value_type = Object)]
    pub spec: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<template::Model> for Template {
    fn from(m: template::Model) -> Self {
        Self {
            id: m.id,
            name: m.slug,
            title: m.name,
            description: m.description,
            spec: serde_json::from_str(&m.spec).unwrap_or_default(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    #[schema(schema_with = crate::extract::schema::slug, example = "pump-station")]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 128>)]
    pub title: String,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 2000>)]
    pub description: String,
    #[schema(value_type = Object)]
    pub spec: Value,
}

impl Validate for CreateTemplate {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "name", &self.name);
        chk::text(&mut e, "title", &self.title, 0, 128);
        chk::text(&mut e, "description", &self.description, 0, 2000);
        if !self.spec.is_object() {
            e.push(FieldError::new("spec", "must be an object"));
        }
        chk::finish(e)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 128>)]
    pub title: Option<String>,
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 2000>)]
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
}

impl Validate for UpdateTemplate {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if let Some(t) = &self.title {
            chk::text(&mut e, "title", t, 0, 128);
        }
        if let Some(d) = &self.description {
            chk::text(&mut e, "description", d, 0, 2000);
        }
        if self.spec.as_ref().is_some_and(|s| !s.is_object()) {
            e.push(FieldError::new("spec", "must be an object"));
        }
        chk::finish(e)
    }
}

/// A template must make a valid spec on its own (so its errors show at
/// creation, with the CRD's messages), not only once applied.
fn validate_template_spec(spec: &Value) -> Result<(), ApiError> {
    validate_spec(spec).map(|_| ())
}

/// Gateway templates of a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateway-templates", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Template>), ProblemResponses))]
async fn list_templates(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<Template>>, ApiError> {
    let ProjectAccess { project: p, .. } = scope.require(Permission::ProjectRead).await?;
    let rows = template::Entity::find()
        .filter(template::Column::ProjectId.eq(p.id))
        .order_by_asc(template::Column::Slug)
        .all(&st.db)
        .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Create a template.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/gateway-templates", tag = "fleet", request_body = CreateTemplate,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Template), ProblemResponses))]
async fn create_template(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateTemplate>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectWrite).await?;
    validate_template_spec(&req.spec)?;
    let now = Utc::now();
    let tx = st.write().await?;
    let m = template::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(o.id),
        project_id: Set(p.id),
        slug: Set(req.name.clone()),
        name: Set(if req.title.trim().is_empty() {
            req.name.clone()
        } else {
            req.title.trim().to_string()
        }),
        description: Set(req.description.clone()),
        spec: Set(req.spec.to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(
                "a template with this name exists in the project",
                Some("name"),
            )
        } else {
            e.into()
        }
    })?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "gateway_template.create",
            format!("template:{}/{}/{}", o.slug, p.slug, m.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

async fn load_template(
    st: &AppState,
    p: &project::Model,
    name: &str,
) -> Result<template::Model, ApiError> {
    template::Entity::find()
        .filter(template::Column::ProjectId.eq(p.id))
        .filter(template::Column::Slug.eq(name))
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// One template.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateway-templates/{template}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("template" = String, Path)), responses((status = 200, body = Template), ProblemResponses))]
async fn get_template(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
) -> Result<Json<Template>, ApiError> {
    let ProjectAccess { project: p, .. } = scope.require(Permission::ProjectRead).await?;
    Ok(Json(load_template(&st, &p, &name).await?.into()))
}

/// Change a template (gateways change only when it is applied again).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}/gateway-templates/{template}", tag = "fleet", request_body = UpdateTemplate,
    params(("org" = String, Path), ("project" = String, Path), ("template" = String, Path)), responses((status = 200, body = Template), ProblemResponses))]
async fn update_template(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<UpdateTemplate>,
) -> Result<Json<Template>, ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectWrite).await?;
    let m = load_template(&st, &p, &name).await?;
    if let Some(s) = &req.spec {
        validate_template_spec(s)?;
    }
    let tx = st.write().await?;
    let mut am = m.clone().into_active_model();
    if let Some(t) = &req.title {
        am.name = Set(if t.trim().is_empty() {
            m.slug.clone()
        } else {
            t.trim().to_string()
        });
    }
    if let Some(d) = &req.description {
        am.description = Set(d.clone());
    }
    if let Some(s) = &req.spec {
        am.spec = Set(s.to_string());
    }
    am.updated_at = Set(Utc::now());
    let m = am.update(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "gateway_template.update",
            format!("template:{}/{}/{}", o.slug, p.slug, m.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(m.into()))
}

/// Delete a template.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/gateway-templates/{template}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("template" = String, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_template(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectWrite).await?;
    let m = load_template(&st, &p, &name).await?;
    let tx = st.write().await?;
    template::Entity::delete_by_id(m.id).exec(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "gateway_template.delete",
            format!("template:{}/{}/{}", o.slug, p.slug, m.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Gateway names of this project (1-500).
    #[schema(min_items = 1, max_items = 500)]
    pub gateways: Vec<String>,
    /// Apply this template...
    pub template: Option<String>,
    /// ...or this JSON merge patch of the spec.
    #[schema(value_type = Option<Object>)]
    pub merge_patch: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 1000>)]
    pub comment: String,
}

crate::body_rule!(
    BatchRequestBody,
    BatchRequest,
    serde_json::json!({"oneOf": [
        {"required": ["template"], "properties": {"template": {"type": "string"}, "merge_patch": {"type": "null"}}},
        {"required": ["merge_patch"], "properties": {"merge_patch": {"type": "object"}, "template": {"type": "null"}}},
    ]})
);

impl Validate for BatchRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if self.gateways.is_empty() || self.gateways.len() > 500 {
            e.push(FieldError::new("gateways", "name 1 to 500 gateways"));
        }
        match (&self.template, &self.merge_patch) {
            (Some(_), Some(_)) => e.push(FieldError::new(
                "merge_patch",
                "send either template or merge_patch, not both",
            )),
            (None, None) => e.push(FieldError::new("template", "send template or merge_patch")),
            (None, Some(p)) if !p.is_object() => {
                e.push(FieldError::new("merge_patch", "must be an object"))
            }
            _ => {}
        }
        chk::text(&mut e, "comment", &self.comment, 0, 1000);
        chk::finish(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    pub gateway: String,
    /// `updated`, `unchanged` or `failed`.
    pub result: String,
    /// The new version (updated).
    pub version: Option<i64>,
    /// HTTP status this gateway alone would have got.
    pub status: u16,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub updated: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub items: Vec<BatchItem>,
}

/// Apply a template or a merge patch to many gateways; one result per gateway.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/gateways:batch", tag = "fleet", request_body = BatchRequestBody,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = BatchResponse), ProblemResponses))]
async fn batch(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectWrite).await?;
    let (patch, source) = match (&req.template, &req.merge_patch) {
        (Some(t), _) => {
            let m = load_template(&st, &p, t).await.map_err(|_| {
                ApiError::invalid("template", format!("no template '{t}' in this project"))
            })?;
            (
                serde_json::from_str::<Value>(&m.spec).map_err(ApiError::internal)?,
                format!("template {t}"),
            )
        }
        (None, Some(mp)) => (mp.clone(), "merge patch".to_string()),
        (None, None) => unreachable!("checked by validate"),
    };
    let comment = if req.comment.is_empty() {
        format!("batch: {source}")
    } else {
        req.comment.clone()
    };
    let author = Author::from(&auth);
    let mut items = Vec::with_capacity(req.gateways.len());
    for name in &req.gateways {
        let res: Result<Option<i64>, ApiError> = async {
            let tx = st.write().await?;
            let g = gateway::Entity::find()
                .filter(gateway::Column::ProjectId.eq(p.id))
                .filter(gateway::Column::Slug.eq(name.as_str()))
                .one(&*tx)
                .await?
                .ok_or(ApiError::NotFound)?;
            let mut spec = current_spec(&*tx, &g).await?;
            json_patch::merge(&mut spec, &patch);
            let spec = validate_spec(&spec)?;
            let written = write_version(&*tx, &st, &o, g, &spec, &author, &comment).await?;
            let Some(g) = written else {
                return Ok(None);
            };
            audit::append(
                &*tx,
                AuditEvent::by(&auth, "gateway.update", format!("gateway:{}/{}", o.slug, g.slug))
                    .org(o.id)
                    .project(p.id)
                    .details(serde_json::json!({"version": g.config_version, "comment": comment, "batch": source})),
                &meta,
            )
            .await?;
            tx.commit().await?;
            let _ = st.fleet.bundles.send(g.id);
            Ok(Some(g.config_version))
        }
        .await;
        items.push(match res {
            Ok(Some(v)) => BatchItem {
                gateway: name.clone(),
                result: "updated".into(),
                version: Some(v),
                status: 200,
                detail: None,
                errors: vec![],
            },
            Ok(None) => BatchItem {
                gateway: name.clone(),
                result: "unchanged".into(),
                version: None,
                status: 200,
                detail: None,
                errors: vec![],
            },
            Err(e) => {
                let pr = e.to_problem();
                BatchItem {
                    gateway: name.clone(),
                    result: "failed".into(),
                    version: None,
                    status: pr.status,
                    detail: Some(pr.detail),
                    errors: pr.errors,
                }
            }
        });
    }
    let count = |r: &str| items.iter().filter(|i| i.result == r).count();
    Ok(Json(BatchResponse {
        updated: count("updated"),
        unchanged: count("unchanged"),
        failed: count("failed"),
        items,
    }))
}
