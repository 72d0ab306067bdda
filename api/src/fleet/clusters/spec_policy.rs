//! What a project may ask of a kubernetes (`MqttCluster`) cluster. The
//! tenant namespace is the organization's, and the operator runs what the
//! spec names with the namespace's rights, so a project admin's spec goes
//! through this allow-list before it is applied:
//!
//! - `image`: only from the platform's registry (`--cluster-image-registry`,
//!   default `docker.io/emqx`, where the default image `emqx/emqx` lives);
//!   no tag or digest (the tag is `version`).
//! - Secrets (`listeners[].tlsSecretRef`, `license.secretRef`,
//!   `historian.databaseSecretRef`): only Secrets labelled
//!   `weir.dev/project=<project>` (checked against the Kubernetes API in
//!   `kubernetes.rs`), so one project cannot mount another's certificate
//!   or database URL from the shared namespace.
//! - `config`: only the keys of [`CONFIG_ALLOW_LIST`] (and each listener's
//!   `max_connections`), each value of a fixed shape (a number, a size, a
//!   duration, a boolean or a listed word). The operator writes
//!   `key = value` lines into `emqx.conf`, so a quote, brace or newline in
//!   a value would be HOCON injection; none of the shapes admits one.
//! - `authentication`: always `apiJwt` against the api's own JWKS
//!   (`{public_url}/api/v1/jwks.json`, set by the api); another JWKS URL
//!   would let clients in without the api's topic ACLs. (`apiJwt` is the
//!   only mode the CRD has, so its schema refuses any other.)
//!
//! There is no bypass, not even for system admins: one who needs more edits
//! the `MqttCluster` with kubectl, outside the api.

use weir_crds::mqtt_cluster::ListenerProtocol;
use weir_crds::MqttClusterSpec;

use crate::error::FieldError;

/// The shape a config value must have.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// An integer in `min..=max`.
    Int(i64, i64),
    /// An integer in `min..=max`, or `infinity`.
    IntOrInfinity(i64, i64),
    /// Bytes: digits with an optional `KB`, `MB` or `GB`.
    Size,
    /// Digits with `ms`, `s`, `m`, `h` or `d`.
    Duration,
    Bool,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

/// One `spec.config` key a project may set, and why it is safe.
pub struct Allowed {
    pub key: &'static str,
    pub shape: Shape,
    pub why: &'static str,
}

/// The `spec.config` keys a project may set: client-facing MQTT limits and
/// features of its own broker, retained-message limits and log verbosity.
/// Left out on purpose: `authentication`/`authorization` (the platform's
/// JWT and topic ACLs), `node`, `cluster`, `rpc` (clustering, the Erlang
/// cookie), `dashboard`, `api_key` (admin access), `listeners` other than
/// `max_connections` (bind addresses, certificate files), `bridges`,
/// `connectors`, `actions`, `sources`, `rule_engine` (send data to any
/// host), `plugins`, `exhook` (run code), `license`, `log.file` (writes
/// files on the node).
#[rustfmt::skip]
pub const CONFIG_ALLOW_LIST: &[Allowed] = &[
    Allowed { key: "mqtt.max_packet_size", shape: Shape::Size, why: "largest packet a client may send" },
    Allowed { key: "mqtt.max_clientid_len", shape: Shape::Int(23, 65535), why: "client id length" },
    Allowed { key: "mqtt.max_topic_levels", shape: Shape::Int(1, 65535), why: "topic depth" },
    Allowed { key: "mqtt.max_topic_alias", shape: Shape::Int(0, 65535), why: "MQTT 5 topic aliases" },
    Allowed { key: "mqtt.max_qos_allowed", shape: Shape::Int(0, 2), why: "highest QoS granted" },
    Allowed { key: "mqtt.retain_available", shape: Shape::Bool, why: "retained messages on or off" },
    Allowed { key: "mqtt.wildcard_subscription", shape: Shape::Bool, why: "wildcard subscriptions (ACLs still apply)" },
    Allowed { key: "mqtt.shared_subscription", shape: Shape::Bool, why: "shared subscriptions (ACLs still apply)" },
    Allowed { key: "mqtt.max_subscriptions", shape: Shape::IntOrInfinity(0, 1_000_000), why: "subscriptions per client" },
    Allowed { key: "mqtt.max_inflight", shape: Shape::Int(1, 65535), why: "unacknowledged QoS 1/2 messages per client" },
    Allowed { key: "mqtt.max_mqueue_len", shape: Shape::IntOrInfinity(0, 1_000_000), why: "queued messages per offline session" },
    Allowed { key: "mqtt.mqueue_store_qos0", shape: Shape::Bool, why: "queue QoS 0 messages for offline sessions" },
    Allowed { key: "mqtt.max_awaiting_rel", shape: Shape::IntOrInfinity(0, 65535), why: "QoS 2 messages awaiting release" },
    Allowed { key: "mqtt.await_rel_timeout", shape: Shape::Duration, why: "QoS 2 release timeout" },
    Allowed { key: "mqtt.retry_interval", shape: Shape::Duration, why: "QoS 1/2 redelivery interval" },
    Allowed { key: "mqtt.session_expiry_interval", shape: Shape::Duration, why: "how long offline sessions are kept" },
    Allowed { key: "mqtt.idle_timeout", shape: Shape::Duration, why: "time to the CONNECT packet" },
    Allowed { key: "mqtt.upgrade_qos", shape: Shape::Bool, why: "deliver at the subscription's QoS" },
    Allowed { key: "retainer.max_payload_size", shape: Shape::Size, why: "largest retained message" },
    Allowed { key: "retainer.msg_expiry_interval", shape: Shape::Duration, why: "retained message lifetime" },
    Allowed { key: "log.console.level", shape: Shape::OneOf(&["debug", "info", "notice", "warning", "error", "critical"]), why: "verbosity of the pod log" },
];

/// Platform settings the policy needs.
pub struct Platform<'a> {
    /// Normalized `registry[/path]` images must come from.
    pub image_registry: &'a str,
    /// The api's JWKS URL, the only one a cluster may verify JWTs with.
    pub jwks_url: &'a str,
}

/// Why `spec` breaks the policy, one error per field (empty: it complies).
/// `requested` is the spec as the caller sent it (for a PATCH, the merge
/// patch), so a JWKS URL the api stored itself is not held against it.
pub fn check(
    spec: &MqttClusterSpec,
    requested_jwks: Option<&str>,
    p: &Platform,
) -> Vec<FieldError> {
    let mut e = Vec::new();
    if let Some(image) = &spec.image {
        if let Err(msg) = image_allowed(image, p.image_registry) {
            e.push(FieldError::new("spec.image", msg));
        }
    }
    for (k, v) in &spec.config {
        if let Err(msg) = config_allowed(spec, k, v) {
            e.push(FieldError::new(format!("spec.config.{k}"), msg));
        }
    }
    if let Some(url) = requested_jwks.filter(|u| *u != p.jwks_url) {
        e.push(FieldError::new(
            "spec.authentication.jwksUrl",
            format!(
                "is set by the platform to {}; '{url}' is not allowed",
                p.jwks_url
            ),
        ));
    }
    e
}

/// Every Secret the spec names, with the field that names it.
pub fn secret_refs(spec: &MqttClusterSpec) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = spec
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            l.tls_secret_ref
                .clone()
                .map(|s| (format!("spec.listeners[{i}].tlsSecretRef"), s))
        })
        .collect();
    if let Some(l) = &spec.license {
        out.push(("spec.license.secretRef".into(), l.secret_ref.clone()));
    }
    if let Some(h) = &spec.historian {
        out.push((
            "spec.historian.databaseSecretRef".into(),
            h.database_secret_ref.clone(),
        ));
    }
    out
}

/// `registry[/path]` in the form [`normalize_image`] gives images: a
/// first part without a dot, colon or `localhost` is a Docker Hub path.
pub fn normalize_registry(setting: &str) -> String {
    let s = setting.trim().trim_matches('/');
    let first = s.split('/').next().unwrap_or_default();
    if is_host(first) {
        let rest = &s[first.len()..];
        format!("{}{rest}", canonical_host(first))
    } else {
        format!("docker.io/{s}")
    }
}

fn is_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

fn canonical_host(h: &str) -> &str {
    match h {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

/// `registry/path` of an image reference without tag or digest, as a
/// container runtime resolves it (`emqx/emqx` → `docker.io/emqx/emqx`).
pub fn normalize_image(image: &str) -> Result<String, String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c);
    if image.is_empty() || !image.chars().all(ok_char) {
        return Err(
            "must be an image repository: lowercase letters, digits, '.', '_', '-', '/'".into(),
        );
    }
    let parts: Vec<&str> = image.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err("must be an image repository such as docker.io/emqx/emqx".into());
    }
    if parts.len() > 1 && is_host(parts[0]) {
        if parts[1..].iter().any(|p| p.contains(':')) {
            return Err("must not carry a tag: the tag is spec.version".into());
        }
        return Ok(format!(
            "{}/{}",
            canonical_host(parts[0]),
            parts[1..].join("/")
        ));
    }
    if image.contains(':') {
        return Err("must not carry a tag: the tag is spec.version".into());
    }
    Ok(if parts.len() == 1 {
        format!("docker.io/library/{image}")
    } else {
        format!("docker.io/{image}")
    })
}

/// Whether `image` comes from `registry` (both normalized).
pub fn image_allowed(image: &str, registry: &str) -> Result<(), String> {
    let n = normalize_image(image)?;
    if n.starts_with(&format!("{registry}/")) {
        Ok(())
    } else {
        Err(format!(
            "images come from the platform's registry {registry}/; {n} is outside it"
        ))
    }
}

fn config_allowed(spec: &MqttClusterSpec, key: &str, value: &str) -> Result<(), String> {
    let shape = match CONFIG_ALLOW_LIST.iter().find(|a| a.key == key) {
        Some(a) => a.shape,
        None if is_listener_limit(spec, key) => Shape::Int(1, 10_000_000),
        None => {
            return Err(format!(
                "is not a setting projects may change; allowed: {} and listeners.<kind>.<listener>.max_connections",
                CONFIG_ALLOW_LIST
                    .iter()
                    .map(|a| a.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    value_fits(shape, value)
}

/// `listeners.<kind>.<name>.max_connections` of a listener the spec has
/// (the tenant's quota still caps it: the operator keeps the lower).
fn is_listener_limit(spec: &MqttClusterSpec, key: &str) -> bool {
    spec.listeners.iter().any(|l| {
        let kind = match l.protocol {
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Tls => "ssl",
            ListenerProtocol::Ws => "ws",
            ListenerProtocol::Wss => "wss",
        };
        key == format!("listeners.{kind}.{}.max_connections", l.name)
    })
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn value_fits(shape: Shape, v: &str) -> Result<(), String> {
    let int_in = |min: i64, max: i64| {
        v.parse::<i64>()
            .ok()
            .filter(|n| digits(v) && (min..=max).contains(n))
            .map(|_| ())
            .ok_or_else(|| format!("must be an integer from {min} to {max}"))
    };
    match shape {
        Shape::Int(min, max) => int_in(min, max),
        Shape::IntOrInfinity(min, max) => match v {
            "infinity" => Ok(()),
            _ => int_in(min, max).map_err(|e| format!("{e}, or infinity")),
        },
        Shape::Size => {
            let n = ["KB", "MB", "GB", "B"]
                .iter()
                .find_map(|u| v.strip_suffix(u))
                .unwrap_or(v);
            if digits(n) {
                Ok(())
            } else {
                Err("must be a size such as 1MB (digits, then B, KB, MB or GB)".into())
            }
        }
        Shape::Duration => {
            let n = ["ms", "s", "m", "h", "d"]
                .iter()
                .find_map(|u| v.strip_suffix(u))
                .unwrap_or("");
            if digits(n) {
                Ok(())
            } else {
                Err("must be a duration such as 30s (digits, then ms, s, m, h or d)".into())
            }
        }
        Shape::Bool => match v {
            "true" | "false" => Ok(()),
            _ => Err("must be true or false".into()),
        },
        Shape::OneOf(words) if words.contains(&v) => Ok(()),
        Shape::OneOf(words) => Err(format!("must be one of {}", words.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JWKS: &str = "https://weir.example/api/v1/jwks.json";

    fn spec(v: serde_json::Value) -> MqttClusterSpec {
        serde_json::from_value(v).unwrap()
    }

    fn fields(s: &MqttClusterSpec, jwks: Option<&str>) -> Vec<String> {
        let p = Platform {
            image_registry: &normalize_registry("docker.io/emqx"),
            jwks_url: JWKS,
        };
        check(s, jwks, &p).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn images_only_from_the_platform_registry() {
        let reg = normalize_registry("docker.io/emqx");
        assert_eq!(reg, "docker.io/emqx");
        for ok in [
            "emqx/emqx",
            "docker.io/emqx/emqx",
            "index.docker.io/emqx/emqx-enterprise",
        ] {
            assert!(image_allowed(ok, &reg).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example/emqx/emqx",
            "emqx",
            "attacker/emqx",
            "docker.io/emqxevil/emqx",
            "emqx/emqx:latest",
            "emqx/emqx@sha256:abc",
            "localhost:5000/emqx/emqx",
            "EMQX/emqx",
            "emqx/../x",
        ] {
            assert!(image_allowed(bad, &reg).is_err(), "{bad}");
        }
        let mirror = normalize_registry("registry.plant.local:5000/mirror/");
        assert!(image_allowed("registry.plant.local:5000/mirror/emqx", &mirror).is_ok());
        assert!(image_allowed("emqx/emqx", &mirror).is_err());
    }

    #[test]
    fn config_keys_from_the_allow_list_with_plain_values() {
        let s = spec(json!({"config": {
            "mqtt.max_packet_size": "1MB",
            "mqtt.session_expiry_interval": "2h",
            "mqtt.max_subscriptions": "infinity",
            "log.console.level": "warning",
            "listeners.tcp.mqtt.max_connections": "5000",
        }}));
        assert!(fields(&s, None).is_empty(), "{:?}", fields(&s, None));
        for (k, v) in [
            ("authentication", "[]"),
            ("authorization.no_match", "allow"),
            ("node.cookie", "x"),
            ("dashboard.default_password", "x"),
            ("listeners.tcp.other.max_connections", "5"),
            (
                "mqtt.max_packet_size",
                "1MB\"\nauthorization.no_match = allow",
            ),
            ("mqtt.max_packet_size", "${ENV}"),
            ("mqtt.max_qos_allowed", "3"),
            ("mqtt.retain_available", "yes"),
            ("log.console.level", "all"),
            ("mqtt.session_expiry_interval", "{}"),
        ] {
            let s = spec(json!({"config": {k: v}}));
            assert_eq!(fields(&s, None), [format!("spec.config.{k}")], "{k} = {v}");
        }
    }

    #[test]
    fn authentication_is_the_platforms() {
        // The contract has no password mode at all.
        assert!(serde_json::from_value::<MqttClusterSpec>(
            json!({"authentication": {"mode": "password"}})
        )
        .is_err());
        let s = spec(json!({}));
        assert_eq!(
            fields(&s, Some("https://evil.example/jwks")),
            ["spec.authentication.jwksUrl"]
        );
        assert!(fields(&s, Some(JWKS)).is_empty());
    }

    #[test]
    fn every_secret_reference_is_listed_with_its_field() {
        let s = spec(json!({
            "listeners": [{"name": "mqtt", "protocol": "tcp", "port": 1883},
                          {"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "north-tls"}],
            "license": {"secretRef": "lic"},
            "historian": {"databaseSecretRef": "db"},
        }));
        assert_eq!(
            secret_refs(&s),
            [
                (
                    "spec.listeners[1].tlsSecretRef".to_string(),
                    "north-tls".to_string()
                ),
                ("spec.license.secretRef".into(), "lic".into()),
                ("spec.historian.databaseSecretRef".into(), "db".into()),
            ]
        );
    }
}
