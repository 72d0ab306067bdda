//! Seeding a project with gateways and running real agents against it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::api::ApiClient;
use weir_testkit::{bin, free_port, Proc};

/// A gateway spec with one simulated device (`tags` float tags at `interval_ms`).
pub fn simulated_spec(tags: &[&str], interval_ms: u64) -> Value {
    let tags: Vec<Value> = tags
        .iter()
        .map(|t| {
            json!({"name": t, "address": "sim", "dataType": "float64",
                        "signal": {"kind": "randomWalk", "min": 0.0, "max": 10.0}})
        })
        .collect();
    json!({
        "mode": "external",
        "clusterRef": "broker",
        "devices": [{"name": "plc", "adapter": "simulator",
                     "groups": [{"name": "process", "intervalMs": interval_ms, "tags": tags}]}],
        "uplink": {"lingerMs": 20}
    })
}

/// A simulated plant: `devices` devices of one group `g` of `tags` float
/// tags `t0..` read every `interval_ms`; one frame = one device's group =
/// `tags` readings. `uplink` is the gateway's uplink settings (`{}` for the
/// defaults).
pub fn plant_spec(devices: usize, tags: usize, interval_ms: u64, uplink: Value) -> Value {
    let devices: Vec<Value> = (0..devices)
        .map(|d| {
            let tags: Vec<Value> = (0..tags)
                .map(|t| {
                    json!({"name": format!("t{t}"), "address": "sim", "dataType": "float64",
                           "signal": {"kind": "randomWalk", "min": 0.0, "max": 10.0}})
                })
                .collect();
            json!({"name": format!("d{d}"), "adapter": "simulator",
                   "groups": [{"name": "g", "intervalMs": interval_ms, "tags": tags}]})
        })
        .collect();
    json!({"mode": "external", "clusterRef": "broker", "devices": devices, "uplink": uplink})
}

/// Create org + project + an external cluster for `broker_url`.
pub async fn seed_project(
    admin: &ApiClient,
    org: &str,
    project: &str,
    broker_url: &str,
) -> Result<String> {
    admin
        .post("/api/v1/orgs", json!({"slug": org, "name": org}))
        .await?;
    admin
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            json!({"slug": project, "name": project}),
        )
        .await?;
    let base = format!("/api/v1/orgs/{org}/projects/{project}");
    admin
        .post(
            &format!("{base}/clusters"),
            json!({"name": "broker", "backend": "external", "url": broker_url}),
        )
        .await?;
    Ok(base)
}

/// Create a gateway and an enrollment token for it; returns the token.
pub async fn gateway_with_token(
    admin: &ApiClient,
    base: &str,
    name: &str,
    spec: Value,
) -> Result<String> {
    admin
        .post(
            &format!("{base}/gateways"),
            json!({"name": name, "spec": spec, "comment": "e2e"}),
        )
        .await?;
    let t = admin
        .post(
            &format!("{base}/gateways/{name}/enrollment-tokens"),
            json!({"expires_in_secs": 3600, "max_uses": 1}),
        )
        .await?;
    Ok(t["token"]
        .as_str()
        .expect("token in the answer")
        .to_string())
}

/// Start a real `weir-agent run --server --token` with a 1 s heartbeat.
pub fn start_agent(dir: &Path, name: &str, server: &str, token: Option<&str>) -> Result<Proc> {
    let data = dir.join(format!("agent-{name}"));
    let mut cmd = Command::new(bin("weir-agent"));
    cmd.arg("run")
        .arg("--server")
        .arg(server)
        .arg("--data-dir")
        .arg(&data)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--heartbeat-s")
        .arg("1")
        .env("RUST_LOG", "info");
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    Ok(Proc::spawn(&format!("agent-{name}"), &mut cmd, dir)?)
}

/// The rollout entry of one gateway.
pub async fn rollout(admin: &ApiClient, base: &str, gateway: &str) -> Result<Value> {
    let all = admin.get(&format!("{base}/rollout")).await?;
    let items = all
        .as_array()
        .cloned()
        .or_else(|| all["items"].as_array().cloned())
        .unwrap_or_default();
    Ok(items
        .into_iter()
        .find(|e| e["gateway"] == gateway)
        .unwrap_or(Value::Null))
}

/// Wait until the gateway's agent is online and runs the desired version;
/// returns that version.
pub async fn wait_applied(
    admin: &ApiClient,
    base: &str,
    gateway: &str,
    timeout: Duration,
) -> Result<i64> {
    let start = std::time::Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        last = rollout(admin, base, gateway).await?;
        if last["online"] == true && last["applied_version"] == last["desired_version"] {
            return Ok(last["applied_version"].as_i64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{gateway} did not apply its desired config within {timeout:?}; rollout: {last}")
}

/// Replace a gateway's spec (a new signed version for its agent).
pub async fn patch_spec(admin: &ApiClient, base: &str, gateway: &str, spec: Value) -> Result<()> {
    admin
        .ok(
            reqwest::Method::PATCH,
            &format!("{base}/gateways/{gateway}"),
            Some(json!({"spec": spec, "comment": "e2e"})),
        )
        .await?;
    Ok(())
}
