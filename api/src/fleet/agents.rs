//! The agent-facing endpoints. An agent proves it holds the key it enrolled
//! with by signing `agent_token_challenge(id, ts)` (`POST …/token`, the
//! timestamp within ±5 minutes and usable once) and gets a short-lived
//! opaque bearer token (stored as SHA-256). With it, and only for its own
//! id, it reads its signed config (ETag, `If-None-Match` → 304, `?wait=30s`
//! long-poll), its MQTT credentials, and writes its status.

use std::sync::LazyLock;
use std::time::Duration as StdDuration;

use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::Signature;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::agent_api::{
    agent_token_challenge, AgentStatus, AgentTokenRequest, AgentTokenResponse, MqttCredentials,
};

use super::enrollment::parse_public_key;
use super::entities::{agent, agent_challenge, agent_session, cluster, gateway};
use super::keys;
use crate::audit::{self, AuditEvent, Outcome};
use crate::auth::ClientMeta;
use crate::db::entities::org;
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::fleet_events::device_event;
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

/// Prefix of agent bearer tokens.
pub const AGENT_TOKEN_PREFIX: &str = "weir_at_";
/// How far the challenge timestamp may be from the server's clock.
pub const CHALLENGE_SKEW_SECS: i64 = 300;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_token))
        .routes(routes!(agent_config))
        .routes(routes!(agent_mqtt))
        .routes(routes!(agent_status))
}

/// An agent authenticated by its bearer token.
#[derive(Clone, Debug)]
pub struct AgentAuth {
    pub agent: agent::Model,
}

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
            .filter(|t| t.starts_with(AGENT_TOKEN_PREFIX))
            .ok_or(ApiError::Unauthenticated)?;
        let hash = sha256_hex(&token);
        // Before the reads: a revocation committed meanwhile makes them stale.
        let generation = st.writes.generation();
        let (expires, agent) = match st.auth_cache.agents.get(&hash, generation) {
            Some(found) => found,
            None => {
                let session = agent_session::Entity::find_by_id(hash.clone())
                    .one(&st.db)
                    .await?
                    .ok_or(ApiError::Unauthenticated)?;
                let agent = agent::Entity::find_by_id(session.agent_id)
                    .one(&st.db)
                    .await?
                    .ok_or(ApiError::Unauthenticated)?;
                st.auth_cache
                    .agents
                    .insert(hash, generation, (session.expires_at, agent.clone()));
                (session.expires_at, agent)
            }
        };
        if expires <= Utc::now() || agent.revoked_at.is_some() {
            return Err(ApiError::Unauthenticated);
        }
        Ok(AgentAuth { agent })
    }
}

impl AgentAuth {
    /// An agent acts only on its own id.
    pub(crate) fn own(&self, id: &str) -> Result<(), ApiError> {
        if self.agent.id.to_string() == id {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

static SIGNATURE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(weir_crds::agent_api::SIGNATURE_PATTERN).unwrap());

impl Validate for AgentTokenRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if !SIGNATURE.is_match(&self.signature) {
            e.push(FieldError::new(
                "signature",
                "must be the base64 of a 64-byte Ed25519 signature",
            ));
        }
        chk::finish(e)
    }
}

async fn refuse_token(
    st: &AppState,
    meta: &ClientMeta,
    a: Option<&agent::Model>,
    id: &str,
    reason: &'static str,
) -> ApiError {
    let mut ev =
        AuditEvent::anonymous(&format!("agent:{id}"), "agent.token", format!("agent:{id}"))
            .outcome(Outcome::Denied)
            .details(serde_json::json!({"reason": reason}));
    if let Some(a) = a {
        ev = ev.org(a.org_id).project(a.project_id);
    }
    let res = async {
        let tx = st.write().await?;
        audit::append(&*tx, ev, meta).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = res {
        return e;
    }
    ApiError::InvalidCredentials(reason)
}

/// Trade a signed challenge for a short-lived bearer token.
#[utoipa::path(post, path = "/api/v1/agents/{id}/token", tag = "agents", request_body = AgentTokenRequest, security(()),
    params(("id" = String, Path, description = "Agent id from enrollment")),
    responses((status = 200, body = AgentTokenResponse), ProblemResponses))]
async fn agent_token(
    State(st): State<AppState>,
    meta: ClientMeta,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AgentTokenRequest>,
) -> Result<Json<AgentTokenResponse>, ApiError> {
    const BAD: &str = "agent signature does not verify";
    let Ok(agent_id) = Uuid::parse_str(&id) else {
        return Err(refuse_token(&st, &meta, None, &id, BAD).await);
    };
    let a = agent::Entity::find_by_id(agent_id).one(&st.db).await?;
    let Some(a) = a.filter(|a| a.revoked_at.is_none()) else {
        return Err(refuse_token(
            &st,
            &meta,
            None,
            &id,
            "agent is unknown or was replaced by a newer enrollment",
        )
        .await);
    };
    let now = Utc::now();
    if (now - req.timestamp).num_seconds().abs() > CHALLENGE_SKEW_SECS {
        return Err(refuse_token(
            &st,
            &meta,
            Some(&a),
            &id,
            "timestamp is more than 5 minutes from the server clock",
        )
        .await);
    }
    let key = parse_public_key(&a.public_key)
        .map_err(|_| ApiError::internal("stored agent key is invalid"))?;
    let sig = B64
        .decode(&req.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok());
    let msg = agent_token_challenge(&id, &req.timestamp);
    if sig.is_none_or(|s| key.verify_strict(&msg, &s).is_err()) {
        return Err(refuse_token(&st, &meta, Some(&a), &id, BAD).await);
    }
    // Single use per timestamp: a replayed request collides on the key.
    let used = agent_challenge::ActiveModel {
        agent_id: Set(a.id),
        ts: Set(req.timestamp.to_rfc3339()),
        used_at: Set(now),
    }
    .insert(&st.db)
    .await;
    match used {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(refuse_token(
                &st,
                &meta,
                Some(&a),
                &id,
                "this signed challenge was already used",
            )
            .await)
        }
        Err(e) => return Err(e.into()),
    }
    // Challenges older than the skew window can no longer be replayed anyway.
    agent_challenge::Entity::delete_many()
        .filter(agent_challenge::Column::AgentId.eq(a.id))
        .filter(
            agent_challenge::Column::UsedAt.lt(now - Duration::seconds(3 * CHALLENGE_SKEW_SECS)),
        )
        .exec(&st.db)
        .await?;
    agent_session::Entity::delete_many()
        .filter(agent_session::Column::AgentId.eq(a.id))
        .filter(agent_session::Column::ExpiresAt.lt(now))
        .exec(&st.db)
        .await?;
    let token = format!("{AGENT_TOKEN_PREFIX}{}", random_token());
    let expires = now + Duration::seconds(st.fleet.config.agent_token_ttl_secs);
    agent_session::ActiveModel {
        token_hash: Set(sha256_hex(&token)),
        agent_id: Set(a.id),
        created_at: Set(now),
        expires_at: Set(expires),
    }
    .insert(&st.db)
    .await?;
    let mut am = a.into_active_model();
    am.last_seen_at = Set(Some(now));
    am.update(&st.db).await?;
    Ok(Json(AgentTokenResponse { token, expires }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConfigQuery {
    /// Long-poll: with `If-None-Match`, wait up to this long for a new bundle (`30s`, `500ms`, `1m`).
    pub wait: Option<String>,
}

/// `30s`, `500ms`, `1m` or plain seconds.
pub fn parse_wait(s: &str) -> Option<StdDuration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(StdDuration::from_millis(n)),
        "s" => Some(StdDuration::from_secs(n)),
        "m" => Some(StdDuration::from_secs(n * 60)),
        _ => None,
    }
}

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn if_none_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().trim_start_matches("W/").to_string())
}

/// The current bundle of the agent's gateway: (version, JSON text).
async fn current_bundle(
    st: &AppState,
    a: &agent::Model,
) -> Result<Option<(i64, String)>, ApiError> {
    let g = gateway::Entity::find_by_id(a.gateway_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Some(client) = &st.fleet.kube {
        let o = org::Entity::find_by_id(g.org_id)
            .one(&st.db)
            .await?
            .ok_or(ApiError::NotFound)?;
        return super::kube_backend::read_bundle(client, &o.slug, &g.slug).await;
    }
    Ok(g.bundle.map(|b| (g.bundle_version, b)))
}

/// The agent's current signed config bundle (`weir_crds::bundle::SignedBundle`).
#[utoipa::path(get, path = "/api/v1/agents/{id}/config", tag = "agents",
    params(("id" = String, Path), ConfigQuery,
        ("If-None-Match" = Option<String>, Header, description = "ETag of the bundle the agent has")),
    responses((status = 200, description = "The signed bundle; ETag names its version", body = Object),
        (status = 304, description = "Unchanged (after waiting up to `wait`)"), ProblemResponses))]
async fn agent_config(
    State(st): State<AppState>,
    auth: AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConfigQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth.own(&id)?;
    let wait = match q.wait.as_deref() {
        None => StdDuration::ZERO,
        Some(w) => parse_wait(w)
            .ok_or_else(|| ApiError::invalid("wait", "a duration such as 30s, 500ms or 1m"))?
            .min(StdDuration::from_secs(st.fleet.config.max_config_wait_secs)),
    };
    let have = if_none_match(&headers);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before reading so a change between the read and the wait is not missed.
    let mut changes = st.fleet.bundles.subscribe();
    loop {
        let Some((version, text)) = current_bundle(&st, &auth.agent).await? else {
            return Err(ApiError::NotFound);
        };
        let tag = etag(version);
        if have.as_deref() != Some(tag.as_str()) {
            let mut r = (StatusCode::OK, text).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::ETAG,
                HeaderValue::from_str(&tag).map_err(ApiError::internal)?,
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return Ok(r);
        }
        // Unchanged: wait for a change of this gateway's bundle, or give up.
        let gw = auth.agent.gateway_id;
        let woke = tokio::time::timeout_at(deadline, async {
            loop {
                match changes.recv().await {
                    Ok(g) if g == gw => return true,
                    Ok(_) => continue,
                    // Missed messages: re-read to be sure.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        if !matches!(woke, Ok(true)) {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&tag).map_err(ApiError::internal)?,
            );
            return Ok(r);
        }
    }
}

/// The EMQX-style ACL in MQTT JWTs.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct AclRule {
    pub permission: String,
    pub action: String,
    pub topic: String,
}

/// Claims of an MQTT JWT.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct MqttClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// The MQTT username the token is for (EMQX can check it against `${username}`).
    pub username: String,
    pub tenant: String,
    /// The gateway; absent in the api's own tokens (see `alerts::mqtt_auth`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    pub acl: Vec<AclRule>,
}

/// Sign MQTT JWT claims with the org's `jwt` key (EdDSA, `kid` = key id,
/// verifiable against `GET /api/v1/jwks.json`).
pub fn sign_mqtt_jwt(key: &keys::OrgKey, claims: &MqttClaims) -> Result<String, ApiError> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.model.id.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&keys::pkcs8_der(&key.key)),
    )
    .map_err(|e| ApiError::internal(format!("signing MQTT JWT: {e}")))
}

/// Audience of MQTT JWTs.
pub const MQTT_AUDIENCE: &str = "weir-mqtt";

/// The agent's row of the ACL table ([`weir_crds::acl::rules`]) for the
/// gateway's configured topic `prefix`, in the JWT claim format EMQX reads.
pub fn agent_acl(prefix: &str, tenant: &str, gateway: &str) -> Vec<AclRule> {
    jwt_acl(prefix, tenant, weir_crds::acl::Identity::Agent { gateway })
}

/// A row of the ACL table ([`weir_crds::acl::rules`]) in the JWT claim's shape.
pub fn jwt_acl(prefix: &str, tenant: &str, who: weir_crds::acl::Identity<'_>) -> Vec<AclRule> {
    use weir_crds::acl::{Action, Permission};
    weir_crds::acl::rules(prefix, tenant, who)
        .into_iter()
        .map(|r| AclRule {
            permission: match r.permission {
                Permission::Allow => "allow",
                Permission::Deny => "deny",
            }
            .into(),
            action: match r.action {
                Action::Publish => "publish",
                Action::Subscribe => "subscribe",
                Action::All => "all",
            }
            .into(),
            topic: r.topic,
        })
        .collect()
}

/// MQTT credentials for a gateway's agent: the cluster's URLs, and its own
/// broker identity. `password` mode: on a broker with a dynamic-security
/// admin login stored, the gateway's own client
/// ([`super::broker_identity`]), never the cluster's login; on an open
/// broker (no username stored), none. `apiJwt` mode: a JWT with the
/// gateway's ACL. Without a cluster the URL list is empty. Not for use
/// inside a write transaction (see [`enrollment_credentials`]).
pub async fn mqtt_credentials<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
    g: &gateway::Model,
) -> Result<MqttCredentials, ApiError> {
    credentials(db, st, o, g, false).await
}

/// [`mqtt_credentials`] at enrollment, inside its write transaction: a
/// dynamic-security identity gets a new password (the previous agent's
/// login stops working).
pub async fn enrollment_credentials<C: ConnectionTrait>(
    tx: &C,
    st: &AppState,
    o: &org::Model,
    g: &gateway::Model,
) -> Result<MqttCredentials, ApiError> {
    credentials(tx, st, o, g, true).await
}

async fn credentials<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
    g: &gateway::Model,
    enrolling: bool,
) -> Result<MqttCredentials, ApiError> {
    use super::broker_identity as bi;
    let now = Utc::now();
    let expires = now + Duration::seconds(st.fleet.config.mqtt_jwt_ttl_secs);
    let client_id = format!("weir-{}-{}", o.slug, g.slug);
    let c = match g.cluster_id {
        Some(id) => cluster::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let Some(c) = c else {
        return Ok(MqttCredentials {
            urls: vec![],
            client_id: client_id.clone(),
            username: client_id,
            password: String::new(),
            expires,
        });
    };
    super::clusters::check_gateway_may_use(db, g, &c).await?;
    let urls = super::clusters::endpoints(&c);
    if c.auth_mode == super::clusters::AUTH_PASSWORD {
        let login = if !bi::uses_dynsec(&c) {
            // An open broker: nothing to log in with.
            bi::Login {
                username: client_id.clone(),
                password: String::new(),
            }
        } else if enrolling {
            bi::ensure_gateway(db, st, &c, o, g, true).await?
        } else {
            bi::gateway_login(st, &c, o, g).await?
        };
        return Ok(MqttCredentials {
            urls,
            client_id,
            username: login.username,
            password: login.password,
            expires,
        });
    }
    let prefix = bi::topic_prefix(db, g).await?;
    let key = keys::current_or_create(db, &st.fleet, o.id, keys::PURPOSE_JWT).await?;
    let claims = MqttClaims {
        iss: st.fleet.public_url.clone(),
        sub: client_id.clone(),
        aud: MQTT_AUDIENCE.into(),
        iat: now.timestamp(),
        exp: expires.timestamp(),
        username: client_id.clone(),
        tenant: o.slug.clone(),
        gateway: g.slug.clone(),
        acl: agent_acl(&prefix, &o.slug, &g.slug),
    };
    let jwt = sign_mqtt_jwt(&key, &claims)?;
    Ok(MqttCredentials {
        urls,
        client_id: client_id.clone(),
        username: client_id,
        password: jwt,
        expires,
    })
}

/// Fresh MQTT credentials (call again before `expires` to renew).
#[utoipa::path(get, path = "/api/v1/agents/{id}/mqtt-credentials", tag = "agents",
    params(("id" = String, Path)), responses((status = 200, body = MqttCredentials), ProblemResponses))]
async fn agent_mqtt(
    State(st): State<AppState>,
    auth: AgentAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MqttCredentials>, ApiError> {
    auth.own(&id)?;
    let g = gateway::Entity::find_by_id(auth.agent.gateway_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let o = org::Entity::find_by_id(g.org_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    // The JWT key is created under the write lock if the org has none yet.
    keys::ensure(&st, o.id, keys::PURPOSE_JWT).await?;
    Ok(Json(mqtt_credentials(&st.db, &st, &o, &g).await?))
}

impl Validate for AgentStatus {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if self.devices.len() > 1000 {
            e.push(FieldError::new("devices", "at most 1000 devices"));
        }
        if let Some(r) = &self.refused {
            chk::text(&mut e, "refused.reason", &r.reason, 0, 2000);
        }
        if self.heartbeat_interval_s > 86_400 {
            e.push(FieldError::new("heartbeatIntervalS", "at most one day"));
        }
        chk::finish(e)
    }
}

/// Report status (also the heartbeat).
#[utoipa::path(post, path = "/api/v1/agents/{id}/status", tag = "agents", request_body = AgentStatus,
    params(("id" = String, Path)), responses((status = 204, description = "Recorded"), ProblemResponses))]
async fn agent_status(
    State(st): State<AppState>,
    auth: AgentAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(status): ApiJson<AgentStatus>,
) -> Result<StatusCode, ApiError> {
    auth.own(&id)?;
    let g = gateway::Entity::find_by_id(auth.agent.gateway_id)
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let now = Utc::now();
    let was_offline = g.online == Some(false);
    let reported_before = device_event(&g);
    let interval = if status.heartbeat_interval_s > 0 {
        status.heartbeat_interval_s as i64
    } else {
        st.fleet.config.default_heartbeat_secs
    };
    let applied = status
        .applied_version
        .map(|v| v as i64)
        .or(g.applied_version);
    let last_error = match &status.refused {
        Some(r) => Some(r.reason.clone()),
        // Running the latest bundle clears an old refusal.
        None if applied == Some(g.bundle_version) => None,
        None => g.last_error.clone(),
    };
    let previous = super::gateways::agent_status(g.status.as_deref()).zip(g.last_heartbeat);
    let rate = readings_rate(previous, &status, now).or(g.readings_rate);
    let mut am = g.clone().into_active_model();
    am.readings_rate = Set(rate);
    am.applied_version = Set(applied);
    am.last_error = Set(last_error);
    am.last_heartbeat = Set(Some(now));
    am.heartbeat_interval_s = Set(interval.clamp(1, i32::MAX as i64) as i32);
    am.online = Set(Some(true));
    am.status = Set(Some(
        serde_json::to_string(&status).map_err(ApiError::internal)?,
    ));
    let g = am.update(&st.db).await?;
    // EdgeGateway.status, when it is news (queued; never waits for Kubernetes).
    super::kube_status::gateway_changed(&st, &g).await;
    if was_offline {
        super::rollout::record_event(&st, &g, super::rollout::GATEWAY_ONLINE, now).await?;
    }
    // Device-down alert rules evaluate the devices this heartbeat reports,
    // when they changed (the alerts read the table itself on every reload).
    let devices = device_event(&g);
    if devices != reported_before {
        if let Some(ev) = devices {
            st.alerts.fleet_event(ev).await;
        }
    }
    let mut a = auth.agent.into_active_model();
    a.last_seen_at = Set(Some(now));
    a.update(&st.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Readings per second the agent sent since its previous heartbeat, from
/// its `readingsOut` counter; since it started when the counter went back
/// (a restart). `None` (keep the last figure) for a first heartbeat or one
/// that comes less than half a second after the previous: too short a
/// window to mean anything.
pub fn readings_rate(
    previous: Option<(AgentStatus, DateTime<Utc>)>,
    now_status: &AgentStatus,
    now: DateTime<Utc>,
) -> Option<f64> {
    let (before, at) = previous?;
    let secs = (now - at).num_milliseconds() as f64 / 1000.0;
    if now_status.readings_out < before.readings_out {
        return (now_status.uptime_s > 0)
            .then(|| now_status.readings_out as f64 / now_status.uptime_s as f64);
    }
    (secs >= 0.5).then(|| (now_status.readings_out - before.readings_out) as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_counter_over_the_time_between_heartbeats() {
        let st = |out: u64, up: u64| AgentStatus {
            readings_out: out,
            uptime_s: up,
            ..Default::default()
        };
        let t0 = Utc::now();
        let t = |ms: i64| t0 + Duration::milliseconds(ms);
        assert_eq!(
            readings_rate(None, &st(500, 5), t0),
            None,
            "first heartbeat"
        );
        assert_eq!(
            readings_rate(Some((st(1000, 10), t0)), &st(31_000, 40), t(30_000)),
            Some(1000.0)
        );
        assert_eq!(
            readings_rate(Some((st(1000, 10), t0)), &st(1000, 40), t(30_000)),
            Some(0.0),
            "nothing sent"
        );
        assert_eq!(
            readings_rate(Some((st(90_000, 900), t0)), &st(600, 3), t(30_000)),
            Some(200.0),
            "restarted: since its start"
        );
        assert_eq!(
            readings_rate(Some((st(1000, 10), t0)), &st(1200, 10), t(100)),
            None,
            "too soon"
        );
    }

    #[test]
    fn waits_parse() {
        assert_eq!(parse_wait("30s"), Some(StdDuration::from_secs(30)));
        assert_eq!(parse_wait("250ms"), Some(StdDuration::from_millis(250)));
        assert_eq!(parse_wait("2m"), Some(StdDuration::from_secs(120)));
        assert_eq!(parse_wait("7"), Some(StdDuration::from_secs(7)));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait("3h"), None);
    }

    #[test]
    fn the_jwt_acl_is_the_agents_row_with_the_configured_prefix() {
        let acl = agent_acl("plant", "riverside", "pump-1");
        let rule = |p: &str, a: &str, t: &str| AclRule {
            permission: p.into(),
            action: a.into(),
            topic: t.into(),
        };
        assert_eq!(
            acl,
            vec![
                rule("allow", "publish", "plant/riverside/pump-1/cmd/write/resp"),
                rule("allow", "publish", "plant/riverside/pump-1/cmd/replay/resp"),
                rule(
                    "allow",
                    "publish",
                    "plant/riverside/pump-1/cmd/uplink/state"
                ),
                rule("deny", "publish", "plant/riverside/pump-1/cmd/#"),
                rule("allow", "publish", "plant/riverside/pump-1/+/+"),
                rule("allow", "subscribe", "plant/riverside/pump-1/cmd/+"),
                rule("deny", "all", "#"),
            ]
        );
        assert!(!serde_json::to_string(&acl).unwrap().contains("weir/"));
    }
}
