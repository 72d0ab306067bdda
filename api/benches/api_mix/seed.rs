//! The bench's data, made through the api the way a user and an agent make
//! it: an org and a project with 50 gateways (each with a config of 2
//! simulated devices × 10 tags), 20 alert rules, the audit entries these
//! writes leave, an org-admin API token, and one enrolled agent with its
//! bearer token. Readings for the series query go straight into the
//! historian's `readings` table (its own DDL from `weir_crds::historian`):
//! one hour at 1 s of 10 tags of gateway gw-00.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Utc;
use ed25519_dalek::Signer;
use sea_orm::sqlx::{self, Executor};
use serde_json::{json, Value};

pub const ORG: &str = "bench-org";
pub const PROJECT: &str = "plant";
pub const GATEWAYS: usize = 50;
pub const RULES: usize = 20;
pub const SERIES_TAGS: usize = 10;
pub const ADMIN_EMAIL: &str = "admin@bench.example";
pub const ADMIN_PASSWORD: &str = "bench-Admin-password-1";

/// What the load runs need.
pub struct Seeded {
    pub token: String,
    pub agent_id: String,
    pub agent_token: String,
}

/// Each gateway's config: this many simulated devices of [`TAGS_PER_DEVICE`].
pub const DEVICES: usize = 2;
pub const TAGS_PER_DEVICE: usize = 10;

fn spec() -> Value {
    let devices: Vec<Value> = (0..DEVICES)
        .map(|d| {
            let tags: Vec<Value> = (0..TAGS_PER_DEVICE)
                .map(|t| {
                    json!({"name": format!("t{t}"), "address": "sim", "dataType": "float64",
                           "signal": {"kind": "randomWalk", "min": 0.0, "max": 10.0}})
                })
                .collect();
            json!({"name": format!("d{d}"), "adapter": "simulator",
                   "groups": [{"name": "g", "intervalMs": 1000, "tags": tags}]})
        })
        .collect();
    json!({"site": {"name": "Bench plant"}, "devices": devices})
}

struct Session {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

impl Session {
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn post_anon(base: &str, path: &str, body: Value) -> Result<Value> {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("POST {path}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

pub async fn seed(base: &str) -> Result<Seeded> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("login: {}", r.status());
    }
    let body: Value = r.json().await?;
    let csrf = body["csrf_token"]
        .as_str()
        .or_else(|| body["csrfToken"].as_str())
        .context("csrf token in the login answer")?
        .to_string();
    let s = Session {
        http,
        base: base.to_string(),
        csrf,
    };
    s.post("/api/v1/orgs", json!({"slug": ORG, "name": "Bench Water"}))
        .await?;
    s.post(
        &format!("/api/v1/orgs/{ORG}/projects"),
        json!({"slug": PROJECT, "name": "Plant"}),
    )
    .await?;
    let p = format!("/api/v1/orgs/{ORG}/projects/{PROJECT}");
    let spec = spec();
    for i in 0..GATEWAYS {
        s.post(
            &format!("{p}/gateways"),
            json!({"name": format!("gw-{i:02}"), "spec": spec, "comment": "bench"}),
        )
        .await?;
    }
    for i in 0..RULES {
        s.post(
            &format!("{p}/alerts/rules"),
            json!({"name": format!("Level high {i}"), "kind": "threshold",
                   "tag": format!("t{}", i % TAGS_PER_DEVICE), "op": ">", "threshold": 9.5}),
        )
        .await?;
    }
    let t = s
        .post(
            &format!("/api/v1/orgs/{ORG}/tokens"),
            json!({"name": "bench", "role": "org-admin"}),
        )
        .await?;
    let token = t["token"].as_str().context("api token")?.to_string();

    // An agent, enrolled and signed in as weir-agent does it.
    let et = s
        .post(&format!("{p}/gateways/gw-00/enrollment-tokens"), json!({}))
        .await?;
    let key = weir_crds::bundle::generate_key();
    let e = post_anon(
        base,
        "/api/v1/enroll",
        json!({"token": et["token"].as_str().context("enrollment token")?,
               "publicKey": B64.encode(key.verifying_key().as_bytes()),
               "facts": {"hostname": "bench", "os": "linux", "arch": "x86_64", "agentVersion": "bench"}}),
    )
    .await?;
    let agent_id = e["agentId"].as_str().context("agentId")?.to_string();
    let ts = Utc::now();
    let sig = key.sign(&weir_crds::agent_api::agent_token_challenge(&agent_id, &ts));
    let at = post_anon(
        base,
        &format!("/api/v1/agents/{agent_id}/token"),
        json!({"timestamp": ts, "signature": B64.encode(sig.to_bytes())}),
    )
    .await?;
    Ok(Seeded {
        token,
        agent_id,
        agent_token: at["token"].as_str().context("agent token")?.to_string(),
    })
}

/// The historian's table in `url`, with the hour before `end` of readings
/// of gateway gw-00 (10 tags at 1 s).
pub async fn readings(url: &str, end: chrono::DateTime<Utc>) -> Result<()> {
    use weir_crds::historian::{READINGS_COLUMNS, SERIES_INDEX};
    let pool = sqlx::PgPool::connect(url).await?;
    pool.execute(
        format!(
            "CREATE TABLE weir_historian_meta (key text PRIMARY KEY, value text NOT NULL);
             INSERT INTO weir_historian_meta (key, value) VALUES ('owner', 'weir-historian'), ('version', '1'), ('layout', 'native');
             CREATE TABLE readings ({READINGS_COLUMNS}) PARTITION BY RANGE (ts);
             CREATE TABLE readings_default PARTITION OF readings DEFAULT;
             {SERIES_INDEX};"
        )
        .as_str(),
    )
    .await?;
    sqlx::query(
        "INSERT INTO readings (tenant, gateway, device, tag, ts, value, quality, seq) \
         SELECT $1, 'gw-00', 'd0', 't' || (s % $2), $3 - interval '1 hour' + (s / $2) * interval '1 second', \
                random() * 10, 0, s / $2 \
           FROM generate_series(0, 3600 * $2 - 1) s",
    )
    .bind(ORG)
    .bind(SERIES_TAGS as i64)
    .bind(end)
    .execute(&pool)
    .await?;
    pool.execute("ANALYZE readings").await?;
    pool.close().await;
    Ok(())
}
