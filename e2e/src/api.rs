//! A running weir-api and a signed-in client for it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use weir_testkit::wait::try_wait_until_every;
use weir_testkit::{bin, free_port, Proc};

pub const ADMIN_EMAIL: &str = "admin@riverside-water.example";
pub const ADMIN_PASSWORD: &str = "e2e-Admin-password-1";

/// Start weir-api on a free port with a fresh SQLite database (or the given
/// database URL) in `dir`.
pub async fn start_api(dir: &Path, database_url: Option<&str>) -> Result<(Proc, String)> {
    start_api_with(dir, database_url, &[]).await
}

/// [`start_api`] with extra environment (e.g. a larger `WEIR_BODY_LIMIT_BYTES`).
pub async fn start_api_with(
    dir: &Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
) -> Result<(Proc, String)> {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let db = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}/weir.db?mode=rwc", dir.display()));
    let mut cmd = Command::new(bin("weir-api"));
    cmd.current_dir(dir)
        .env("WEIR_LISTEN", format!("127.0.0.1:{port}"))
        .env("WEIR_DATABASE_URL", db)
        .env("WEIR_PUBLIC_URL", &base)
        .env("WEIR_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("WEIR_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("WEIR_KUBE_TENANTS", "off")
        // Its brokers and receivers listen on loopback (refused by default).
        .env("WEIR_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    let child = Proc::spawn("weir-api", &mut cmd, dir)?;
    let health = format!("{base}/healthz");
    let (timeout, every) = (Duration::from_secs(30), Duration::from_millis(100));
    try_wait_until_every(timeout, every, "weir-api /healthz", || {
        let url = health.clone();
        async move { matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success()) }
    })
    .await?;
    Ok((child, base))
}

/// A client signed in with a session cookie that sends the CSRF token on
/// every change, as the console does.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    http: reqwest::Client,
    csrf: Option<String>,
}

impl ApiClient {
    pub fn anonymous(base: &str) -> Self {
        Self {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("http client"),
            csrf: None,
        }
    }

    pub async fn login(base: &str, email: &str, password: &str) -> Result<Self> {
        let mut c = Self::anonymous(base);
        let (status, body) = c
            .call(
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"email": email, "password": password})),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("login as {email} failed: {status} {body}");
        }
        c.csrf = body["csrfToken"]
            .as_str()
            .or_else(|| body["csrf_token"].as_str())
            .map(str::to_string);
        Ok(c)
    }

    /// Any request; returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if method != Method::GET {
            if let Some(t) = &self.csrf {
                req = req.header("x-csrf-token", t);
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// A request that must succeed (2xx); returns the body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {value}");
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.ok(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.ok(Method::POST, path, Some(body)).await
    }
}
