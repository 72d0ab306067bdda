//! EMQX 5's HTTP API, faked from its documented shapes: exactly the calls
//! weir-operator's client makes, answered for node `{pod}` of namespace
//! `{namespace}` under `/{namespace}/{pod}/api/v5/...`, from what the API
//! server holds: the cluster's members are the pods that were ready once
//! (`running` while ready, `stopped` after, until force_leave), each named
//! as the operator names EMQX nodes, on the version of its image tag.
//! Requests need the API key of the cluster's `<cluster>-api-credentials`
//! Secret (401 as EMQX answers otherwise). A request to a pod that is not
//! ready gets 503 where EMQX would refuse the connection.
//!
//! Control endpoints for scenarios: `GET /_sim/calls[?since=SEQ]` and
//! `POST /_sim/drain-after-polls/{n}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use weir_crds::MqttCluster;
use weir_operator::mqtt_cluster::builders::{api_secret_name, node_name, selector_labels};

use super::state::{Call, ClusterState, Evacuation};
use super::{Sim, CLUSTER_LABEL};

type S = State<Arc<Sim>>;
/// Status and JSON body (none for an empty answer).
type Answer = (StatusCode, Option<Value>);

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/_sim/calls", get(calls))
        .route("/_sim/drain-after-polls/{n}", post(set_drain))
        .route("/{ns}/{pod}/api/v5/{*rest}", any(emqx))
        .with_state(sim)
}

async fn calls(State(sim): S, Query(q): Query<HashMap<String, String>>) -> Json<Vec<Call>> {
    let since: usize = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let st = sim.state.lock().unwrap();
    Json(st.calls.iter().skip(since).cloned().collect())
}

async fn set_drain(State(sim): S, Path(n): Path<u32>) -> Json<Value> {
    sim.state.lock().unwrap().drain_after_polls = n;
    tracing::info!(n, "evacuations now drain after {n} polls");
    Json(json!({ "drain_after_polls": n }))
}

fn err(status: StatusCode, code: &str, message: impl Into<Value>) -> Answer {
    (
        status,
        Some(json!({"code": code, "message": message.into()})),
    )
}

async fn emqx(
    State(sim): S,
    method: Method,
    Path((ns, pod, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut path = format!("/api/v5/{rest}");
    if let Some(q) = &query {
        path.push('?');
        path.push_str(q);
    }
    let seq = {
        let mut st = sim.state.lock().unwrap();
        let seq = st.calls.len();
        st.calls.push(Call {
            seq,
            namespace: ns.clone(),
            pod: pod.clone(),
            method: method.to_string(),
            path: path.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            status: 0,
        });
        seq
    };
    let req = Request {
        method,
        ns,
        pod,
        rest,
        query: query.unwrap_or_default(),
        headers,
        body,
    };
    let (status, value) = answer(&sim, &req).await;
    sim.state.lock().unwrap().calls[seq].status = status.as_u16();
    tracing::info!(pod = %format!("{}/{}", req.ns, req.pod), method = %req.method, path = %path, status = status.as_u16(), "EMQX API call");
    match value {
        Some(v) => (status, Json(v)).into_response(),
        None => status.into_response(),
    }
}

struct Request {
    method: Method,
    ns: String,
    pod: String,
    rest: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The tag of the pod's first container image: its EMQX version.
fn version_of(p: &Pod) -> String {
    let image = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    match image.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag.to_string(),
        _ => "latest".into(),
    }
}

/// Running nodes of the cluster (its ready pods): node name → version.
fn running_nodes(sim: &Sim, c: &MqttCluster) -> BTreeMap<String, String> {
    let ns = c.namespace().unwrap_or_default();
    let prefix = format!("{}-", c.name_any());
    let selector = selector_labels(c);
    sim.pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| pod_ready(p))
        .filter_map(|p| {
            let ordinal: i32 = p.name_any().strip_prefix(&prefix)?.parse().ok()?;
            Some((node_name(c, ordinal), version_of(p)))
        })
        .collect()
}

async fn authorized(sim: &Sim, c: &MqttCluster, headers: &HeaderMap) -> bool {
    let ns = c.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(sim.client.clone(), &ns);
    let Ok(Some(secret)) = secrets.get_opt(&api_secret_name(c)).await else {
        return false;
    };
    let value = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let (Some(key), Some(secret)) = (value("api-key"), value("api-secret")) else {
        return false;
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn answer(sim: &Sim, req: &Request) -> Answer {
    let unavailable = || {
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!("EMQX on pod {}/{} is not running", req.ns, req.pod),
        )
    };
    let Some(pod) = sim.pods.get(&ObjectRef::new(&req.pod).within(&req.ns)) else {
        return unavailable();
    };
    if !pod_ready(&pod) {
        return unavailable();
    }
    let Some(cluster) = pod.labels().get(CLUSTER_LABEL).cloned() else {
        return unavailable();
    };
    let Some(c) = sim.clusters.get(&ObjectRef::new(&cluster).within(&req.ns)) else {
        return unavailable();
    };
    if !authorized(sim, &c, &req.headers).await {
        return err(
            StatusCode::UNAUTHORIZED,
            "BAD_API_KEY_OR_SECRET",
            "Check api_key/api_secret",
        );
    }
    let running = running_nodes(sim, &c);
    let mut st = sim.state.lock().unwrap();
    let drain_after = st.drain_after_polls;
    let cs = st.cluster(&req.ns, &cluster);
    for (node, version) in &running {
        cs.members.insert(node.clone(), version.clone());
    }
    // A node that stopped is evacuated no more.
    cs.evacuations.retain(|n, _| running.contains_key(n));
    let segs: Vec<&str> = req.rest.trim_end_matches('/').split('/').collect();
    let m = &req.method;
    match segs.as_slice() {
        ["nodes"] if m == Method::GET => nodes(sim, cs, &running),
        ["load_rebalance", node, "evacuation", "start"] if m == Method::POST => {
            evacuation_start(sim, cs, &running, node, &req.body)
        }
        ["load_rebalance", node, "evacuation", "stop"] if m == Method::POST => {
            match cs.evacuations.remove(*node) {
                Some(_) => (StatusCode::OK, Some(json!("ok"))),
                None => err(StatusCode::BAD_REQUEST, "BAD_REQUEST", "not_started"),
            }
        }
        ["load_rebalance", "global_status"] if m == Method::GET => global_status(cs, drain_after),
        ["cluster", node, "force_leave"] if m == Method::DELETE => match cs.members.remove(*node) {
            Some(_) => (StatusCode::NO_CONTENT, None),
            None => err(StatusCode::BAD_REQUEST, "BAD_REQUEST", "node_not_found"),
        },
        ["configs"] if m == Method::PUT => configs(sim, req),
        ["configs_reset", _root] if m == Method::POST => (StatusCode::OK, None),
        _ => err(StatusCode::NOT_FOUND, "NOT_FOUND", "Not Found"),
    }
}

fn nodes(sim: &Sim, cs: &ClusterState, running: &BTreeMap<String, String>) -> Answer {
    let list: Vec<Value> = cs
        .members
        .iter()
        .map(|(node, version)| {
            let up = running.contains_key(node);
            let conns = if up { sim.config.connections } else { 0 };
            json!({
                "node": node,
                "node_status": if up { "running" } else { "stopped" },
                "version": version,
                "connections": conns,
                "live_connections": conns,
                "role": "core",
                "edition": "Opensource",
            })
        })
        .collect();
    (StatusCode::OK, Some(Value::Array(list)))
}

fn evacuation_start(
    sim: &Sim,
    cs: &mut ClusterState,
    running: &BTreeMap<String, String>,
    node: &str,
    body: &[u8],
) -> Answer {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return err(StatusCode::BAD_REQUEST, "BAD_REQUEST", "invalid JSON body");
    };
    let migrate_to: Vec<String> = body
        .get("migrate_to")
        .and_then(|m| m.as_array())
        .map(|m| {
            m.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if migrate_to.is_empty() {
        return err(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "migrate_to is empty",
        );
    }
    if let Some(bad) = migrate_to.iter().find(|n| !running.contains_key(*n)) {
        return err(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("migrate_to: node {bad} is not running"),
        );
    }
    if !running.contains_key(node) {
        return err(StatusCode::BAD_REQUEST, "BAD_REQUEST", "node_not_running");
    }
    if cs.evacuations.contains_key(node) {
        return err(StatusCode::BAD_REQUEST, "BAD_REQUEST", "already_started");
    }
    cs.evacuations.insert(
        node.to_string(),
        Evacuation {
            polls: 0,
            connections: sim.config.connections,
            migrate_to,
        },
    );
    (StatusCode::OK, Some(json!("ok")))
}

fn global_status(cs: &mut ClusterState, drain_after: u32) -> Answer {
    let list: Vec<Value> = cs
        .evacuations
        .iter_mut()
        .map(|(node, e)| {
            e.polls += 1;
            let drained = e.polls >= drain_after;
            let left = if drained { 0 } else { e.connections };
            json!({
                "node": node,
                "state": if drained { "prohibiting" } else { "evicting_conns" },
                "conn_evict_rate": 500,
                "sess_evict_rate": 500,
                "migrate_to": e.migrate_to,
                "stats": {
                    "initial_connected": e.connections,
                    "current_connected": left,
                    "initial_sessions": e.connections,
                    "current_sessions": left,
                },
            })
        })
        .collect();
    (
        StatusCode::OK,
        Some(json!({"evacuations": list, "rebalances": []})),
    )
}

fn configs(sim: &Sim, req: &Request) -> Answer {
    let text = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !text {
        return err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "content-type: text/plain is required",
        );
    }
    let mode = req
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("mode="))
        .unwrap_or("merge");
    if mode != "merge" && mode != "replace" {
        return err(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "mode: merge or replace",
        );
    }
    let body = String::from_utf8_lossy(&req.body);
    if let Some(line) = body.lines().find(|l| l.contains(&sim.config.reject_config)) {
        let path = line.split('=').next().unwrap_or_default().trim();
        return err(
            StatusCode::BAD_REQUEST,
            "UPDATE_FAILED",
            json!({path: {"kind": "validation_error", "reason": "unable_to_convert_to_type", "value": line}})
                .to_string(),
        );
    }
    (StatusCode::OK, None)
}
