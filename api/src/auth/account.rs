//! The signed-in user's own account: change the password, sign out
//! everywhere. Both act only with the session cookie (CSRF checked by
//! [`Auth`]): an API token is for automation inside an org and never acts on
//! its owner's account.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{password, sessions, Auth, AuthVia, ClientMeta};
use crate::audit::{self, AuditEvent, Outcome};
use crate::db::entities::user;
use crate::error::{ApiError, FieldError, Problem};
use crate::extract::{check, ApiJson, Validate};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(change_password))
        .routes(routes!(sign_out_everywhere))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password the account signs in with now.
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub current_password: String,
    /// At least 12 characters (the rule of new accounts); must differ from
    /// the current one.
    #[schema(min_length = 12, max_length = 1024, format = Password)]
    pub new_password: String,
}

impl Validate for ChangePassword {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        crate::users::check_presented_password(&mut e, "current_password", &self.current_password);
        crate::users::check_password(&mut e, "new_password", &self.new_password);
        if self.new_password == self.current_password {
            e.push(FieldError::new(
                "new_password",
                "must differ from the current password",
            ));
        }
        check::finish(e)
    }
}

/// Refuse API tokens: they must not act on their owner's account.
fn session_only(auth: &Auth) -> Result<&str, ApiError> {
    match &auth.via {
        AuthVia::Session { id_hash, .. } => Ok(id_hash),
        AuthVia::Token(_) => Err(ApiError::Forbidden),
    }
}

/// Change your password. Every other session of yours ends; this one stays.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "auth", request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; your other sessions ended"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed body (syntax, unknown or missing field)"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "Not signed in"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Called with an API token, or CSRF token missing"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The account has no password (single sign-on only)"),
        (status = 413, body = Problem, content_type = "application/problem+json", description = "Body too large"),
        (status = 415, body = Problem, content_type = "application/problem+json", description = "Body is not JSON"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "`current_password` is wrong, or `new_password` breaks the rules or equals the current one"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "Too many wrong passwords from this address (the sign-in limits); see Retry-After"),
    ))]
async fn change_password(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let keep = session_only(&auth)?.to_string();
    let Some(current_hash) = auth.user.password_hash.clone() else {
        return Err(ApiError::Conflict {
            detail: "this account signs in with single sign-on and has no password to change"
                .into(),
            fields: vec![],
        });
    };
    // Guessing the current password through a stolen session spends the
    // same budgets as guessing it at sign-in (`auth::throttle`): the
    // address's, and this account's from this address (then 429).
    let (email, addr) = (auth.user.email.as_str(), meta.addr.as_str());
    let delay = super::local::admit(&st, email, addr)?;
    tokio::time::sleep(delay).await;
    let ok = {
        let _slot = super::local::hash_slot(&st, email, addr).await?;
        password::verify_blocking(req.current_password.clone(), Some(current_hash)).await
    };
    if !ok {
        // Counted like a wrong sign-in; audited below as its own entry.
        st.metrics
            .count_refused(super::throttle::Reason::BadCredentials);
        st.login.failed(email, addr);
        let tx = st.write().await?;
        audit::append(
            &*tx,
            AuditEvent::by(
                &auth,
                "user.password_change",
                format!("user:{}", auth.user.email),
            )
            .outcome(Outcome::Failure)
            .details(serde_json::json!({"reason": "wrong current password"})),
            &meta,
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::invalid("current_password", "wrong password"));
    }
    let new_hash = password::hash_blocking(req.new_password.clone()).await?;
    let tx = st.write().await?;
    let u = user::Entity::find_by_id(auth.user.id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let mut am = u.into_active_model();
    am.password_hash = Set(Some(new_hash));
    am.update(&*tx).await?;
    let ended = sessions::delete_all_of_user(&*tx, auth.user.id, Some(&keep)).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "user.password_change",
            format!("user:{}", auth.user.email),
        )
        .details(serde_json::json!({"sessions_ended": ended})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere: end every session of yours, this one included, and
/// clear the cookies.
#[utoipa::path(delete, path = "/api/v1/me/sessions", tag = "auth",
    responses(
        (status = 204, description = "Every session of yours ended"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "Not signed in"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Called with an API token, or CSRF token missing"),
    ))]
async fn sign_out_everywhere(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
) -> Result<Response, ApiError> {
    session_only(&auth)?;
    let tx = st.write().await?;
    let ended = sessions::delete_all_of_user(&*tx, auth.user.id, None).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "auth.logout_everywhere",
            format!("user:{}", auth.user.email),
        )
        .details(serde_json::json!({"sessions_ended": ended})),
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
