//! Enrollment, signed-config long-poll, token renewal and status against a
//! small in-test server that implements `weir_crds::agent_api`; the real
//! binary as the agent.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::Subscriber;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use weir_crds::agent_api::{
    agent_token_challenge, AgentStatus, AgentTokenRequest, AgentTokenResponse, EnrollRequest,
    EnrollResponse, MqttCredentials,
};
use weir_crds::bundle::{generate_key, sign, BundlePayload, SignedBundle, TrustAnchor};
use weir_crds::gateway::GatewayConfig;

struct Api {
    signing: SigningKey,
    broker_url: String,
    agent_key: Mutex<Option<VerifyingKey>>,
    enrolls: Mutex<u32>,
    /// Enrollment calls received, good or bad.
    attempts: Mutex<u32>,
    /// Enrollment calls still to answer with 503 (an api that is starting).
    unavailable: Mutex<u32>,
    tokens: Mutex<Vec<String>>,
    bundle: Mutex<(u64, SignedBundle)>,
    changed: tokio::sync::Notify,
    statuses: Mutex<Vec<AgentStatus>>,
}

impl Api {
    /// Serving version 1 (device sim-a), signed by a fresh key.
    fn new(broker_url: String, unavailable: u32) -> Arc<Self> {
        let signing = generate_key();
        Arc::new(Api {
            broker_url,
            agent_key: Mutex::new(None),
            enrolls: Mutex::new(0),
            attempts: Mutex::new(0),
            unavailable: Mutex::new(unavailable),
            tokens: Mutex::new(Vec::new()),
            bundle: Mutex::new((1, bundle(&signing, 1, "sim-a"))),
            changed: tokio::sync::Notify::new(),
            statuses: Mutex::new(Vec::new()),
            signing,
        })
    }
}

type S = State<Arc<Api>>;

fn creds(api: &Api) -> MqttCredentials {
    MqttCredentials {
        urls: vec![api.broker_url.clone()],
        client_id: "agent-1".into(),
        username: "agent-1".into(),
        password: "not-a-real-jwt".into(),
        expires: chrono::Utc::now() + chrono::Duration::hours(1),
    }
}

async fn enroll(State(api): S, Json(req): Json<EnrollRequest>) -> Response {
    *api.attempts.lock().unwrap() += 1;
    if req.token != "boot-token" {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    {
        let mut left = api.unavailable.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
        }
    }
    let bytes: [u8; 32] = B64.decode(&req.public_key).unwrap().try_into().unwrap();
    *api.agent_key.lock().unwrap() = Some(VerifyingKey::from_bytes(&bytes).unwrap());
    *api.enrolls.lock().unwrap() += 1;
    Json(EnrollResponse {
        agent_id: "agent-1".into(),
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        trust_anchor: TrustAnchor::from_key(&api.signing.verifying_key()),
        mqtt: creds(&api),
    })
    .into_response()
}

async fn token(
    State(api): S,
    Path(id): Path<String>,
    Json(req): Json<AgentTokenRequest>,
) -> Response {
    let Some(key) = *api.agent_key.lock().unwrap() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let sig = Signature::from_slice(&B64.decode(&req.signature).unwrap()).unwrap();
    if key
        .verify_strict(&agent_token_challenge(&id, &req.timestamp), &sig)
        .is_err()
        || (chrono::Utc::now() - req.timestamp).num_seconds().abs() > 300
    {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let t = format!("tok-{}", api.tokens.lock().unwrap().len());
    api.tokens.lock().unwrap().push(t.clone());
    Json(AgentTokenResponse {
        token: t,
        expires: chrono::Utc::now() + chrono::Duration::minutes(10),
    })
    .into_response()
}

fn authorized(api: &Api, h: &HeaderMap) -> bool {
    let Some(v) = h.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.strip_prefix("Bearer ")
        .is_some_and(|t| api.tokens.lock().unwrap().iter().any(|x| x == t))
}

#[derive(serde::Deserialize)]
struct Wait {
    wait: Option<String>,
}

async fn config(
    State(api): S,
    Path(_id): Path<String>,
    Query(q): Query<Wait>,
    h: HeaderMap,
) -> Response {
    if !authorized(&api, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let wait: u64 = q
        .wait
        .as_deref()
        .and_then(|w| w.trim_end_matches('s').parse().ok())
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let notified = api.changed.notified();
        let (etag, bundle) = {
            let g = api.bundle.lock().unwrap();
            (format!("\"{}\"", g.0), g.1.clone())
        };
        let inm = h.get("if-none-match").and_then(|v| v.to_str().ok());
        if inm != Some(etag.as_str()) {
            return ([("etag", etag)], Json(bundle)).into_response();
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return StatusCode::NOT_MODIFIED.into_response();
        }
    }
}

async fn mqtt(State(api): S, Path(_id): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&api, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(creds(&api)).into_response()
}

async fn status(
    State(api): S,
    Path(_id): Path<String>,
    h: HeaderMap,
    Json(s): Json<AgentStatus>,
) -> Response {
    if !authorized(&api, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    api.statuses.lock().unwrap().push(s);
    StatusCode::NO_CONTENT.into_response()
}

fn config_for(device: &str) -> GatewayConfig {
    serde_json::from_value(serde_json::json!({
        "devices": [{"name": device, "adapter": "simulator", "groups": [{"name": "fast", "intervalMs": 100, "tags": [
            {"name": "flow", "address": "flow", "dataType": "float64", "signal": {"kind": "sine", "min": 0, "max": 50}},
            {"name": "pump", "address": "pump", "dataType": "bool", "signal": {"kind": "pump", "faultRate": 0.01}}
        ]}]}]
    }))
    .unwrap()
}

fn bundle(key: &SigningKey, version: u64, device: &str) -> SignedBundle {
    sign(
        &BundlePayload::new(
            "riverside",
            "ps-1",
            version,
            config_for(device),
            chrono::Utc::now(),
            chrono::Duration::days(1),
        ),
        key,
    )
}

fn publish(api: &Api, version: u64, b: SignedBundle) {
    *api.bundle.lock().unwrap() = (version, b);
    api.changed.notify_waiters();
}

fn spawn(args: &[&str], data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir-agent"))
        .arg("run")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--metrics-listen", "127.0.0.1:0", "--heartbeat-s", "1"])
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn wait_status(api: &Api, what: &str, pred: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = api.statuses.lock().unwrap().iter().rev().find(|s| pred(s)) {
            return s.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no status with {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolls_follows_signed_config_and_reports_status() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    // The first two enrollment calls answer 503, as an api that is starting.
    let api = Api::new(broker.url(), 2);
    let app = Router::new()
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/agents/{id}/token", post(token))
        .route("/api/v1/agents/{id}/config", get(config))
        .route("/api/v1/agents/{id}/mqtt-credentials", get(mqtt))
        .route("/api/v1/agents/{id}/status", post(status))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut agent = spawn(&["--server", &server_url, "--token", "boot-token"], &data);

    let s = wait_status(&api, "applied version 1", |s| s.applied_version == Some(1)).await;
    assert_eq!(s.devices[0].name, "sim-a");
    assert_eq!(
        *api.attempts.lock().unwrap(),
        3,
        "the agent retried through the api's two 503s, then enrolled once"
    );
    sub.wait_until(Duration::from_secs(20), "readings of sim-a", |s| {
        s.frames.contains_key("sim-a")
    })
    .await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the agent key is private");
    let id: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("identity.json")).unwrap()).unwrap();
    assert_eq!(id["agentId"], "agent-1");

    // A tampered bundle: refused, reported, old config runs on.
    let mut bad = bundle(&api.signing, 2, "sim-evil");
    bad.signature = bundle(&api.signing, 2, "sim-other").signature;
    publish(&api, 2, bad);
    let s = wait_status(&api, "the refusal", |s| {
        s.refused.as_ref().is_some_and(|r| r.version == Some(2))
    })
    .await;
    assert!(s.refused.unwrap().reason.contains("signature"));
    assert_eq!(s.applied_version, Some(1));

    // A good newer one: applied.
    publish(&api, 3, bundle(&api.signing, 3, "sim-b"));
    wait_status(&api, "applied version 3", |s| s.applied_version == Some(3)).await;
    sub.wait_until(Duration::from_secs(20), "readings of sim-b", |s| {
        s.frames.contains_key("sim-b")
    })
    .await;

    // Restart without the token: no second enrollment.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let n = api.statuses.lock().unwrap().len();
    let mut agent = spawn(&[], &data);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while api.statuses.lock().unwrap().len() <= n {
        assert!(
            std::time::Instant::now() < deadline,
            "no status after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*api.enrolls.lock().unwrap(), 1);
    agent.kill().unwrap();
    agent.wait().unwrap();

    // Server gone: the last good bundle runs from disk.
    server.abort();
    let _ = server.await;
    let before = sub
        .seen
        .lock()
        .unwrap()
        .frames
        .get("sim-b")
        .map(|m| m.len())
        .unwrap_or(0);
    let mut agent = spawn(&[], &data);
    sub.wait_until(Duration::from_secs(20), "readings with the api down", |s| {
        s.frames.get("sim-b").map(|m| m.len()).unwrap_or(0) > before + 5
    })
    .await;
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_agent_with_a_clear_error() {
    let api = Api::new("mqtt://127.0.0.1:1".into(), 0);
    let app = Router::new()
        .route("/api/v1/enroll", post(enroll))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let work = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_weir-agent"))
            .args(["run", "--server", &server_url, "--token", "wrong-token"])
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("a refused token ends the agent instead of retrying")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "stderr names the refusal: {stderr}");
    assert_eq!(
        *api.attempts.lock().unwrap(),
        1,
        "a refused token is not tried again"
    );
}
