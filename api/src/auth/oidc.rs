//! OpenID Connect single sign-on: discovery, authorization code + PKCE +
//! state + nonce, ID token verification, just-in-time users, invitations and
//! the per-organization groups → roles mapping.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration, Utc};
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use serde::Deserialize;
use tokio::sync::OnceCell;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{sessions, ClientMeta};
use crate::audit::{self, AuditEvent, Outcome};
use crate::config::OidcConfig;
use crate::db::entities::{
    group_mapping, oidc_flow, oidc_identity, org_member, project_member, user,
};
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiQuery;
use crate::members::{claim_invitations, role_in, set_role, Scope as MScope};
use crate::rbac::Role;
use crate::state::AppState;

/// A sign-in must come back from the provider within this time.
const FLOW_TTL_MINUTES: i64 = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oidc_login))
        .routes(routes!(oidc_callback))
}

/// The provider's discovered metadata, fetched on first use and kept.
#[derive(Default)]
pub struct OidcProvider {
    metadata: OnceCell<CoreProviderMetadata>,
}

fn http_client() -> Result<openidconnect::reqwest::Client, ApiError> {
    openidconnect::reqwest::ClientBuilder::new()
        // Following redirects from the provider would open SSRF holes.
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(ApiError::internal)
}

impl OidcProvider {
    async fn metadata(&self, cfg: &OidcConfig) -> Result<&CoreProviderMetadata, ApiError> {
        let issuer = cfg.issuer.clone().ok_or(ApiError::NotFound)?;
        self.metadata
            .get_or_try_init(|| async {
                let http = http_client()?;
                let url = IssuerUrl::new(issuer).map_err(ApiError::internal)?;
                CoreProviderMetadata::discover_async(url, &http)
                    .await
                    .map_err(|e| {
                        ApiError::Unavailable(format!("OpenID provider discovery failed: {e}"))
                    })
            })
            .await
    }
}

fn redirect_url(st: &AppState) -> Result<RedirectUrl, ApiError> {
    RedirectUrl::new(format!(
        "{}/api/v1/auth/oidc/callback",
        st.config.public_url.trim_end_matches('/')
    ))
    .map_err(ApiError::internal)
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Only same-site paths: never redirect to another host after sign-in.
fn safe_return_to(s: Option<&str>) -> String {
    match s {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 1024 =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// Path of the console to come back to after sign-in.
    pub return_to: Option<String>,
}

/// Start single sign-on: redirects to the OpenID provider.
#[utoipa::path(get, path = "/api/v1/auth/oidc/login", tag = "auth", params(LoginQuery),
    responses((status = 303, description = "Redirect to the OpenID provider"), (status = 503, description = "Provider unreachable"), ProblemResponses))]
async fn oidc_login(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let cfg = &st.config.oidc;
    if !cfg.enabled() {
        return Err(ApiError::NotFound);
    }
    let md = st.oidc.metadata(cfg).await?.clone();
    let client = CoreClient::from_provider_metadata(
        md,
        ClientId::new(cfg.client_id.clone().unwrap_or_default()),
        cfg.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect_url(&st)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client.authorize_url(
        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in cfg.scopes.split_whitespace() {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
    let tx = st.write().await?;
    // Forget abandoned sign-ins.
    oidc_flow::Entity::delete_many()
        .filter(oidc_flow::Column::CreatedAt.lt(Utc::now() - Duration::minutes(FLOW_TTL_MINUTES)))
        .exec(&*tx)
        .await?;
    oidc_flow::ActiveModel {
        state: Set(state.secret().clone()),
        nonce: Set(nonce.secret().clone()),
        pkce_verifier: Set(verifier.secret().clone()),
        return_to: Set(safe_return_to(q.return_to.as_deref())),
        created_at: Set(Utc::now()),
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    Ok(redirect(url.as_str()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
}

/// What we keep from a verified ID token.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

/// The provider sends the browser back here; signs the user in.
#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", tag = "auth", params(CallbackQuery),
    responses((status = 303, description = "Signed in; redirect to the console"), ProblemResponses))]
async fn oidc_callback(
    State(st): State<AppState>,
    meta: ClientMeta,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let cfg = &st.config.oidc;
    if !cfg.enabled() {
        return Err(ApiError::NotFound);
    }
    let result = verify_callback(&st, &q).await;
    let (ident, return_to) = match result {
        Ok(v) => v,
        Err(e) => {
            let tx = st.write().await?;
            audit::append(
                &*tx,
                AuditEvent::anonymous("oidc", "auth.login", "oidc")
                    .outcome(Outcome::Failure)
                    .details(serde_json::json!({"method": "oidc", "reason": e.to_string()})),
                &meta,
            )
            .await?;
            tx.commit().await?;
            return Err(e);
        }
    };
    let tx = st.write().await?;
    let u = jit_user(&*tx, &ident).await?;
    claim_invitations(&*tx, &u, &meta).await?;
    apply_group_mappings(&*tx, &u, &ident.groups, &meta).await?;
    let session = sessions::create(&*tx, &st, u.id).await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous(&u.email, "auth.login", format!("user:{}", u.email)).details(
            serde_json::json!({"method": "oidc", "issuer": ident.issuer, "subject": ident.subject, "groups": ident.groups}),
        ),
        &meta,
    )
    .await?;
    tx.commit().await?;
    let mut resp = redirect(&return_to);
    for c in sessions::set_cookies(&st, &session) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

async fn verify_callback(
    st: &AppState,
    q: &CallbackQuery,
) -> Result<(VerifiedIdentity, String), ApiError> {
    let cfg = &st.config.oidc;
    if let Some(err) = &q.error {
        return Err(ApiError::InvalidCredentials(if err == "access_denied" {
            "sign-in was cancelled at the identity provider"
        } else {
            "the identity provider refused the sign-in"
        }));
    }
    let (Some(code), Some(state)) = (&q.code, &q.state) else {
        return Err(ApiError::BadRequest {
            detail: "code and state are required".into(),
            fields: vec![crate::error::FieldError::new("code", "required")],
        });
    };
    // The flow is single use: take it out before anything else.
    let tx = st.write().await?;
    let flow = oidc_flow::Entity::find_by_id(state.clone())
        .one(&*tx)
        .await?;
    if flow.is_some() {
        oidc_flow::Entity::delete_by_id(state.clone())
            .exec(&*tx)
            .await?;
    }
    tx.commit().await?;
    let flow = flow.ok_or(ApiError::InvalidCredentials(
        "unknown or already used sign-in state",
    ))?;
    if Utc::now() - flow.created_at > Duration::minutes(FLOW_TTL_MINUTES) {
        return Err(ApiError::InvalidCredentials(
            "sign-in took too long; try again",
        ));
    }
    let md = st.oidc.metadata(cfg).await?.clone();
    let issuer = md.issuer().to_string();
    let client = CoreClient::from_provider_metadata(
        md,
        ClientId::new(cfg.client_id.clone().unwrap_or_default()),
        cfg.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect_url(st)?);
    let http = http_client()?;
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .map_err(ApiError::internal)?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OIDC code exchange failed");
            ApiError::InvalidCredentials("the identity provider did not accept the sign-in code")
        })?;
    use openidconnect::TokenResponse;
    let id_token = token.id_token().ok_or(ApiError::InvalidCredentials(
        "the identity provider sent no ID token",
    ))?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(flow.nonce.clone()))
        .map_err(|e| {
            tracing::warn!(error = %e, "ID token verification failed");
            ApiError::InvalidCredentials("the ID token did not verify")
        })?;
    let email =
        claims
            .email()
            .map(|e| e.as_str().to_lowercase())
            .ok_or(ApiError::InvalidCredentials(
                "the ID token has no email claim",
            ))?;
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_string())
        .unwrap_or_else(|| email.clone());
    // The signature was verified above; read the configured groups claim
    // from the same token's payload.
    let groups = groups_from_jwt(&id_token.to_string(), &cfg.groups_claim);
    Ok((
        VerifiedIdentity {
            issuer,
            subject: claims.subject().as_str().to_string(),
            email,
            name,
            groups,
        },
        flow.return_to,
    ))
}

/// The groups claim (array of strings, or one string) of a JWT's payload.
pub fn groups_from_jwt(jwt: &str, claim: &str) -> Vec<String> {
    let Some(payload) = jwt.split('.').nth(1) else {
        return vec![];
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    match v.get(claim) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => vec![],
    }
}

/// Find the user for a verified identity, linking by email or creating one.
pub async fn jit_user<C: ConnectionTrait>(
    db: &C,
    ident: &VerifiedIdentity,
) -> Result<user::Model, ApiError> {
    if let Some(link) =
        oidc_identity::Entity::find_by_id((ident.issuer.clone(), ident.subject.clone()))
            .one(db)
            .await?
    {
        if let Some(u) = user::Entity::find_by_id(link.user_id).one(db).await? {
            let mut am = u.into_active_model();
            am.last_login_at = Set(Some(Utc::now()));
            return Ok(am.update(db).await?);
        }
    }
    let existing = user::Entity::find()
        .filter(user::Column::Email.eq(ident.email.as_str()))
        .one(db)
        .await?;
    let u = match existing {
        Some(u) => u,
        None => crate::users::insert_user(db, &ident.email, &ident.name, None, false).await?,
    };
    oidc_identity::ActiveModel {
        issuer: Set(ident.issuer.clone()),
        subject: Set(ident.subject.clone()),
        user_id: Set(u.id),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    let mut am = u.into_active_model();
    am.last_login_at = Set(Some(Utc::now()));
    Ok(am.update(db).await?)
}

/// Make the user's SSO-given roles match their groups now: add what the
/// mappings give, drop earlier SSO-given roles that no longer apply.
/// Roles given by hand are never touched.
pub async fn apply_group_mappings<C: ConnectionTrait>(
    db: &C,
    u: &user::Model,
    groups: &[String],
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let mappings = group_mapping::Entity::find().all(db).await?;
    let mut wanted: Vec<(MScope, Role)> = Vec::new();
    for m in mappings.iter().filter(|m| groups.contains(&m.group_name)) {
        let Some(role) = Role::parse(&m.role) else {
            continue;
        };
        let scope = match m.project_id {
            Some(p) => MScope::Project {
                org: m.org_id,
                project: p,
            },
            None => MScope::Org(m.org_id),
        };
        // Several groups may map to one scope: keep the strongest role.
        match wanted.iter_mut().find(|(s, _)| same_scope(s, &scope)) {
            Some((_, r)) if rank(role) > rank(*r) => *r = role,
            Some(_) => {}
            None => wanted.push((scope, role)),
        }
    }
    for (scope, role) in &wanted {
        match role_in(db, *scope, u.id).await? {
            Some((_, src)) if src == "manual" => {}
            Some((cur, _)) if cur == *role => {}
            _ => {
                set_role(db, *scope, u.id, *role, "oidc").await?;
                let mut ev =
                    AuditEvent::anonymous(&u.email, "member.sso", format!("user:{}", u.email))
                        .org(scope.org_id())
                        .details(serde_json::json!({"role": role.as_str()}));
                ev.actor_id = Some(u.id);
                if let Some(p) = scope.project_id() {
                    ev = ev.project(p);
                }
                audit::append(db, ev, meta).await?;
            }
        }
    }
    // Drop SSO-given roles whose group mapping no longer applies.
    let oms = org_member::Entity::find()
        .filter(org_member::Column::UserId.eq(u.id))
        .filter(org_member::Column::Source.eq("oidc"))
        .all(db)
        .await?;
    for m in oms {
        if !wanted
            .iter()
            .any(|(s, _)| same_scope(s, &MScope::Org(m.org_id)))
        {
            org_member::Entity::delete_by_id((m.org_id, u.id))
                .exec(db)
                .await?;
        }
    }
    let pms = project_member::Entity::find()
        .filter(project_member::Column::UserId.eq(u.id))
        .filter(project_member::Column::Source.eq("oidc"))
        .all(db)
        .await?;
    for m in pms {
        let s = MScope::Project {
            org: m.org_id,
            project: m.project_id,
        };
        if !wanted.iter().any(|(w, _)| same_scope(w, &s)) {
            project_member::Entity::delete_by_id((m.project_id, u.id))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

fn same_scope(a: &MScope, b: &MScope) -> bool {
    a.org_id() == b.org_id() && a.project_id() == b.project_id()
}

fn rank(r: Role) -> u8 {
    match r {
        Role::SystemAdmin => 9,
        Role::OrgOwner => 8,
        Role::OrgAdmin => 7,
        Role::ProjectAdmin => 3,
        Role::ProjectEditor => 2,
        Role::ProjectViewer => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_claim_is_read_from_the_payload() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x","groups":["ops","plant-a"],"team":"blue"}"#);
        let jwt = format!("e30.{payload}.sig");
        assert_eq!(groups_from_jwt(&jwt, "groups"), vec!["ops", "plant-a"]);
        assert_eq!(groups_from_jwt(&jwt, "team"), vec!["blue"]);
        assert!(groups_from_jwt(&jwt, "missing").is_empty());
        assert!(groups_from_jwt("garbage", "groups").is_empty());
    }

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(safe_return_to(Some("/orgs/a")), "/orgs/a");
        assert_eq!(safe_return_to(Some("//evil.example")), "/");
        assert_eq!(safe_return_to(Some("https://evil.example")), "/");
        assert_eq!(safe_return_to(None), "/");
    }
}
