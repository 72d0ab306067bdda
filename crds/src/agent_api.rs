//! What agents and the api exchange over HTTPS: enrollment, agent tokens,
//! MQTT credentials and status reports.
//!
//! - `POST /api/v1/enroll` [`EnrollRequest`] → [`EnrollResponse`]
//! - `POST /api/v1/agents/{id}/token` [`AgentTokenRequest`] → [`AgentTokenResponse`]
//!   (the agent proves it holds its key by signing [`agent_token_challenge`];
//!   the short-lived token then goes in `Authorization: Bearer`)
//! - `GET /api/v1/agents/{id}/config` → [`crate::bundle::SignedBundle`]
//!   (ETag / `If-None-Match`, `?wait=30s` long-poll)
//! - `GET /api/v1/agents/{id}/mqtt-credentials` → [`MqttCredentials`]
//! - `POST /api/v1/agents/{id}/status` [`AgentStatus`]

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bundle::TrustAnchor;

// What the api checks in the agents' bodies before it looks up the token or
// the agent, stated once here for both the api's checks and its document.

/// Free text: no control characters but tab and newline (the api's
/// `check::TEXT_PATTERN`; the api tests that the two agree).
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$";
/// Free text with at least one character that is not white space (the
/// api's `check::NONBLANK_TEXT_PATTERN`).
pub const NONBLANK_TEXT_PATTERN: &str = concat!(
    r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*",
    r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
    r"[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
);
/// Standard base64 (padded, no stray bits) of 32 bytes: an Ed25519 public key.
pub const PUBLIC_KEY_PATTERN: &str = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";
/// Standard base64 (padded, no stray bits) of 64 bytes: an Ed25519 signature.
pub const SIGNATURE_PATTERN: &str = "^[A-Za-z0-9+/]{85}[AQgw]==$";
/// Characters of the enrollment token (free text, not blank).
pub const TOKEN_LEN: (usize, usize) = (1, 200);
/// Characters of each fact: hostname, os, arch, agentVersion (free text;
/// the hostname not blank).
pub const HOSTNAME_LEN: (usize, usize) = (1, 253);
pub const OS_LEN: (usize, usize) = (0, 128);
pub const ARCH_LEN: (usize, usize) = (0, 64);
pub const AGENT_VERSION_LEN: (usize, usize) = (0, 64);

/// Characters of a device credential's user name and password, and bytes
/// of each PEM of a certificate credential (ASCII).
pub const CREDENTIAL_USERNAME_LEN: (usize, usize) = (1, 256);
pub const CREDENTIAL_PASSWORD_LEN: (usize, usize) = (1, 1024);
pub const CREDENTIAL_PEM_MAX: usize = 16 * 1024;
/// A user name: not blank, no control characters at all (no tab either).
pub const CREDENTIAL_USERNAME_PATTERN: &str = concat!(
    r"^[^\u0000-\u001F\u007F-\u009F]*",
    r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
    r"[^\u0000-\u001F\u007F-\u009F]*$"
);

/// The schemas of the constants above, for the api's OpenAPI document.
#[cfg(feature = "openapi")]
mod schema {
    use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

    fn text((min, max): (usize, usize)) -> Object {
        let b = ObjectBuilder::new().schema_type(Type::String);
        let b = if min > 0 {
            b.min_length(Some(min))
                .pattern(Some(super::NONBLANK_TEXT_PATTERN))
        } else {
            b.pattern(Some(super::TEXT_PATTERN))
        };
        b.max_length(Some(max)).build()
    }

    pub fn token() -> Object {
        text(super::TOKEN_LEN)
    }
    pub fn hostname() -> Object {
        text(super::HOSTNAME_LEN)
    }
    pub fn os() -> Object {
        text(super::OS_LEN)
    }
    pub fn arch() -> Object {
        text(super::ARCH_LEN)
    }
    pub fn agent_version() -> Object {
        text(super::AGENT_VERSION_LEN)
    }
    pub fn public_key() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(44))
            .max_length(Some(44))
            .pattern(Some(super::PUBLIC_KEY_PATTERN))
            .build()
    }
    /// `DeviceCredential`, written out: each variant refuses unknown
    /// fields (`additionalProperties: false`), as the api does, which
    /// utoipa's derive does not say for an internally tagged enum.
    pub fn device_credential() -> utoipa::openapi::schema::OneOf {
        use utoipa::openapi::schema::{AdditionalProperties, OneOfBuilder};
        let kind = |k: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([k.to_string()]))
                .build()
        };
        let variant = |k: &str, doc: &str, fields: Vec<(&str, Object)>| {
            let mut b = ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(doc))
                .property("kind", kind(k))
                .required("kind")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            for (name, schema) in fields {
                b = b.property(name, schema).required(name);
            }
            b.build()
        };
        let pem = |label: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(super::CREDENTIAL_PEM_MAX))
                .pattern(Some(format!(
                    "^[\\t\\n\\r\\x20-\\x7E]*-----BEGIN {label}-----[\\t\\n\\r\\x20-\\x7E]*$"
                )))
                .build()
        };
        let (umin, umax) = super::CREDENTIAL_USERNAME_LEN;
        let username = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(umin))
            .max_length(Some(umax))
            .pattern(Some(super::CREDENTIAL_USERNAME_PATTERN))
            .build();
        OneOfBuilder::new()
            .description(Some(
                "A device credential (named by `devices[].opcUa.credential`); the secret is never answered again.",
            ))
            .item(variant(
                "userPassword",
                "An OPC UA user name identity.",
                vec![
                    ("username", username),
                    ("password", text(super::CREDENTIAL_PASSWORD_LEN)),
                ],
            ))
            .item(variant(
                "certificate",
                "An OPC UA X.509 user identity: certificate and private key, PEM.",
                vec![
                    ("certificatePem", pem("CERTIFICATE")),
                    ("privateKeyPem", pem("[A-Z ]*PRIVATE KEY")),
                ],
            ))
            .build()
    }
    pub fn signature() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(88))
            .max_length(Some(88))
            .pattern(Some(super::SIGNATURE_PATTERN))
            .build()
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentFacts {
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::hostname))]
    pub hostname: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::os))]
    pub os: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::arch))]
    pub arch: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::agent_version))]
    pub agent_version: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token from the console (`weir_et_` and 43 more
    /// characters; the api looks up any text of 1-200 characters).
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::token))]
    pub token: String,
    /// Base64 of the agent's 32-byte Ed25519 public key. A key that is no
    /// Ed25519 point or a weak (small-order) one is refused (422) only after
    /// the token is accepted.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::public_key))]
    pub public_key: String,
    pub facts: AgentFacts,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    pub agent_id: String,
    /// Organization slug (the bundle's tenant).
    pub tenant: String,
    pub gateway: String,
    /// The config-signing key to pin.
    pub trust_anchor: TrustAnchor,
    pub mqtt: MqttCredentials,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttCredentials {
    /// Broker URLs, e.g. `mqtt://broker:1883` or `mqtts://broker:8883`.
    pub urls: Vec<String>,
    pub client_id: String,
    pub username: String,
    /// A JWT (apiJwt clusters) or the broker password (adopted brokers in
    /// password mode), used as the MQTT password.
    pub password: String,
    /// Fetch new credentials before this time.
    pub expires: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentTokenRequest {
    /// RFC 3339; within ±5 minutes of the server clock, usable once.
    pub timestamp: DateTime<Utc>,
    /// Base64 Ed25519 signature of the challenge
    /// `weir-agent-token\n{agent id}\n{timestamp as RFC 3339}`
    /// (`agent_token_challenge`), 64 bytes.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::signature))]
    pub signature: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTokenResponse {
    pub token: String,
    pub expires: DateTime<Utc>,
}

/// The bytes an agent signs to get a token.
pub fn agent_token_challenge(agent_id: &str, timestamp: &DateTime<Utc>) -> Vec<u8> {
    format!("weir-agent-token\n{agent_id}\n{}", timestamp.to_rfc3339()).into_bytes()
}

/// How a device's polling goes (also `EdgeGateway.status.devices[].state`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeviceState {
    Ok,
    Degraded,
    Down,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceHealth {
    pub name: String,
    pub state: DeviceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default)]
    pub readings: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedBundle {
    pub version: Option<u64>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What an agent reports on each heartbeat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The last bundle the agent refused.
    pub refused: Option<RefusedBundle>,
    #[serde(default)]
    pub devices: Vec<DeviceHealth>,
    #[serde(default)]
    pub queue_depth: u64,
    #[serde(default)]
    pub queue_bytes: u64,
    #[serde(default)]
    pub dropped_readings: u64,
    #[serde(default)]
    pub readings_out: u64,
    #[serde(default)]
    pub uptime_s: u64,
    #[serde(default)]
    pub agent_version: String,
    /// Seconds between heartbeats; offline after 3 missed.
    #[serde(default)]
    pub heartbeat_interval_s: u64,
    /// The highest frame `seq` the broker has acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_acked_seq: Option<u64>,
    /// Acknowledged frames kept on disk for replays (`uplink.buffer.retain`).
    #[serde(default)]
    pub retained_frames: u64,
    /// The broker answers "no matching subscribers": nothing reads the
    /// readings, so the agent holds them and retries (`uplink.requireSubscriber`).
    #[serde(default)]
    pub waiting_for_subscriber: bool,
    /// Replay requests answered since the agent started.
    #[serde(default)]
    pub replays: u64,
}

/// A device credential (named by `devices[].opcUa.credential`), as the
/// agent fetches it from `GET /api/v1/agents/{id}/credentials/{name}` or reads it
/// from its local credentials file (air-gapped), and keeps it 0600 in its
/// data dir. Never part of a bundle: bundles are signed, not encrypted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum DeviceCredential {
    /// An OPC UA user name identity.
    #[serde(rename_all = "camelCase")]
    UserPassword { username: String, password: String },
    /// An OPC UA X.509 user identity: certificate and private key, PEM.
    #[serde(rename_all = "camelCase")]
    Certificate {
        certificate_pem: String,
        private_key_pem: String,
    },
}

/// Secrets stay out of logs.
impl std::fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceCredential::UserPassword { username, .. } => f
                .debug_struct("UserPassword")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            DeviceCredential::Certificate { .. } => f
                .debug_struct("Certificate")
                .field("private_key_pem", &"<redacted>")
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for DeviceCredential {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::Schema::OneOf(schema::device_credential()).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for DeviceCredential {
    fn name() -> std::borrow::Cow<'static, str> {
        "DeviceCredential".into()
    }
}
