//! Members and invitations of organizations and projects, role changes and
//! leaving. Invitations are by email and claimed at the invitee's next sign-in.

pub mod routes;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::{invitation, org_member, project_member, user};
use crate::error::ApiError;
use crate::rbac::Role;

/// Roles given in an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OrgRoleName {
    OrgOwner,
    OrgAdmin,
}

/// Roles given in a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectRoleName {
    ProjectAdmin,
    ProjectEditor,
    ProjectOperator,
    ProjectViewer,
}

impl From<OrgRoleName> for Role {
    fn from(r: OrgRoleName) -> Role {
        match r {
            OrgRoleName::OrgOwner => Role::OrgOwner,
            OrgRoleName::OrgAdmin => Role::OrgAdmin,
        }
    }
}

impl From<ProjectRoleName> for Role {
    fn from(r: ProjectRoleName) -> Role {
        match r {
            ProjectRoleName::ProjectAdmin => Role::ProjectAdmin,
            ProjectRoleName::ProjectEditor => Role::ProjectEditor,
            ProjectRoleName::ProjectOperator => Role::ProjectOperator,
            ProjectRoleName::ProjectViewer => Role::ProjectViewer,
        }
    }
}

/// Where a membership lives.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Org(Uuid),
    Project { org: Uuid, project: Uuid },
}

impl Scope {
    pub fn org_id(&self) -> Uuid {
        match self {
            Scope::Org(o) | Scope::Project { org: o, .. } => *o,
        }
    }
    pub fn project_id(&self) -> Option<Uuid> {
        match self {
            Scope::Org(_) => None,
            Scope::Project { project, .. } => Some(*project),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    #[schema(value_type = String, example = "org-admin")]
    pub role: Role,
    /// `manual`, `oidc` (from a group mapping) or `kubernetes` (Tenant admins).
    pub source: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    #[schema(value_type = String, example = "project-viewer")]
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub claimed_at: Option<DateTime<Utc>>,
}

impl From<invitation::Model> for Invitation {
    fn from(m: invitation::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            role: Role::parse(&m.role).unwrap_or(Role::ProjectViewer),
            created_at: m.created_at,
            expires_at: m.expires_at,
            claimed_at: m.claimed_at,
        }
    }
}

/// The role a user holds directly in a scope.
pub async fn role_in<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    user_id: Uuid,
) -> Result<Option<(Role, String)>, ApiError> {
    Ok(match scope {
        Scope::Org(o) => org_member::Entity::find_by_id((o, user_id))
            .one(db)
            .await?
            .and_then(|m| Role::parse(&m.role).map(|r| (r, m.source))),
        Scope::Project { project, .. } => project_member::Entity::find_by_id((project, user_id))
            .one(db)
            .await?
            .and_then(|m| Role::parse(&m.role).map(|r| (r, m.source))),
    })
}

/// Give `user_id` `role` in `scope`, replacing any role they had there.
pub async fn set_role<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    user_id: Uuid,
    role: Role,
    source: &str,
) -> Result<(), ApiError> {
    match scope {
        Scope::Org(o) => match org_member::Entity::find_by_id((o, user_id)).one(db).await? {
            Some(m) => {
                let mut am = m.into_active_model();
                am.role = Set(role.as_str().to_string());
                am.source = Set(source.to_string());
                am.update(db).await?;
            }
            None => {
                org_member::ActiveModel {
                    org_id: Set(o),
                    user_id: Set(user_id),
                    role: Set(role.as_str().to_string()),
                    source: Set(source.to_string()),
                    created_at: Set(Utc::now()),
                }
                .insert(db)
                .await?;
            }
        },
        Scope::Project { org, project } => {
            match project_member::Entity::find_by_id((project, user_id))
                .one(db)
                .await?
            {
                Some(m) => {
                    let mut am = m.into_active_model();
                    am.role = Set(role.as_str().to_string());
                    am.source = Set(source.to_string());
                    am.update(db).await?;
                }
                None => {
                    project_member::ActiveModel {
                        project_id: Set(project),
                        user_id: Set(user_id),
                        org_id: Set(org),
                        role: Set(role.as_str().to_string()),
                        source: Set(source.to_string()),
                        created_at: Set(Utc::now()),
                    }
                    .insert(db)
                    .await?;
                }
            }
        }
    }
    Ok(())
}

pub async fn remove<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    user_id: Uuid,
) -> Result<bool, ApiError> {
    let n = match scope {
        Scope::Org(o) => {
            org_member::Entity::delete_by_id((o, user_id))
                .exec(db)
                .await?
                .rows_affected
        }
        Scope::Project { project, .. } => {
            project_member::Entity::delete_by_id((project, user_id))
                .exec(db)
                .await?
                .rows_affected
        }
    };
    Ok(n > 0)
}

pub async fn owner_count<C: ConnectionTrait>(db: &C, org: Uuid) -> Result<u64, ApiError> {
    Ok(org_member::Entity::find()
        .filter(org_member::Column::OrgId.eq(org))
        .filter(org_member::Column::Role.eq(Role::OrgOwner.as_str()))
        .count(db)
        .await?)
}

/// Turn the pending invitations for this user's email into memberships.
pub async fn claim_invitations<C: ConnectionTrait>(
    db: &C,
    u: &user::Model,
    meta: &ClientMeta,
) -> Result<usize, ApiError> {
    let now = Utc::now();
    let pending = invitation::Entity::find()
        .filter(invitation::Column::Email.eq(u.email.as_str()))
        .filter(invitation::Column::ClaimedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .all(db)
        .await?;
    let n = pending.len();
    for inv in pending {
        let Some(role) = Role::parse(&inv.role) else {
            continue;
        };
        let scope = match inv.project_id {
            Some(p) => Scope::Project {
                org: inv.org_id,
                project: p,
            },
            None => Scope::Org(inv.org_id),
        };
        // An existing membership wins over the invitation's role.
        if role_in(db, scope, u.id).await?.is_none() {
            set_role(db, scope, u.id, role, "manual").await?;
        }
        let mut ev = AuditEvent::anonymous(
            &u.email,
            "invitation.claim",
            format!("invitation:{}", inv.id),
        )
        .org(inv.org_id)
        .details(serde_json::json!({"role": role.as_str()}));
        ev.actor_id = Some(u.id);
        if let Some(p) = inv.project_id {
            ev = ev.project(p);
        }
        let mut am = inv.into_active_model();
        am.claimed_at = Set(Some(now));
        am.claimed_by = Set(Some(u.id));
        am.update(db).await?;
        audit::append(db, ev, meta).await?;
    }
    Ok(n)
}
