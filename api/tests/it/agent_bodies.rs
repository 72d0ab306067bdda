//! The agents' bodies (enroll, agent token) are refused for their form
//! before any lookup, and for what their form cannot show (a public key
//! that is no usable Ed25519 point) only after the token is accepted: an
//! unknown token answers 401 whatever the key, and a refused key costs the
//! token nothing.

use crate::common;
use crate::fleet_support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{Backend, Cred, TestApp};
use fleet_support::*;
use reqwest::StatusCode;
use serde_json::json;

async fn enroll(app: &TestApp, token: &str, public_key: &str) -> common::Resp {
    app.post(
        "/api/v1/enroll",
        &Cred::None,
        json!({
            "token": token,
            "publicKey": public_key,
            "facts": {"hostname": "ipc-1", "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"},
        }),
    )
    .await
}

async fn refused_in_order(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    let gw = "/api/v1/orgs/riverside/projects/north/gateways";
    let r = app
        .post(
            gw,
            &admin,
            json!({"name": "pump-1", "spec": modbus_spec(1000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let tokens = format!("{gw}/pump-1/enrollment-tokens");
    let r = app.post(&tokens, &admin, json!({"max_uses": 1})).await;
    let token = r.body["token"].as_str().unwrap().to_string();

    // The identity point: 32 bytes in the documented form, but a weak key.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak = B64.encode(weak);
    let r = enroll(&app, "weir_et_unknown", &weak).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);

    // Not the form (white space around the base64): refused before the token.
    let good = B64.encode(bundle_key());
    let r = enroll(&app, "weir_et_unknown", &format!(" {good}")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "publicKey");

    // A known token with the weak key: 422, and the token keeps its one use.
    let r = enroll(&app, &token, &weak).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "publicKey");
    let r = enroll(&app, &token, &good).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id = r.body["agentId"].as_str().unwrap().to_string();

    // A signature not of 64 bytes is refused for its form (422); one of 64
    // bytes that does not verify is a bad credential (401).
    let path = format!("/api/v1/agents/{id}/token");
    let ts = chrono::Utc::now();
    let r = app
        .post(
            &path,
            &Cred::None,
            json!({"timestamp": ts, "signature": B64.encode([7u8; 63])}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "signature");
    let r = app
        .post(
            &path,
            &Cred::None,
            json!({"timestamp": ts, "signature": B64.encode([7u8; 64])}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    app.stop().await;
}
on_both_databases!(refused_in_order, super::refused_in_order);

fn bundle_key() -> [u8; 32] {
    weir_crds::bundle::generate_key().verifying_key().to_bytes()
}
