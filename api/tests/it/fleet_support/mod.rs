//! Helpers shared by the fleet tests.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use weir_api::Config;

use crate::common::{Backend, Cred, TestApp};

/// A fixed master key so PostgreSQL runs (it has no file to generate one next to).
pub const TEST_MASTER_KEY: &str =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// An api for fleet tests: no Kubernetes, a fast fleet monitor.
pub async fn fleet_app(b: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::start_with(b, |c| {
        c.fleet.kube_fleet = weir_api::fleet::KubeFleet::Off;
        c.fleet.master_key = Some(TEST_MASTER_KEY.to_string());
        c.fleet.fleet_monitor_interval_ms = 200;
        c.fleet.enroll_burst = 1000;
        tweak(c);
    })
    .await
}

pub async fn setup_org(app: &TestApp, admin: &Cred, org: &str, project: &str) {
    let r = app
        .post("/api/v1/orgs", admin, json!({"slug": org, "name": org}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            admin,
            json!({"slug": project, "name": project}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

pub fn modbus_device(interval_ms: u64) -> Value {
    json!({
        "name": "pump-1",
        "adapter": "modbusTcp",
        "modbus": {"host": "10.0.0.5"},
        "groups": [{"name": "fast", "intervalMs": interval_ms, "tags": [
            {"name": "flow", "address": "1!400001#BB", "dataType": "float32"},
            {"name": "running", "address": "1!000001", "dataType": "bool"}
        ]}]
    })
}

pub fn modbus_spec(interval_ms: u64) -> Value {
    json!({"site": {"name": "Pump station"}, "devices": [modbus_device(interval_ms)]})
}
