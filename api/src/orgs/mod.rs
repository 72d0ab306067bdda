//! Organizations: their HTTP API ([`routes`]), the SSO group → role
//! mappings ([`sso`]), and inserting one (also used by the Kubernetes
//! `Tenant` sync).

pub mod routes;
pub mod sso;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use uuid::Uuid;

use crate::db::entities::org;
use crate::db::is_unique_violation;
use crate::error::ApiError;

pub use routes::{CreateOrg, Org, UpdateOrg};

/// Insert an org (no membership, no audit).
pub async fn insert_org<C: ConnectionTrait>(
    db: &C,
    slug: &str,
    name: &str,
    description: &str,
    managed_by: Option<&str>,
) -> Result<org::Model, ApiError> {
    let now = Utc::now();
    org::ActiveModel {
        id: Set(Uuid::new_v4()),
        slug: Set(slug.to_string()),
        name: Set(name.trim().to_string()),
        description: Set(description.to_string()),
        managed_by: Set(managed_by.map(str::to_string)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict("an organization with this slug exists", Some("slug"))
        } else {
            e.into()
        }
    })
}
