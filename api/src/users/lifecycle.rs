//! Disabling and enabling accounts (system admins). A disabled account keeps
//! its data and roles but cannot act: its sessions are deleted at once, a
//! sign-in with its right password is answered 403 (a wrong one still 401,
//! so a guesser learns nothing), SSO refuses it and the API tokens it
//! created are refused until it is enabled again.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, Set,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::UserView;
use crate::audit::{self, AuditEvent, Outcome};
use crate::auth::{sessions, Auth, ClientMeta};
use crate::db::entities::user;
use crate::db::WriteTx;
use crate::error::{ApiError, Problem};
use crate::extract::ApiPath;
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
}

/// Disable an account (system admins): its sessions end now, it cannot
/// sign in, its API tokens are refused. Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, body = UserView, description = "The account, disabled"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "The id is not a UUID"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "Not signed in"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Not a system administrator (API tokens never are), or CSRF token missing"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such account"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Your own account, or the last enabled system administrator"),
    ))]
async fn disable_user(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    auth.require(&st, Permission::UsersManage, Domain::System)
        .await?;
    let tx = st.write().await?;
    let u = load(&tx, id).await?;
    if u.disabled_at.is_some() {
        return Ok(Json(UserView::from(&u)));
    }
    // Under the write lock: two admins disabling each other at once still
    // leave one.
    if u.system_admin && enabled_admins(&tx).await? <= 1 {
        return Err(ApiError::Conflict {
            detail: "the last enabled system administrator cannot be disabled".into(),
            fields: vec![],
        });
    }
    if u.id == auth.user.id {
        return Err(ApiError::Conflict {
            detail: "you cannot disable your own account".into(),
            fields: vec![],
        });
    }
    let mut am = u.into_active_model();
    am.disabled_at = Set(Some(Utc::now()));
    let u = am.update(&*tx).await?;
    let ended = sessions::delete_all_of_user(&*tx, u.id, None).await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "user.disable", format!("user:{}", u.email))
            .details(serde_json::json!({"sessions_ended": ended})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(UserView::from(&u)))
}

/// Enable a disabled account again (system admins): it may sign in, and
/// its API tokens that are neither revoked nor expired work again. Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, body = UserView, description = "The account, enabled"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "The id is not a UUID"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "Not signed in"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "Not a system administrator (API tokens never are), or CSRF token missing"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such account"),
    ))]
async fn enable_user(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    auth.require(&st, Permission::UsersManage, Domain::System)
        .await?;
    let tx = st.write().await?;
    let u = load(&tx, id).await?;
    if u.disabled_at.is_none() {
        return Ok(Json(UserView::from(&u)));
    }
    let mut am = u.into_active_model();
    am.disabled_at = Set(None);
    let u = am.update(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "user.enable", format!("user:{}", u.email)),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(UserView::from(&u)))
}

async fn load(tx: &WriteTx, id: Uuid) -> Result<user::Model, ApiError> {
    user::Entity::find_by_id(id)
        .one(&**tx)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn enabled_admins(tx: &WriteTx) -> Result<u64, ApiError> {
    Ok(user::Entity::find()
        .filter(user::Column::SystemAdmin.eq(true))
        .filter(user::Column::DisabledAt.is_null())
        .count(&**tx)
        .await?)
}

/// A sign-in with the right password for a disabled account: audited as
/// denied, answered 403 (only after the password was checked, so that a
/// guesser cannot tell disabled accounts apart). Consumes the sign-in's
/// transaction: nothing else of the sign-in is kept.
pub async fn refuse_disabled_login<T>(
    tx: WriteTx,
    u: &user::Model,
    meta: &ClientMeta,
) -> Result<T, ApiError> {
    audit::append(
        &*tx,
        AuditEvent::anonymous(&u.email, "auth.login", format!("user:{}", u.email))
            .outcome(Outcome::Denied)
            .details(serde_json::json!({"reason": "disabled"})),
        meta,
    )
    .await?;
    tx.commit().await?;
    Err(ApiError::AccountDisabled)
}
