//! Role-based access control: Casbin with domains, deny by default.
//!
//! The model (`api/rbac/model.conf`) and the role → permission policy
//! (`api/rbac/policy.csv`) are compiled in. Role assignments are rows in our
//! tables; [`Grants`] collects the ones that matter for one organization and
//! [`Grants::allows`] asks Casbin for each (role, domain) pair.

use std::fmt;
use std::sync::Arc;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

pub const MODEL: &str = include_str!("../../rbac/model.conf");
pub const POLICY: &str = include_str!("../../rbac/policy.csv");

/// The roles. Org roles apply in `org:{id}` (and its projects), project
/// roles in `project:{id}`, `system-admin` in `system`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    SystemAdmin,
    OrgOwner,
    OrgAdmin,
    ProjectAdmin,
    ProjectEditor,
    ProjectViewer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::SystemAdmin,
        Role::OrgOwner,
        Role::OrgAdmin,
        Role::ProjectAdmin,
        Role::ProjectEditor,
        Role::ProjectViewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system-admin",
            Role::OrgOwner => "org-owner",
            Role::OrgAdmin => "org-admin",
            Role::ProjectAdmin => "project-admin",
            Role::ProjectEditor => "project-editor",
            Role::ProjectViewer => "project-viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_org_role(self) -> bool {
        matches!(self, Role::OrgOwner | Role::OrgAdmin)
    }

    pub fn is_project_role(self) -> bool {
        matches!(
            self,
            Role::ProjectAdmin | Role::ProjectEditor | Role::ProjectViewer
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs. Add a variant, its name, and rows in policy.csv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    OrgCreate,
    OrgRead,
    OrgUpdate,
    OrgDelete,
    OrgMembersRead,
    OrgMembersManage,
    OrgOwnersManage,
    OrgAuditRead,
    OrgTokensManage,
    OrgSsoRead,
    OrgSsoManage,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
    ProjectDelete,
    /// Change what a project contains (gateways, configs, alert rules...).
    ProjectWrite,
    ProjectMembersRead,
    ProjectMembersManage,
    ProjectTokensManage,
    UsersManage,
    SystemAuditRead,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrgCreate => "org.create",
            Permission::OrgRead => "org.read",
            Permission::OrgUpdate => "org.update",
            Permission::OrgDelete => "org.delete",
            Permission::OrgMembersRead => "org.members.read",
            Permission::OrgMembersManage => "org.members.manage",
            Permission::OrgOwnersManage => "org.owners.manage",
            Permission::OrgAuditRead => "org.audit.read",
            Permission::OrgTokensManage => "org.tokens.manage",
            Permission::OrgSsoRead => "org.sso.read",
            Permission::OrgSsoManage => "org.sso.manage",
            Permission::ProjectCreate => "project.create",
            Permission::ProjectRead => "project.read",
            Permission::ProjectUpdate => "project.update",
            Permission::ProjectDelete => "project.delete",
            Permission::ProjectWrite => "project.write",
            Permission::ProjectMembersRead => "project.members.read",
            Permission::ProjectMembersManage => "project.members.manage",
            Permission::ProjectTokensManage => "project.tokens.manage",
            Permission::UsersManage => "users.manage",
            Permission::SystemAuditRead => "system.audit.read",
        }
    }
}

/// Where a permission is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    System,
    Org(Uuid),
    Project { org: Uuid, project: Uuid },
}

/// A domain a role is held in, as Casbin sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantDomain {
    System,
    Org(Uuid),
    Project(Uuid),
}

impl GrantDomain {
    pub fn key(&self) -> String {
        match self {
            GrantDomain::System => "system".to_string(),
            GrantDomain::Org(id) => format!("org:{id}"),
            GrantDomain::Project(id) => format!("project:{id}"),
        }
    }

    /// Whether a grant held here counts for a request in `target`.
    fn covers(&self, target: &Domain) -> bool {
        match (self, target) {
            (GrantDomain::System, _) => true,
            (GrantDomain::Org(g), Domain::Org(o)) => g == o,
            (GrantDomain::Org(g), Domain::Project { org, .. }) => g == org,
            // Project roles may carry org-level permissions (org.read) for
            // their own org; the policy says which.
            (GrantDomain::Project(_), Domain::Org(_)) => true,
            (GrantDomain::Project(g), Domain::Project { project, .. }) => g == project,
            (_, Domain::System) => false,
        }
    }
}

/// One role held in one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    pub role: Role,
    pub domain: GrantDomain,
}

/// The enforcer, built once from the compiled-in model and policy.
#[derive(Clone)]
pub struct Rbac {
    enforcer: Arc<Enforcer>,
}

impl Rbac {
    pub async fn new() -> Result<Self, ApiError> {
        let model = DefaultModel::from_str(MODEL)
            .await
            .map_err(|e| ApiError::internal(format!("rbac model: {e}")))?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .map_err(|e| ApiError::internal(format!("rbac enforcer: {e}")))?;
        let rules = parse_policy(POLICY);
        enforcer
            .add_policies(rules)
            .await
            .map_err(|e| ApiError::internal(format!("rbac policy: {e}")))?;
        Ok(Self {
            enforcer: Arc::new(enforcer),
        })
    }

    /// Does `role`, held in `domain`, carry `perm`?
    pub fn role_allows(&self, role: Role, domain: &GrantDomain, perm: Permission) -> bool {
        self.enforcer
            .enforce((role.as_str(), domain.key().as_str(), perm.as_str()))
            .unwrap_or(false)
    }
}

/// `p, role, domain, act` lines of policy.csv.
pub fn parse_policy(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let parts: Vec<String> = l.split(',').map(|p| p.trim().to_string()).collect();
            (parts.len() == 4 && parts[0] == "p").then(|| parts[1..].to_vec())
        })
        .collect()
}

/// The roles a caller holds that matter inside one organization (plus system).
#[derive(Clone, Debug, Default)]
pub struct Grants {
    pub grants: Vec<Grant>,
    /// For API tokens: the token's own role and scope; a request must pass
    /// both the creator's grants and this.
    pub limit: Option<Grant>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Any grant in this org or one of its projects (or system): the org is visible.
    pub fn sees_org(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The project is visible: a grant covers it.
    pub fn sees_project(&self, org: Uuid, project: Uuid) -> bool {
        let d = Domain::Project { org, project };
        self.grants.iter().any(|g| g.domain.covers(&d))
            && self.limit.is_none_or(|l| l.domain.covers(&d))
    }

    pub fn allows(&self, rbac: &Rbac, perm: Permission, target: &Domain) -> bool {
        let by_grants = self
            .grants
            .iter()
            .filter(|g| g.domain.covers(target))
            .any(|g| rbac.role_allows(g.role, &g.domain, perm));
        let by_limit = self
            .limit
            .is_none_or(|l| l.domain.covers(target) && rbac.role_allows(l.role, &l.domain, perm));
        by_grants && by_limit
    }

    pub fn has_system_admin(&self) -> bool {
        self.grants.iter().any(|g| g.role == Role::SystemAdmin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn policy_denies_by_default_and_scopes_by_domain() {
        let rbac = Rbac::new().await.unwrap();
        let org = Uuid::new_v4();
        let other = Uuid::new_v4();
        let p1 = Uuid::new_v4();
        let viewer = Grants {
            grants: vec![Grant {
                role: Role::ProjectViewer,
                domain: GrantDomain::Project(p1),
            }],
            limit: None,
        };
        assert!(viewer.allows(
            &rbac,
            Permission::ProjectRead,
            &Domain::Project { org, project: p1 }
        ));
        assert!(!viewer.allows(
            &rbac,
            Permission::ProjectUpdate,
            &Domain::Project { org, project: p1 }
        ));
        let p2 = Uuid::new_v4();
        assert!(!viewer.allows(
            &rbac,
            Permission::ProjectRead,
            &Domain::Project { org, project: p2 }
        ));
        let owner = Grants {
            grants: vec![Grant {
                role: Role::OrgOwner,
                domain: GrantDomain::Org(org),
            }],
            limit: None,
        };
        assert!(owner.allows(
            &rbac,
            Permission::ProjectDelete,
            &Domain::Project { org, project: p2 }
        ));
        assert!(!owner.allows(&rbac, Permission::OrgRead, &Domain::Org(other)));
        assert!(!owner.allows(&rbac, Permission::OrgCreate, &Domain::System));
        let admin = Grants {
            grants: vec![Grant {
                role: Role::SystemAdmin,
                domain: GrantDomain::System,
            }],
            limit: None,
        };
        assert!(admin.allows(&rbac, Permission::OrgCreate, &Domain::System));
        assert!(admin.allows(&rbac, Permission::OrgDelete, &Domain::Org(other)));
    }
}
