//! A mock EMQX 5 HTTP API (axum, on 127.0.0.1) returning the documented
//! response shapes, for the client and reconciler tests.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;

use crate::emqx::{Evacuation, EvacuationStats, Node};

/// What the mock knows and has been asked.
#[derive(Debug, Default)]
pub struct MockState {
    pub nodes: Vec<Node>,
    pub evacuations: Vec<Evacuation>,
    /// False: answer 404 to rebalance calls, as open-source EMQX 5.8 does.
    pub rebalance_available: bool,
    /// Polls of global_status before an evacuation has drained.
    pub drain_after_polls: u32,
    polls: u32,
    /// HOCON bodies received by `PUT /configs`.
    pub configs: Vec<String>,
    /// Answer config updates with this error (HTTP 400).
    pub config_error: Option<String>,
    /// `METHOD path` of every authenticated call.
    pub calls: Vec<String>,
    pub key: String,
    pub secret: String,
    /// Node lists served under `/{prefix}/api/v5/nodes`, so one mock can
    /// stand in for many clusters (the benchmark).
    pub by_prefix: std::collections::HashMap<String, Vec<Node>>,
}

/// A running mock; dropped servers keep running until the test's runtime ends.
#[derive(Clone)]
pub struct MockEmqx {
    pub url: String,
    pub state: Arc<Mutex<MockState>>,
}

fn authorized(st: &MockState, headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", st.key, st.secret))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"})),
    )
        .into_response()
}

type S = State<Arc<Mutex<MockState>>>;

async fn list_nodes(State(st): S, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls.push("GET /api/v5/nodes".into());
    Json(st.nodes.clone()).into_response()
}

async fn nodes_by_prefix(State(st): S, Path(prefix): Path<String>, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls.push(format!("GET /{prefix}/api/v5/nodes"));
    match st.by_prefix.get(&prefix) {
        Some(n) => Json(n.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn evac_start(
    State(st): S,
    Path(node): Path<String>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls.push(format!(
        "POST /api/v5/load_rebalance/{node}/evacuation/start"
    ));
    if !st.rebalance_available {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code":"NOT_FOUND","message":"Not Found"})),
        )
            .into_response();
    }
    if body
        .get("migrate_to")
        .and_then(|m| m.as_array())
        .is_none_or(|m| m.is_empty())
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code":"BAD_REQUEST","message":"migrate_to is empty"})),
        )
            .into_response();
    }
    let connections = st
        .nodes
        .iter()
        .find(|n| n.node == node)
        .map_or(0, |n| n.connections);
    st.polls = 0;
    st.evacuations.push(Evacuation {
        node,
        state: "evicting_conns".into(),
        stats: EvacuationStats {
            initial_connected: connections,
            current_connected: connections,
            initial_sessions: connections,
            current_sessions: connections,
        },
    });
    Json(json!("ok")).into_response()
}

async fn evac_stop(State(st): S, Path(node): Path<String>, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls.push(format!(
        "POST /api/v5/load_rebalance/{node}/evacuation/stop"
    ));
    let before = st.evacuations.len();
    st.evacuations.retain(|e| e.node != node);
    if st.evacuations.len() == before {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code":"BAD_REQUEST","message":"not_started"})),
        )
            .into_response();
    }
    Json(json!("ok")).into_response()
}

async fn configs_reset(
    State(st): S,
    Path(root): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls.push(match q {
        Some(q) => format!("POST /api/v5/configs_reset/{root}?{q}"),
        None => format!("POST /api/v5/configs_reset/{root}"),
    });
    Json(json!({})).into_response()
}

async fn global_status(State(st): S, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls
        .push("GET /api/v5/load_rebalance/global_status".into());
    if !st.rebalance_available {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code":"NOT_FOUND","message":"Not Found"})),
        )
            .into_response();
    }
    st.polls += 1;
    if st.polls >= st.drain_after_polls {
        for e in &mut st.evacuations {
            e.stats.current_connected = 0;
            e.stats.current_sessions = 0;
            e.state = "prohibiting".into();
        }
    }
    Json(json!({"evacuations": st.evacuations, "rebalances": []})).into_response()
}

async fn force_leave(State(st): S, Path(node): Path<String>, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls
        .push(format!("DELETE /api/v5/cluster/{node}/force_leave"));
    let before = st.nodes.len();
    st.nodes.retain(|n| n.node != node);
    if st.nodes.len() == before {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code":"NOT_FOUND","message":"node not found"})),
        )
            .into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn configs(
    State(st): S,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut st = st.lock().unwrap();
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.calls
        .push(format!("PUT /api/v5/configs?{}", q.unwrap_or_default()));
    if let Some(e) = st.config_error.clone() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code":"UPDATE_FAILED","message": e})),
        )
            .into_response();
    }
    st.configs.push(body);
    Json(json!({})).into_response()
}

impl MockEmqx {
    /// Start a mock answering for `nodes`, expecting API key `key:secret`.
    pub async fn start(nodes: Vec<Node>, key: &str, secret: &str) -> Self {
        let state = Arc::new(Mutex::new(MockState {
            nodes,
            key: key.into(),
            secret: secret.into(),
            drain_after_polls: 1,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/api/v5/nodes", get(list_nodes))
            .route("/{prefix}/api/v5/nodes", get(nodes_by_prefix))
            .route(
                "/api/v5/load_rebalance/{node}/evacuation/start",
                post(evac_start),
            )
            .route(
                "/api/v5/load_rebalance/{node}/evacuation/stop",
                post(evac_stop),
            )
            .route("/api/v5/configs_reset/{root}", post(configs_reset))
            .route("/api/v5/load_rebalance/global_status", get(global_status))
            .route("/api/v5/cluster/{node}/force_leave", delete(force_leave))
            .route("/api/v5/configs", put(configs))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock EMQX");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, state }
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut MockState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

/// A running EMQX node as `GET /api/v5/nodes` lists it.
pub fn node(name: &str, version: &str, connections: u64) -> Node {
    Node {
        node: name.into(),
        node_status: "running".into(),
        version: Some(version.into()),
        connections,
        live_connections: connections,
        role: Some("core".into()),
    }
}
