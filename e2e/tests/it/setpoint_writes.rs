//! Setpoint writes end to end (issue 23): an operator's `POST …/writes`
//! goes from the real weir-api, with its own dynamic-security login on a
//! real Mosquitto, to the real weir-agent, which writes the register of a
//! pymodbus server (`e2e/modbus/setpoints.py`); the register is read back
//! with pymodbus, not through Weir. Limits and types are refused before
//! anything is published, a device's refusal comes back as the agent's
//! answer, a stopped agent ends in 504 after the configured timeout, and
//! every write that reached the broker is in the audit log with old and
//! new value, result and comment. Viewers may not write; another
//! organization does not see the gateway.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, start_agent, wait_applied};
use weir_e2e::ApiClient;
use weir_testkit::{free_port, Mosquitto, Proc};

const MQTT_ADMIN: &str = "weir-admin";
const MQTT_ADMIN_PASSWORD: &str = "e2e-dynsec-Admin-7c1f";
const BASE: &str = "/api/v1/orgs/riverside/projects/dosing";
const PASSWORD: &str = "e2e-User-password-1";

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("modbus/setpoints.py")
}

/// pymodbus's view of a holding register (independent of weir-agent).
fn register(port: u16, kind: &str, reg: u16) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(["read", &port.to_string(), kind, &reg.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "reading register {reg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn spec(modbus_port: u16) -> Value {
    let rw = json!(["read", "write"]);
    json!({
        "mode": "external",
        "clusterRef": "plant-broker",
        "devices": [{
            "name": "skid", "adapter": "modbusTcp",
            "modbus": {"host": "127.0.0.1", "port": modbus_port},
            "groups": [
                {"name": "setpoints", "intervalMs": 500, "tags": [
                    {"name": "dose_sp", "address": "1!400001", "dataType": "float32", "attributes": rw,
                     "unit": "mg/L", "decimals": 2, "writeMin": 0.0, "writeMax": 5.0},
                    {"name": "pump_speed", "address": "1!400003", "dataType": "uint16", "attributes": rw},
                    {"name": "flow", "address": "1!400005", "dataType": "float32"}]},
                // Past the server's ten registers: a write gets a Modbus exception.
                {"name": "missing", "intervalMs": 5000, "tags": [
                    {"name": "ghost_sp", "address": "1!400100", "dataType": "uint16", "attributes": rw}]}
            ]
        }],
        "uplink": {"lingerMs": 20}
    })
}

async fn user(admin: &ApiClient, base_url: &str, email: &str, role: &str) -> ApiClient {
    admin
        .post(
            "/api/v1/users",
            json!({"email": email, "name": email, "password": PASSWORD}),
        )
        .await
        .unwrap();
    admin
        .post(
            &format!("{BASE}/members"),
            json!({"email": email, "role": role}),
        )
        .await
        .unwrap();
    ApiClient::login(base_url, email, PASSWORD).await.unwrap()
}

async fn write(c: &ApiClient, body: Value) -> (StatusCode, Value) {
    c.call(
        Method::POST,
        &format!("{BASE}/gateways/skid-1/writes"),
        Some(body),
    )
    .await
    .unwrap()
}

fn field_error(body: &Value, field: &str) -> String {
    body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["field"] == field)
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no error on {field}: {body}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_writes_a_setpoint_to_a_modbus_device() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Mosquitto::builder()
        .dynamic_security(MQTT_ADMIN, MQTT_ADMIN_PASSWORD)
        .start()
        .await;
    let modbus_port = free_port();
    let mut server = Command::new("python3");
    server
        .arg(script())
        .args(["serve", &modbus_port.to_string()])
        .stdin(Stdio::null());
    let _modbus = Proc::spawn("pymodbus", &mut server, dir.path())?;
    let (_api, base_url) =
        start_api_with(dir.path(), None, &[("WEIR_WRITE_TIMEOUT_MS", "3000")]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    admin
        .post(
            "/api/v1/orgs",
            json!({"slug": "riverside", "name": "Riverside"}),
        )
        .await?;
    admin
        .post(
            "/api/v1/orgs/riverside/projects",
            json!({"slug": "dosing", "name": "Dosing"}),
        )
        .await?;
    admin
        .post(
            &format!("{BASE}/clusters"),
            json!({"name": "plant-broker", "backend": "external", "url": broker.url(),
                   "username": MQTT_ADMIN, "password": MQTT_ADMIN_PASSWORD}),
        )
        .await?;
    let token = gateway_with_token(&admin, BASE, "skid-1", spec(modbus_port)).await?;
    let operator = user(
        &admin,
        &base_url,
        "operator@riverside.example",
        "project-operator",
    )
    .await;
    let viewer = user(
        &admin,
        &base_url,
        "viewer@riverside.example",
        "project-viewer",
    )
    .await;
    let mut agent = start_agent(dir.path(), "skid-1", &base_url, Some(&token))?;
    wait_applied(&admin, BASE, "skid-1", Duration::from_secs(60)).await?;
    assert_eq!(register(modbus_port, "float32", 0), "2.5");

    // A viewer may read but not write.
    let (s, b) = write(
        &viewer,
        json!({"device": "skid", "tag": "dose_sp", "value": 1.0}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    // The operator writes: the agent answers, pymodbus holds the value.
    let started = Instant::now();
    let (s, b) = write(
        &operator,
        json!({"device": "skid", "tag": "dose_sp", "value": 3.25, "comment": "raise chlorine after the storm"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["ok"], true, "{b}");
    assert_eq!(b["value"], 3.25);
    assert!(b["answered_in_ms"].as_u64().unwrap() < 3000, "{b}");
    assert_eq!(register(modbus_port, "float32", 0), "3.25");
    println!(
        "write answered in {:?} ({} ms by the api)",
        started.elapsed(),
        b["answered_in_ms"]
    );
    let started = Instant::now();
    let (s, b) = write(
        &operator,
        json!({"device": "skid", "tag": "pump_speed", "value": 1450}),
    )
    .await;
    assert_eq!((s, &b["ok"]), (StatusCode::OK, &json!(true)), "{b}");
    println!(
        "second write answered in {:?} ({} ms by the api)",
        started.elapsed(),
        b["answered_in_ms"]
    );
    assert_eq!(register(modbus_port, "uint16", 2), "1450");

    // Refused before anything is published, naming the field; the register keeps its value.
    let cases = [
        (
            json!({"device": "skid", "tag": "dose_sp", "value": 7.5}),
            "value",
            "above the tag's writeMax 5",
        ),
        (
            json!({"device": "skid", "tag": "dose_sp", "value": -1}),
            "value",
            "below the tag's writeMin 0",
        ),
        (
            json!({"device": "skid", "tag": "flow", "value": 1.0}),
            "value",
            "not writable",
        ),
        (
            json!({"device": "skid", "tag": "pump_speed", "value": 70000}),
            "value",
            "does not fit the tag's type uint16",
        ),
        (
            json!({"device": "skid", "tag": "pump_speed", "value": "fast"}),
            "value",
            "write a number",
        ),
        (
            json!({"device": "skid", "tag": "nope", "value": 1}),
            "tag",
            "has no tag 'nope'",
        ),
        (
            json!({"device": "tank", "tag": "dose_sp", "value": 1}),
            "device",
            "no device 'tank'",
        ),
    ];
    for (body, field, says) in cases {
        let (s, b) = write(&operator, body.clone()).await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}: {b}");
        let msg = field_error(&b, field);
        assert!(msg.contains(says), "{body}: {field} says {msg:?}");
    }
    let (s, b) = write(
        &operator,
        json!({"device": "skid", "tag": "dose_sp", "value": 1, "comment": "x".repeat(501)}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(field_error(&b, "comment").contains("500"), "{b}");
    assert_eq!(register(modbus_port, "float32", 0), "3.25");

    // The device refuses (no such register): the agent's answer says why.
    let (s, b) = write(
        &operator,
        json!({"device": "skid", "tag": "ghost_sp", "value": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["ok"], false, "{b}");
    let why = b["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(why.contains("exception") || why.contains("illegal"), "{b}");

    // A system admin may write too; another organization's owner does not
    // see the gateway at all.
    let (s, b) = write(
        &admin,
        json!({"device": "skid", "tag": "dose_sp", "value": 1.0}),
    )
    .await;
    assert_eq!((s, &b["ok"]), (StatusCode::OK, &json!(true)), "{b}");
    assert_eq!(register(modbus_port, "float32", 0), "1");
    admin
        .post(
            "/api/v1/users",
            json!({"email": "owner@elsewhere.example", "name": "Owner", "password": PASSWORD}),
        )
        .await?;
    admin
        .post(
            "/api/v1/orgs",
            json!({"slug": "elsewhere", "name": "Elsewhere", "owner_email": "owner@elsewhere.example"}),
        )
        .await?;
    let other = ApiClient::login(&base_url, "owner@elsewhere.example", PASSWORD).await?;
    let (s, b) = write(
        &other,
        json!({"device": "skid", "tag": "dose_sp", "value": 2.0}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    // The agent stops: the write waits the configured 3 s and says so.
    agent.kill();
    let started = Instant::now();
    let (s, b) = write(
        &operator,
        json!({"device": "skid", "tag": "dose_sp", "value": 2.0, "comment": "agent down"}),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within 3000 ms"),
        "{b}"
    );
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(register(modbus_port, "float32", 0), "1");

    // The audit log has every write that reached the broker, newest first.
    let audit = admin
        .get("/api/v1/orgs/riverside/audit?action=gateway.write")
        .await?;
    let writes: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "gateway.write")
        .collect();
    let results: Vec<&str> = writes
        .iter()
        .map(|e| e["details"]["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["timeout", "ok", "refused", "ok", "ok"], "{audit}");
    assert_eq!(writes[1]["actor"], ADMIN_EMAIL);
    let first = writes.last().unwrap();
    assert_eq!(first["actor"], "operator@riverside.example");
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["details"]["new_value"], 3.25);
    assert_eq!(
        first["details"]["comment"],
        "raise chlorine after the storm"
    );
    assert_eq!(
        first["target"],
        "gateway:riverside/dosing/skid-1/skid/dose_sp"
    );
    assert!(first["details"]["correlation_id"].is_string());
    assert_eq!(writes[0]["outcome"], "failure");
    assert!(writes[2]["details"]["error"].is_string(), "{}", writes[2]);
    Ok(())
}
