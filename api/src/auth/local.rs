//! Local sign-in: login (argon2id, slowed then locked after failures),
//! logout, and who-am-I.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{password, sessions, Auth, AuthVia, ClientMeta};
use crate::audit::{self, AuditEvent, Outcome};
use crate::db::entities::{org, org_member, project, project_member, user};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check, ApiJson, Validate};
use crate::members::claim_invitations;
use crate::rbac::Role;
use crate::state::AppState;
use crate::users::UserView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(providers))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(max_length = 320, example = "admin@weir.local")]
    pub email: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        check::email(&mut e, "email", &self.email);
        if self.password.is_empty() || self.password.len() > 1024 {
            e.push(FieldError::new("password", "must be 1 to 1024 bytes"));
        }
        check::finish(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// Send as `X-CSRF-Token` on every change made with the session cookie.
    pub csrf_token: String,
}

/// Sign in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), ProblemResponses))]
async fn login(
    State(st): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let email = req.email.trim().to_lowercase();
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&st.db)
        .await?;
    let now = Utc::now();
    if let Some(u) = &found {
        if let Some(until) = u.locked_until.filter(|t| *t > now) {
            let tx = st.write().await?;
            audit::append(
                &*tx,
                AuditEvent::anonymous(&email, "auth.login", format!("user:{email}"))
                    .outcome(Outcome::Denied)
                    .details(serde_json::json!({"reason": "locked"})),
                &meta,
            )
            .await?;
            tx.commit().await?;
            return Err(ApiError::Locked(until));
        }
    }
    let ok = password::verify_blocking(
        req.password.clone(),
        found.as_ref().and_then(|u| u.password_hash.clone()),
    )
    .await;

    let tx = st.write().await?;
    if !ok {
        let mut failures = 1u32;
        let mut locked = false;
        if let Some(u) = &found {
            // Re-read under the write lock: concurrent failures all count.
            let cur = user::Entity::find_by_id(u.id)
                .one(&*tx)
                .await?
                .ok_or(ApiError::NotFound)?;
            failures = cur.failed_logins.max(0) as u32 + 1;
            let mut am = cur.into_active_model();
            if failures >= st.config.login_max_failures {
                locked = true;
                am.failed_logins = Set(0);
                am.locked_until = Set(Some(
                    now + chrono::Duration::seconds(st.config.login_lockout_secs as i64),
                ));
            } else {
                am.failed_logins = Set(failures as i32);
            }
            am.update(&*tx).await?;
        }
        audit::append(
            &*tx,
            AuditEvent::anonymous(&email, "auth.login", format!("user:{email}"))
                .outcome(Outcome::Failure)
                .details(serde_json::json!({"reason": "bad credentials", "locked": locked})),
            &meta,
        )
        .await?;
        tx.commit().await?;
        // Slow down guessing: each consecutive failure waits longer (capped).
        let delay = (st.config.login_failure_delay_ms * failures as u64).min(3000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        return Err(ApiError::InvalidCredentials("wrong email or password"));
    }
    let u = found.ok_or(ApiError::InvalidCredentials("wrong email or password"))?;
    let mut am = u.clone().into_active_model();
    am.failed_logins = Set(0);
    am.locked_until = Set(None);
    am.last_login_at = Set(Some(now));
    let u = am.update(&*tx).await?;
    claim_invitations(&*tx, &u, &meta).await?;
    let session = sessions::create(&*tx, &st, u.id).await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous(&u.email, "auth.login", format!("user:{}", u.email))
            .details(serde_json::json!({"method": "password"})),
        &meta,
    )
    .await
    .map(|_| ())?;
    tx.commit().await?;
    let mut resp = Json(LoginResponse {
        user: UserView::from(&u),
        csrf_token: session.csrf_token.clone(),
    })
    .into_response();
    for c in sessions::set_cookies(&st, &session) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// End the session and clear the cookies.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out"), ProblemResponses))]
async fn logout(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
) -> Result<Response, ApiError> {
    let tx = st.write().await?;
    if let AuthVia::Session { id_hash, .. } = &auth.via {
        sessions::delete(&*tx, id_hash).await?;
    }
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "auth.logout", format!("user:{}", auth.user.email)),
        &meta,
    )
    .await?;
    tx.commit().await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in sessions::clear_cookies(&st) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgRole {
    pub org: String,
    pub name: String,
    #[schema(value_type = String, example = "org-admin")]
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectRole {
    pub org: String,
    pub project: String,
    pub name: String,
    #[schema(value_type = String, example = "project-viewer")]
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user: UserView,
    /// Present when signed in with the session cookie.
    pub csrf_token: Option<String>,
    /// `session` or `token`.
    pub auth_method: String,
    pub orgs: Vec<OrgRole>,
    pub projects: Vec<ProjectRole>,
}

/// The signed-in user and their roles.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, body = Me), ProblemResponses))]
async fn me(State(st): State<AppState>, auth: Auth) -> Result<Json<Me>, ApiError> {
    let mut orgs = Vec::new();
    for m in org_member::Entity::find()
        .filter(org_member::Column::UserId.eq(auth.user.id))
        .all(&st.db)
        .await?
    {
        if let (Some(o), Some(role)) = (
            org::Entity::find_by_id(m.org_id).one(&st.db).await?,
            Role::parse(&m.role),
        ) {
            orgs.push(OrgRole {
                org: o.slug,
                name: o.name,
                role,
            });
        }
    }
    let mut projects = Vec::new();
    for m in project_member::Entity::find()
        .filter(project_member::Column::UserId.eq(auth.user.id))
        .all(&st.db)
        .await?
    {
        let p = project::Entity::find_by_id(m.project_id)
            .one(&st.db)
            .await?;
        let o = org::Entity::find_by_id(m.org_id).one(&st.db).await?;
        if let (Some(p), Some(o), Some(role)) = (p, o, Role::parse(&m.role)) {
            projects.push(ProjectRole {
                org: o.slug,
                project: p.slug,
                name: p.name,
                role,
            });
        }
    }
    let (csrf_token, method) = match &auth.via {
        AuthVia::Session { csrf, .. } => (Some(csrf.clone()), "session"),
        AuthVia::Token(_) => (None, "token"),
    };
    Ok(Json(Me {
        user: UserView::from(&auth.user),
        csrf_token,
        auth_method: method.to_string(),
        orgs,
        projects,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Providers {
    pub local: bool,
    pub oidc: Option<OidcProviderInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OidcProviderInfo {
    pub name: String,
    /// Send the browser here to sign in with SSO.
    pub login_url: String,
}

/// How one can sign in (for the console's login page).
#[utoipa::path(get, path = "/api/v1/auth/providers", tag = "auth",
    responses((status = 200, body = Providers)))]
async fn providers(State(st): State<AppState>) -> Json<Providers> {
    Json(Providers {
        local: true,
        oidc: st.config.oidc.enabled().then(|| OidcProviderInfo {
            name: st.config.oidc.display_name.clone(),
            login_url: "/api/v1/auth/oidc/login".to_string(),
        }),
    })
}
