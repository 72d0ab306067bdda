//! Fleet end to end over real HTTP against an in-process api, on SQLite and
//! PostgreSQL: enrollment token → enroll → agent token → signed config
//! (200, then 304, long-poll) → config change → higher version → status
//! shows applied; refused tokens (replayed, expired, revoked, used up);
//! agent isolation; RBAC; audit; online/offline events; MQTT credentials.

use crate::common;
use crate::fleet_support;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Utc;
use common::{Backend, Cred, TestApp};
use ed25519_dalek::{Signer, SigningKey};
use fleet_support::*;
use reqwest::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{json, Value};
use weir_crds::agent_api::agent_token_challenge;
use weir_crds::bundle::{self, Expectations, SignedBundle, TrustAnchor};

async fn enrollment_and_signed_config(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    let gw = "/api/v1/orgs/riverside/projects/north/gateways";
    let r = app
        .post(
            gw,
            &admin,
            json!({"name": "pump-1", "spec": modbus_spec(1000), "comment": "first"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["version"], 1);
    let r = app
        .post(
            gw,
            &admin,
            json!({"name": "pump-2", "spec": modbus_spec(1000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // An invalid config is refused with the CRD's field and message.
    let r = app
        .post(gw, &admin, json!({"name": "bad", "spec": modbus_spec(5)}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let errs = r.body["errors"].as_array().unwrap();
    assert!(
        errs.iter()
            .any(|e| e["field"] == "spec.devices[0].groups[0].intervalMs"
                && e["message"] == "polling interval must be at least 10 ms"),
        "{errs:?}"
    );

    // The largest gateway the schema allows (every list full, every string
    // at its longest) fits in a request and is stored.
    let largest = serde_json::to_value(weir_crds::gateway::largest::largest_config()).unwrap();
    let r = app
        .post(gw, &admin, json!({"name": "largest", "spec": largest}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Issue a token: the secret and an install command, once.
    let tokens = format!("{gw}/pump-1/enrollment-tokens");
    let r = app
        .post(
            &tokens,
            &admin,
            json!({"expires_in_secs": 3600, "max_uses": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let secret = r.body["token"].as_str().unwrap().to_string();
    assert!(secret.len() >= 40, "at least 128 random bits");
    let cmd = r.body["install_command"].as_str().unwrap();
    assert_eq!(
        cmd,
        format!("weir-agent run --server http://127.0.0.1:8080 --token {secret}")
    );
    let list = app.get(&tokens, &admin).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        !list.body.to_string().contains(&secret),
        "the list never shows the secret"
    );
    assert_eq!(list.body[0]["state"], "active");

    // Enroll.
    let agent = Agent::new();
    let r = agent.enroll(&app, &secret).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id = r.body["agentId"].as_str().unwrap().to_string();
    assert_eq!(r.body["tenant"], "riverside");
    assert_eq!(r.body["gateway"], "pump-1");
    let anchor: TrustAnchor = serde_json::from_value(r.body["trustAnchor"].clone()).unwrap();
    // Used up now: a second enrollment with the same token gets 401 and the reason.
    let r = Agent::new().enroll(&app, &secret).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["detail"], "enrollment token has been used up");

    // Agent token from a signed challenge; the same signed challenge replayed is refused.
    let ts = Utc::now();
    let body = agent.challenge(&id, ts);
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/token"),
            &Cred::None,
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let bearer = Cred::Bearer(r.body["token"].as_str().unwrap().to_string());
    let r = app
        .post(&format!("/api/v1/agents/{id}/token"), &Cred::None, body)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "replay");
    assert_eq!(r.body["detail"], "this signed challenge was already used");
    // Signed by another key: refused. Too old a timestamp: refused.
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/token"),
            &Cred::None,
            Agent::new().challenge(&id, Utc::now()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let old = Utc::now() - chrono::Duration::minutes(10);
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/token"),
            &Cred::None,
            agent.challenge(&id, old),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A user's session is not an agent credential.
    let r = app
        .get(&format!("/api/v1/agents/{id}/config"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The signed config: 200 with an ETag, verifiable with the pinned key.
    let cfg = format!("/api/v1/agents/{id}/config");
    let r = app.get(&cfg, &bearer).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let signed: SignedBundle = serde_json::from_value(r.body.clone()).unwrap();
    let key = anchor.verifying_key().unwrap();
    let expect = |last| Expectations {
        tenant: "riverside",
        gateway: "pump-1",
        last_accepted: last,
        now: Utc::now(),
    };
    let p1 = bundle::verify(&signed, &key, &expect(None)).expect("bundle verifies");
    assert_eq!(p1.config.devices[0].groups[0].interval_ms, 1000);
    // Unchanged: 304.
    let r = get_with_etag(&app, &cfg, &bearer, &etag, None).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Long-poll: the wait ends as soon as the config changes.
    let poll = {
        let http = app.http.clone();
        let url = app.url(&format!("{cfg}?wait=20s"));
        let Cred::Bearer(t) = bearer.clone() else {
            unreachable!()
        };
        let etag = etag.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = http
                .get(url)
                .bearer_auth(t)
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap();
            (r.status(), started.elapsed(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app
        .call(
            Method::PATCH,
            &format!("{gw}/pump-1"),
            &admin,
            Some(json!({"merge_patch": {"devices": [modbus_device(500)]}, "comment": "faster polling"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["version"], 2);
    let (status, waited, text) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "long-poll wakes on the change");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    let signed2: SignedBundle = serde_json::from_str(&text).unwrap();
    let p2 =
        bundle::verify(&signed2, &key, &expect(Some(p1.version))).expect("newer bundle verifies");
    assert!(p2.version > p1.version);
    assert_eq!(p2.config.devices[0].groups[0].interval_ms, 500);

    // Status → rollout shows the applied version, online.
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/status"),
            &bearer,
            json!({"appliedVersion": p2.version, "heartbeatIntervalS": 30, "queueDepth": 3, "uptimeS": 9}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let ro = app
        .get("/api/v1/orgs/riverside/projects/north/rollout", &admin)
        .await;
    assert_eq!(ro.status, StatusCode::OK);
    let e = ro
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["gateway"] == "pump-1")
        .unwrap()
        .clone();
    assert_eq!(e["desired_version"], p2.version);
    assert_eq!(e["applied_version"], p2.version);
    assert_eq!(e["up_to_date"], true);
    assert_eq!(e["online"], true);
    assert_eq!(e["config_version"], 2);

    // The next heartbeat gives the readings rate: the counter's rise over
    // the time between the two, on the gateway and in the list.
    assert_eq!(
        app.get(&format!("{gw}/pump-1"), &admin).await.body["readings_per_sec"],
        Value::Null,
        "no rate after one heartbeat"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/status"),
            &bearer,
            json!({"appliedVersion": p2.version, "heartbeatIntervalS": 30, "readingsOut": 5000, "uptimeS": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let rate = app.get(&format!("{gw}/pump-1"), &admin).await.body["readings_per_sec"]
        .as_f64()
        .expect("a rate after the second heartbeat");
    assert!(
        (1600.0..=5000.0).contains(&rate),
        "5000 readings in about 1 s: {rate}"
    );
    let list = app.get(gw, &admin).await.body;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "pump-1")
        .unwrap();
    assert_eq!(listed["readings_per_sec"].as_f64(), Some(rate));

    // Versions, diff and rollback.
    let v = app.get(&format!("{gw}/pump-1/versions"), &admin).await;
    assert_eq!(v.body.as_array().unwrap().len(), 2);
    assert_eq!(v.body[0]["comment"], "faster polling");
    let d = app
        .get(&format!("{gw}/pump-1/versions/2/diff?against=1"), &admin)
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    assert!(
        d.body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/devices/0/groups/0/intervalMs" && c["value"] == 500),
        "{:?}",
        d.body
    );
    let r = app
        .post(
            &format!("{gw}/pump-1/rollback"),
            &admin,
            json!({"version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["version"], 3);
    assert_eq!(
        r.body["spec"]["devices"][0]["groups"][0]["intervalMs"],
        1000
    );

    // The list leaves each config out unless asked; every answer has the
    // config of the latest version (each version read once is kept).
    let one = app.get(&format!("{gw}/pump-1"), &admin).await;
    assert_eq!(one.body["version"], 3);
    assert_eq!(
        one.body["spec"]["devices"][0]["groups"][0]["intervalMs"],
        1000
    );
    let list = app.get(gw, &admin).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let item = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "pump-1")
        .unwrap();
    assert!(item.get("spec").is_none(), "{item}");
    assert_eq!(item["version"], 3);
    assert_eq!(item["site"], one.body["spec"]["site"]);
    assert_eq!(item["mode"], one.body["spec"]["mode"]);
    let full = app.get(&format!("{gw}?include=spec"), &admin).await;
    assert_eq!(full.status, StatusCode::OK, "{:?}", full.body);
    let item = full
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "pump-1")
        .unwrap();
    assert_eq!(item["spec"], one.body["spec"]);
    let bad = app.get(&format!("{gw}?include=bundle"), &admin).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{:?}", bad.body);
    let r = app.get(&cfg, &bearer).await;
    let signed3: SignedBundle = serde_json::from_value(r.body.clone()).unwrap();
    let p3 = bundle::verify(&signed3, &key, &expect(Some(p2.version))).unwrap();
    assert_eq!(p3.config.devices[0].groups[0].interval_ms, 1000);

    // Agent B on pump-2 cannot read A's config, and A cannot read B's.
    let r = app
        .post(&format!("{gw}/pump-2/enrollment-tokens"), &admin, json!({}))
        .await;
    let agent_b = Agent::new();
    let rb = agent_b
        .enroll(&app, r.body["token"].as_str().unwrap())
        .await;
    assert_eq!(rb.status, StatusCode::OK, "{:?}", rb.body);
    let id_b = rb.body["agentId"].as_str().unwrap().to_string();
    let bearer_b = agent_b.token(&app, &id_b).await;
    assert_eq!(
        app.get(&format!("/api/v1/agents/{id_b}/config"), &bearer_b)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/v1/agents/{id}/config"), &bearer_b)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/api/v1/agents/{id_b}/config"), &bearer)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .post(
            &format!("/api/v1/agents/{id}/status"),
            &bearer_b,
            json!({"appliedVersion": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "B cannot write A's status");

    // Revoked and expired tokens are refused with their reason.
    let r = app.post(&tokens, &admin, json!({"max_uses": 5})).await;
    let revoked = r.body["token"].as_str().unwrap().to_string();
    let tid = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .call(Method::DELETE, &format!("{tokens}/{tid}"), &admin, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = Agent::new().enroll(&app, &revoked).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["detail"], "enrollment token was revoked");
    let r = app.post(&tokens, &admin, json!({"max_uses": 5})).await;
    let expired = r.body["token"].as_str().unwrap().to_string();
    let eid: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let m = weir_api::fleet::entities::enrollment_token::Entity::find_by_id(eid)
        .one(&app.running.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut am = m.into_active_model();
    am.expires_at = Set(Utc::now() - chrono::Duration::seconds(1));
    am.update(&app.running.state.db).await.unwrap();
    let r = Agent::new().enroll(&app, &expired).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["detail"], "enrollment token has expired");
    let r = Agent::new().enroll(&app, "weir_et_not-a-real-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let list = app.get(&tokens, &admin).await;
    let states: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"revoked") && states.contains(&"expired") && states.contains(&"used-up"),
        "{states:?}"
    );

    // A viewer sees gateways but cannot issue tokens nor change configs.
    let (_, viewer) = app.user(&admin, "viewer@weir.test").await;
    let r = app
        .post(
            "/api/v1/orgs/riverside/projects/north/members",
            &admin,
            json!({"email": "viewer@weir.test", "role": "project-viewer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(app.get(gw, &viewer).await.status, StatusCode::OK);
    let r = app.post(&tokens, &viewer, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::PATCH,
            &format!("{gw}/pump-1"),
            &viewer,
            Some(json!({"merge_patch": {"site": {"name": "x"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Every change is in the audit log, failed enrollments included.
    let audit = app
        .get("/api/v1/orgs/riverside/audit?limit=500", &admin)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let items = audit.body["items"].as_array().unwrap();
    let has = |action: &str, outcome: &str| {
        items
            .iter()
            .any(|e| e["action"] == action && e["outcome"] == outcome)
    };
    for a in [
        "gateway.create",
        "gateway.update",
        "gateway.rollback",
        "enrollment_token.create",
        "enrollment_token.revoke",
        "agent.enroll",
    ] {
        assert!(has(a, "success"), "audit lacks {a}");
    }
    assert!(
        has("agent.enroll", "denied"),
        "refused enrollments are audited"
    );
    assert!(
        has("agent.token", "denied"),
        "refused agent tokens are audited"
    );
    let r = app
        .get("/api/v1/orgs/riverside/projects/north/rollout", &viewer)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.stop().await;
}
on_both_databases!(
    enrollment_and_signed_config,
    super::enrollment_and_signed_config
);

async fn offline_online_events_and_rate_limit(b: Backend) {
    let app = fleet_app(b, |c| {
        c.fleet.enroll_burst = 5;
        c.fleet.enroll_rate_per_minute = 1;
    })
    .await;
    let mut events = app.running.state.fleet.events.subscribe();
    let admin = app.admin().await;
    setup_org(&app, &admin, "hillside", "south").await;
    let gw = "/api/v1/orgs/hillside/projects/south/gateways";
    assert_eq!(
        app.post(
            gw,
            &admin,
            json!({"name": "well-1", "spec": modbus_spec(1000)})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = app
        .post(&format!("{gw}/well-1/enrollment-tokens"), &admin, json!({}))
        .await;
    let agent = Agent::new();
    let r = agent.enroll(&app, r.body["token"].as_str().unwrap()).await;
    let id = r.body["agentId"].as_str().unwrap().to_string();
    let bearer = agent.token(&app, &id).await;
    let status = format!("/api/v1/agents/{id}/status");
    // A 1-second heartbeat: offline after 3 s without one.
    assert_eq!(
        app.post(&status, &bearer, json!({"heartbeatIntervalS": 1}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let ev = tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("offline event")
        .unwrap();
    assert_eq!(
        (ev.kind.as_str(), ev.gateway.as_str()),
        ("gateway_offline", "well-1")
    );
    let ro = app
        .get("/api/v1/orgs/hillside/projects/south/rollout", &admin)
        .await;
    assert_eq!(ro.body[0]["online"], false);
    assert_eq!(
        app.post(&status, &bearer, json!({"heartbeatIntervalS": 30}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("online event")
        .unwrap();
    assert_eq!(ev.kind, "gateway_online");
    let list = app
        .get("/api/v1/orgs/hillside/projects/south/fleet-events", &admin)
        .await;
    let kinds: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["gateway_online", "gateway_offline"]);

    // Enrollment is rate-limited per address (1 attempt was used above).
    let mut limited = None;
    for i in 0..10 {
        let r = Agent::new().enroll(&app, "weir_et_guess").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(i);
            assert!(r.headers.contains_key("retry-after"));
            assert_eq!(r.body["type"], "https://weir.dev/problems/rate-limited");
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(limited, Some(4), "burst of 5 per address");
    app.stop().await;
}
on_both_databases!(
    offline_online_events_and_rate_limit,
    super::offline_online_events_and_rate_limit
);

/// Reads the JWKS and checks an MQTT JWT's signature and ACL claims.
async fn mqtt_jwt_credentials_and_key_rotation(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "lakeside", "plant").await;
    let base = "/api/v1/orgs/lakeside/projects/plant";
    let r = app
        .post(&format!("{base}/clusters"), &admin, json!({"name": "emqx", "backend": "external", "url": "mqtt://127.0.0.1:1", "auth_mode": "apiJwt"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.body["health"]["reachable"], false,
        "nothing listens on port 1"
    );
    let mut spec = modbus_spec(1000);
    spec["clusterRef"] = json!("emqx");
    assert_eq!(
        app.post(
            &format!("{base}/gateways"),
            &admin,
            json!({"name": "tank-1", "spec": spec})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = app
        .post(
            &format!("{base}/gateways/tank-1/enrollment-tokens"),
            &admin,
            json!({}),
        )
        .await;
    let agent = Agent::new();
    let r = agent.enroll(&app, r.body["token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id = r.body["agentId"].as_str().unwrap().to_string();
    let old_anchor: TrustAnchor = serde_json::from_value(r.body["trustAnchor"].clone()).unwrap();
    assert_eq!(r.body["mqtt"]["urls"], json!(["mqtt://127.0.0.1:1"]));
    let bearer = agent.token(&app, &id).await;
    let creds = app
        .get(&format!("/api/v1/agents/{id}/mqtt-credentials"), &bearer)
        .await;
    assert_eq!(creds.status, StatusCode::OK);
    let jwt = creds.body["password"].as_str().unwrap();
    let jwks = app.get("/api/v1/jwks.json", &Cred::None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| Some(k["kid"].as_str().unwrap().to_string()) == header.kid)
        .expect("kid in JWKS")
        .clone();
    assert_eq!(jwk["kty"], "OKP");
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["weir-mqtt"]);
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).expect("JWT verifies against the JWKS");
    let acl = &data.claims["acl"];
    // The agent's row of the ACL table (weir_crds::acl): its own gateway only.
    assert_eq!(
        acl,
        &json!([
            {"permission": "allow", "action": "publish", "topic": "weir/lakeside/tank-1/cmd/write/resp"},
            {"permission": "allow", "action": "publish", "topic": "weir/lakeside/tank-1/cmd/replay/resp"},
            {"permission": "allow", "action": "publish", "topic": "weir/lakeside/tank-1/cmd/uplink/state"},
            {"permission": "deny", "action": "publish", "topic": "weir/lakeside/tank-1/cmd/#"},
            {"permission": "allow", "action": "publish", "topic": "weir/lakeside/tank-1/+/+"},
            {"permission": "allow", "action": "subscribe", "topic": "weir/lakeside/tank-1/cmd/+"},
            {"permission": "deny", "action": "all", "topic": "#"},
        ])
    );
    assert_eq!(creds.body["username"], data.claims["username"]);

    // Rotation: a viewer may not; the owner may. The next bundle is signed by
    // the new key and carries the rotation that the old key endorses.
    let r = app
        .get(&format!("/api/v1/agents/{id}/config"), &bearer)
        .await;
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let r = app
        .call(
            Method::POST,
            "/api/v1/orgs/lakeside/signing-keys:rotate",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["previous_bundle_key_id"], old_anchor.key_id.as_str());
    assert_eq!(r.body["resigned_gateways"], 1);
    let r = get_with_etag(
        &app,
        &format!("/api/v1/agents/{id}/config"),
        &bearer,
        &etag,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "a new bundle after rotation");
    let signed: SignedBundle = r.json().await.unwrap();
    let rot = signed
        .rotation
        .clone()
        .expect("bundle carries the rotation");
    let new_key = bundle::verify_rotation(&rot, &old_anchor.verifying_key().unwrap())
        .expect("old key endorses new");
    bundle::verify(
        &signed,
        &new_key,
        &Expectations {
            tenant: "lakeside",
            gateway: "tank-1",
            last_accepted: Some(1),
            now: Utc::now(),
        },
    )
    .expect("signed by the new key");
    let keys = app.get("/api/v1/orgs/lakeside/signing-keys", &admin).await;
    assert_eq!(
        keys.body.as_array().unwrap().len(),
        4,
        "two bundle and two jwt keys"
    );
    // The old JWT key stays in the JWKS while its tokens live.
    let jwks = app.get("/api/v1/jwks.json", &Cred::None).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 2);
    // Keys are stored encrypted: the seed is nowhere in the row.
    let rows = weir_api::fleet::entities::signing_key::Entity::find()
        .all(&app.running.state.db)
        .await
        .unwrap();
    for m in rows {
        assert!(!m.secret_enc.contains(&m.public_key));
        assert!(B64.decode(&m.secret_enc).unwrap().len() > 32 + 12);
    }
    app.stop().await;
}
on_both_databases!(
    mqtt_jwt_credentials_and_key_rotation,
    super::mqtt_jwt_credentials_and_key_rotation
);

/// A test agent: its key pair and the requests it makes.
struct Agent {
    key: SigningKey,
}

impl Agent {
    fn new() -> Self {
        Self {
            key: bundle::generate_key(),
        }
    }

    async fn enroll(&self, app: &TestApp, token: &str) -> common::Resp {
        app.post(
            "/api/v1/enroll",
            &Cred::None,
            json!({
                "token": token,
                "publicKey": B64.encode(self.key.verifying_key().as_bytes()),
                "facts": {"hostname": "ipc-1", "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"},
            }),
        )
        .await
    }

    fn challenge(&self, id: &str, ts: chrono::DateTime<Utc>) -> Value {
        let sig = self.key.sign(&agent_token_challenge(id, &ts));
        json!({"timestamp": ts, "signature": B64.encode(sig.to_bytes())})
    }

    async fn token(&self, app: &TestApp, id: &str) -> Cred {
        let r = app
            .post(
                &format!("/api/v1/agents/{id}/token"),
                &Cred::None,
                self.challenge(id, Utc::now()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        Cred::Bearer(r.body["token"].as_str().unwrap().to_string())
    }
}

async fn get_with_etag(
    app: &TestApp,
    path: &str,
    cred: &Cred,
    etag: &str,
    wait: Option<&str>,
) -> reqwest::Response {
    let Cred::Bearer(t) = cred else {
        panic!("agent bearer expected")
    };
    let url = match wait {
        Some(w) => app.url(&format!("{path}?wait={w}")),
        None => app.url(path),
    };
    app.http
        .get(url)
        .bearer_auth(t)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap()
}
