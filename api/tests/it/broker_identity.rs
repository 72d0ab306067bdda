//! Per-gateway broker identities on an adopted Mosquitto with the
//! dynamic-security plugin (issue 17), against a real Mosquitto: what a
//! gateway's login lets it do on the broker, seen over MQTT v5 (PUBACK and
//! SUBACK reason codes, and what a reader with the api's identity gets).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::{Method, StatusCode};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use sea_orm::EntityTrait;
use serde_json::{json, Value};
use weir_api::fleet::broker_identity::{self, dynsec};
use weir_api::fleet::entities::cluster;
use weir_crds::agent_api::agent_token_challenge;
use weir_testkit::Mosquitto;

use crate::common::{Backend, Cred, TestApp};
use crate::fleet_support::*;

const ADMIN_USER: &str = "dynsec-admin";
const ADMIN_PASSWORD: &str = "admin-password-for-tests";
const BASE: &str = "/api/v1/orgs/riverside/projects/north";
const WAIT: Duration = Duration::from_secs(5);

/// An MQTT v5 session that reports what the broker answers.
struct V5 {
    client: AsyncClient,
    events: EventLoop,
}

impl V5 {
    /// Connect and log in; the broker's refusal as the error.
    async fn connect(port: u16, user: &str, password: &str) -> Result<V5, ConnectReturnCode> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let mut o = MqttOptions::new(format!("t-{id}"), "127.0.0.1", port);
        o.set_credentials(user, password);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(o, 16);
        let acked = tokio::time::timeout(WAIT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                    Err(e) => panic!("connect: {e}"),
                }
            }
        })
        .await
        .expect("CONNACK in time");
        acked.map(|_| V5 { client, events })
    }

    /// Publish at QoS 1 and return the PUBACK's reason.
    async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
        self.until(|p| match p {
            Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        self.until(|p| match p {
            Packet::SubAck(a) => Some(a.return_codes[0]),
            _ => None,
        })
        .await
    }

    /// The next message's topic and payload.
    async fn message(&mut self) -> (String, String) {
        self.until(|p| match p {
            Packet::Publish(m) => Some((
                String::from_utf8_lossy(&m.topic).to_string(),
                String::from_utf8_lossy(&m.payload).to_string(),
            )),
            _ => None,
        })
        .await
    }

    async fn until<T>(&mut self, mut f: impl FnMut(&Packet) -> Option<T>) -> T {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Event::Incoming(p) = self.events.poll().await.expect("connection") {
                    if let Some(t) = f(&p) {
                        return t;
                    }
                }
            }
        })
        .await
        .expect("the broker answered in time")
    }
}

fn allowed(r: PubAckReason) -> bool {
    matches!(
        r,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    )
}

/// The org, its project, a cluster on `broker_url` with the admin login
/// stored, and gateways on it.
async fn seed(app: &TestApp, admin: &Cred, broker_url: &str, gateways: &[&str]) {
    setup_org(app, admin, "riverside", "north").await;
    let r = app
        .post(
            &format!("{BASE}/clusters"),
            admin,
            json!({"name": "plant-broker", "backend": "external", "url": broker_url,
                   "username": ADMIN_USER, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for gw in gateways {
        let mut spec = modbus_spec(1000);
        spec["clusterRef"] = json!("plant-broker");
        let r = app
            .post(
                &format!("{BASE}/gateways"),
                admin,
                json!({"name": gw, "spec": spec}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
}

/// Enroll an agent for `gw` with a fresh token and key: the whole answer.
async fn enroll(app: &TestApp, admin: &Cred, gw: &str) -> (StatusCode, Value) {
    let (s, body, _) = enroll_with_key(app, admin, gw).await;
    (s, body)
}

async fn enroll_with_key(app: &TestApp, admin: &Cred, gw: &str) -> (StatusCode, Value, SigningKey) {
    let t = app
        .post_ok(
            &format!("{BASE}/gateways/{gw}/enrollment-tokens"),
            admin,
            json!({}),
        )
        .await;
    let key = weir_crds::bundle::generate_key();
    let r = app
        .post(
            "/api/v1/enroll",
            &Cred::None,
            json!({"token": t["token"],
                   "publicKey": B64.encode(key.verifying_key().as_bytes()),
                   "facts": {"hostname": gw, "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"}}),
        )
        .await;
    (r.status, r.body, key)
}

/// The agent's bearer token (a signed challenge).
async fn bearer(app: &TestApp, key: &SigningKey, id: &str) -> Cred {
    let ts = chrono::Utc::now();
    let sig = key.sign(&agent_token_challenge(id, &ts));
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

fn login(body: &Value) -> (String, String) {
    (
        body["mqtt"]["username"].as_str().unwrap().to_string(),
        body["mqtt"]["password"].as_str().unwrap().to_string(),
    )
}

async fn the_cluster(app: &TestApp) -> cluster::Model {
    cluster::Entity::find()
        .one(&app.running.state.db)
        .await
        .unwrap()
        .expect("a cluster")
}

async fn dynsec_broker() -> Mosquitto {
    Mosquitto::builder()
        .dynamic_security(ADMIN_USER, ADMIN_PASSWORD)
        .start()
        .await
}

async fn has_client(port: u16, username: &str) -> bool {
    let admin = dynsec::AdminLogin {
        url: format!("mqtt://127.0.0.1:{port}"),
        username: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
    };
    let mut s = dynsec::Session::open(&admin).await.unwrap();
    let a = s
        .call(vec![json!({"command": "getClient", "username": username})])
        .await
        .unwrap();
    s.close().await;
    a[0].error.is_none()
}

async fn each_gateway_has_its_own_identity(b: Backend) {
    let broker = dynsec_broker().await;
    let port = broker.port;
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    seed(&app, &admin, &broker.url(), &["ps-a", "ps-b"]).await;

    let (s, a_body) = enroll(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::OK, "{a_body:?}");
    let (s, b_body) = enroll(&app, &admin, "ps-b").await;
    assert_eq!(s, StatusCode::OK, "{b_body:?}");
    let (a_user, a_pw) = login(&a_body);
    let (b_user, b_pw) = login(&b_body);
    assert_eq!(a_user, "weir-riverside-ps-a");
    assert_eq!(b_user, "weir-riverside-ps-b");
    assert_ne!(a_pw, b_pw);
    assert!(a_pw.len() >= 22, "at least 128 random bits: {}", a_pw.len());
    for body in [&a_body, &b_body] {
        let text = body.to_string();
        assert!(!text.contains(ADMIN_PASSWORD) && !text.contains(ADMIN_USER));
    }

    // A reader with the api's own identity (not the admin login).
    let c = the_cluster(&app).await;
    let api = broker_identity::api_login(&app.running.state, &c)
        .await
        .unwrap()
        .expect("a dynamic-security cluster gives the api a login");
    assert_ne!(api.username, ADMIN_USER);
    let mut reader = V5::connect(port, &api.username, &api.password)
        .await
        .expect("the api logs in");
    let all = "weir/riverside/+/+/+";
    assert!(matches!(
        reader.subscribe(all).await,
        SubscribeReasonCode::Success(_)
    ));
    // The api reads; it does not forge readings.
    assert_eq!(
        reader.publish("weir/riverside/ps-a/pump-1/fast", "x").await,
        PubAckReason::NotAuthorized
    );

    let mut a = V5::connect(port, &a_user, &a_pw).await.expect("A logs in");
    assert!(allowed(
        a.publish("weir/riverside/ps-a/pump-1/fast", "a-own").await
    ));
    assert_eq!(
        reader.message().await,
        ("weir/riverside/ps-a/pump-1/fast".into(), "a-own".into())
    );
    // Another gateway's readings and commands, and its own commands: refused.
    for topic in [
        "weir/riverside/ps-b/pump-1/fast",
        "weir/riverside/ps-b/cmd/write",
        "weir/riverside/ps-b/cmd/replay",
        "weir/riverside/ps-a/cmd/write",
        "weir/other-tenant/ps-a/pump-1/fast",
    ] {
        assert_eq!(
            a.publish(topic, "forged").await,
            PubAckReason::NotAuthorized,
            "{topic}"
        );
    }
    // Its write answers go out; nothing forged reached the reader before them.
    assert!(allowed(
        a.publish("weir/riverside/ps-a/cmd/write/resp", "resp")
            .await
    ));
    assert!(allowed(
        a.publish("weir/riverside/ps-a/pump-1/fast", "last").await
    ));
    assert_eq!(
        reader.message().await.1,
        "last",
        "no forged message arrived"
    );
    // It subscribes to its own commands only.
    assert!(matches!(
        a.subscribe("weir/riverside/ps-a/cmd/+").await,
        SubscribeReasonCode::Success(_)
    ));
    for filter in [
        "weir/riverside/ps-b/cmd/+",
        "weir/riverside/ps-b/cmd/write",
        "#",
        all,
        "weir/riverside/ps-a/#",
        "$share/g/weir/riverside/ps-b/cmd/+",
    ] {
        assert_eq!(
            a.subscribe(filter).await,
            SubscribeReasonCode::NotAuthorized,
            "{filter}"
        );
    }
    // B's login is B's: it cannot publish as A either.
    let mut bc = V5::connect(port, &b_user, &b_pw).await.expect("B logs in");
    assert_eq!(
        bc.publish("weir/riverside/ps-a/pump-1/fast", "x").await,
        PubAckReason::NotAuthorized
    );
    // The admin login is not a gateway's login.
    assert!(V5::connect(port, &a_user, ADMIN_PASSWORD).await.is_err());

    // Re-enrollment re-keys A: the old password stops working.
    let (s, again) = enroll(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::OK, "{again:?}");
    let (a_user2, a_pw2) = login(&again);
    assert_eq!(a_user2, a_user);
    assert_ne!(a_pw2, a_pw);
    assert!(V5::connect(port, &a_user, &a_pw).await.is_err());
    assert!(V5::connect(port, &a_user, &a_pw2).await.is_ok());

    // Deleting B deletes its client: its login stops working.
    assert!(has_client(port, &b_user).await);
    let r = app
        .call(
            Method::DELETE,
            &format!("{BASE}/gateways/ps-b"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(!has_client(port, &b_user).await);
    assert!(V5::connect(port, &b_user, &b_pw).await.is_err());
    assert!(has_client(port, &a_user).await, "A is untouched");
    app.stop().await;
}
on_both_databases!(
    each_gateway_has_its_own_identity,
    super::each_gateway_has_its_own_identity
);

/// A gateway pointed at another broker gets a client there at its next
/// credentials call and loses the old one; a new topic prefix re-makes its
/// role; otherwise the login stays the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_gateway_gets_its_client_on_the_new_broker() {
    let (x, y) = (dynsec_broker().await, dynsec_broker().await);
    let app = fleet_app(Backend::Sqlite, |_| {}).await;
    let admin = app.admin().await;
    seed(&app, &admin, &x.url(), &["ps-a"]).await;
    app.post_ok(
        &format!("{BASE}/clusters"),
        &admin,
        json!({"name": "broker-2", "backend": "external", "url": y.url(),
               "username": ADMIN_USER, "password": ADMIN_PASSWORD}),
    )
    .await;
    let (s, body, key) = enroll_with_key(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let (user, pw) = login(&body);
    let id = body["agentId"].as_str().unwrap();
    let agent = bearer(&app, &key, id).await;
    let creds = format!("/api/v1/agents/{id}/mqtt-credentials");
    // Asking again changes nothing.
    assert_eq!(
        login(&json!({"mqtt": app.get_ok(&creds, &agent).await})),
        (user.clone(), pw.clone())
    );

    let gw = format!("{BASE}/gateways/ps-a");
    let r = app
        .call(
            Method::PATCH,
            &gw,
            &admin,
            Some(json!({"merge_patch": {"clusterRef": "broker-2"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let moved = app.get_ok(&creds, &agent).await;
    assert_eq!(moved["urls"], json!([y.url()]));
    let (user2, pw2) = login(&json!({ "mqtt": moved }));
    assert_eq!(user2, user);
    assert_ne!(pw2, pw);
    assert!(V5::connect(y.port, &user, &pw2).await.is_ok());
    assert!(
        !has_client(x.port, &user).await,
        "the old broker's client is gone"
    );
    assert!(V5::connect(x.port, &user, &pw).await.is_err());

    // Another topic prefix: the role follows it.
    let r = app
        .call(
            Method::PATCH,
            &gw,
            &admin,
            Some(json!({"merge_patch": {"uplink": {"topicPrefix": "plant"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (_, pw3) = login(&json!({"mqtt": app.get_ok(&creds, &agent).await}));
    let mut a = V5::connect(y.port, &user, &pw3).await.expect("logs in");
    assert!(allowed(
        a.publish("plant/riverside/ps-a/pump-1/fast", "x").await
    ));
    assert_eq!(
        a.publish("weir/riverside/ps-a/pump-1/fast", "x").await,
        PubAckReason::NotAuthorized
    );
    app.stop().await;
}

/// A broker without the plugin: enrollment fails, saying what to enable,
/// and hands out nothing (the token keeps its use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_without_the_plugin_fails_and_hands_out_nothing() {
    let broker = Mosquitto::start().await;
    let app = fleet_app(Backend::Sqlite, |_| {}).await;
    let admin = app.admin().await;
    seed(&app, &admin, &broker.url(), &["ps-a"]).await;
    let (s, body) = enroll(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("no dynamic-security plugin"), "{detail}");
    assert!(detail.contains("mosquitto_ctrl dynsec init"), "{detail}");
    let text = body.to_string();
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    assert!(body.get("mqtt").is_none());
    let tokens = app
        .get_ok(&format!("{BASE}/gateways/ps-a/enrollment-tokens"), &admin)
        .await;
    assert_eq!(tokens[0]["uses"], 0, "{tokens}");
    assert_eq!(tokens[0]["state"], "active");
    app.stop().await;
}

/// An open broker (no username stored): agents get no credentials, and the
/// api no identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_broker_gives_no_credentials() {
    let broker = Mosquitto::start().await;
    let app = fleet_app(Backend::Sqlite, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    app.post_ok(
        &format!("{BASE}/clusters"),
        &admin,
        json!({"name": "plant-broker", "backend": "external", "url": broker.url()}),
    )
    .await;
    let mut spec = modbus_spec(1000);
    spec["clusterRef"] = json!("plant-broker");
    app.post_ok(
        &format!("{BASE}/gateways"),
        &admin,
        json!({"name": "ps-a", "spec": spec}),
    )
    .await;
    let (s, body) = enroll(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    assert_eq!(body["mqtt"]["password"], "");
    let c = the_cluster(&app).await;
    assert_eq!(broker_identity::agent_identities(&c), "none");
    assert!(broker_identity::api_login(&app.running.state, &c)
        .await
        .unwrap()
        .is_none());
    app.stop().await;
}

/// Revoking a gateway's agent ends its api sessions, refuses its key and
/// removes its broker login; a new enrollment brings a replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_loses_its_api_access_and_its_broker_login() {
    let broker = dynsec_broker().await;
    let port = broker.port;
    let app = fleet_app(Backend::Sqlite, |_| {}).await;
    let admin = app.admin().await;
    seed(&app, &admin, &broker.url(), &["ps-a"]).await;
    let (s, body, key) = enroll_with_key(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let id = body["agentId"].as_str().expect("agentId").to_string();
    let (user, pw) = login(&body);
    let session = bearer(&app, &key, &id).await;
    let creds = format!("/api/v1/agents/{id}/mqtt-credentials");
    assert_eq!(app.get(&creds, &session).await.status, StatusCode::OK);
    assert!(V5::connect(port, &user, &pw).await.is_ok());

    // A viewer may not revoke; an editor may.
    let (_, viewer) = app.user(&admin, "viewer@plant.test").await;
    app.post_ok(
        &format!("{BASE}/members"),
        &admin,
        json!({"email": "viewer@plant.test", "role": "project-viewer"}),
    )
    .await;
    let revoke = format!("{BASE}/gateways/ps-a/agent");
    let r = app.call(Method::DELETE, &revoke, &viewer, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(app.get(&creds, &session).await.status, StatusCode::OK);
    let r = app.call(Method::DELETE, &revoke, &admin, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);

    // Its session, its key and its broker login stop at once.
    assert_eq!(
        app.get(&creds, &session).await.status,
        StatusCode::UNAUTHORIZED
    );
    let ts = chrono::Utc::now();
    let sig = key.sign(&agent_token_challenge(&id, &ts));
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/token"),
            &Cred::None,
            json!({"timestamp": ts, "signature": B64.encode(sig.to_bytes())}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(V5::connect(port, &user, &pw).await.is_err());
    assert!(!has_client(port, &user).await);
    // Again: nothing left to revoke, still 204; audited.
    let r = app.call(Method::DELETE, &revoke, &admin, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let audit = app.get("/api/v1/audit?action=agent.revoke", &admin).await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2);

    // A replacement enrolls with a new token and gets a new login.
    let (s, body) = enroll(&app, &admin, "ps-a").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let (user2, pw2) = login(&body);
    assert_eq!(user2, user);
    assert_ne!(pw2, pw);
    assert!(V5::connect(port, &user2, &pw2).await.is_ok());
    app.stop().await;
}
