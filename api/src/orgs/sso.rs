//! Per-organization mapping of the OIDC groups claim to roles. Applied at
//! every SSO sign-in (see `auth::oidc::apply_group_mappings`).

use axum::extract::State;
use axum::Json;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::auth::{check, load_org, Auth, ClientMeta};
use crate::db::entities::{group_mapping, project};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::{Domain, Permission, Role};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_mappings, put_mappings))
}

/// One mapping as the api reports it.
#[derive(Debug, Serialize, ToSchema, Clone)]
pub struct GroupMapping {
    /// Value of the groups claim, e.g. `riverside-ops`.
    pub group: String,
    /// An org role, or a project role together with `project`.
    #[schema(schema_with = role_schema)]
    pub role: String,
    /// Project slug, for project roles.
    pub project: Option<String>,
    /// `manual` (from this endpoint) or `kubernetes` (from a Tenant's admins).
    pub source: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupMappings {
    pub mappings: Vec<GroupMapping>,
}

/// One mapping as a client sends it: the api's own fields (`source`) are
/// not part of it, so the request and response documents differ.
#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct GroupMappingInput {
    /// Value of the groups claim, e.g. `riverside-ops`.
    #[schema(schema_with = crate::extract::schema::text::<1, 256>)]
    pub group: String,
    /// An org role, or a project role together with `project`.
    #[schema(schema_with = role_schema)]
    pub role: String,
    /// Project slug, for project roles.
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMappingsInput {
    #[schema(max_items = 200)]
    pub mappings: Vec<GroupMappingInput>,
}

/// The roles a mapping may grant (`Role::parse`).
fn role_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(
            Role::ALL
                .into_iter()
                .filter(|r| r.is_org_role() || r.is_project_role())
                .map(Role::as_str),
        ))
        .build()
}

crate::body_rule!(
    GroupMappingsBody,
    GroupMappingsInput,
    serde_json::json!({"properties": {"mappings": {"items": {"oneOf": [
        {"properties": {"role": {"enum": ["org-owner", "org-admin"]}, "project": {"type": "null"}}},
        {"required": ["project"], "properties": {
            "role": {"enum": ["project-admin", "project-editor", "project-operator", "project-viewer"]},
            "project": {"type": "string"},
        }},
    ]}}}})
);

impl Validate for GroupMappingsInput {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if self.mappings.len() > 200 {
            e.push(FieldError::new("mappings", "at most 200 mappings"));
        }
        for (i, m) in self.mappings.iter().enumerate() {
            chk::text(&mut e, &format!("mappings[{i}].group"), &m.group, 1, 256);
            match Role::parse(&m.role) {
                Some(r) if r.is_org_role() && m.project.is_none() => {}
                Some(r) if r.is_project_role() && m.project.is_some() => {}
                Some(r) if r.is_project_role() => e.push(FieldError::new(
                    format!("mappings[{i}].project"),
                    "project roles need a project",
                )),
                Some(r) if r.is_org_role() => e.push(FieldError::new(
                    format!("mappings[{i}].project"),
                    "org roles take no project",
                )),
                _ => e.push(FieldError::new(
                    format!("mappings[{i}].role"),
                    "must be org-owner, org-admin, project-admin, project-editor, project-operator or project-viewer",
                )),
            }
        }
        chk::finish(e)
    }
}

async fn read(st: &AppState, org_id: Uuid) -> Result<Vec<GroupMapping>, ApiError> {
    let rows = group_mapping::Entity::find()
        .filter(group_mapping::Column::OrgId.eq(org_id))
        .all(&st.db)
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let project = match r.project_id {
            Some(p) => project::Entity::find_by_id(p)
                .one(&st.db)
                .await?
                .map(|p| p.slug),
            None => None,
        };
        out.push(GroupMapping {
            group: r.group_name,
            role: r.role,
            project,
            source: r.source,
        });
    }
    out.sort_by(|a, b| (&a.group, &a.role).cmp(&(&b.group, &b.role)));
    Ok(out)
}

/// The organization's SSO group → role mappings.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/sso/group-mappings", tag = "orgs",
    params(("org" = String, Path)), responses((status = 200, body = GroupMappings), ProblemResponses))]
async fn get_mappings(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<GroupMappings>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgSsoRead, Domain::Org(o.id))?;
    Ok(Json(GroupMappings {
        mappings: read(&st, o.id).await?,
    }))
}

/// Replace the organization's manual group mappings (Kubernetes ones stay).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/sso/group-mappings", tag = "orgs", request_body = GroupMappingsBody,
    params(("org" = String, Path)), responses((status = 200, body = GroupMappings), ProblemResponses))]
async fn put_mappings(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<GroupMappingsInput>,
) -> Result<Json<GroupMappings>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgSsoManage, Domain::Org(o.id))?;
    // Giving owner through SSO is giving owner.
    if req
        .mappings
        .iter()
        .any(|m| m.role == Role::OrgOwner.as_str())
    {
        check(&grants, &st, Permission::OrgOwnersManage, Domain::Org(o.id))?;
    }
    let mut resolved = Vec::new();
    for (i, m) in req.mappings.iter().enumerate() {
        let pid = match &m.project {
            Some(slug) => Some(
                project::Entity::find()
                    .filter(project::Column::OrgId.eq(o.id))
                    .filter(project::Column::Slug.eq(slug.as_str()))
                    .one(&st.db)
                    .await?
                    .ok_or_else(|| {
                        ApiError::no_such(&format!("mappings[{i}].project"), "no such project")
                    })?
                    .id,
            ),
            None => None,
        };
        resolved.push((m.group.trim().to_string(), m.role.clone(), pid));
    }
    let tx = st.write().await?;
    group_mapping::Entity::delete_many()
        .filter(group_mapping::Column::OrgId.eq(o.id))
        .filter(group_mapping::Column::Source.eq("manual"))
        .exec(&*tx)
        .await?;
    for (group, role, pid) in &resolved {
        group_mapping::ActiveModel {
            id: Set(Uuid::new_v4()),
            org_id: Set(o.id),
            project_id: Set(*pid),
            group_name: Set(group.clone()),
            role: Set(role.clone()),
            source: Set("manual".into()),
        }
        .insert(&*tx)
        .await?;
    }
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "org.sso.update", format!("org:{}", o.slug))
            .org(o.id)
            .details(serde_json::json!({"mappings": resolved.len()})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(GroupMappings {
        mappings: read(&st, o.id).await?,
    }))
}
