//! Local sign-in: login (argon2id, throttled per address and account, see
//! [`throttle`]), logout, and who-am-I.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::throttle::{self, Reason};
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
    #[schema(schema_with = crate::extract::schema::email)]
    pub email: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        check::email(&mut e, "email", &self.email);
        crate::users::check_presented_password(&mut e, "password", &self.password);
        check::finish(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// Send as `X-CSRF-Token` on every change made with the session cookie.
    pub csrf_token: String,
}

// Throttled per address and per account: see `auth::throttle`.
/// Sign in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), ProblemResponses))]
async fn login(
    State(st): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let email = req.email.trim().to_lowercase();
    let addr = meta.addr.as_str();
    let delay = admit(&st, &email, addr)?;
    // The account's recent failures (from any address) slow every attempt,
    // before the check, so the wait says nothing about the password.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&st.db)
        .await?;
    let now = Utc::now();
    // A lock stored on the account itself (written by older versions) holds.
    if let Some(until) = found
        .as_ref()
        .and_then(|u| u.locked_until)
        .filter(|t| *t > now)
    {
        return Err(refuse(
            &st,
            &email,
            addr,
            Reason::Locked,
            ApiError::Locked(until),
        ));
    }
    let ok = {
        let _slot = hash_slot(&st, &email, addr).await?;
        password::verify_blocking(
            req.password.clone(),
            found.as_ref().and_then(|u| u.password_hash.clone()),
        )
        .await
    };
    match found {
        Some(u) if ok => signed_in(&st, u, &email, &meta).await,
        _ => Err(failed(&st, &email, &meta).await?),
    }
}

/// The sign-in limits before a password is checked (here and for the
/// current password of a password change), counting a refusal.
pub(crate) fn admit(
    st: &AppState,
    email: &str,
    addr: &str,
) -> Result<std::time::Duration, ApiError> {
    st.login.admit(email, addr).map_err(|e| {
        let why = match e {
            ApiError::Locked(_) => Reason::Locked,
            _ => Reason::AddressLimit,
        };
        refuse(st, email, addr, why, e)
    })
}

/// A password-hash slot, counting a refusal when none is free in time.
pub(crate) async fn hash_slot(
    st: &AppState,
    email: &str,
    addr: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    st.login
        .hash_slot()
        .await
        .map_err(|e| refuse(st, email, addr, Reason::Busy, e))
}

/// Count a sign-in refused before its password was checked.
fn refuse(st: &AppState, email: &str, addr: &str, why: Reason, e: ApiError) -> ApiError {
    st.metrics.count_refused(why);
    st.login.refused(email, addr, why);
    e
}

/// A wrong password or unknown email. Only the first failure of a window
/// (and one that locks the address out) takes the write lock for its own
/// audit entry; the others are tallied (`auth::throttle`).
async fn failed(st: &AppState, email: &str, meta: &ClientMeta) -> Result<ApiError, ApiError> {
    st.metrics.count_refused(Reason::BadCredentials);
    let f = st.login.failed(email, &meta.addr);
    if f.first_in_window || f.locked {
        let tx = st.write().await?;
        audit::append(
            &*tx,
            AuditEvent::anonymous(email, "auth.login", format!("user:{email}"))
                .outcome(Outcome::Failure)
                .details(serde_json::json!({"reason": "bad credentials", "locked": f.locked})),
            meta,
        )
        .await?;
        tx.commit().await?;
    }
    Ok(ApiError::InvalidCredentials("wrong email or password"))
}

/// The right password: write what was tallied for this address, start the
/// session.
async fn signed_in(
    st: &AppState,
    u: user::Model,
    email: &str,
    meta: &ClientMeta,
) -> Result<Response, ApiError> {
    let tally = st.login.succeeded(email, &meta.addr);
    let done = start_session(st, u, email, meta, tally.as_ref()).await;
    if let (Err(_), Some(t)) = (&done, tally) {
        // Nothing was written (e.g. a disabled account): keep the count.
        st.login.restore(email, &meta.addr, t);
    }
    done
}

async fn start_session(
    st: &AppState,
    u: user::Model,
    email: &str,
    meta: &ClientMeta,
    tally: Option<&throttle::Tally>,
) -> Result<Response, ApiError> {
    let tx = st.write().await?;
    // Disabled accounts (users::lifecycle): refused only after the right
    // password, audited; nothing else of the sign-in is written.
    if u.disabled_at.is_some() {
        return crate::users::lifecycle::refuse_disabled_login(tx, &u, meta).await;
    }
    if let Some(t) = tally {
        throttle::append_tally(&*tx, email, &meta.addr, t, st.login.audit_window()).await?;
    }
    let mut am = u.into_active_model();
    am.failed_logins = Set(0);
    am.locked_until = Set(None);
    am.last_login_at = Set(Some(Utc::now()));
    let u = am.update(&*tx).await?;
    claim_invitations(&*tx, &u, meta).await?;
    let session = sessions::create(&*tx, st, u.id).await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous(&u.email, "auth.login", format!("user:{}", u.email))
            .details(serde_json::json!({"method": "password"})),
        meta,
    )
    .await
    .map(|_| ())?;
    tx.commit().await?;
    let mut resp = Json(LoginResponse {
        user: UserView::from(&u),
        csrf_token: session.csrf_token.clone(),
    })
    .into_response();
    for c in sessions::set_cookies(st, &session) {
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
#[utoipa::path(get, path = "/api/v1/auth/providers", tag = "auth", security(()),
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
