//! HTTP handlers of local accounts: list, create (system admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{EntityTrait, QueryOrder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::insert_user;
use crate::audit::{self, AuditEvent};
use crate::auth::{password, Auth, ClientMeta};
use crate::db::entities::user;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check, ApiJson, Validate};
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user))
}

#[derive(Debug, Serialize, ToSchema, Clone)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub system_admin: bool,
    /// Whether the account can sign in with a password.
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// When a system administrator disabled the account; null while it is
    /// enabled. A disabled account cannot sign in and its API tokens are refused.
    #[schema(required = true)]
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<&user::Model> for UserView {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            system_admin: u.system_admin,
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            last_login_at: u.last_login_at,
            disabled_at: u.disabled_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(schema_with = crate::extract::schema::email)]
    pub email: String,
    #[schema(schema_with = crate::extract::schema::text::<1, 128>)]
    pub name: String,
    /// At least 12 characters. Omit for an SSO-only account.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
    #[serde(default)]
    pub system_admin: bool,
}

impl Validate for CreateUser {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        check::email(&mut e, "email", &self.email);
        check::text(&mut e, "name", &self.name, 1, 128);
        if let Some(p) = &self.password {
            super::check_password(&mut e, "password", p);
        }
        check::finish(e)
    }
}

/// All accounts (system admins).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserView>), ProblemResponses))]
async fn list_users(
    State(st): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<UserView>>, ApiError> {
    auth.require(&st, Permission::UsersManage, Domain::System)
        .await?;
    let users = user::Entity::find()
        .order_by_asc(user::Column::Email)
        .all(&st.db)
        .await?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

/// Create a local account (system admins).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), ProblemResponses))]
async fn create_user(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    auth.require(&st, Permission::UsersManage, Domain::System)
        .await?;
    let hash = match req.password.clone() {
        Some(p) => Some(password::hash_blocking(p).await?),
        None => None,
    };
    let tx = st.write().await?;
    let u = insert_user(&*tx, &req.email, &req.name, hash, req.system_admin).await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "user.create", format!("user:{}", u.email))
            .details(serde_json::json!({"system_admin": u.system_admin})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&u))))
}
