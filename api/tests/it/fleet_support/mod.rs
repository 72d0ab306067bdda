//! Helpers shared by the fleet tests.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Utc;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};
use weir_api::Config;
use weir_crds::agent_api::agent_token_challenge;
use weir_crds::bundle;

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

/// An enrolled test agent.
pub struct Agent {
    pub id: String,
    pub bearer: Cred,
}

impl Agent {
    /// Enroll an agent for `gateway` (under `gateways`, the gateways
    /// collection path) and get its api token.
    pub async fn enroll(app: &TestApp, admin: &Cred, gateways: &str, gateway: &str) -> Agent {
        let r = app
            .post(
                &format!("{gateways}/{gateway}/enrollment-tokens"),
                admin,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let key: SigningKey = bundle::generate_key();
        let r = app
            .post(
                "/api/v1/enroll",
                &Cred::None,
                json!({
                    "token": r.body["token"],
                    "publicKey": B64.encode(key.verifying_key().as_bytes()),
                    "facts": {"hostname": "ipc-1", "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"},
                }),
            )
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
        let id = r.body["agentId"].as_str().unwrap().to_string();
        let ts = Utc::now();
        let sig = key.sign(&agent_token_challenge(&id, &ts));
        let r = app
            .post(
                &format!("/api/v1/agents/{id}/token"),
                &Cred::None,
                json!({"timestamp": ts, "signature": B64.encode(sig.to_bytes())}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        Agent {
            id,
            bearer: Cred::Bearer(r.body["token"].as_str().unwrap().to_string()),
        }
    }
}
