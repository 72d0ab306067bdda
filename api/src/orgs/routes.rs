//! HTTP handlers of organizations: list, create (system admins), read,
//! update, delete.

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

use super::insert_org;
use crate::audit::{self, AuditEvent};
use crate::auth::{check, load_org, Auth, ClientMeta};
use crate::db::entities::{org, org_member, project_member};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::members::{set_role, Scope};
use crate::rbac::{Domain, Permission, Role};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(get_org, update_org, delete_org))
        .merge(super::sso::router())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Org {
    pub id: Uuid,
    #[schema(example = "riverside-water")]
    pub slug: String,
    pub name: String,
    pub description: String,
    /// `kubernetes` when a Tenant resource manages this organization.
    pub managed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<org::Model> for Org {
    fn from(m: org::Model) -> Self {
        Self {
            id: m.id,
            slug: m.slug,
            name: m.name,
            description: m.description,
            managed_by: m.managed_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// URL name, unique: lowercase letters, digits and '-'.
    #[schema(schema_with = crate::extract::schema::slug, example = "riverside-water")]
    pub slug: String,
    #[schema(schema_with = crate::extract::schema::text::<1, 128>, example = "Riverside Water")]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 2000>)]
    pub description: String,
    /// Email of an existing account to make owner (default: the caller).
    #[schema(schema_with = crate::extract::schema::email_opt)]
    pub owner_email: Option<String>,
}

impl Validate for CreateOrg {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "slug", &self.slug);
        chk::text(&mut e, "name", &self.name, 1, 128);
        chk::text(&mut e, "description", &self.description, 0, 2000);
        if let Some(o) = &self.owner_email {
            chk::email(&mut e, "owner_email", o);
        }
        chk::finish(e)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    #[schema(schema_with = crate::extract::schema::text_opt::<1, 128>)]
    pub name: Option<String>,
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 2000>)]
    pub description: Option<String>,
}

impl Validate for UpdateOrg {
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

/// Organizations the caller belongs to (all of them for system admins).
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs",
    responses((status = 200, body = Vec<Org>), ProblemResponses))]
async fn list_orgs(State(st): State<AppState>, auth: Auth) -> Result<Json<Vec<Org>>, ApiError> {
    let q = org::Entity::find().order_by_asc(org::Column::Slug);
    let all_visible = auth.system_grants().has_system_admin();
    let orgs = if all_visible {
        q.all(&st.db).await?
    } else {
        let mut ids: Vec<Uuid> = org_member::Entity::find()
            .filter(org_member::Column::UserId.eq(auth.user.id))
            .all(&st.db)
            .await?
            .into_iter()
            .map(|m| m.org_id)
            .collect();
        ids.extend(
            project_member::Entity::find()
                .filter(project_member::Column::UserId.eq(auth.user.id))
                .all(&st.db)
                .await?
                .into_iter()
                .map(|m| m.org_id),
        );
        if let crate::auth::AuthVia::Token(t) = &auth.via {
            // A token sees its own org only (if its creator still does).
            let sees = auth.grants_in_org(&st, t.org_id).await?.sees_org();
            ids = if sees { vec![t.org_id] } else { vec![] };
        }
        q.filter(org::Column::Id.is_in(ids)).all(&st.db).await?
    };
    Ok(Json(orgs.into_iter().map(Org::from).collect()))
}

/// Create an organization (system admins); the owner is the caller or `owner_email`.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = Org), ProblemResponses))]
async fn create_org(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<Org>), ApiError> {
    auth.require(&st, Permission::OrgCreate, Domain::System)
        .await?;
    let owner = match &req.owner_email {
        Some(email) => crate::db::entities::user::Entity::find()
            .filter(crate::db::entities::user::Column::Email.eq(email.trim().to_lowercase()))
            .one(&st.db)
            .await?
            .ok_or_else(|| ApiError::invalid("owner_email", "no account has this email"))?,
        None => auth.user.clone(),
    };
    let tx = st.write().await?;
    let o = insert_org(&*tx, &req.slug, &req.name, &req.description, None).await?;
    set_role(&*tx, Scope::Org(o.id), owner.id, Role::OrgOwner, "manual").await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "org.create", format!("org:{}", o.slug))
            .org(o.id)
            .details(serde_json::json!({"name": o.name, "owner": owner.email})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Org::from(o))))
}

/// One organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs",
    params(("org" = String, Path, description = "Organization slug")),
    responses((status = 200, body = Org), ProblemResponses))]
async fn get_org(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Org>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgRead, Domain::Org(o.id))?;
    Ok(Json(Org::from(o)))
}

/// Rename or describe an organization.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}", tag = "orgs", request_body = UpdateOrg,
    params(("org" = String, Path)),
    responses((status = 200, body = Org), ProblemResponses))]
async fn update_org(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateOrg>,
) -> Result<Json<Org>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgUpdate, Domain::Org(o.id))?;
    let tx = st.write().await?;
    let mut am = o.clone().into_active_model();
    if let Some(n) = &req.name {
        am.name = Set(n.trim().to_string());
    }
    if let Some(d) = &req.description {
        am.description = Set(d.clone());
    }
    am.updated_at = Set(Utc::now());
    let o2 = am.update(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "org.update", format!("org:{}", o.slug))
            .org(o.id)
            .details(serde_json::json!({"name": req.name, "description": req.description})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Org::from(o2)))
}

/// Delete an organization with its projects, members and tokens.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}", tag = "orgs",
    params(("org" = String, Path)),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_org(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgDelete, Domain::Org(o.id))?;
    if o.managed_by.as_deref() == Some("kubernetes") {
        return Err(ApiError::Conflict {
            detail:
                "this organization is managed by a Kubernetes Tenant; delete the Tenant instead"
                    .into(),
            fields: vec![],
        });
    }
    let tx = st.write().await?;
    // Foreign keys cascade to projects, members, invitations, mappings and tokens.
    org::Entity::delete_by_id(o.id).exec(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "org.delete", format!("org:{}", o.slug)).org(o.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
