//! The broker identity of the historians the operator runs (Kubernetes
//! mode). EMQX clusters authenticate every client with a JWT the api signs
//! (`apiJwt`, deny-by-default authorization), so a historian needs one too:
//! in every tenant namespace with an MqttCluster that asks for a historian,
//! the api keeps the Secret [`historian_mqtt::SECRET`] holding an MQTT
//! username and a JWT signed by the org's `jwt` key, with the historian's
//! row of the ACL table ([`weir_crds::acl::Identity::Historian`]: every
//! reading of the tenant in, replay requests out). The JWT lives
//! `WEIR_MQTT_JWT_TTL_SECS` and is renewed when half of that is left (or
//! when the org's key, the username or the ACL changed); the historian
//! re-reads the mounted password file at each reconnect.
//!
//! Written by server-side apply (field manager `weir-api`); the JWT is
//! never logged.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use weir_crds::names::{historian_mqtt, labels};
use weir_crds::MqttCluster;

use super::agents::{jwt_acl, sign_mqtt_jwt, MqttClaims, MQTT_AUDIENCE};
use super::keys;
use super::kube_backend::FIELD_MANAGER;
use crate::db::entities::org;
use crate::error::ApiError;
use crate::state::AppState;

/// Topic prefix of the historians the operator runs: weir-historian's
/// default (`WEIR_TOPIC_PREFIX`), which the operator leaves unset.
pub const TOPIC_PREFIX: &str = "weir";
/// On the Secret: the id of the key that signed the JWT.
pub const KEY_ID_ANNOTATION: &str = "weir.dev/jwt-key-id";
/// On the Secret: hash of what the JWT grants (username, tenant, ACL), so a
/// change of the ACL table renews it at once.
pub const GRANT_ANNOTATION: &str = "weir.dev/jwt-grant";

/// The historian's MQTT username on the broker of `tenant`.
pub fn username(tenant: &str) -> String {
    format!("weir-historian-{tenant}")
}

/// The claims of the historian's JWT for `tenant`.
pub fn claims(issuer: &str, tenant: &str, now: DateTime<Utc>, ttl: Duration) -> MqttClaims {
    let user = username(tenant);
    MqttClaims {
        iss: issuer.to_string(),
        sub: user.clone(),
        aud: MQTT_AUDIENCE.into(),
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
        username: user,
        tenant: tenant.to_string(),
        gateway: String::new(),
        acl: jwt_acl(TOPIC_PREFIX, tenant, weir_crds::acl::Identity::Historian),
    }
}

/// What a JWT grants, as the hash kept on the Secret.
fn grant(c: &MqttClaims) -> String {
    let v = json!({"username": c.username, "tenant": c.tenant, "acl": c.acl});
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// The Secret as the api applies it (string data; the API server stores it
/// as `data`).
pub fn secret(namespace: &str, tenant: &str, claims: &MqttClaims, jwt: &str, kid: &str) -> Value {
    let expires = DateTime::from_timestamp(claims.exp, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": historian_mqtt::SECRET,
            "namespace": namespace,
            "labels": {
                labels::MANAGED_BY: FIELD_MANAGER,
                labels::TENANT: tenant,
                labels::COMPONENT: "historian",
            },
            "annotations": {
                KEY_ID_ANNOTATION: kid,
                GRANT_ANNOTATION: grant(claims),
            },
        },
        "type": "Opaque",
        "stringData": {
            historian_mqtt::USERNAME: claims.username,
            historian_mqtt::PASSWORD: jwt,
            historian_mqtt::EXPIRES: expires,
        },
    })
}

/// Whether the live Secret must be written again: missing, unreadable,
/// half its life gone, signed by another key than the org's current one,
/// or granting something else than `want` does.
pub fn needs_renewal(
    live: Option<&Secret>,
    want: &MqttClaims,
    kid: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(s) = live else { return true };
    let data = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let expires = data(historian_mqtt::EXPIRES)
        .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
        .map(|e| e.with_timezone(&Utc));
    let fresh = expires.is_some_and(|e| e - now > ttl / 2);
    let a = s.annotations();
    let same_key = a.get(KEY_ID_ANNOTATION).map(String::as_str) == Some(kid);
    let same_grant = a.get(GRANT_ANNOTATION) == Some(&grant(want));
    let has_password = data(historian_mqtt::PASSWORD).is_some_and(|p| !p.is_empty());
    !(fresh && same_key && same_grant && has_password)
}

/// Tenant namespaces (`weir-<org>`) with an MqttCluster that runs a historian.
pub fn namespaces_with_historians(clusters: &[MqttCluster]) -> BTreeSet<String> {
    clusters
        .iter()
        .filter(|c| c.spec.historian.is_some())
        .filter_map(|c| c.namespace())
        .collect()
}

/// The org slug of a tenant namespace, if it is one.
fn tenant_of(namespace: &str) -> Option<&str> {
    namespace
        .strip_prefix("weir-")
        .filter(|t| weir_crds::names::tenant_namespace(t) == namespace && !t.is_empty())
}

fn kube_err(what: &str, e: kube::Error) -> ApiError {
    ApiError::Unavailable(format!("Kubernetes: {what}: {e}"))
}

/// Bring every historian Secret up to date once; returns how many were written.
pub async fn sync_once(st: &AppState, client: &kube::Client) -> Result<usize, ApiError> {
    let clusters = Api::<MqttCluster>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| kube_err("listing MqttClusters", e))?;
    let ttl = Duration::seconds(st.fleet.config.mqtt_jwt_ttl_secs.max(4));
    let mut written = 0;
    for ns in namespaces_with_historians(&clusters.items) {
        let Some(tenant) = tenant_of(&ns) else {
            continue;
        };
        let Some(o) = org::Entity::find()
            .filter(org::Column::Slug.eq(tenant))
            .one(&st.db)
            .await?
        else {
            // No organization (yet) for this namespace's Tenant.
            continue;
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let live = secrets
            .get_opt(historian_mqtt::SECRET)
            .await
            .map_err(|e| kube_err("reading the historian's Secret", e))?;
        let key = keys::ensure(st, o.id, keys::PURPOSE_JWT).await?;
        let now = Utc::now();
        let c = claims(&st.fleet.public_url, tenant, now, ttl);
        if !needs_renewal(live.as_ref(), &c, &key.model.id, ttl, now) {
            continue;
        }
        let jwt = sign_mqtt_jwt(&key, &c)?;
        let obj = secret(&ns, tenant, &c, &jwt, &key.model.id);
        secrets
            .patch(
                historian_mqtt::SECRET,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .map_err(|e| kube_err("writing the historian's Secret", e))?;
        tracing::info!(
            namespace = %ns,
            username = %c.username,
            expires = c.exp,
            key_id = %key.model.id,
            "historian MQTT identity written"
        );
        written += 1;
    }
    Ok(written)
}

/// How often the Secrets are checked: often enough to renew at half-life
/// and to give a new historian its identity within seconds.
pub fn interval(ttl_secs: i64) -> StdDuration {
    StdDuration::from_secs((ttl_secs / 8).clamp(1, 10) as u64)
}

/// Keep the historians' Secrets current while the api runs (Kubernetes mode only).
pub fn spawn(st: &AppState) {
    let Some(client) = st.fleet.kube.clone() else {
        return;
    };
    let st = st.clone();
    let every = interval(st.fleet.config.mqtt_jwt_ttl_secs);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tick.tick().await;
            match sync_once(&st, &client).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // The first failure of a streak, then every 100th.
                    if failures % 100 == 1 {
                        tracing::warn!(error = %e, "keeping the historians' MQTT identities failed");
                    }
                }
            }
        }
    });
}

/// The JWT's payload without checking its signature (for tests and logs of
/// what a Secret grants; never for authorization).
pub fn peek_claims(jwt: &str) -> Option<MqttClaims> {
    let payload = jwt.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn stored(obj: &Value) -> Secret {
        // As the API server returns it: string data as data.
        let mut s: Secret = serde_json::from_value(obj.clone()).unwrap();
        s.data = Some(
            s.string_data
                .take()
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect::<BTreeMap<_, _>>(),
        );
        s
    }

    #[test]
    fn the_jwt_grants_the_historians_row_and_nothing_else() {
        let now = Utc::now();
        let c = claims("https://weir.example", "riverside", now, Duration::hours(6));
        assert_eq!(c.username, "weir-historian-riverside");
        assert_eq!(c.sub, c.username);
        assert_eq!(c.aud, MQTT_AUDIENCE);
        assert!(c.gateway.is_empty());
        assert_eq!(c.exp - c.iat, 6 * 3600);
        let allowed: Vec<(&str, &str)> = c
            .acl
            .iter()
            .filter(|r| r.permission == "allow")
            .map(|r| (r.action.as_str(), r.topic.as_str()))
            .collect();
        assert_eq!(
            allowed,
            vec![
                ("subscribe", "weir/riverside/+/+/+"),
                ("subscribe", "weir/riverside/+/cmd/replay/resp"),
                ("subscribe", "weir/riverside/+/cmd/uplink/state"),
                ("publish", "weir/riverside/+/cmd/replay"),
            ]
        );
        let last = c.acl.last().unwrap();
        assert_eq!(
            (last.permission.as_str(), last.topic.as_str()),
            ("deny", "#")
        );
    }

    #[test]
    fn renewed_when_missing_half_expired_rekeyed_or_regranted() {
        let ttl = Duration::hours(6);
        let now = Utc::now();
        let c = claims("https://weir.example", "riverside", now, ttl);
        let s = stored(&secret("weir-riverside", "riverside", &c, "jwt", "k1"));
        assert!(needs_renewal(None, &c, "k1", ttl, now));
        assert!(!needs_renewal(Some(&s), &c, "k1", ttl, now));
        // A quarter of its life gone: kept.
        assert!(!needs_renewal(Some(&s), &c, "k1", ttl, now + ttl / 4));
        // More than half gone: renewed, well before it expires.
        assert!(needs_renewal(
            Some(&s),
            &c,
            "k1",
            ttl,
            now + ttl / 2 + Duration::seconds(1)
        ));
        // The org's key rotated.
        assert!(needs_renewal(Some(&s), &c, "k2", ttl, now));
        // Another grant (here: another tenant's claims).
        let other = claims("https://weir.example", "other", now, ttl);
        assert!(needs_renewal(Some(&s), &other, "k1", ttl, now));
        // An emptied password.
        let mut empty = s.clone();
        empty
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(vec![]));
        assert!(needs_renewal(Some(&empty), &c, "k1", ttl, now));
    }

    #[test]
    fn the_secret_names_the_identity_not_in_its_metadata() {
        let c = claims(
            "https://weir.example",
            "riverside",
            Utc::now(),
            Duration::hours(1),
        );
        let obj = secret("weir-riverside", "riverside", &c, "the.jwt.value", "k1");
        assert_eq!(obj["metadata"]["name"], "weir-historian-mqtt");
        assert_eq!(obj["stringData"]["username"], "weir-historian-riverside");
        assert_eq!(obj["stringData"]["password"], "the.jwt.value");
        assert!(!obj["metadata"].to_string().contains("the.jwt.value"));
        assert!(obj["stringData"]["expires"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .is_ok());
    }

    #[test]
    fn only_tenant_namespaces_with_a_historian() {
        assert_eq!(tenant_of("weir-riverside"), Some("riverside"));
        assert_eq!(tenant_of("kube-system"), None);
        assert_eq!(tenant_of("weir-"), None);
        assert_eq!(interval(6 * 3600), StdDuration::from_secs(10));
        assert_eq!(interval(8), StdDuration::from_secs(1));
    }
}
