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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentFacts {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token from the console.
    pub token: String,
    /// Base64 of the agent's 32-byte Ed25519 public key.
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
    /// (`agent_token_challenge`).
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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}
