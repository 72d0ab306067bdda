//! OpenID Connect single sign-on: discovery, authorization code + PKCE +
//! state + nonce, the state bound to the browser that started the sign-in,
//! ID token verification completed from UserInfo, just-in-time users (no
//! takeover of existing accounts by email), invitations for verified emails
//! and the per-organization groups → roles mapping.

mod account;
mod claims;
mod return_to;

use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::Deserialize;
use tokio::sync::OnceCell;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use account::{apply_group_mappings, jit_user};
pub use claims::{groups_from_jwt, VerifiedIdentity};
use return_to::safe_return_to;

use super::{sessions, ClientMeta};
use crate::audit::{self, AuditEvent, Outcome};
use crate::config::OidcConfig;
use crate::db::entities::oidc_flow;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiQuery;
use crate::members::claim_invitations;
use crate::secrets::{constant_time_eq, random_token};
use crate::state::AppState;

/// A sign-in must come back from the provider within this time.
pub(crate) const FLOW_TTL_MINUTES: i64 = 10;
/// Carries the state of the sign-in this browser started: a callback with
/// any other state (a link someone else started) is refused.
const STATE_COOKIE: &str = "weir_oidc_state";
const STATE_COOKIE_PATH: &str = "/api/v1/auth/oidc";

/// The client as built from discovered metadata.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

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

async fn client(st: &AppState) -> Result<Client, ApiError> {
    let cfg = &st.config.oidc;
    let md = st.oidc.metadata(cfg).await?.clone();
    let redirect = RedirectUrl::new(format!(
        "{}/api/v1/auth/oidc/callback",
        st.config.public_url.trim_end_matches('/')
    ))
    .map_err(ApiError::internal)?;
    Ok(CoreClient::from_provider_metadata(
        md,
        ClientId::new(cfg.client_id.clone().unwrap_or_default()),
        cfg.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `Set-Cookie` for the state cookie: `value` for `max_age` seconds (0 clears it).
fn state_cookie(st: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if st.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path={STATE_COOKIE_PATH}; HttpOnly; SameSite=Lax; \
         Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The state cookie this browser sent, if any.
struct BoundState(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BoundState {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(BoundState(super::cookie(parts, STATE_COOKIE)))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// Path of the console to come back to after sign-in.
    pub return_to: Option<String>,
}

/// Start single sign-on: redirects to the OpenID provider and binds the
/// sign-in to this browser with an HttpOnly cookie.
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
    let client = client(&st).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client.authorize_url(
        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
        || CsrfToken::new(random_token()),
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
    let mut resp = redirect(url.as_str());
    if let Some(c) = state_cookie(&st, state.secret(), FLOW_TTL_MINUTES * 60) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
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

/// The provider sends the browser back here; signs the user in. Every
/// answer clears the state cookie: a sign-in's state is used once.
#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", tag = "auth", params(CallbackQuery),
    responses((status = 303, description = "Signed in; redirect to the console"), ProblemResponses))]
async fn oidc_callback(
    State(st): State<AppState>,
    meta: ClientMeta,
    bound: BoundState,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    if !st.config.oidc.enabled() {
        return Err(ApiError::NotFound);
    }
    let mut resp = match sign_in(&st, &meta, &bound, &q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(c) = state_cookie(&st, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Verify the callback, find or create the user and open a session; every
/// refusal is audited.
async fn sign_in(
    st: &AppState,
    meta: &ClientMeta,
    bound: &BoundState,
    q: &CallbackQuery,
) -> Result<Response, ApiError> {
    let (ident, return_to) = match verify_callback(st, bound, q).await {
        Ok(v) => v,
        Err(e) => {
            audit_failure(st, meta, &e, serde_json::json!({})).await?;
            return Err(e);
        }
    };
    let session = match open_session(st, meta, &ident).await {
        Ok(s) => s,
        Err(e) => {
            let who = serde_json::json!({"issuer": ident.issuer, "subject": ident.subject,
                "email": ident.email, "email_verified": ident.email_verified});
            audit_failure(st, meta, &e, who).await?;
            return Err(e);
        }
    };
    let mut resp = redirect(&return_to);
    for c in sessions::set_cookies(st, &session) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

async fn open_session(
    st: &AppState,
    meta: &ClientMeta,
    ident: &VerifiedIdentity,
) -> Result<sessions::NewSession, ApiError> {
    let tx = st.write().await?;
    let u = jit_user(&*tx, ident, st.config.oidc.link_verified_email).await?;
    // An invitation is for whoever owns the email: an unverified claim of
    // it proves nothing.
    if ident.email_verified {
        claim_invitations(&*tx, &u, meta).await?;
    }
    apply_group_mappings(&*tx, &u, &ident.groups, meta).await?;
    let session = sessions::create(&*tx, st, u.id).await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous(&u.email, "auth.login", format!("user:{}", u.email)).details(
            serde_json::json!({"method": "oidc", "issuer": ident.issuer, "subject": ident.subject,
                "email_verified": ident.email_verified, "groups": ident.groups}),
        ),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// Audit a refused sign-in; `who` says what is known of the user.
async fn audit_failure(
    st: &AppState,
    meta: &ClientMeta,
    e: &ApiError,
    mut who: serde_json::Value,
) -> Result<(), ApiError> {
    let problem = e.to_problem();
    let mut reason = e.to_string();
    for f in &problem.errors {
        reason.push_str(&format!("; {}: {}", f.field, f.message));
    }
    who["method"] = "oidc".into();
    who["reason"] = reason.into();
    let tx = st.write().await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous("oidc", "auth.login", "oidc")
            .outcome(Outcome::Failure)
            .details(who),
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn verify_callback(
    st: &AppState,
    bound: &BoundState,
    q: &CallbackQuery,
) -> Result<(VerifiedIdentity, String), ApiError> {
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
    // Before the flow is used up: a callback delivered to another browser
    // (someone else's sign-in link) must not spoil the real one.
    if !bound
        .0
        .as_deref()
        .is_some_and(|c| constant_time_eq(c.as_bytes(), state.as_bytes()))
    {
        return Err(ApiError::InvalidCredentials(
            "this sign-in was not started in this browser; start it again here",
        ));
    }
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
    let client = client(st).await?;
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
    let ident = claims::identity(&client, &http, &st.config.oidc, &token, &flow.nonce).await?;
    Ok((ident, flow.return_to))
}
