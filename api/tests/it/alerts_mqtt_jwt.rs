//! The api's own MQTT JWT for `apiJwt` clusters: the alerts ingest of a
//! project with rules connects to its apiJwt cluster with a token that
//! verifies against the api's own `GET /api/v1/jwks.json`, names the api
//! replica, allows only subscribing to the tenant's topics, and expires
//! after the configured lifetime; before it does, the api reconnects with
//! a fresh one. The broker is a small listener that
//! records the MQTT CONNECT (EMQX's JWT check itself is not run here).

use crate::common;
use crate::fleet_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Cred};
use fleet_support::{fleet_app, setup_org};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_api::fleet::agents::{MqttClaims, MQTT_AUDIENCE};

/// (client id, username, password) of one MQTT CONNECT.
type Login = (String, String, String);

fn mqtt_str(b: &[u8], at: &mut usize) -> Option<String> {
    let n = u16::from_be_bytes([*b.get(*at)?, *b.get(*at + 1)?]) as usize;
    let s = std::str::from_utf8(b.get(*at + 2..*at + 2 + n)?).ok()?;
    *at += 2 + n;
    Some(s.to_string())
}

/// Parse an MQTT 3.1.1 CONNECT packet (no will) into its login.
fn parse_connect(b: &[u8]) -> Option<Login> {
    if b.first()? >> 4 != 1 {
        return None;
    }
    // Remaining length (variable byte integer).
    let mut at = 1;
    while b.get(at)? & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    mqtt_str(b, &mut at)?; // "MQTT"
    let flags = *b.get(at + 1)?;
    at += 4; // level, flags, keep-alive
    let client_id = mqtt_str(b, &mut at)?;
    let user = if flags & 0x80 != 0 {
        mqtt_str(b, &mut at)?
    } else {
        String::new()
    };
    let pass = if flags & 0x40 != 0 {
        mqtt_str(b, &mut at)?
    } else {
        String::new()
    };
    Some((client_id, user, pass))
}

/// A listener that records every CONNECT, accepts the api's connections
/// (CONNACK, then ignores the rest) and hangs up on anyone else.
async fn recording_broker() -> (u16, Arc<Mutex<Vec<Login>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Login>>> = Arc::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut len = 0;
                let login = loop {
                    let Ok(n) = s.read(&mut buf[len..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    len += n;
                    if let Some(l) = parse_connect(&buf[..len]) {
                        break l;
                    }
                };
                let api = login.1.starts_with("weir-api-");
                rec.lock().unwrap().push(login);
                if !api {
                    return;
                }
                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn ingest_logs_in_to_an_api_jwt_cluster_with_its_own_subscribe_only_jwt() {
    let (port, seen) = recording_broker().await;
    let app = fleet_app(Backend::Sqlite, |c| c.alerts.api_mqtt_jwt_ttl_secs = 4).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "plant").await;
    let base = "/api/v1/orgs/riverside/projects/plant";

    // The org's MQTT JWT key (made when its first agent fetches credentials).
    let st = &app.running.state;
    let org_id = app.get_ok("/api/v1/orgs/riverside", &admin).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    weir_api::fleet::keys::ensure(st, org_id, weir_api::fleet::keys::PURPOSE_JWT)
        .await
        .unwrap();

    let r = app
        .post(
            &format!("{base}/clusters"),
            &admin,
            json!({"name": "emqx", "backend": "external", "auth_mode": "apiJwt",
                   "url": format!("mqtt://127.0.0.1:{port}")}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    app.post_ok(
        &format!("{base}/alerts/rules"),
        &admin,
        json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}),
    )
    .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (client_id, username, jwt) = loop {
        let api = seen
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.1.starts_with("weir-api-"))
            .cloned();
        if let Some(l) = api {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the api never connected with its JWT: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let replica = app.running.state.alerts.replica_name();
    assert_eq!(username, format!("weir-api-{replica}"));
    assert!(client_id.starts_with(&format!("weir-api-{replica}-alerts-")));

    // Verify against the api's own JWKS, by the header's key id.
    let jwks = app.get_ok("/api/v1/jwks.json", &Cred::None).await;
    let kid = jsonwebtoken::decode_header(&jwt).unwrap().kid.unwrap();
    let jwk: &Value = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&[MQTT_AUDIENCE]);
    let c: MqttClaims = jsonwebtoken::decode(&jwt, &key, &v).unwrap().claims;
    assert_eq!(c.username, username);
    assert_eq!(c.tenant, "riverside");
    assert_eq!(c.exp - c.iat, 4, "the configured lifetime");
    let acl: Vec<(String, String, String)> = c
        .acl
        .iter()
        .map(|r| (r.permission.clone(), r.action.clone(), r.topic.clone()))
        .collect();
    let rule = |p: &str, a: &str, t: &str| (p.to_string(), a.to_string(), t.to_string());
    assert_eq!(
        acl,
        vec![
            rule("allow", "subscribe", "weir/riverside/+/+/+"),
            rule("allow", "subscribe", "weir/riverside/+/cmd/write/resp"),
            rule("allow", "publish", "weir/riverside/+/cmd/write"),
            rule("allow", "publish", "weir/riverside/+/cmd/replay"),
            rule(
                "allow",
                "subscribe",
                "$share/weir-alerts/weir/riverside/+/+/+"
            ),
            rule(
                "allow",
                "subscribe",
                "$share/weir-alerts/weir/riverside/+/cmd/write/resp"
            ),
            rule("deny", "all", "#"),
        ]
    );

    // Before it expires (at 3 of its 4 seconds) the api logs in again with a new token.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let renewed = loop {
        let next = seen
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.1 == username && l.2 != jwt)
            .cloned();
        if let Some(l) = next {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no renewed login before expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let c2: MqttClaims = jsonwebtoken::decode(&renewed.2, &key, &v).unwrap().claims;
    assert!(
        c2.iat >= c.iat + 2,
        "renewed late or early: {} then {}",
        c.iat,
        c2.iat
    );
    // (Whole seconds: renewed at 3 s, so at most the first token's `exp`.)
    assert!(
        c2.iat <= c.exp,
        "renewed only after the first token expired"
    );
    assert_eq!(c2.acl, c.acl);
    app.stop().await;
}
