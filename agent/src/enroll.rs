//! The api client: enrollment, agent tokens, config fetch, MQTT credentials
//! and status, exactly as `weir_crds::agent_api` defines them.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use tokio::sync::Mutex;
use weir_crds::agent_api::{
    agent_token_challenge, AgentFacts, AgentStatus, AgentTokenRequest, AgentTokenResponse,
    DeviceCredential, EnrollRequest, EnrollResponse, MqttCredentials,
};
use weir_crds::bundle::SignedBundle;

use crate::error::{Error, Result};

pub fn facts() -> AgentFacts {
    AgentFacts {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client builds")
}

fn api_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Api(format!("{what}: {e}"))
}

async fn error_body(what: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Error::Api(format!("{what}: HTTP {status}: {body}"))
}

/// First start: present the bootstrap token and our public key.
///
/// An api that is down, restarting or overloaded (connection errors, 5xx,
/// 429) is retried with backoff, so agents started together with the api (or
/// before it) enroll once it answers; a refused token (4xx) fails at once.
pub async fn enroll(server: &str, token: &str, key: &SigningKey) -> Result<EnrollResponse> {
    let mut delay = Duration::from_millis(250);
    loop {
        match enroll_once(server, token, key).await {
            Ok(resp) => return Ok(resp),
            Err((e, true)) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "enrollment failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err((e, false)) => return Err(e),
        }
    }
}

/// One attempt; the flag says whether trying again could succeed.
async fn enroll_once(
    server: &str,
    token: &str,
    key: &SigningKey,
) -> std::result::Result<EnrollResponse, (Error, bool)> {
    let req = EnrollRequest {
        token: token.into(),
        public_key: B64.encode(key.verifying_key().as_bytes()),
        facts: facts(),
    };
    let url = format!("{}/api/v1/enroll", server.trim_end_matches('/'));
    let resp = http()
        .post(&url)
        .json(&req)
        .send()
        .await
        .map_err(|e| (api_err("enroll", e), true))?;
    let status = resp.status();
    if !status.is_success() {
        let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        return Err((error_body("enroll", resp).await, retry));
    }
    resp.json()
        .await
        .map_err(|e| (api_err("enroll response", e), false))
}

/// What a config fetch returned.
#[derive(Debug)]
pub enum ConfigFetch {
    New {
        bundle: Box<SignedBundle>,
        etag: Option<String>,
    },
    NotModified,
}

/// What the api answered for a device credential.
#[derive(Debug)]
pub enum CredentialFetch {
    /// The credential, and the ETag to re-check it with.
    Found(DeviceCredential, Option<String>),
    /// 304: the copy with the ETag given is current.
    Unchanged,
    /// 404: the gateway's config names no such credential, or the project
    /// has none by that name; the api's reason.
    Refused(String),
}

/// Longest wait for one credential fetch: they run before a config's
/// devices start, so an unreachable api must not hold them up for long.
const CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// An enrolled agent's client; renews its short-lived token itself.
pub struct ApiClient {
    server: String,
    agent_id: String,
    key: SigningKey,
    http: reqwest::Client,
    token: Mutex<Option<(String, DateTime<Utc>)>>,
}

impl ApiClient {
    pub fn new(server: &str, agent_id: &str, key: SigningKey) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            agent_id: agent_id.into(),
            key,
            http: http(),
            token: Mutex::new(None),
        }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/api/v1/agents/{}/{tail}", self.server, self.agent_id)
    }

    /// A valid token, renewed a minute before it expires.
    pub async fn token(&self) -> Result<String> {
        let mut g = self.token.lock().await;
        if let Some((t, exp)) = &*g {
            if *exp - chrono::Duration::seconds(60) > Utc::now() {
                return Ok(t.clone());
            }
        }
        let timestamp = Utc::now();
        let sig = self
            .key
            .sign(&agent_token_challenge(&self.agent_id, &timestamp));
        let req = AgentTokenRequest {
            timestamp,
            signature: B64.encode(sig.to_bytes()),
        };
        let resp = self
            .http
            .post(self.url("token"))
            .json(&req)
            .send()
            .await
            .map_err(|e| api_err("agent token", e))?;
        if !resp.status().is_success() {
            return Err(error_body("agent token", resp).await);
        }
        let t: AgentTokenResponse = resp
            .json()
            .await
            .map_err(|e| api_err("agent token response", e))?;
        *g = Some((t.token.clone(), t.expires));
        Ok(t.token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// Long-poll for a bundle newer than `etag`.
    pub async fn fetch_config(&self, etag: Option<&str>, wait: Duration) -> Result<ConfigFetch> {
        let token = self.token().await?;
        let mut req = self
            .http
            .get(self.url("config"))
            .query(&[("wait", format!("{}s", wait.as_secs()))])
            .bearer_auth(&token)
            .timeout(wait + Duration::from_secs(15));
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        let resp = req.send().await.map_err(|e| api_err("config", e))?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => Ok(ConfigFetch::NotModified),
            StatusCode::UNAUTHORIZED => {
                self.forget_token().await;
                Err(error_body("config", resp).await)
            }
            s if s.is_success() => {
                let etag = resp
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let bundle: Box<SignedBundle> =
                    resp.json().await.map_err(|e| api_err("config body", e))?;
                Ok(ConfigFetch::New { bundle, etag })
            }
            _ => Err(error_body("config", resp).await),
        }
    }

    pub async fn mqtt_credentials(&self) -> Result<MqttCredentials> {
        let token = self.token().await?;
        let resp = self
            .http
            .get(self.url("mqtt-credentials"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| api_err("mqtt credentials", e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.forget_token().await;
        }
        if !resp.status().is_success() {
            return Err(error_body("mqtt credentials", resp).await);
        }
        resp.json()
            .await
            .map_err(|e| api_err("mqtt credentials body", e))
    }

    /// A device credential the gateway's config names; with `etag`, only
    /// if it changed since. Errors are the api being unreachable or failing
    /// (the caller falls back to its copy).
    pub async fn device_credential(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<CredentialFetch> {
        let what = "device credential";
        let token = self.token().await?;
        let mut req = self
            .http
            .get(self.url(&format!("credentials/{name}")))
            .bearer_auth(&token)
            .timeout(CREDENTIAL_TIMEOUT);
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        let resp = req.send().await.map_err(|e| api_err(what, e))?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => Ok(CredentialFetch::Unchanged),
            StatusCode::NOT_FOUND => {
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let reason = body["detail"]
                    .as_str()
                    .unwrap_or("the api has no such credential for this gateway")
                    .to_string();
                Ok(CredentialFetch::Refused(reason))
            }
            StatusCode::UNAUTHORIZED => {
                self.forget_token().await;
                Err(error_body(what, resp).await)
            }
            // The body is the secret: never put it in an error message.
            s if s.is_success() => {
                let etag = resp
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let c = resp.json().await.map_err(|_| {
                    Error::Api(format!("{what}: the answer is not a DeviceCredential"))
                })?;
                Ok(CredentialFetch::Found(c, etag))
            }
            _ => Err(error_body(what, resp).await),
        }
    }

    pub async fn post_status(&self, status: &AgentStatus) -> Result<()> {
        let token = self.token().await?;
        let resp = self
            .http
            .post(self.url("status"))
            .bearer_auth(&token)
            .json(status)
            .send()
            .await
            .map_err(|e| api_err("status", e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.forget_token().await;
        }
        if !resp.status().is_success() {
            return Err(error_body("status", resp).await);
        }
        Ok(())
    }
}
