//! Enrollment tokens (per gateway: create with expiry and max uses — the
//! secret is shown once with a ready-to-paste install command — list,
//! revoke) and `POST /api/v1/enroll`, where an agent trades a token and its
//! Ed25519 public key for an agent id, the trust anchor and MQTT
//! credentials. Tokens have 256 random bits and are stored as SHA-256;
//! enrollment is rate-limited per client address and every attempt is
//! audited. On an adopted Mosquitto with dynamic security, enrollment
//! creates or re-keys the gateway's own broker client
//! ([`super::broker_identity`]) and fails (handing out nothing) when the
//! broker cannot.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::VerifyingKey;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::agent_api::{EnrollRequest, EnrollResponse};

use super::entities::{agent, agent_challenge, agent_session, enrollment_token, gateway};
use super::gateways::find_gateway;
use super::keys;
use crate::audit::{self, AuditEvent, Outcome};
use crate::auth::ClientMeta;
use crate::db::entities::org;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

/// Prefix of every enrollment token, so it is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "weir_et_";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(enroll))
}

/// Remove what hangs off a gateway before the gateway itself, its broker
/// identities first: when a broker cannot delete its client the gateway
/// stays (a login that still works is never forgotten).
pub async fn delete_gateway_children<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    gateway_id: Uuid,
) -> Result<(), ApiError> {
    super::broker_identity::forget_gateway(db, st, gateway_id).await?;
    let agents: Vec<Uuid> = agent::Entity::find()
        .filter(agent::Column::GatewayId.eq(gateway_id))
        .all(db)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    if !agents.is_empty() {
        agent_session::Entity::delete_many()
            .filter(agent_session::Column::AgentId.is_in(agents.clone()))
            .exec(db)
            .await?;
        agent_challenge::Entity::delete_many()
            .filter(agent_challenge::Column::AgentId.is_in(agents))
            .exec(db)
            .await?;
    }
    agent::Entity::delete_many()
        .filter(agent::Column::GatewayId.eq(gateway_id))
        .exec(db)
        .await?;
    enrollment_token::Entity::delete_many()
        .filter(enrollment_token::Column::GatewayId.eq(gateway_id))
        .exec(db)
        .await?;
    super::entities::fleet_event::Entity::delete_many()
        .filter(super::entities::fleet_event::Column::GatewayId.eq(gateway_id))
        .exec(db)
        .await?;
    super::entities::gateway_version::Entity::delete_many()
        .filter(super::entities::gateway_version::Column::GatewayId.eq(gateway_id))
        .exec(db)
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// Seconds until the token expires (60 s to 30 days; default one day).
    #[serde(default = "default_ttl", deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 60, maximum = 2592000, default = 86400)]
    pub expires_in_secs: i64,
    /// How many agents may enroll with it (1-1000; default 1).
    #[serde(default = "default_uses", deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub max_uses: i32,
}

fn default_ttl() -> i64 {
    86_400
}
fn default_uses() -> i32 {
    1
}

impl Validate for CreateEnrollmentToken {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if !(60..=30 * 86_400).contains(&self.expires_in_secs) {
            e.push(FieldError::new(
                "expires_in_secs",
                "must be between 60 and 2592000 (30 days)",
            ));
        }
        if !(1..=1000).contains(&self.max_uses) {
            e.push(FieldError::new("max_uses", "must be between 1 and 1000"));
        }
        chk::finish(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentToken {
    pub id: Uuid,
    pub gateway: String,
    /// First characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// `active`, `expired`, `revoked` or `used-up`.
    pub state: String,
}

impl EnrollmentToken {
    fn from_model(gw: &str, m: enrollment_token::Model) -> Self {
        let state = token_state(&m, Utc::now()).map_or("active", |r| r.state());
        Self {
            id: m.id,
            gateway: gw.to_string(),
            prefix: m.prefix,
            created_at: m.created_at,
            expires_at: m.expires_at,
            max_uses: m.max_uses,
            uses: m.uses,
            revoked_at: m.revoked_at,
            last_used_at: m.last_used_at,
            state: state.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEnrollmentToken {
    #[serde(flatten)]
    pub info: EnrollmentToken,
    /// The secret. Shown only in this answer.
    pub token: String,
    /// Ready to paste on the gateway.
    #[schema(example = "weir-agent run --server https://weir.example.com --token weir_et_...")]
    pub install_command: String,
}

/// Why a token cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Revoked,
    Expired,
    UsedUp,
}

impl TokenRefusal {
    fn state(self) -> &'static str {
        match self {
            TokenRefusal::Revoked => "revoked",
            TokenRefusal::Expired => "expired",
            TokenRefusal::UsedUp => "used-up",
        }
    }
    fn message(self) -> &'static str {
        match self {
            TokenRefusal::Revoked => "enrollment token was revoked",
            TokenRefusal::Expired => "enrollment token has expired",
            TokenRefusal::UsedUp => "enrollment token has been used up",
        }
    }
}

pub fn token_state(m: &enrollment_token::Model, now: DateTime<Utc>) -> Option<TokenRefusal> {
    if m.revoked_at.is_some() {
        Some(TokenRefusal::Revoked)
    } else if m.expires_at <= now {
        Some(TokenRefusal::Expired)
    } else if m.uses >= m.max_uses {
        Some(TokenRefusal::UsedUp)
    } else {
        None
    }
}

/// What [`issue_token`] makes.
pub struct NewToken {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub gateway_id: Uuid,
    /// The user who asked (none: the Kubernetes watch).
    pub created_by: Option<Uuid>,
    pub expires_in: Duration,
    pub max_uses: i32,
}

/// Issue an enrollment token: stored as its SHA-256 only, and audited as
/// `audit` (actor and target) with the token's id, prefix and limits. The
/// one place tokens are made, for the console and for Kubernetes
/// ([`super::kube_sync::tokens`]). Returns the row and the secret.
pub async fn issue_token<C: ConnectionTrait>(
    db: &C,
    t: NewToken,
    audit: AuditEvent,
    meta: &ClientMeta,
) -> Result<(enrollment_token::Model, String), ApiError> {
    let secret = format!("{TOKEN_PREFIX}{}", random_token());
    let now = Utc::now();
    let m = enrollment_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(t.org_id),
        project_id: Set(t.project_id),
        gateway_id: Set(t.gateway_id),
        prefix: Set(secret.chars().take(TOKEN_PREFIX.len() + 6).collect()),
        token_hash: Set(sha256_hex(&secret)),
        created_by: Set(t.created_by),
        created_at: Set(now),
        expires_at: Set(now + t.expires_in),
        max_uses: Set(t.max_uses),
        uses: Set(0),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(db)
    .await?;
    audit::append(
        db,
        audit
            .org(t.org_id)
            .project(t.project_id)
            .details(serde_json::json!({
                "token_id": m.id, "prefix": m.prefix, "expires_at": m.expires_at, "max_uses": m.max_uses,
            })),
        meta,
    )
    .await?;
    Ok((m, secret))
}

/// Enrollment tokens of a gateway (never the secrets), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/enrollment-tokens", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 200, body = Vec<EnrollmentToken>), ProblemResponses))]
async fn list_tokens(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<Json<Vec<EnrollmentToken>>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let rows = enrollment_token::Entity::find()
        .filter(enrollment_token::Column::GatewayId.eq(g.id))
        .order_by_desc(enrollment_token::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| EnrollmentToken::from_model(&g.slug, m))
            .collect(),
    ))
}

/// Issue an enrollment token for a gateway.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/enrollment-tokens", tag = "fleet",
    request_body = CreateEnrollmentToken,
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 201, body = CreatedEnrollmentToken), ProblemResponses))]
async fn create_token(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<CreateEnrollmentToken>,
) -> Result<(StatusCode, Json<CreatedEnrollmentToken>), ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectWrite)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    let (m, secret) = issue_token(
        &*tx,
        NewToken {
            org_id: o.id,
            project_id: p.id,
            gateway_id: g.id,
            created_by: Some(auth.user.id),
            expires_in: Duration::seconds(req.expires_in_secs),
            max_uses: req.max_uses,
        },
        AuditEvent::by(
            &auth,
            "enrollment_token.create",
            format!("gateway:{}/{}", o.slug, g.slug),
        ),
        &meta,
    )
    .await?;
    tx.commit().await?;
    let install_command = format!(
        "weir-agent run --server {} --token {secret}",
        st.fleet.public_url
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollmentToken {
            info: EnrollmentToken::from_model(&g.slug, m),
            token: secret,
            install_command,
        }),
    ))
}

/// Revoke an enrollment token (agents already enrolled keep working).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}/enrollment-tokens/{enrollment_token}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path), ("enrollment_token" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), ProblemResponses))]
async fn revoke_token(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw, token)): ApiPath<(String, String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectWrite)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    let m = enrollment_token::Entity::find_by_id(token)
        .filter(enrollment_token::Column::GatewayId.eq(g.id))
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    if m.revoked_at.is_none() {
        let mut am = m.clone().into_active_model();
        am.revoked_at = Set(Some(Utc::now()));
        am.update(&*tx).await?;
    }
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "enrollment_token.revoke",
            format!("gateway:{}/{}", o.slug, g.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"token_id": m.id, "prefix": m.prefix})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

impl Validate for EnrollRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        use weir_crds::agent_api as wire;
        let mut e = Vec::new();
        let facts = &self.facts;
        for (field, v, (min, max)) in [
            ("token", &self.token, wire::TOKEN_LEN),
            ("facts.hostname", &facts.hostname, wire::HOSTNAME_LEN),
            ("facts.os", &facts.os, wire::OS_LEN),
            ("facts.arch", &facts.arch, wire::ARCH_LEN),
            (
                "facts.agentVersion",
                &facts.agent_version,
                wire::AGENT_VERSION_LEN,
            ),
        ] {
            chk::text(&mut e, field, v, min, max);
        }
        // Only the form here: whether the bytes are a usable Ed25519 key,
        // which the document cannot state, is checked once the token is
        // accepted (an unknown token answers 401 whatever the key).
        if !PUBLIC_KEY.is_match(&self.public_key) {
            e.push(FieldError::new(
                "publicKey",
                "must be the base64 of a 32-byte Ed25519 public key",
            ));
        }
        chk::finish(e)
    }
}

static PUBLIC_KEY: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(weir_crds::agent_api::PUBLIC_KEY_PATTERN).unwrap());

/// An agent's public key as sent at enrollment; weak (small-order) keys are refused.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, &'static str> {
    let raw = B64.decode(b64.trim()).map_err(|_| "not base64")?;
    let arr: [u8; 32] = raw.try_into().map_err(|_| "not 32 bytes")?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| "not an Ed25519 point")?;
    if key.is_weak() {
        return Err("a weak (small-order) key");
    }
    Ok(key)
}

/// A problem+json answer for statuses the shared error type has no variant for.
pub fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("https://weir.dev/problems/{kind}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "errors": [],
    });
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

async fn audit_attempt(st: &AppState, meta: &ClientMeta, ev: AuditEvent) -> Result<(), ApiError> {
    let tx = st.write().await?;
    audit::append(&*tx, ev, meta).await?;
    tx.commit().await?;
    Ok(())
}

/// Enroll an agent with a token. Public: the token is the credential.
#[utoipa::path(post, path = "/api/v1/enroll", tag = "agents", request_body = EnrollRequest, security(()),
    responses((status = 200, body = EnrollResponse),
        (status = 429, description = "Too many enrollment attempts from this address"), ProblemResponses))]
async fn enroll(
    State(st): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Response, ApiError> {
    let prefix: String = req.token.chars().take(TOKEN_PREFIX.len() + 6).collect();
    if let Err(wait) = st.fleet.enroll_limiter.check(&meta.addr) {
        audit_attempt(
            &st,
            &meta,
            AuditEvent::anonymous("agent", "agent.enroll", format!("token:{prefix}"))
                .outcome(Outcome::Denied)
                .details(
                    serde_json::json!({"reason": "rate limited", "hostname": req.facts.hostname}),
                ),
        )
        .await?;
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "too many enrollment attempts from this address; try again later",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(r);
    }
    let hash = sha256_hex(req.token.trim());
    let now = Utc::now();
    let tx = st.write().await?;
    let token = enrollment_token::Entity::find()
        .filter(enrollment_token::Column::TokenHash.eq(hash))
        .one(&*tx)
        .await?;
    let refusal: Option<&'static str> = match &token {
        None => Some("enrollment token is not valid"),
        Some(t) => token_state(t, now).map(TokenRefusal::message),
    };
    if let Some(reason) = refusal {
        let mut ev = AuditEvent::anonymous("agent", "agent.enroll", format!("token:{prefix}"))
            .outcome(Outcome::Denied)
            .details(serde_json::json!({"reason": reason, "hostname": req.facts.hostname}));
        if let Some(t) = &token {
            ev = ev.org(t.org_id).project(t.project_id);
        }
        audit::append(&*tx, ev, &meta).await?;
        tx.commit().await?;
        return Err(ApiError::InvalidCredentials(reason));
    }
    let t = token.expect("checked above");
    // After the token: the body's form was checked, the key's bytes are not
    // yet (nothing of the token is used when they are refused).
    let public_key = match parse_public_key(&req.public_key) {
        Ok(_) => req.public_key.clone(),
        Err(why) => {
            return Err(ApiError::invalid(
                "publicKey",
                format!("must be the base64 of a 32-byte Ed25519 public key ({why})"),
            ))
        }
    };
    let g = gateway::Entity::find_by_id(t.gateway_id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::InvalidCredentials(
            "enrollment token is not valid",
        ))?;
    let o = org::Entity::find_by_id(t.org_id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut tam = t.clone().into_active_model();
    tam.uses = Set(t.uses + 1);
    tam.last_used_at = Set(Some(now));
    tam.update(&*tx).await?;
    // One agent per gateway: a new enrollment (replaced hardware, reinstall)
    // retires the previous agents and their sessions.
    let previous = agent::Entity::find()
        .filter(agent::Column::GatewayId.eq(g.id))
        .filter(agent::Column::RevokedAt.is_null())
        .all(&*tx)
        .await?;
    for a in previous {
        agent_session::Entity::delete_many()
            .filter(agent_session::Column::AgentId.eq(a.id))
            .exec(&*tx)
            .await?;
        let mut am = a.into_active_model();
        am.revoked_at = Set(Some(now));
        am.update(&*tx).await?;
    }
    let a = agent::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(o.id),
        project_id: Set(g.project_id),
        gateway_id: Set(g.id),
        public_key: Set(public_key),
        hostname: Set(req.facts.hostname.clone()),
        os: Set(req.facts.os.clone()),
        arch: Set(req.facts.arch.clone()),
        agent_version: Set(req.facts.agent_version.clone()),
        token_id: Set(Some(t.id)),
        enrolled_at: Set(now),
        revoked_at: Set(None),
        last_seen_at: Set(Some(now)),
    }
    .insert(&*tx)
    .await?;
    let anchor = match &st.fleet.kube {
        Some(client) => super::kube_backend::trust_anchor(client, &o.slug, &g.slug).await?,
        None => keys::current_or_create(&*tx, &st.fleet, o.id, keys::PURPOSE_BUNDLE)
            .await?
            .anchor(),
    };
    // On a broker with dynamic security: the gateway's own client, re-keyed.
    let mqtt = match super::agents::enrollment_credentials(&*tx, &st, &o, &g).await {
        Ok(m) => m,
        Err(e) => {
            // Nothing of this attempt stays: the token keeps its use, the
            // previous agent keeps working, and no credentials go out.
            drop(tx);
            audit_attempt(
                &st,
                &meta,
                AuditEvent::anonymous(
                    "agent",
                    "agent.enroll",
                    format!("gateway:{}/{}", o.slug, g.slug),
                )
                .org(o.id)
                .project(g.project_id)
                .outcome(Outcome::Failure)
                .details(serde_json::json!({
                    "reason": e.to_string(), "prefix": prefix, "hostname": req.facts.hostname,
                })),
            )
            .await?;
            return Err(e);
        }
    };
    audit::append(
        &*tx,
        AuditEvent::anonymous(
            &format!("agent:{}", a.id),
            "agent.enroll",
            format!("gateway:{}/{}", o.slug, g.slug),
        )
        .org(o.id)
        .project(g.project_id)
        .details(serde_json::json!({
            "agent_id": a.id, "token_id": t.id, "prefix": prefix,
            "hostname": a.hostname, "os": a.os, "arch": a.arch, "agent_version": a.agent_version,
        })),
        &meta,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(EnrollResponse {
        agent_id: a.id.to_string(),
        tenant: o.slug,
        gateway: g.slug,
        trust_anchor: anchor,
        mqtt,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::agent_api as wire;

    #[test]
    fn agent_body_patterns_agree_with_the_checks() {
        // The contract crate cannot see the api's checks; it copies the text
        // rules, and this holds the copies to them.
        assert_eq!(wire::TEXT_PATTERN, chk::TEXT_PATTERN);
        assert_eq!(wire::NONBLANK_TEXT_PATTERN, chk::NONBLANK_TEXT_PATTERN);
        let sig = regex::Regex::new(wire::SIGNATURE_PATTERN).unwrap();
        for n in 0u8..=255 {
            let key = B64.encode([n; 32]);
            assert!(PUBLIC_KEY.is_match(&key), "{key}");
            assert!(sig.is_match(&B64.encode([n; 64])));
        }
        // What the pattern takes, the decoder takes as 32 (64) bytes.
        for last in ['A', 'E', 'w', '8', '4'] {
            let key = format!("{}{last}=", "/".repeat(42));
            assert_eq!(B64.decode(&key).unwrap().len(), 32, "{key}");
            let s = format!(
                "{}{}==",
                "+".repeat(85),
                if last == 'w' { 'w' } else { 'Q' }
            );
            assert_eq!(B64.decode(&s).unwrap().len(), 64, "{s}");
        }
        for bad in [
            format!(" {}", B64.encode([1; 32])),
            B64.encode([1; 31]),
            B64.encode([1; 33]),
        ] {
            assert!(!PUBLIC_KEY.is_match(&bad), "{bad}");
        }
        assert!(!PUBLIC_KEY.is_match(&format!("{}B=", "A".repeat(42))));
        assert!(B64.decode(format!("{}B=", "A".repeat(42))).is_err());
    }
}
