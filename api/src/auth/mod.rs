//! Who is calling: session cookie (with CSRF on changes) or `Authorization:
//! Bearer` API token. Handlers take [`Auth`] and call [`Auth::require`].

pub mod account;
pub mod cache;
pub mod local;
pub mod oidc;
pub mod password;
pub mod sessions;
pub mod throttle;
pub mod tokens;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts, Method};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::db::entities::{api_token, org, org_member, project, project_member, user};
use crate::error::ApiError;
use crate::rbac::{Domain, Grant, GrantDomain, Grants, Permission, Role};
use crate::secrets;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "weir_session";
pub const CSRF_COOKIE: &str = "weir_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller proved who they are.
#[derive(Clone, Debug)]
pub enum AuthVia {
    Session { id_hash: String, csrf: String },
    Token(api_token::Model),
}

/// A signed-in caller.
#[derive(Clone, Debug)]
pub struct Auth {
    pub user: user::Model,
    pub via: AuthVia,
}

/// The same extractor under the name other modules may expect.
pub type CurrentUser = Auth;

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        if let Some(bearer) = bearer(parts) {
            return tokens::authenticate(st, &bearer).await;
        }
        let Some(cookie) = cookie(parts, SESSION_COOKIE) else {
            return Err(ApiError::Unauthenticated);
        };
        let (session, user) = sessions::lookup(st, &cookie).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !secrets::constant_time_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(Auth {
            user,
            via: AuthVia::Session {
                id_hash: session.id_hash,
                csrf: session.csrf_token,
            },
        })
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Value of a cookie in the request.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl Auth {
    /// Name written to the audit log.
    pub fn actor_label(&self) -> String {
        match &self.via {
            AuthVia::Session { .. } => self.user.email.clone(),
            AuthVia::Token(t) => format!("{} (token {})", self.user.email, t.prefix),
        }
    }

    fn token(&self) -> Option<&api_token::Model> {
        match &self.via {
            AuthVia::Token(t) => Some(t),
            AuthVia::Session { .. } => None,
        }
    }

    /// The caller's roles that count inside `org_id` (and system-wide).
    pub async fn grants_in_org(&self, st: &AppState, org_id: Uuid) -> Result<Grants, ApiError> {
        let mut grants = Vec::new();
        if self.user.system_admin {
            grants.push(Grant {
                role: Role::SystemAdmin,
                domain: GrantDomain::System,
            });
        }
        grants.extend(member_grants(st, self.user.id, org_id).await?);
        let mut g = Grants {
            grants,
            limit: None,
        };
        if let Some(t) = self.token() {
            // A token acts only inside its own org, and never beyond its role
            // nor beyond what its creator may still do.
            if t.org_id != org_id {
                return Ok(Grants::default());
            }
            let role = Role::parse(&t.role).ok_or(ApiError::Unauthenticated)?;
            let domain = match t.project_id {
                Some(p) => GrantDomain::Project(p),
                None => GrantDomain::Org(t.org_id),
            };
            g.limit = Some(Grant { role, domain });
        }
        Ok(g)
    }

    /// Grants for system-wide permissions (no org involved).
    pub fn system_grants(&self) -> Grants {
        let mut grants = Vec::new();
        // Tokens are scoped to an org or project: never system-wide.
        if self.user.system_admin && self.token().is_none() {
            grants.push(Grant {
                role: Role::SystemAdmin,
                domain: GrantDomain::System,
            });
        }
        Grants {
            grants,
            limit: None,
        }
    }

    /// Check a permission; 404 when the caller cannot see the org or project
    /// at all (same answer as for a missing one), 403 when they can but may not.
    pub async fn require(
        &self,
        st: &AppState,
        perm: Permission,
        domain: Domain,
    ) -> Result<(), ApiError> {
        let grants = match domain {
            Domain::System => self.system_grants(),
            Domain::Org(o) | Domain::Project { org: o, .. } => self.grants_in_org(st, o).await?,
        };
        check(&grants, st, perm, domain)
    }
}

/// The roles `user` holds as a member of `org_id` and of its projects.
async fn member_grants(st: &AppState, user: Uuid, org_id: Uuid) -> Result<Vec<Grant>, ApiError> {
    let generation = st.writes.generation();
    if let Some(g) = st.auth_cache.grants.get(&(user, org_id), generation) {
        return Ok(g);
    }
    let mut grants = Vec::new();
    if let Some(m) = org_member::Entity::find_by_id((org_id, user))
        .one(&st.db)
        .await?
    {
        if let Some(role) = Role::parse(&m.role) {
            grants.push(Grant {
                role,
                domain: GrantDomain::Org(org_id),
            });
        }
    }
    let pms = project_member::Entity::find()
        .filter(project_member::Column::UserId.eq(user))
        .filter(project_member::Column::OrgId.eq(org_id))
        .all(&st.db)
        .await?;
    for m in pms {
        if let Some(role) = Role::parse(&m.role) {
            grants.push(Grant {
                role,
                domain: GrantDomain::Project(m.project_id),
            });
        }
    }
    st.auth_cache
        .grants
        .insert((user, org_id), generation, grants.clone());
    Ok(grants)
}

/// The decision of [`Auth::require`] on grants already loaded.
pub fn check(
    grants: &Grants,
    st: &AppState,
    perm: Permission,
    domain: Domain,
) -> Result<(), ApiError> {
    check_with(grants, &st.rbac, perm, domain)
}

/// [`check`] with the enforcer at hand (no state needed).
pub fn check_with(
    grants: &Grants,
    rbac: &crate::rbac::Rbac,
    perm: Permission,
    domain: Domain,
) -> Result<(), ApiError> {
    match domain {
        Domain::System => {}
        Domain::Org(_) => {
            if !grants.sees_org() {
                return Err(ApiError::NotFound);
            }
        }
        Domain::Project { org, project } => {
            if !grants.sees_project(org, project) {
                return Err(ApiError::NotFound);
            }
        }
    }
    if grants.allows(rbac, perm, &domain) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// Find an org by slug, as the caller may see it (404 otherwise).
pub async fn load_org(
    st: &AppState,
    auth: &Auth,
    slug: &str,
) -> Result<(org::Model, Grants), ApiError> {
    let generation = st.writes.generation();
    let org = match st.auth_cache.orgs.get(&slug.to_string(), generation) {
        Some(o) => o,
        None => {
            let o = org::Entity::find()
                .filter(org::Column::Slug.eq(slug))
                .one(&st.db)
                .await?
                .ok_or(ApiError::NotFound)?;
            st.auth_cache
                .orgs
                .insert(slug.to_string(), generation, o.clone());
            o
        }
    };
    let grants = auth.grants_in_org(st, org.id).await?;
    if !grants.sees_org() {
        return Err(ApiError::NotFound);
    }
    Ok((org, grants))
}

/// Find a project by org and project slug, as the caller may see it.
pub async fn load_project(
    st: &AppState,
    auth: &Auth,
    org_slug: &str,
    project_slug: &str,
) -> Result<(org::Model, project::Model, Grants), ApiError> {
    let generation = st.writes.generation();
    let (org, grants) = load_org(st, auth, org_slug).await?;
    let key = (org.id, project_slug.to_string());
    let project = match st.auth_cache.projects.get(&key, generation) {
        Some(p) => p,
        None => {
            let p = project::Entity::find()
                .filter(project::Column::OrgId.eq(org.id))
                .filter(project::Column::Slug.eq(project_slug))
                .one(&st.db)
                .await?
                .ok_or(ApiError::NotFound)?;
            st.auth_cache.projects.insert(key, generation, p.clone());
            p
        }
    };
    if !grants.sees_project(org.id, project.id) {
        return Err(ApiError::NotFound);
    }
    Ok((org, project, grants))
}

/// Client address and user agent, for the audit log and the sign-in limits.
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    pub addr: String,
    pub user_agent: String,
}

/// The reverse proxies trusted to name the client (`WEIR_TRUSTED_PROXIES`),
/// a request extension set by [`crate::router`].
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub std::sync::Arc<Vec<crate::outbound::Cidr>>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer`: walk `X-Forwarded-For` from the right
    /// (the hops our proxies appended) to the first untrusted address.
    fn client(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            // Garbage in the header: the last trusted hop is all we know.
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => client = ip,
                Err(_) => break,
            }
        }
        client
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let addr = match (peer, parts.extensions.get::<TrustedProxies>()) {
            (Some(ip), Some(t)) => t.client(ip, &parts.headers).to_string(),
            (Some(ip), None) => ip.to_string(),
            (None, _) => String::new(),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect())
            .unwrap_or_default();
        Ok(ClientMeta { addr, user_agent })
    }
}
