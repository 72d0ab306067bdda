//! The api's own MQTT credential for clusters whose clients authenticate
//! with api-issued JWTs (`apiJwt`: EMQX with JWT authentication against
//! `GET /api/v1/jwks.json`). The token has the agents' claim format
//! ([`MqttClaims`], signed by the org's `jwt` key) with the api's row of
//! the ACL table (readings and write answers in, commands and replay
//! requests out, never readings out), and a
//! username naming the api replica (EMQX checks `username` against the
//! MQTT username). It is short-lived: [`super::ingest`] reconnects with a
//! fresh one before it expires.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::ingest::SHARE_GROUP;
use super::Alerts;
use crate::error::ApiError;
use crate::fleet::agents::{jwt_acl, sign_mqtt_jwt, AclRule, MqttClaims, MQTT_AUDIENCE};
use crate::fleet::keys::{self, OrgKey};

/// A minted token and who it is for.
#[derive(Clone)]
pub struct ApiMqttToken {
    /// MQTT username (also the JWT's `sub` and `username`).
    pub username: String,
    /// The JWT, sent as the MQTT password.
    pub jwt: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for ApiMqttToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ApiMqttToken")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The api's row of the ACL table ([`weir_crds::acl`]): readings and
/// write answers in, commands and replay requests out. Each subscribe rule
/// also comes in its alerts shared-subscription form (EMQX 5 authorizes
/// `$share/{group}/t` as `t`; the second form covers brokers that check
/// the filter verbatim), before the closing deny-all.
pub fn acl(prefix: &str, tenant: &str) -> Vec<AclRule> {
    let mut rules = jwt_acl(prefix, tenant, weir_crds::acl::Identity::Api);
    let deny_all = rules.pop().expect("every row ends with a deny-all");
    let shared: Vec<AclRule> = rules
        .iter()
        .filter(|r| r.permission == "allow" && r.action == "subscribe")
        .map(|r| AclRule {
            topic: format!("$share/{SHARE_GROUP}/{}", r.topic),
            ..r.clone()
        })
        .collect();
    rules.extend(shared);
    rules.push(deny_all);
    rules
}

/// This api replica's name: the configured one (`--replica`,
/// `WEIR_API_REPLICA`), else `HOSTNAME` (the pod name in Kubernetes), else
/// a random one; reduced to characters that are safe in an MQTT client id.
pub fn pick_replica_name(configured: Option<&str>) -> String {
    let raw = configured
        .map(str::to_string)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| Uuid::new_v4().simple().to_string()[..8].to_string());
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect()
}

/// The MQTT username of this replica's alerts connections.
pub fn username(replica: &str) -> String {
    format!("weir-api-{replica}")
}

/// The claims of the api's token for `tenant`.
pub fn claims(
    issuer: &str,
    username: &str,
    prefix: &str,
    tenant: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> MqttClaims {
    MqttClaims {
        iss: issuer.to_string(),
        sub: username.to_string(),
        aud: MQTT_AUDIENCE.into(),
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
        username: username.to_string(),
        tenant: tenant.to_string(),
        gateway: String::new(),
        acl: acl(prefix, tenant),
    }
}

/// Sign the api's token with the org's JWT key.
pub fn mint(
    key: &OrgKey,
    issuer: &str,
    username: &str,
    prefix: &str,
    tenant: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<ApiMqttToken, ApiError> {
    let c = claims(issuer, username, prefix, tenant, now, ttl);
    Ok(ApiMqttToken {
        jwt: sign_mqtt_jwt(key, &c)?,
        username: username.to_string(),
        expires_at: DateTime::from_timestamp(c.exp, 0).unwrap_or(now + ttl),
    })
}

impl Alerts {
    /// Lifetime of the api's own MQTT JWTs: the configured one, at most
    /// the agents' (the JWKS keeps a retired key only that long), at least 4 s.
    pub fn mqtt_jwt_ttl(&self) -> Duration {
        let fleet = self.inner.fleet.config.mqtt_jwt_ttl_secs.max(4);
        Duration::seconds(self.inner.cfg.api_mqtt_jwt_ttl_secs.clamp(4, fleet))
    }

    /// A fresh token for reading `tenant` (org `org_id`) on an apiJwt
    /// cluster; `None` while the org has no JWT key yet (it is made when
    /// the first agent fetches MQTT credentials, or by a key rotation).
    pub async fn mint_mqtt_token(
        &self,
        org_id: Uuid,
        tenant: &str,
    ) -> Result<Option<ApiMqttToken>, ApiError> {
        let fleet = &self.inner.fleet;
        let Some(key) = keys::current(&self.inner.db, fleet, org_id, keys::PURPOSE_JWT).await?
        else {
            return Ok(None);
        };
        mint(
            &key,
            &fleet.public_url,
            &username(self.replica_name()),
            self.topic_prefix(),
            tenant,
            Utc::now(),
            self.mqtt_jwt_ttl(),
        )
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    fn org_key() -> OrgKey {
        let key = weir_crds::bundle::generate_key();
        let id = weir_crds::bundle::key_id(&key.verifying_key());
        OrgKey {
            model: crate::fleet::entities::signing_key::Model {
                id,
                org_id: Uuid::new_v4(),
                purpose: keys::PURPOSE_JWT.into(),
                secret_enc: String::new(),
                public_key: B64.encode(key.verifying_key().as_bytes()),
                created_at: Utc::now(),
                retired_at: None,
                rotation: None,
                rotation_until: None,
            },
            key,
        }
    }

    #[test]
    fn acl_is_the_apis_row_of_the_table() {
        let acl = acl("plant", "riverside");
        let allowed: Vec<(&str, &str)> = acl
            .iter()
            .filter(|r| r.permission == "allow")
            .map(|r| (r.action.as_str(), r.topic.as_str()))
            .collect();
        assert_eq!(
            allowed,
            vec![
                ("subscribe", "plant/riverside/+/+/+"),
                ("subscribe", "plant/riverside/+/cmd/write/resp"),
                ("publish", "plant/riverside/+/cmd/write"),
                ("publish", "plant/riverside/+/cmd/replay"),
                ("subscribe", "$share/weir-alerts/plant/riverside/+/+/+"),
                (
                    "subscribe",
                    "$share/weir-alerts/plant/riverside/+/cmd/write/resp"
                ),
            ]
        );
        let last = acl.last().unwrap();
        assert_eq!(
            (
                last.permission.as_str(),
                last.action.as_str(),
                last.topic.as_str()
            ),
            ("deny", "all", "#")
        );
        // Never readings: the api does not forge a gateway's data.
        assert!(!acl
            .iter()
            .any(|r| r.action == "publish" && r.topic.ends_with("/+/+/+")));
    }

    #[test]
    fn minted_token_verifies_and_expires_as_configured() {
        let key = org_key();
        let now = Utc::now();
        let t = mint(
            &key,
            "https://weir.example",
            "weir-api-r1",
            "weir",
            "riverside",
            now,
            Duration::seconds(300),
        )
        .unwrap();
        let h = jsonwebtoken::decode_header(&t.jwt).unwrap();
        assert_eq!(h.alg, jsonwebtoken::Algorithm::EdDSA);
        assert_eq!(h.kid.as_deref(), Some(key.model.id.as_str()));
        // As a JWKS entry carries it: base64url `x`.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(key.key.verifying_key().as_bytes());
        let dk = jsonwebtoken::DecodingKey::from_ed_components(&x).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&[MQTT_AUDIENCE]);
        let c = jsonwebtoken::decode::<MqttClaims>(&t.jwt, &dk, &v)
            .unwrap()
            .claims;
        assert_eq!(c.exp - c.iat, 300);
        assert_eq!(t.expires_at.timestamp(), c.exp);
        assert_eq!(c.username, "weir-api-r1");
        assert_eq!(c.sub, "weir-api-r1");
        assert_eq!(c.tenant, "riverside");
        assert_eq!(c.acl, acl("weir", "riverside"));
        // No gateway claim: the api is not a gateway.
        let payload = t.jwt.split('.').nth(1).unwrap();
        let raw: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert!(raw.get("gateway").is_none());
        assert!(!format!("{t:?}").contains(&t.jwt));
    }

    #[test]
    fn replica_names_are_client_id_safe() {
        let n = pick_replica_name(None);
        assert!(!n.is_empty());
        assert!(n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        assert_eq!(username("api-0"), "weir-api-api-0");
        assert_eq!(pick_replica_name(Some("pod/0 east")), "pod-0-east");
        assert_eq!(pick_replica_name(Some(&"x".repeat(60))).len(), 48);
    }
}
