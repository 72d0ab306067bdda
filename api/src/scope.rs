//! [`ProjectScope`]: the extractor of every route under
//! `/api/v1/orgs/{org}/projects/{project}/...`. A handler takes it, asks
//! for the permission it needs, and gets the org, the project and the
//! caller back:
//!
//! ```text
//! async fn get_thing(State(st): State<AppState>, scope: ProjectScope) -> Result<…, ApiError> {
//!     let ProjectAccess { org, project, .. } = scope.require(Permission::ProjectRead).await?;
//!     …
//! }
//! ```
//!
//! The answers are those of `auth::load_project` and `auth::check`: 404
//! when the org or project is missing or the caller cannot see it (the same
//! answer for both, so names do not leak), 403 when they see it but lack
//! the permission.
//!
//! Extraction only reads the caller and the path; the org, the project and
//! the grants are loaded by [`ProjectScope::load`] / [`ProjectScope::require`]
//! in the handler, after the body extractors ran. So a bad body still
//! answers 400/415/422 before a 404 or 403, as it always has. Handlers that
//! look a child resource up before checking (a gateway, a cluster: 404
//! before 403) call [`ProjectScope::load`], find the child, then
//! [`ProjectAccess::require`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::audit::AuditEvent;
use crate::auth::{check_with, load_project, Auth};
use crate::db::entities::{org, project};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::rbac::{Domain, Grants, Permission, Rbac};
use crate::state::AppState;

/// The caller and the `{org}` / `{project}` of the path, not yet loaded.
pub struct ProjectScope {
    auth: Auth,
    st: AppState,
    org: String,
    project: String,
}

/// The two path segments every project route has (others are ignored).
#[derive(Deserialize)]
struct ScopePath {
    org: String,
    project: String,
}

impl FromRequestParts<AppState> for ProjectScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        // The caller first (401 before a bad path), as the handlers'
        // `auth: Auth, ApiPath(…)` extractors did.
        let auth = Auth::from_request_parts(parts, st).await?;
        let ApiPath(ScopePath { org, project }) =
            ApiPath::<ScopePath>::from_request_parts(parts, st).await?;
        Ok(ProjectScope {
            auth,
            st: st.clone(),
            org,
            project,
        })
    }
}

impl ProjectScope {
    /// The caller.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Load the org, the project and the caller's grants in that org (404
    /// when the caller cannot see the project), without a permission check.
    pub async fn load(self) -> Result<ProjectAccess, ApiError> {
        let (org, project, grants) =
            load_project(&self.st, &self.auth, &self.org, &self.project).await?;
        Ok(ProjectAccess {
            auth: self.auth,
            org,
            project,
            grants,
            rbac: self.st.rbac,
        })
    }

    /// [`Self::load`], then [`ProjectAccess::require`].
    pub async fn require(self, perm: Permission) -> Result<ProjectAccess, ApiError> {
        let at = self.load().await?;
        at.require(perm)?;
        Ok(at)
    }
}

/// A project the caller can see, with the caller and their grants.
pub struct ProjectAccess {
    pub auth: Auth,
    pub org: org::Model,
    pub project: project::Model,
    pub grants: Grants,
    rbac: Rbac,
}

impl ProjectAccess {
    /// 403 unless the caller holds `perm` in this project.
    pub fn require(&self, perm: Permission) -> Result<(), ApiError> {
        self.require_in(perm, &self.project)
    }

    /// 403 unless the caller holds `perm` in `project`, another project of
    /// the same org (404 when they cannot see it).
    pub fn require_in(&self, perm: Permission, project: &project::Model) -> Result<(), ApiError> {
        check_with(&self.grants, &self.rbac, perm, domain(&self.org, project))
    }

    /// This project as an RBAC domain.
    pub fn domain(&self) -> Domain {
        domain(&self.org, &self.project)
    }

    /// An audit entry by the caller, in this org and project.
    pub fn event(&self, action: &str, target: String) -> AuditEvent {
        AuditEvent::by(&self.auth, action, target)
            .org(self.org.id)
            .project(self.project.id)
    }
}

fn domain(o: &org::Model, p: &project::Model) -> Domain {
    Domain::Project {
        org: o.id,
        project: p.id,
    }
}
