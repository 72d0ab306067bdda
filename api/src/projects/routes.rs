//! HTTP handlers of projects: list, create, read, update, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::auth::{check, load_org, Auth, ClientMeta};
use crate::db::entities::project;
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::{Domain, Permission};
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    /// Slug of the organization.
    pub org: String,
    #[schema(example = "north-plant")]
    pub slug: String,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Project {
    fn from_model(org: &str, m: project::Model) -> Self {
        Self {
            id: m.id,
            org: org.to_string(),
            slug: m.slug,
            name: m.name,
            description: m.description,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// URL name, unique in the organization.
    #[schema(schema_with = crate::extract::schema::slug, example = "north-plant")]
    pub slug: String,
    #[schema(schema_with = crate::extract::schema::text::<1, 128>, example = "North Plant")]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 2000>)]
    pub description: String,
}

impl Validate for CreateProject {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "slug", &self.slug);
        chk::text(&mut e, "name", &self.name, 1, 128);
        chk::text(&mut e, "description", &self.description, 0, 2000);
        chk::finish(e)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[schema(schema_with = crate::extract::schema::text_opt::<1, 128>)]
    pub name: Option<String>,
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 2000>)]
    pub description: Option<String>,
}

impl Validate for UpdateProject {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if let Some(n) = &self.name {
            chk::text(&mut e, "name", n, 1, 128);
        }
        if let Some(d) = &self.description {
            chk::text(&mut e, "description", d, 0, 2000);
        }
        chk::finish(e)
    }
}

/// Projects of an organization that the caller can see.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects", tag = "projects",
    params(("org" = String, Path)), responses((status = 200, body = Vec<Project>), ProblemResponses))]
async fn list_projects(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<Project>>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgRead, Domain::Org(o.id))?;
    let rows = project::Entity::find()
        .filter(project::Column::OrgId.eq(o.id))
        .order_by_asc(project::Column::Slug)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .filter(|p| grants.sees_project(o.id, p.id))
            .map(|p| Project::from_model(&o.slug, p))
            .collect(),
    ))
}

/// Create a project.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects", tag = "projects", request_body = CreateProject,
    params(("org" = String, Path)), responses((status = 201, body = Project), ProblemResponses))]
async fn create_project(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::ProjectCreate, Domain::Org(o.id))?;
    let now = Utc::now();
    let tx = st.write().await?;
    let p = project::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(o.id),
        slug: Set(req.slug.clone()),
        name: Set(req.name.trim().to_string()),
        description: Set(req.description.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(
                "a project with this slug exists in the organization",
                Some("slug"),
            )
        } else {
            e.into()
        }
    })?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "project.create",
            format!("project:{}/{}", o.slug, p.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"name": p.name})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Project::from_model(&o.slug, p))))
}

/// One project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Project), ProblemResponses))]
async fn get_project(scope: ProjectScope) -> Result<Json<Project>, ApiError> {
    let ProjectAccess {
        org: o, project: p, ..
    } = scope.require(Permission::ProjectRead).await?;
    Ok(Json(Project::from_model(&o.slug, p)))
}

/// Rename or describe a project.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects", request_body = UpdateProject,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Project), ProblemResponses))]
async fn update_project(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<UpdateProject>,
) -> Result<Json<Project>, ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectUpdate).await?;
    let tx = st.write().await?;
    let mut am = p.clone().into_active_model();
    if let Some(n) = &req.name {
        am.name = Set(n.trim().to_string());
    }
    if let Some(d) = &req.description {
        am.description = Set(d.clone());
    }
    am.updated_at = Set(Utc::now());
    let p2 = am.update(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "project.update",
            format!("project:{}/{}", o.slug, p.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"name": req.name, "description": req.description})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Project::from_model(&o.slug, p2)))
}

/// Delete a project with its members and tokens.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_project(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
) -> Result<StatusCode, ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectDelete).await?;
    let tx = st.write().await?;
    project::Entity::delete_by_id(p.id).exec(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "project.delete",
            format!("project:{}/{}", o.slug, p.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
