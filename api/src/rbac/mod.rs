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
    /// Runs the plant: reads everything in the project, writes setpoints,
    /// acknowledges and shelves alarms; changes nothing else.
    ProjectOperator,
    ProjectViewer,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::SystemAdmin,
        Role::OrgOwner,
        Role::OrgAdmin,
        Role::ProjectAdmin,
        Role::ProjectEditor,
        Role::ProjectOperator,
        Role::ProjectViewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system-admin",
            Role::OrgOwner => "org-owner",
            Role::OrgAdmin => "org-admin",
            Role::ProjectAdmin => "project-admin",
            Role::ProjectEditor => "project-editor",
            Role::ProjectOperator => "project-operator",
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
            Role::ProjectAdmin | Role::ProjectEditor | Role::ProjectOperator | Role::ProjectViewer
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs. Add a variant, its name, a place in [`Permission::ALL`]
/// and rows in policy.csv.
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
    /// Operate the plant: write setpoints, acknowledge and shelve alarms.
    ProjectOperate,
    ProjectMembersRead,
    ProjectMembersManage,
    ProjectTokensManage,
    UsersManage,
    SystemAuditRead,
}

impl Permission {
    /// Every permission, for the decision table of [`Rbac`].
    pub const ALL: [Permission; 22] = [
        Permission::OrgCreate,
        Permission::OrgRead,
        Permission::OrgUpdate,
        Permission::OrgDelete,
        Permission::OrgMembersRead,
        Permission::OrgMembersManage,
        Permission::OrgOwnersManage,
        Permission::OrgAuditRead,
        Permission::OrgTokensManage,
        Permission::OrgSsoRead,
        Permission::OrgSsoManage,
        Permission::ProjectCreate,
        Permission::ProjectRead,
        Permission::ProjectUpdate,
        Permission::ProjectDelete,
        Permission::ProjectWrite,
        Permission::ProjectOperate,
        Permission::ProjectMembersRead,
        Permission::ProjectMembersManage,
        Permission::ProjectTokensManage,
        Permission::UsersManage,
        Permission::SystemAuditRead,
    ];

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
            Permission::ProjectOperate => "project.operate",
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

/// The enforcer, built once from the compiled-in model and policy, and its
/// decisions for every (role, kind of domain, permission), asked once at
/// start: Casbin evaluates its matcher script against every policy row on
/// each call, two or more calls per request, which was a large share of a
/// cheap request's CPU.
#[derive(Clone)]
pub struct Rbac {
    enforcer: Arc<Enforcer>,
    /// `None` when the policy names a single domain rather than a kind
    /// (`org:*`), so that the kind alone does not decide: then every
    /// decision is Casbin's, per call.
    table: Option<Arc<DecisionTable>>,
}

/// Casbin's answers, indexed by role, domain kind and permission (each
/// entry asked for its own variants, so a permission missing from
/// [`Permission::ALL`] is simply asked of Casbin per call).
struct DecisionTable {
    allows: Vec<Option<bool>>,
}

impl DecisionTable {
    const PERMS: usize = Permission::ALL.len() + 1;

    fn index(role: Role, kind: usize, perm: Permission) -> usize {
        // Discriminants of field-less enums: exhaustive by construction;
        // one beyond ALL's length lands in the last (never filled) slot.
        let p = (perm as usize).min(Self::PERMS - 1);
        ((role as usize) * DOMAIN_KINDS + kind) * Self::PERMS + p
    }

    fn len() -> usize {
        Role::ALL.len() * DOMAIN_KINDS * Self::PERMS
    }
}

/// System, org, project.
const DOMAIN_KINDS: usize = 3;

impl GrantDomain {
    fn kind(&self) -> usize {
        match self {
            GrantDomain::System => 0,
            GrantDomain::Org(_) => 1,
            GrantDomain::Project(_) => 2,
        }
    }
}

/// Whether every policy row's domain is `system` or a whole kind (`org:*`,
/// `project:*`), so a decision depends on the domain's kind only.
fn policy_is_by_kind(rules: &[Vec<String>]) -> bool {
    rules.iter().all(|r| {
        matches!(
            r.get(1).map(String::as_str),
            Some("system" | "org:*" | "project:*")
        )
    })
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
        let by_kind = policy_is_by_kind(&rules);
        enforcer
            .add_policies(rules)
            .await
            .map_err(|e| ApiError::internal(format!("rbac policy: {e}")))?;
        let mut rbac = Self {
            enforcer: Arc::new(enforcer),
            table: None,
        };
        if by_kind {
            // Any id stands for its kind (the policy names kinds only).
            let samples = [
                GrantDomain::System,
                GrantDomain::Org(Uuid::nil()),
                GrantDomain::Project(Uuid::nil()),
            ];
            let mut allows = vec![None; DecisionTable::len()];
            for role in Role::ALL {
                for d in &samples {
                    for perm in Permission::ALL
                        .into_iter()
                        .filter(|p| (*p as usize) < Permission::ALL.len())
                    {
                        allows[DecisionTable::index(role, d.kind(), perm)] =
                            Some(rbac.enforce(role, d, perm));
                    }
                }
            }
            rbac.table = Some(Arc::new(DecisionTable { allows }));
        }
        Ok(rbac)
    }

    /// Does `role`, held in `domain`, carry `perm`?
    pub fn role_allows(&self, role: Role, domain: &GrantDomain, perm: Permission) -> bool {
        let known = self
            .table
            .as_ref()
            .and_then(|t| {
                t.allows
                    .get(DecisionTable::index(role, domain.kind(), perm))
            })
            .copied()
            .flatten();
        known.unwrap_or_else(|| self.enforce(role, domain, perm))
    }

    /// Casbin's decision.
    fn enforce(&self, role: Role, domain: &GrantDomain, perm: Permission) -> bool {
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

    /// The table gives Casbin's own answer for every role, permission and
    /// domain (with ids other than the ones it was built with).
    #[tokio::test]
    async fn the_decision_table_is_casbins() {
        let rbac = Rbac::new().await.unwrap();
        assert!(rbac.table.is_some(), "the policy names domain kinds only");
        let id = Uuid::new_v4();
        for role in Role::ALL {
            for d in [
                GrantDomain::System,
                GrantDomain::Org(id),
                GrantDomain::Project(id),
            ] {
                for perm in Permission::ALL {
                    assert_eq!(
                        rbac.role_allows(role, &d, perm),
                        rbac.enforce(role, &d, perm),
                        "{role} in {} for {}",
                        d.key(),
                        perm.as_str()
                    );
                }
            }
        }
        assert!(!policy_is_by_kind(&[vec![
            "org-admin".into(),
            format!("org:{id}"),
            "org.read".into()
        ]]));
    }

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
