//! Server-side sessions behind an HttpOnly cookie. The database keeps only
//! the SHA-256 of the cookie value. Also: ending all of a user's sessions,
//! and the background purge of expired ones.

use axum::http::HeaderValue;
use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::{CSRF_COOKIE, SESSION_COOKIE};
use crate::db::entities::{oidc_flow, session, user};
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
    // Every sign-in (password, SSO) ends here: a disabled account never
    // gets a session, whatever path led to it.
    let u = user::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if u.disabled_at.is_some() {
        return Err(ApiError::AccountDisabled);
    }
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
    // Disabling deletes the sessions; this catches one opened in between.
    if u.disabled_at.is_some() {
        return Err(ApiError::Unauthenticated);
    }
    Ok((s, u))
}

pub async fn delete<C: ConnectionTrait>(db: &C, id_hash: &str) -> Result<(), ApiError> {
    session::Entity::delete_by_id(id_hash.to_string())
        .exec(db)
        .await?;
    Ok(())
}

/// End the sessions of a user, all of them or all but `keep` (an `id_hash`);
/// how many ended.
pub async fn delete_all_of_user<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    keep: Option<&str>,
) -> Result<u64, ApiError> {
    let mut q = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(k) = keep {
        q = q.filter(session::Column::IdHash.ne(k));
    }
    Ok(q.exec(db).await?.rows_affected)
}

/// Delete the sessions whose time is up (users' and agents'), and the SSO
/// sign-ins abandoned before their callback (older than the flow's
/// lifetime); how many rows went. Expired sessions are refused anyway: this
/// keeps the tables small.
pub async fn purge_expired_sessions<C: ConnectionTrait>(db: &C) -> Result<u64, ApiError> {
    let now = Utc::now();
    let sessions = session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?
        .rows_affected;
    let flows = oidc_flow::Entity::delete_many()
        .filter(
            oidc_flow::Column::CreatedAt.lt(now - Duration::minutes(super::oidc::FLOW_TTL_MINUTES)),
        )
        .exec(db)
        .await?
        .rows_affected;
    // Agents' api tokens expire too; without this only the agent's next
    // sign-in would clear them.
    let agents = crate::fleet::entities::agent_session::Entity::delete_many()
        .filter(crate::fleet::entities::agent_session::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(sessions + flows + agents)
}

/// Run [`purge_expired_sessions`] every `session_purge_interval_secs`
/// (0: never). Each replica runs one; the deletes are idempotent.
pub fn spawn_purge(st: &AppState) {
    let every = st.config.session_purge_interval_secs;
    if every == 0 {
        return;
    }
    let db = st.db.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match purge_expired_sessions(&db).await {
                Ok(n) => tracing::info!(deleted = n, "purged expired sessions and sign-in states"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
            }
        }
    });
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
