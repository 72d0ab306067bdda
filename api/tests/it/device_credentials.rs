//! Device credentials (issue 22): a project's editors store what OPC UA
//! devices log in with; the list never carries the secret; an agent gets a
//! credential only when its gateway's current config names it; other
//! organizations and other gateways' agents get nothing; the audit log
//! records every change and fetch without the secret.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{Backend, Cred, TestApp};
use crate::fleet_support::{fleet_app, setup_org, Agent};

const PASSWORD: &str = "pump-station-Secret-42";
const CERT: &str = include_str!("fixtures/opcua-user.crt.pem");
const KEY: &str = include_str!("fixtures/opcua-user.key.pem");

fn opcua_spec(credential: Option<&str>) -> Value {
    let mut opc = json!({"endpoint": "opc.tcp://10.0.0.7:4840/plant"});
    if let Some(c) = credential {
        opc["credential"] = json!(c);
    }
    json!({"site": {"name": "Works"}, "devices": [{
        "name": "scada", "adapter": "opcUa", "opcUa": opc,
        "groups": [{"name": "g", "intervalMs": 1000, "tags": [
            {"name": "flow", "address": "ns=2;s=Pump1.Flow", "dataType": "float64"}
        ]}]
    }]})
}

async fn put(
    app: &TestApp,
    who: &Cred,
    base: &str,
    name: &str,
    body: Value,
) -> crate::common::Resp {
    app.call(
        Method::PUT,
        &format!("{base}/credentials/{name}"),
        who,
        Some(body),
    )
    .await
}

async fn member(app: &TestApp, admin: &Cred, base: &str, email: &str, role: &str) -> Cred {
    let (_, who) = app.user(admin, email).await;
    app.post_ok(
        &format!("{base}/members"),
        admin,
        json!({"email": email, "role": role}),
    )
    .await;
    who
}

async fn credentials(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "water", "plant").await;
    setup_org(&app, &admin, "other", "plant").await;
    let base = "/api/v1/orgs/water/projects/plant";
    let editor = member(&app, &admin, base, "ed@cred.test", "project-editor").await;
    let viewer = member(&app, &admin, base, "view@cred.test", "project-viewer").await;
    let (_, stranger) = app.user(&admin, "owner@other.test").await;
    app.post_ok(
        "/api/v1/orgs/other/members",
        &admin,
        json!({"email": "owner@other.test", "role": "org-owner"}),
    )
    .await;

    // Create (201), replace (200); the answer never carries the secret.
    let up = json!({"kind": "userPassword", "username": "operator", "password": PASSWORD});
    let r = put(&app, &editor, base, "scada-login", up.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["kind"], "userPassword");
    assert_eq!(r.body["username"], "operator");
    assert!(!r.body.to_string().contains(PASSWORD));
    let r = put(&app, &editor, base, "scada-login", up.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let cert = json!({"kind": "certificate", "certificatePem": CERT, "privateKeyPem": KEY});
    let r = put(&app, &editor, base, "scada-cert", cert).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Bad input names the field.
    let r = put(
        &app,
        &editor,
        base,
        "x",
        json!({"kind": "userPassword", "username": "", "password": "p"}),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "username");
    let r = put(
        &app,
        &editor,
        base,
        "x",
        json!({"kind": "certificate", "certificatePem": "nope", "privateKeyPem": KEY}),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "certificatePem");
    assert!(
        !r.body.to_string().contains("PRIVATE KEY-----\n"),
        "never echoes the key"
    );
    let r = put(&app, &editor, base, "Bad.Name", up.clone()).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "name");
    let r = put(
        &app,
        &editor,
        base,
        "x",
        json!({"kind": "apiKey", "key": "k"}),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Viewers list names and kinds; the list never holds a secret.
    let list = app.get_ok(&format!("{base}/credentials"), &viewer).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["scada-cert", "scada-login"]);
    let text = list.to_string();
    assert!(
        !text.contains(PASSWORD)
            && !text.contains("PRIVATE KEY")
            && !text.contains("BEGIN CERTIFICATE")
    );
    // ...but change nothing.
    assert_eq!(put(&app, &viewer, base, "v", up.clone()).await.status, 403);
    let r = app
        .call(
            Method::DELETE,
            &format!("{base}/credentials/scada-login"),
            &viewer,
            None,
        )
        .await;
    assert_eq!(r.status, 403);

    // Another organization's owner sees nothing (404, as for a missing project).
    assert_eq!(
        app.get(&format!("{base}/credentials"), &stranger)
            .await
            .status,
        404
    );
    assert_eq!(
        put(&app, &stranger, base, "scada-login", up.clone())
            .await
            .status,
        404
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("{base}/credentials/scada-login"),
            &stranger,
            None,
        )
        .await;
    assert_eq!(r.status, 404);

    // Agents: gateway `works` names scada-login; gateway `lab` names nothing.
    let gws = format!("{base}/gateways");
    app.post_ok(
        &gws,
        &editor,
        json!({"name": "works", "spec": opcua_spec(Some("scada-login"))}),
    )
    .await;
    app.post_ok(
        &gws,
        &editor,
        json!({"name": "lab", "spec": opcua_spec(None)}),
    )
    .await;
    let works = Agent::enroll(&app, &admin, &gws, "works").await;
    let lab = Agent::enroll(&app, &admin, &gws, "lab").await;
    let fetch = |a: &Agent, name: &str| format!("/api/v1/agents/{}/credentials/{name}", a.id);
    let r = app.get(&fetch(&works, "scada-login"), &works.bearer).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, up);
    // Re-checking with the ETag: 304 while unchanged (and not audited, see
    // below), the new secret once replaced.
    let tag = r.headers["etag"].to_str().unwrap().to_string();
    let Cred::Bearer(works_token) = &works.bearer else {
        unreachable!()
    };
    let recheck = |tag: String| {
        app.http
            .get(app.url(&fetch(&works, "scada-login")))
            .bearer_auth(works_token)
            .header("if-none-match", tag)
            .send()
    };
    assert_eq!(recheck(tag.clone()).await.unwrap().status(), 304);
    assert_eq!(recheck(tag.clone()).await.unwrap().status(), 304);
    let replaced =
        json!({"kind": "userPassword", "username": "operator", "password": "rotated-Secret-43"});
    let r = put(&app, &editor, base, "scada-login", replaced.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = recheck(tag.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), tag);
    assert_eq!(r.json::<Value>().await.unwrap(), replaced);
    // Not named by the config: refused, saying why.
    let r = app.get(&fetch(&works, "scada-cert"), &works.bearer).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("names no credential 'scada-cert'"),
        "{:?}",
        r.body
    );
    let r = app.get(&fetch(&lab, "scada-login"), &lab.bearer).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    // Another agent's id with this agent's token: 403.
    assert_eq!(
        app.get(&fetch(&works, "scada-login"), &lab.bearer)
            .await
            .status,
        403
    );
    // A user's session is not an agent token.
    assert_eq!(
        app.get(&fetch(&works, "scada-login"), &admin).await.status,
        401
    );

    // An agent of another organization's gateway naming the same credential.
    let ogws = "/api/v1/orgs/other/projects/plant/gateways";
    app.post_ok(
        ogws,
        &admin,
        json!({"name": "works", "spec": opcua_spec(Some("scada-login"))}),
    )
    .await;
    let foreign = Agent::enroll(&app, &admin, ogws, "works").await;
    let r = app
        .get(&fetch(&foreign, "scada-login"), &foreign.bearer)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("has no credential"),
        "{:?}",
        r.body
    );

    // The config stops naming it: the agent of `works` is refused from now on.
    let r = app
        .call(
            Method::PATCH,
            &format!("{gws}/works"),
            &editor,
            Some(json!({"spec": opcua_spec(Some("scada-cert")), "comment": "certificate login"})),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(
        app.get(&fetch(&works, "scada-login"), &works.bearer)
            .await
            .status,
        404
    );
    let r = app.get(&fetch(&works, "scada-cert"), &works.bearer).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["privateKeyPem"], KEY);

    // Delete; then the agent's fetch is refused.
    let r = app
        .call(
            Method::DELETE,
            &format!("{base}/credentials/scada-cert"),
            &editor,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        app.get(&fetch(&works, "scada-cert"), &works.bearer)
            .await
            .status,
        404
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("{base}/credentials/scada-cert"),
            &editor,
            None,
        )
        .await;
    assert_eq!(r.status, 404);

    // Every change and fetch is audited, never with the secret.
    let audit = app.get_ok("/api/v1/orgs/water/audit", &admin).await;
    let text = audit.to_string();
    for action in [
        "device_credential.create",
        "device_credential.replace",
        "device_credential.delete",
        "device_credential.fetch",
    ] {
        assert!(text.contains(action), "{action} missing from the audit log");
    }
    assert!(
        text.contains("\"denied\""),
        "refused fetches are audited as denied"
    );
    assert!(
        !text.contains(PASSWORD)
            && !text.contains("rotated-Secret")
            && !text.contains("PRIVATE KEY"),
        "secret in the audit log"
    );
    let fetched = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "device_credential.fetch" && e["outcome"] == "success")
        .count();
    // Handed out three times (the first fetch, after the replace, the
    // certificate); the 304s made no entries.
    assert_eq!(fetched, 3, "{audit}");
    app.stop().await;
}
on_both_databases!(device_credentials, super::credentials);

/// At rest the secret is sealed: the row holds neither the password nor the key.
async fn sealed_at_rest(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "water", "plant").await;
    let base = "/api/v1/orgs/water/projects/plant";
    let r = put(
        &app,
        &admin,
        base,
        "scada-login",
        json!({"kind": "userPassword", "username": "operator", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let db = &app.running.state.db;
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT secret_enc, username FROM fleet_device_credentials",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let sealed: String = rows[0].try_get("", "secret_enc").unwrap();
    assert!(!sealed.contains(PASSWORD) && sealed.len() > 40, "{sealed}");
    app.stop().await;
}
on_both_databases!(device_credentials_sealed, super::sealed_at_rest);
