//! Clusters behind project walls (issue 17): a gateway's `clusterRef` names
//! a cluster of its own project or one shared with it, and credentials stop
//! when a share is withdrawn; an external cluster's password stays with its
//! endpoint; a kubernetes cluster's spec keeps to the platform's allow-list.

use crate::common;
use crate::fleet_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{Backend, Cred, TestApp};
use ed25519_dalek::{Signer, SigningKey};
use fleet_support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use weir_crds::agent_api::agent_token_challenge;

const NORTH: &str = "/api/v1/orgs/riverside/projects/north";
const SOUTH: &str = "/api/v1/orgs/riverside/projects/south";

/// An agent's key pair and the requests it makes.
struct Agent(SigningKey);

impl Agent {
    async fn enroll(&self, app: &TestApp, token: &Value) -> common::Resp {
        app.post(
            "/api/v1/enroll",
            &Cred::None,
            json!({"token": token, "publicKey": B64.encode(self.0.verifying_key().as_bytes()),
                   "facts": {"hostname": "ipc", "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"}}),
        )
        .await
    }

    async fn bearer(&self, app: &TestApp, id: &str) -> Cred {
        let ts = chrono::Utc::now();
        let sig = self.0.sign(&agent_token_challenge(id, &ts));
        let r = app
            .post(
                &format!("/api/v1/agents/{id}/token"),
                &Cred::None,
                json!({"timestamp": ts, "signature": B64.encode(sig.to_bytes())}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        Cred::Bearer(r.body["token"].as_str().unwrap().to_string())
    }
}

/// A user holding `role` in org riverside (`project` None) or one of its projects.
async fn member(
    app: &TestApp,
    admin: &Cred,
    email: &str,
    role: &str,
    project: Option<&str>,
) -> Cred {
    let (_, cred) = app.user(admin, email).await;
    let path = match project {
        Some(p) => format!("/api/v1/orgs/riverside/projects/{p}/members"),
        None => "/api/v1/orgs/riverside/members".to_string(),
    };
    app.post_ok(&path, admin, json!({"email": email, "role": role}))
        .await;
    cred
}

async fn patch(app: &TestApp, path: &str, cred: &Cred, body: Value) -> common::Resp {
    app.call(Method::PATCH, path, cred, Some(body)).await
}

async fn token(app: &TestApp, cred: &Cred, gateway: &str) -> Value {
    app.post_ok(
        &format!("{SOUTH}/gateways/{gateway}/enrollment-tokens"),
        cred,
        json!({}),
    )
    .await["token"]
        .clone()
}

fn field(r: &common::Resp) -> &str {
    r.body["errors"][0]["field"].as_str().unwrap_or_default()
}

async fn cluster_ref_needs_own_project_or_share(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    app.post_ok(
        "/api/v1/orgs/riverside/projects",
        &admin,
        json!({"slug": "south", "name": "South"}),
    )
    .await;
    let org_admin = member(&app, &admin, "org-admin@walls.test", "org-admin", None).await;
    let north_admin = member(
        &app,
        &admin,
        "na@walls.test",
        "project-admin",
        Some("north"),
    )
    .await;
    let south_editor = member(
        &app,
        &admin,
        "se@walls.test",
        "project-editor",
        Some("south"),
    )
    .await;
    let south_admin = member(
        &app,
        &admin,
        "sa@walls.test",
        "project-admin",
        Some("south"),
    )
    .await;
    // North's cluster (apiJwt: agents get JWTs; nothing needs to listen).
    let r = app
        .post(&format!("{NORTH}/clusters"), &north_admin, json!({"name": "a-broker", "backend": "external", "url": "mqtt://127.0.0.1:1", "auth_mode": "apiJwt"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["shared_with"], json!([]));

    // South's editor cannot point a gateway at it: not by create, not by patch.
    let mut spec = modbus_spec(1000);
    spec["clusterRef"] = json!("a-broker");
    let r = app
        .post(
            &format!("{SOUTH}/gateways"),
            &south_editor,
            json!({"name": "s-1", "spec": spec}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field(&r), "spec.clusterRef");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no cluster named 'a-broker' in this project"),
        "{:?}",
        r.body
    );
    app.post_ok(
        &format!("{SOUTH}/gateways"),
        &south_editor,
        json!({"name": "s-1", "spec": modbus_spec(1000)}),
    )
    .await;
    let g = format!("{SOUTH}/gateways/s-1");
    let r = patch(
        &app,
        &g,
        &south_editor,
        json!({"merge_patch": {"clusterRef": "a-broker"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field(&r), "spec.clusterRef");

    // Sharing: validated, and adding a project needs an org admin.
    let c = format!("{NORTH}/clusters/a-broker");
    let r = patch(&app, &c, &north_admin, json!({"shared_with": ["south"]})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = patch(
        &app,
        &format!("{SOUTH}/clusters/a-broker"),
        &south_admin,
        json!({"shared_with": ["south"]}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "south cannot reach north's cluster"
    );
    for (names, f) in [
        (json!(["south", "nope"]), "shared_with[1]"),
        (json!(["north"]), "shared_with[0]"),
        (json!(["south", "south"]), "shared_with[1]"),
        (json!(["Bad Name"]), "shared_with[0]"),
    ] {
        let r = patch(&app, &c, &org_admin, json!({"shared_with": names})).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{names}: {:?}",
            r.body
        );
        assert_eq!(field(&r), f, "{names}");
    }
    let r = patch(&app, &c, &org_admin, json!({"shared_with": ["south"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["shared_with"], json!(["south"]));
    let list = app.get_ok(&format!("{NORTH}/clusters"), &north_admin).await;
    assert_eq!(list[0]["shared_with"], json!(["south"]));

    // Shared: south's gateway may use it, and its agent gets credentials.
    let r = patch(
        &app,
        &g,
        &south_editor,
        json!({"merge_patch": {"clusterRef": "a-broker"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["cluster"], "a-broker");
    let agent = Agent(weir_crds::bundle::generate_key());
    let r = agent
        .enroll(&app, &token(&app, &south_editor, "s-1").await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["mqtt"]["urls"], json!(["mqtt://127.0.0.1:1"]));
    let id = r.body["agentId"].as_str().unwrap().to_string();
    let bearer = agent.bearer(&app, &id).await;
    let creds = format!("/api/v1/agents/{id}/mqtt-credentials");
    assert_eq!(app.get(&creds, &bearer).await.status, StatusCode::OK);

    // North's admin withdraws the share: no new credentials, no new
    // enrollment, no new config naming it.
    let r = patch(&app, &c, &north_admin, json!({"shared_with": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["shared_with"], json!([]));
    let r = app.get(&creds, &bearer).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("not shared"),
        "{:?}",
        r.body
    );
    let again = Agent(weir_crds::bundle::generate_key());
    let r = again
        .enroll(&app, &token(&app, &south_editor, "s-1").await)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("a-broker"),
        "{:?}",
        r.body
    );
    let r = patch(
        &app,
        &g,
        &south_editor,
        json!({"merge_patch": {"site": {"name": "moved"}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field(&r), "spec.clusterRef");
    app.stop().await;
}
on_both_databases!(
    cluster_ref_needs_own_project_or_share,
    super::cluster_ref_needs_own_project_or_share
);

/// A TCP listener that keeps the bytes of every connection made to it.
async fn recorder() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut sock, _)) = l.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, seen)
}

/// The connect flags of the first MQTT CONNECT in `bytes` (after "MQTT" and the level).
fn connect_flags(bytes: &[u8]) -> Option<u8> {
    let at = bytes.windows(4).position(|w| w == b"MQTT")?;
    bytes.get(at + 5).copied()
}

async fn password_stays_with_its_endpoint(b: Backend) {
    let broker = weir_testkit::Mosquitto::start().await;
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    // Credentials in the URL are refused, on create and on change.
    let r = app
        .post(&format!("{NORTH}/clusters"), &admin, json!({"name": "b", "backend": "external", "url": format!("mqtt://weir:s3cret-pw@127.0.0.1:{}", broker.port)}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field(&r), "url");
    assert!(r.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("username/password"));
    let r = app
        .post(&format!("{NORTH}/clusters"), &admin, json!({"name": "b", "backend": "external", "url": format!("mqtt://127.0.0.1:{}", broker.port), "username": "weir", "password": "s3cret-pw", "auth_mode": "apiJwt"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["has_password"], true);
    let c = format!("{NORTH}/clusters/b");
    let r = patch(&app, &c, &admin, json!({"url": "mqtt://u:p@127.0.0.1:1"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field(&r), "url");
    // The same endpoint spelled differently keeps the password.
    let r = patch(
        &app,
        &c,
        &admin,
        json!({"url": format!("tcp://127.0.0.1:{}", broker.port)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["has_password"], true);

    // Another port: the password is dropped, and the probe sends none there.
    let (port, seen) = recorder().await;
    let r = patch(
        &app,
        &c,
        &admin,
        json!({"url": format!("mqtt://127.0.0.1:{port}")}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["has_password"], false);
    let r = app
        .call(Method::POST, &format!("{c}/probe"), &admin, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let bytes = seen.lock().unwrap().clone();
    let flags = connect_flags(&bytes).expect("the probe sent a CONNECT");
    assert_eq!(flags & 0x40, 0, "no password flag in the CONNECT");
    assert!(
        !bytes.windows(9).any(|w| w == b"s3cret-pw"),
        "the old password never reaches the new host"
    );
    // A new URL with a new password in the same request keeps that one.
    let r = patch(
        &app,
        &c,
        &admin,
        json!({"url": format!("mqtt://127.0.0.1:{}", broker.port), "password": "other-pw"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["has_password"], true);
    app.stop().await;
}
on_both_databases!(
    password_stays_with_its_endpoint,
    super::password_stays_with_its_endpoint
);

/// The allow-list judges a kubernetes spec before anything else, so an api
/// without Kubernetes refuses a bad spec by its field (a good one: no
/// Kubernetes config, on `backend`).
async fn kubernetes_spec_allow_list(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    let project_admin = member(
        &app,
        &admin,
        "pa@walls.test",
        "project-admin",
        Some("north"),
    )
    .await;
    let jwks = format!("{}/api/v1/jwks.json", app.running.state.fleet.public_url);
    for (body, f) in [
        (
            json!({"spec": {"image": "evil.example/emqx"}}),
            "spec.image",
        ),
        (json!({"spec": {"image": "attacker/emqx"}}), "spec.image"),
        (
            json!({"spec": {"config": {"authorization.no_match": "allow"}}}),
            "spec.config.authorization.no_match",
        ),
        (
            json!({"spec": {"config": {"mqtt.max_packet_size": "1MB\"\nauthentication = []"}}}),
            "spec.config.mqtt.max_packet_size",
        ),
        (
            json!({"spec": {"authentication": {"jwksUrl": "https://evil.example/jwks.json"}}}),
            "spec.authentication.jwksUrl",
        ),
        (
            json!({"spec": {"authentication": {"mode": "password"}}}),
            "spec.authentication.mode",
        ),
        (json!({"auth_mode": "password"}), "auth_mode"),
        (
            json!({"spec": {"image": "emqx/emqx", "authentication": {"jwksUrl": jwks},
                         "config": {"mqtt.max_packet_size": "1MB", "listeners.tcp.mqtt.max_connections": "100"}}}),
            "backend",
        ),
    ] {
        let mut req = json!({"name": "k", "backend": "kubernetes"});
        req.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let r = app
            .post(&format!("{NORTH}/clusters"), &project_admin, req)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(field(&r), f, "{body}: {:?}", r.body);
    }
    app.stop().await;
}
on_both_databases!(
    kubernetes_spec_allow_list,
    super::kubernetes_spec_allow_list
);
