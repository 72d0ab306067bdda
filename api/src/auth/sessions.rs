//! Server-side sessions behind an HttpOnly cookie. The database keeps only
//! the SHA-256 of the cookie value.

use axum::http::HeaderValue;
use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use uuid::Uuid;

use super::{CSRF_COOKIE, SESSION_COOKIE};
use crate::db::entities::{session, user};
use crate::error::ApiError;
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

/// A new session: the cookie value (secret) and its CSRF token.
pub struct NewSession {
    pub cookie_value: String,
    pub csrf_token: String,
    pub max_age_secs: u64,
}

pub async fn create<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    user_id: Uuid,
) -> Result<NewSession, ApiError> {
    let cookie_value = random_token();
    let csrf_token = random_token();
    let now = Utc::now();
    let ttl = st.config.session_ttl_secs;
    session::ActiveModel {
        id_hash: Set(sha256_hex(&cookie_value)),
        user_id: Set(user_id),
        csrf_token: Set(csrf_token.clone()),
        created_at: Set(now),
        expires_at: Set(now + Duration::seconds(ttl as i64)),
    }
    .insert(db)
    .await?;
    Ok(NewSession {
        cookie_value,
        csrf_token,
        max_age_secs: ttl,
    })
}

pub async fn lookup(
    st: &AppState,
    cookie_value: &str,
) -> Result<(session::Model, user::Model), ApiError> {
    let s = session::Entity::find_by_id(sha256_hex(cookie_value))
        .one(&st.db)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if s.expires_at <= Utc::now() {
        return Err(ApiError::Unauthenticated);
    }
    let u = user::Entity::find_by_id(s.user_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok((s, u))
}

pub async fn delete<C: ConnectionTrait>(db: &C, id_hash: &str) -> Result<(), ApiError> {
    session::Entity::delete_by_id(id_hash.to_string())
        .exec(db)
        .await?;
    Ok(())
}

/// `Set-Cookie` values for a new session: the HttpOnly session cookie and a
/// script-readable CSRF cookie (double submit for the console).
pub fn set_cookies(st: &AppState, s: &NewSession) -> Vec<HeaderValue> {
    let secure = if st.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let a = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        s.cookie_value, s.max_age_secs
    );
    let b = format!(
        "{CSRF_COOKIE}={}; Path=/; SameSite=Lax; Max-Age={}{secure}",
        s.csrf_token, s.max_age_secs
    );
    [a, b]
        .into_iter()
        .filter_map(|v| HeaderValue::from_str(&v).ok())
        .collect()
}

pub fn clear_cookies(st: &AppState) -> Vec<HeaderValue> {
    let secure = if st.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    [SESSION_COOKIE, CSRF_COOKIE]
        .into_iter()
        .filter_map(|n| {
            HeaderValue::from_str(&format!(
                "{n}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
            ))
            .ok()
        })
        .collect()
}
