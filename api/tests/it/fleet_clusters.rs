//! Clusters (external backend against a real Mosquitto started by the
//! test), templates and batch changes, on SQLite and PostgreSQL.

use crate::common;
use crate::fleet_support;

use common::Backend;
use fleet_support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use weir_testkit::Mosquitto;

async fn external_cluster_lifecycle(b: Backend) {
    // An adopted Mosquitto: the stored login is its dynamic-security admin.
    let broker = Mosquitto::builder()
        .dynamic_security("weir", "s3cret-pw")
        .start()
        .await;
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "riverside", "north").await;
    let r = app
        .post(
            "/api/v1/orgs/riverside/projects",
            &admin,
            json!({"slug": "south", "name": "South"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let base = "/api/v1/orgs/riverside/projects/north";
    let url = format!("mqtt://127.0.0.1:{}", broker.port);

    // Adopt the broker: the probe connects and measures the round trip.
    let r = app
        .post(&format!("{base}/clusters"), &admin, json!({"name": "plant-broker", "backend": "external", "url": url, "username": "weir", "password": "s3cret-pw"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["health"]["reachable"], true, "{:?}", r.body);
    assert!(r.body["health"]["rtt_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(r.body["has_password"], true);
    assert_eq!(r.body["agent_identities"], "dynamicSecurity");
    assert!(
        !r.body.to_string().contains("s3cret-pw"),
        "the password is never shown"
    );
    let r = app
        .call(
            Method::POST,
            &format!("{base}/clusters/plant-broker/probe"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["health"]["reachable"], true);
    // The broker's own figures, read from $SYS with the api's login (its
    // role allows `$SYS/broker/#`).
    let fig = &r.body["health"]["broker"];
    assert!(
        fig["version"]
            .as_str()
            .unwrap_or_default()
            .starts_with("mosquitto version"),
        "{fig}"
    );
    assert!(fig["clients_connected"].is_u64(), "{fig}");
    assert!(fig["messages_received"].is_u64(), "{fig}");
    assert!(fig["uptime_secs"].is_u64(), "{fig}");
    // Stored encrypted.
    let rows = {
        use sea_orm::EntityTrait;
        weir_api::fleet::entities::cluster::Entity::find()
            .all(&app.running.state.db)
            .await
            .unwrap()
    };
    assert!(!rows[0].password_enc.as_ref().unwrap().contains("s3cret-pw"));

    // Bad input names the field; kubernetes needs a kube config.
    let r = app
        .post(
            &format!("{base}/clusters"),
            &admin,
            json!({"name": "x", "backend": "external", "url": "http://x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "url");
    let r = app
        .post(
            &format!("{base}/clusters"),
            &admin,
            json!({"name": "k", "backend": "kubernetes"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "backend");

    // A gateway on it.
    let mut spec = modbus_spec(1000);
    spec["clusterRef"] = json!("plant-broker");
    let r = app
        .post(
            &format!("{base}/gateways"),
            &admin,
            json!({"name": "pump-1", "spec": spec}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["cluster"], "plant-broker");
    let mut bad = modbus_spec(1000);
    bad["clusterRef"] = json!("nope");
    let r = app
        .post(
            &format!("{base}/gateways"),
            &admin,
            json!({"name": "pump-9", "spec": bad}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "spec.clusterRef");
    let t = app
        .post(
            &format!("{base}/gateways/pump-1/enrollment-tokens"),
            &admin,
            json!({}),
        )
        .await;
    let key = weir_crds::bundle::generate_key();
    use base64::Engine as _;
    let r = app
        .post(
            "/api/v1/enroll",
            &common::Cred::None,
            json!({"token": t.body["token"], "publicKey": base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes()),
                   "facts": {"hostname": "ipc", "os": "linux", "arch": "aarch64", "agentVersion": "0.1.0"}}),
        )
        .await;
    // The gateway gets a login of its own, never the admin login (a broker
    // without the plugin refuses: broker_identity.rs).
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["mqtt"]["username"], "weir-riverside-pump-1");
    assert!(!r.body.to_string().contains("s3cret-pw"), "{:?}", r.body);

    // Delete: the name again as confirmation, and not while gateways use it.
    let c = format!("{base}/clusters/plant-broker");
    let r = app.call(Method::DELETE, &c, &admin, None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "confirm");
    let r = app
        .call(
            Method::DELETE,
            &format!("{c}?confirm=plant-broker"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);

    // Update and transfer.
    let r = app
        .call(
            Method::PATCH,
            &c,
            &admin,
            Some(json!({"title": "Plant broker", "password": ""})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["has_password"], false);
    let r = app
        .post(
            &format!("{c}/transfer"),
            &admin,
            json!({"project": "south"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["project"], "south");
    assert_eq!(app.get(&c, &admin).await.status, StatusCode::NOT_FOUND);
    let moved = "/api/v1/orgs/riverside/projects/south/clusters/plant-broker";
    assert_eq!(app.get(moved, &admin).await.status, StatusCode::OK);
    // Free it and delete it.
    let r = app
        .call(
            Method::PATCH,
            &format!("{base}/gateways/pump-1"),
            &admin,
            Some(json!({"merge_patch": {"clusterRef": null}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .call(
            Method::DELETE,
            moved,
            &admin,
            Some(json!({"confirm": "plant-broker"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let audit = app
        .get("/api/v1/orgs/riverside/audit?limit=500", &admin)
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "cluster.create",
        "cluster.update",
        "cluster.transfer",
        "cluster.delete",
    ] {
        assert!(actions.contains(&a), "audit lacks {a}: {actions:?}");
    }
    app.stop().await;
}
on_both_databases!(
    external_cluster_lifecycle,
    super::external_cluster_lifecycle
);

async fn templates_and_batch(b: Backend) {
    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "lakeside", "plant").await;
    let base = "/api/v1/orgs/lakeside/projects/plant";
    for g in ["a", "b"] {
        let r = app
            .post(
                &format!("{base}/gateways"),
                &admin,
                json!({"name": g, "spec": {"site": {"name": g}}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // A template is validated like a spec.
    let r = app
        .post(
            &format!("{base}/gateway-templates"),
            &admin,
            json!({"name": "pumps", "spec": {"devices": [modbus_device(5)]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            &format!("{base}/gateway-templates"),
            &admin,
            json!({"name": "pumps", "spec": {"devices": [modbus_device(2000)]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            &format!("{base}/gateways:batch"),
            &admin,
            json!({"gateways": ["a", "b", "ghost"], "template": "pumps"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["updated"].as_u64(), r.body["failed"].as_u64()),
        (Some(2), Some(1)),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["items"][2]["status"], 404);
    let g = app.get(&format!("{base}/gateways/a"), &admin).await;
    assert_eq!(g.body["version"], 2);
    assert_eq!(
        g.body["spec"]["site"]["name"], "a",
        "fields the template does not name stay"
    );
    assert_eq!(
        g.body["spec"]["devices"][0]["groups"][0]["intervalMs"],
        2000
    );
    // Again: nothing changes. A bad merge patch fails per gateway with the field.
    let r = app
        .post(
            &format!("{base}/gateways:batch"),
            &admin,
            json!({"gateways": ["a"], "template": "pumps"}),
        )
        .await;
    assert_eq!(r.body["unchanged"], 1);
    let r = app
        .post(
            &format!("{base}/gateways:batch"),
            &admin,
            json!({"gateways": ["a", "b"], "merge_patch": {"uplink": {"qos": 7}}}),
        )
        .await;
    assert_eq!(r.body["failed"], 2, "{:?}", r.body);
    assert_eq!(r.body["items"][0]["status"], 422);
    assert!(
        r.body["items"][0]["errors"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("spec.uplink"),
        "{:?}",
        r.body
    );
    let v = app
        .get(&format!("{base}/gateways/b/versions"), &admin)
        .await;
    assert_eq!(v.body[0]["comment"], "batch: template pumps");
    app.stop().await;
}
on_both_databases!(templates_and_batch, super::templates_and_batch);
