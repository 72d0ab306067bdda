//! API tokens for automation: scoped to an org or project and a role, shown
//! once, stored as SHA-256, with expiry, revocation and last-used time.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{check, load_org, Auth, AuthVia, ClientMeta};
use crate::audit::{self, AuditEvent};
use crate::db::entities::{api_token, user};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::members::{OrgRoleName, ProjectRoleName};
use crate::rbac::{Domain, Grants, Permission, Role};
use crate::scope::{ProjectAccess, ProjectScope};
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

/// Tokens look like `weir_<prefix>_<secret>`; the prefix is kept in clear to recognise them.
const TOKEN_PREFIX: &str = "weir_";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_org_tokens, create_org_token))
        .routes(routes!(revoke_org_token))
        .routes(routes!(list_project_tokens, create_project_token))
        .routes(routes!(revoke_project_token))
}

pub async fn authenticate(st: &AppState, presented: &str) -> Result<Auth, ApiError> {
    if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 200 {
        return Err(ApiError::Unauthenticated);
    }
    let hash = sha256_hex(presented);
    // Taken before the reads, so a revocation committed meanwhile makes
    // what they return stale (see `auth::cache`).
    let generation = st.writes.generation();
    let (t, u) = match st.auth_cache.tokens.get(&hash, generation) {
        Some(found) => found,
        None => {
            let t = api_token::Entity::find()
                .filter(api_token::Column::TokenHash.eq(hash.as_str()))
                .one(&st.db)
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            let u = user::Entity::find_by_id(t.user_id)
                .one(&st.db)
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            st.auth_cache
                .tokens
                .insert(hash, generation, (t.clone(), u.clone()));
            (t, u)
        }
    };
    let now = Utc::now();
    if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::Unauthenticated);
    }
    // A disabled creator's tokens stop working at once (and again when enabled).
    if u.disabled_at.is_some() {
        return Err(ApiError::Unauthenticated);
    }
    if st.auth_cache.should_record_use(t.id, t.last_used_at) {
        // Bookkeeping only: not a change worth the write lock or an audit
        // entry; at most once a minute per token, so reads don't write.
        let r = api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(t.id))
            .exec(&st.db)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not record token use");
        }
    }
    Ok(Auth {
        user: u,
        via: AuthVia::Token(t),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// First characters of the token, to recognise it.
    pub prefix: String,
    #[schema(value_type = String, example = "project-viewer")]
    pub role: Role,
    /// Project slug for project tokens.
    pub project: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiToken {
    #[serde(flatten)]
    pub info: ApiToken,
    /// The token itself. Shown only in this answer; store it now.
    pub token: String,
}

fn view(m: api_token::Model, project: Option<String>) -> ApiToken {
    ApiToken {
        id: m.id,
        name: m.name,
        prefix: m.prefix,
        role: Role::parse(&m.role).unwrap_or(Role::ProjectViewer),
        project,
        created_by: m.user_id,
        created_at: m.created_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        last_used_at: m.last_used_at,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgToken {
    #[schema(schema_with = crate::extract::schema::text::<1, 128>, example = "ci-deploy")]
    pub name: String,
    pub role: OrgRoleName,
    /// Days until it expires, 1-3650; omit for no expiry.
    #[serde(default, deserialize_with = "crate::extract::int::opt")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectToken {
    #[schema(schema_with = crate::extract::schema::text::<1, 128>, example = "historian-reader")]
    pub name: String,
    pub role: ProjectRoleName,
    /// Days until it expires, 1-3650; omit for no expiry.
    #[serde(default, deserialize_with = "crate::extract::int::opt")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

fn check_common(e: &mut Vec<FieldError>, name: &str, days: Option<i64>) {
    chk::text(e, "name", name, 1, 128);
    if let Some(d) = days {
        if !(1..=3650).contains(&d) {
            e.push(FieldError::new(
                "expires_in_days",
                "must be between 1 and 3650",
            ));
        }
    }
}

impl Validate for CreateOrgToken {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        check_common(&mut e, &self.name, self.expires_in_days);
        chk::finish(e)
    }
}
impl Validate for CreateProjectToken {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        check_common(&mut e, &self.name, self.expires_in_days);
        chk::finish(e)
    }
}

/// The new role must not exceed the creator's: every permission the role
/// carries in the scope, the creator must hold there too.
fn check_no_escalation(
    st: &AppState,
    grants: &Grants,
    role: Role,
    domain: Domain,
) -> Result<(), ApiError> {
    use crate::rbac::GrantDomain;
    let gd = match domain {
        Domain::Project { project, .. } => GrantDomain::Project(project),
        Domain::Org(o) => GrantDomain::Org(o),
        Domain::System => GrantDomain::System,
    };
    for line in crate::rbac::parse_policy(crate::rbac::POLICY) {
        if line[0] != role.as_str() {
            continue;
        }
        let Some(perm) = Permission::ALL.iter().find(|p| p.as_str() == line[2]) else {
            continue;
        };
        if st.rbac.role_allows(role, &gd, *perm) && !grants.allows(&st.rbac, *perm, &domain) {
            return Err(ApiError::invalid(
                "role",
                "cannot give a token more rights than you have",
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn create_token(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    org_id: Uuid,
    project: Option<(Uuid, String)>,
    name: &str,
    role: Role,
    days: Option<i64>,
    label: String,
) -> Result<CreatedApiToken, ApiError> {
    let secret = random_token();
    let prefix_part: String = secret
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    let token = format!("{TOKEN_PREFIX}{prefix_part}_{secret}");
    let now = Utc::now();
    let tx = st.write().await?;
    let m = api_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(name.trim().to_string()),
        user_id: Set(auth.user.id),
        org_id: Set(org_id),
        project_id: Set(project.as_ref().map(|p| p.0)),
        role: Set(role.as_str().to_string()),
        prefix: Set(format!("{TOKEN_PREFIX}{prefix_part}")),
        token_hash: Set(sha256_hex(&token)),
        created_at: Set(now),
        expires_at: Set(days.map(|d| now + Duration::days(d))),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(&*tx)
    .await?;
    let mut ev = AuditEvent::by(auth, "token.create", label)
        .org(org_id)
        .details(serde_json::json!({"token_id": m.id, "name": m.name, "role": role.as_str()}));
    if let Some((p, _)) = &project {
        ev = ev.project(*p);
    }
    audit::append(&*tx, ev, meta).await?;
    tx.commit().await?;
    Ok(CreatedApiToken {
        info: view(m, project.map(|p| p.1)),
        token,
    })
}

async fn revoke(
    st: &AppState,
    auth: &Auth,
    meta: &ClientMeta,
    org_id: Uuid,
    project_id: Option<Uuid>,
    id: Uuid,
    label: String,
) -> Result<(), ApiError> {
    let tx = st.write().await?;
    let t = api_token::Entity::find_by_id(id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    if t.org_id != org_id || t.project_id != project_id {
        return Err(ApiError::NotFound);
    }
    if t.revoked_at.is_none() {
        let mut am = t.into_active_model();
        am.revoked_at = Set(Some(Utc::now()));
        am.update(&*tx).await?;
    }
    let mut ev = AuditEvent::by(auth, "token.revoke", label)
        .org(org_id)
        .details(serde_json::json!({"token_id": id}));
    if let Some(p) = project_id {
        ev = ev.project(p);
    }
    audit::append(&*tx, ev, meta).await?;
    tx.commit().await?;
    Ok(())
}

/// Org-scoped API tokens.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/tokens", tag = "tokens",
    params(("org" = String, Path)), responses((status = 200, body = Vec<ApiToken>), ProblemResponses))]
async fn list_org_tokens(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgTokensManage, Domain::Org(o.id))?;
    let rows = api_token::Entity::find()
        .filter(api_token::Column::OrgId.eq(o.id))
        .filter(api_token::Column::ProjectId.is_null())
        .order_by_desc(api_token::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(rows.into_iter().map(|m| view(m, None)).collect()))
}

/// Create an org-scoped token. The answer holds the token, once.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/tokens", tag = "tokens", request_body = CreateOrgToken,
    params(("org" = String, Path)), responses((status = 201, body = CreatedApiToken), ProblemResponses))]
async fn create_org_token(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<CreateOrgToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    let d = Domain::Org(o.id);
    check(&grants, &st, Permission::OrgTokensManage, d)?;
    let role: Role = req.role.into();
    check_no_escalation(&st, &grants, role, d)?;
    let t = create_token(
        &st,
        &auth,
        &meta,
        o.id,
        None,
        &req.name,
        role,
        req.expires_in_days,
        format!("org:{}", o.slug),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Revoke an org-scoped token.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/tokens/{token}", tag = "tokens",
    params(("org" = String, Path), ("token" = Uuid, Path)), responses((status = 204, description = "Revoked"), ProblemResponses))]
async fn revoke_org_token(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath((org, id)): ApiPath<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgTokensManage, Domain::Org(o.id))?;
    revoke(&st, &auth, &meta, o.id, None, id, format!("org:{}", o.slug)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Project-scoped API tokens.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/tokens", tag = "tokens",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<ApiToken>), ProblemResponses))]
async fn list_project_tokens(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    let ProjectAccess { project: p, .. } = scope.require(Permission::ProjectTokensManage).await?;
    let rows = api_token::Entity::find()
        .filter(api_token::Column::ProjectId.eq(p.id))
        .order_by_desc(api_token::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| view(m, Some(p.slug.clone())))
            .collect(),
    ))
}

/// Create a project-scoped token. The answer holds the token, once.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/tokens", tag = "tokens", request_body = CreateProjectToken,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = CreatedApiToken), ProblemResponses))]
async fn create_project_token(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateProjectToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    let at = scope.require(Permission::ProjectTokensManage).await?;
    let role: Role = req.role.into();
    check_no_escalation(&st, &at.grants, role, at.domain())?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let t = create_token(
        &st,
        &auth,
        &meta,
        o.id,
        Some((p.id, p.slug.clone())),
        &req.name,
        role,
        req.expires_in_days,
        format!("project:{}/{}", o.slug, p.slug),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Revoke a project-scoped token.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/tokens/{token}", tag = "tokens",
    params(("org" = String, Path), ("project" = String, Path), ("token" = Uuid, Path)), responses((status = 204, description = "Revoked"), ProblemResponses))]
async fn revoke_project_token(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectTokensManage).await?;
    revoke(
        &st,
        &auth,
        &meta,
        o.id,
        Some(p.id),
        id,
        format!("project:{}/{}", o.slug, p.slug),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
