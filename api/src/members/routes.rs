//! HTTP routes for members, invitations and leaving, for orgs and projects.
//! Both levels share the implementation below; the handlers only say which
//! scope and which permissions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    owner_count, remove, role_in, set_role, Invitation, Member, OrgRoleName, ProjectRoleName, Scope,
};
use crate::audit::{self, AuditEvent};
use crate::auth::{check, load_org, Auth, ClientMeta};
use crate::db::entities::{invitation, org_member, project_member, user};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::{Domain, Grants, Permission, Role};
use crate::scope::ProjectScope;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_org_members, add_org_member))
        .routes(routes!(update_org_member, remove_org_member))
        .routes(routes!(leave_org))
        .routes(routes!(list_org_invitations, create_org_invitation))
        .routes(routes!(delete_org_invitation))
        .routes(routes!(list_project_members, add_project_member))
        .routes(routes!(update_project_member, remove_project_member))
        .routes(routes!(leave_project))
        .routes(routes!(list_project_invitations, create_project_invitation))
        .routes(routes!(delete_project_invitation))
}

/// How long an invitation can be claimed.
const INVITATION_DAYS: i64 = 14;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOrgMember {
    #[schema(schema_with = crate::extract::schema::email)]
    pub email: String,
    pub role: OrgRoleName,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddProjectMember {
    #[schema(schema_with = crate::extract::schema::email)]
    pub email: String,
    pub role: ProjectRoleName,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgMember {
    pub role: OrgRoleName,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectMember {
    pub role: ProjectRoleName,
}

impl Validate for AddOrgMember {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::email(&mut e, "email", &self.email);
        chk::finish(e)
    }
}
impl Validate for AddProjectMember {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::email(&mut e, "email", &self.email);
        chk::finish(e)
    }
}
impl Validate for UpdateOrgMember {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}
impl Validate for UpdateProjectMember {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

/// One org or project, resolved and checked, ready for a member operation.
struct At {
    scope: Scope,
    grants: Grants,
    domain: Domain,
    label: String,
}

impl At {
    fn read_perm(&self) -> Permission {
        match self.scope {
            Scope::Org(_) => Permission::OrgMembersRead,
            Scope::Project { .. } => Permission::ProjectMembersRead,
        }
    }
    fn manage_perm(&self) -> Permission {
        match self.scope {
            Scope::Org(_) => Permission::OrgMembersManage,
            Scope::Project { .. } => Permission::ProjectMembersManage,
        }
    }
    fn event(&self, auth: &Auth, action: &str, target: String) -> AuditEvent {
        let ev = AuditEvent::by(auth, action, target).org(self.scope.org_id());
        match self.scope.project_id() {
            Some(p) => ev.project(p),
            None => ev,
        }
    }
}

async fn at_org(st: &AppState, auth: &Auth, org: &str) -> Result<At, ApiError> {
    let (o, grants) = load_org(st, auth, org).await?;
    Ok(At {
        scope: Scope::Org(o.id),
        grants,
        domain: Domain::Org(o.id),
        label: format!("org:{}", o.slug),
    })
}

/// The project of a [`ProjectScope`] (404 when the caller cannot see it);
/// the permission is checked by the shared implementation below.
async fn at_project(scope: ProjectScope) -> Result<(At, Auth), ApiError> {
    let a = scope.load().await?;
    let at = At {
        scope: Scope::Project {
            org: a.org.id,
            project: a.project.id,
        },
        domain: a.domain(),
        label: format!("project:{}/{}", a.org.slug, a.project.slug),
        grants: a.grants,
    };
    Ok((at, a.auth))
}

async fn list_members_at(st: &AppState, at: &At) -> Result<Vec<Member>, ApiError> {
    check(&at.grants, st, at.read_perm(), at.domain)?;
    let rows: Vec<(Uuid, String, String, chrono::DateTime<Utc>)> = match at.scope {
        Scope::Org(o) => org_member::Entity::find()
            .filter(org_member::Column::OrgId.eq(o))
            .all(&st.db)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m.role, m.source, m.created_at))
            .collect(),
        Scope::Project { project, .. } => project_member::Entity::find()
            .filter(project_member::Column::ProjectId.eq(project))
            .all(&st.db)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m.role, m.source, m.created_at))
            .collect(),
    };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(&st.db)
        .await?;
    let mut out: Vec<Member> = rows
        .into_iter()
        .filter_map(|(uid, role, source, created_at)| {
            let u = users.iter().find(|u| u.id == uid)?;
            Some(Member {
                user_id: uid,
                email: u.email.clone(),
                name: u.name.clone(),
                role: Role::parse(&role)?,
                source,
                created_at,
            })
        })
        .collect();
    out.sort_by(|a, b| a.email.cmp(&b.email));
    Ok(out)
}

/// Changing who is an owner (giving, taking or changing the role) needs owner rights.
fn check_owner_change(
    st: &AppState,
    at: &At,
    old: Option<Role>,
    new: Option<Role>,
) -> Result<(), ApiError> {
    if old == Some(Role::OrgOwner) || new == Some(Role::OrgOwner) {
        check(&at.grants, st, Permission::OrgOwnersManage, at.domain)?;
    }
    Ok(())
}

/// An org must keep at least one owner.
async fn check_last_owner<C: sea_orm::ConnectionTrait>(
    db: &C,
    at: &At,
    old: Option<Role>,
    new: Option<Role>,
) -> Result<(), ApiError> {
    if let Scope::Org(o) = at.scope {
        if old == Some(Role::OrgOwner)
            && new != Some(Role::OrgOwner)
            && owner_count(db, o).await? <= 1
        {
            return Err(ApiError::Conflict {
                detail: "an organization must keep at least one owner".into(),
                fields: vec![FieldError::new("role", "last owner")],
            });
        }
    }
    Ok(())
}

async fn add_member_at(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    at: &At,
    email: &str,
    role: Role,
) -> Result<Member, ApiError> {
    check(&at.grants, st, at.manage_perm(), at.domain)?;
    check_owner_change(st, at, None, Some(role))?;
    let email = email.trim().to_lowercase();
    let u = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&st.db)
        .await?
        .ok_or_else(|| {
            ApiError::no_such(
                "email",
                "no account has this email; send an invitation instead",
            )
        })?;
    let tx = st.write().await?;
    if role_in(&*tx, at.scope, u.id).await?.is_some() {
        return Err(ApiError::conflict(
            "already a member; change the role instead",
            Some("email"),
        ));
    }
    set_role(&*tx, at.scope, u.id, role, "manual").await?;
    audit::append(
        &*tx,
        at.event(auth, "member.add", at.label.clone())
            .details(serde_json::json!({"user": u.email, "role": role.as_str()})),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Member {
        user_id: u.id,
        email: u.email,
        name: u.name,
        role,
        source: "manual".into(),
        created_at: Utc::now(),
    })
}

async fn update_member_at(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    at: &At,
    user_id: Uuid,
    role: Role,
) -> Result<Member, ApiError> {
    check(&at.grants, st, at.manage_perm(), at.domain)?;
    let u = user::Entity::find_by_id(user_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tx = st.write().await?;
    let (old, source) = role_in(&*tx, at.scope, user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    check_owner_change(st, at, Some(old), Some(role))?;
    check_last_owner(&*tx, at, Some(old), Some(role)).await?;
    set_role(&*tx, at.scope, user_id, role, &source).await?;
    audit::append(
        &*tx,
        at.event(auth, "member.role", at.label.clone()).details(
            serde_json::json!({"user": u.email, "from": old.as_str(), "to": role.as_str()}),
        ),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Member {
        user_id,
        email: u.email,
        name: u.name,
        role,
        source,
        created_at: Utc::now(),
    })
}

async fn remove_member_at(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    at: &At,
    user_id: Uuid,
    leaving: bool,
) -> Result<(), ApiError> {
    if !leaving {
        check(&at.grants, st, at.manage_perm(), at.domain)?;
    }
    let tx = st.write().await?;
    let Some((old, _)) = role_in(&*tx, at.scope, user_id).await? else {
        return Err(if leaving {
            ApiError::Conflict {
                detail: "you are not a direct member here".into(),
                fields: vec![],
            }
        } else {
            ApiError::NotFound
        });
    };
    if !leaving {
        check_owner_change(st, at, Some(old), None)?;
    }
    check_last_owner(&*tx, at, Some(old), None).await?;
    remove(&*tx, at.scope, user_id).await?;
    if leaving {
        if let Scope::Org(o) = at.scope {
            // Leaving an org leaves its projects too.
            project_member::Entity::delete_many()
                .filter(project_member::Column::OrgId.eq(o))
                .filter(project_member::Column::UserId.eq(user_id))
                .exec(&*tx)
                .await?;
        }
    }
    let action = if leaving {
        "member.leave"
    } else {
        "member.remove"
    };
    audit::append(
        &*tx,
        at.event(auth, action, at.label.clone())
            .details(serde_json::json!({"user_id": user_id, "role": old.as_str()})),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn list_invitations_at(st: &AppState, at: &At) -> Result<Vec<Invitation>, ApiError> {
    check(&at.grants, st, at.manage_perm(), at.domain)?;
    let mut q = invitation::Entity::find().filter(invitation::Column::OrgId.eq(at.scope.org_id()));
    q = match at.scope.project_id() {
        Some(p) => q.filter(invitation::Column::ProjectId.eq(p)),
        None => q.filter(invitation::Column::ProjectId.is_null()),
    };
    let rows = q
        .order_by_desc(invitation::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(rows.into_iter().map(Invitation::from).collect())
}

async fn create_invitation_at(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    at: &At,
    email: &str,
    role: Role,
) -> Result<Invitation, ApiError> {
    check(&at.grants, st, at.manage_perm(), at.domain)?;
    check_owner_change(st, at, None, Some(role))?;
    let email = email.trim().to_lowercase();
    let now = Utc::now();
    let tx = st.write().await?;
    let m = invitation::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email.clone()),
        org_id: Set(at.scope.org_id()),
        project_id: Set(at.scope.project_id()),
        role: Set(role.as_str().to_string()),
        invited_by: Set(Some(auth.user.id)),
        created_at: Set(now),
        expires_at: Set(now + Duration::days(INVITATION_DAYS)),
        claimed_at: Set(None),
        claimed_by: Set(None),
    }
    .insert(&*tx)
    .await?;
    audit::append(
        &*tx,
        at.event(auth, "invitation.create", format!("invitation:{}", m.id))
            .details(serde_json::json!({"email": email, "role": role.as_str()})),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Invitation::from(m))
}

async fn delete_invitation_at(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    at: &At,
    id: Uuid,
) -> Result<(), ApiError> {
    check(&at.grants, st, at.manage_perm(), at.domain)?;
    let tx = st.write().await?;
    let inv = invitation::Entity::find_by_id(id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    if inv.org_id != at.scope.org_id() || inv.project_id != at.scope.project_id() {
        return Err(ApiError::NotFound);
    }
    invitation::Entity::delete_by_id(id).exec(&*tx).await?;
    audit::append(
        &*tx,
        at.event(auth, "invitation.delete", format!("invitation:{id}")),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---- organization handlers ----

/// Members of an organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "members",
    params(("org" = String, Path)), responses((status = 200, body = Vec<Member>), ProblemResponses))]
async fn list_org_members(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<Member>>, ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    Ok(Json(list_members_at(&st, &at).await?))
}

/// Add an existing account to an organization.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "members", request_body = AddOrgMember,
    params(("org" = String, Path)), responses((status = 201, body = Member), ProblemResponses))]
async fn add_org_member(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<AddOrgMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    Ok((
        StatusCode::CREATED,
        Json(add_member_at(&st, &auth, &meta, &at, &req.email, req.role.into()).await?),
    ))
}

/// Change a member's role in an organization.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{user}", tag = "members", request_body = UpdateOrgMember,
    params(("org" = String, Path), ("user" = Uuid, Path)), responses((status = 200, body = Member), ProblemResponses))]
async fn update_org_member(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, user)): ApiPath<(String, Uuid)>,
    ApiJson(req): ApiJson<UpdateOrgMember>,
) -> Result<Json<Member>, ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    Ok(Json(
        update_member_at(&st, &auth, &meta, &at, user, req.role.into()).await?,
    ))
}

/// Remove a member from an organization.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{user}", tag = "members",
    params(("org" = String, Path), ("user" = Uuid, Path)), responses((status = 204, description = "Removed"), ProblemResponses))]
async fn remove_org_member(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, user)): ApiPath<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    remove_member_at(&st, &auth, &meta, &at, user, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leave an organization (and its projects).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/leave", tag = "members",
    params(("org" = String, Path)), responses((status = 204, description = "Left"), ProblemResponses))]
async fn leave_org(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    remove_member_at(&st, &auth, &meta, &at, auth.user.id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invitations of an organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invitations", tag = "members",
    params(("org" = String, Path)), responses((status = 200, body = Vec<Invitation>), ProblemResponses))]
async fn list_org_invitations(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<Invitation>>, ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    Ok(Json(list_invitations_at(&st, &at).await?))
}

/// Invite someone by email; claimed at their next sign-in.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations", tag = "members", request_body = AddOrgMember,
    params(("org" = String, Path)), responses((status = 201, body = Invitation), ProblemResponses))]
async fn create_org_invitation(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<AddOrgMember>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    Ok((
        StatusCode::CREATED,
        Json(create_invitation_at(&st, &auth, &meta, &at, &req.email, req.role.into()).await?),
    ))
}

/// Withdraw an invitation.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{invitation}", tag = "members",
    params(("org" = String, Path), ("invitation" = Uuid, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_org_invitation(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, id)): ApiPath<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let at = at_org(&st, &auth, &org).await?;
    delete_invitation_at(&st, &auth, &meta, &at, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- project handlers ----

/// Members of a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/members", tag = "members",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Member>), ProblemResponses))]
async fn list_project_members(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<Member>>, ApiError> {
    let (at, _) = at_project(scope).await?;
    Ok(Json(list_members_at(&st, &at).await?))
}

/// Add an existing account to a project.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/members", tag = "members", request_body = AddProjectMember,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Member), ProblemResponses))]
async fn add_project_member(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<AddProjectMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let (at, auth) = at_project(scope).await?;
    Ok((
        StatusCode::CREATED,
        Json(add_member_at(&st, &auth, &meta, &at, &req.email, req.role.into()).await?),
    ))
}

/// Change a member's role in a project.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}/members/{user}", tag = "members", request_body = UpdateProjectMember,
    params(("org" = String, Path), ("project" = String, Path), ("user" = Uuid, Path)), responses((status = 200, body = Member), ProblemResponses))]
async fn update_project_member(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, user)): ApiPath<(String, String, Uuid)>,
    ApiJson(req): ApiJson<UpdateProjectMember>,
) -> Result<Json<Member>, ApiError> {
    let (at, auth) = at_project(scope).await?;
    Ok(Json(
        update_member_at(&st, &auth, &meta, &at, user, req.role.into()).await?,
    ))
}

/// Remove a member from a project.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/members/{user}", tag = "members",
    params(("org" = String, Path), ("project" = String, Path), ("user" = Uuid, Path)), responses((status = 204, description = "Removed"), ProblemResponses))]
async fn remove_project_member(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, user)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let (at, auth) = at_project(scope).await?;
    remove_member_at(&st, &auth, &meta, &at, user, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leave a project.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/leave", tag = "members",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 204, description = "Left"), ProblemResponses))]
async fn leave_project(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
) -> Result<StatusCode, ApiError> {
    let (at, auth) = at_project(scope).await?;
    remove_member_at(&st, &auth, &meta, &at, auth.user.id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invitations of a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/invitations", tag = "members",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Invitation>), ProblemResponses))]
async fn list_project_invitations(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<Invitation>>, ApiError> {
    let (at, _) = at_project(scope).await?;
    Ok(Json(list_invitations_at(&st, &at).await?))
}

/// Invite someone to a project by email.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/invitations", tag = "members", request_body = AddProjectMember,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Invitation), ProblemResponses))]
async fn create_project_invitation(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<AddProjectMember>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    let (at, auth) = at_project(scope).await?;
    Ok((
        StatusCode::CREATED,
        Json(create_invitation_at(&st, &auth, &meta, &at, &req.email, req.role.into()).await?),
    ))
}

/// Withdraw a project invitation.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/invitations/{invitation}", tag = "members",
    params(("org" = String, Path), ("project" = String, Path), ("invitation" = Uuid, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_project_invitation(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let (at, auth) = at_project(scope).await?;
    delete_invitation_at(&st, &auth, &meta, &at, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
