//! Fleet-health alerts end to end, from real fleet state: an enrolled agent
//! heartbeats with per-device status, stops, the fleet monitor marks its
//! gateway offline, the "gateway offline" rule fires after its for-duration
//! and a webhook receives it; the gateway's device alert is inhibited while
//! it is offline; the return resolves it. Channel secrets are sealed in the
//! database (and older plain-text rows keep working). An adopted cluster
//! that stops answering fires "cluster degraded", and the api ingests
//! readings from the project's adopted cluster.
//!
//! The alert clock is manual (for-durations are moved, not slept); the
//! fleet's heartbeat timeout is real time (1 s heartbeats, offline after 3).

use crate::alerts_support;
use crate::common;
use crate::fleet_support;

use std::time::Duration;

use alerts_support::{until, uplink, webhook_receiver};
use chrono::Utc;
use common::{Backend, Cred, TestApp};
use fleet_support::{modbus_spec, setup_org, Agent, TEST_MASTER_KEY};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{json, Value};
use weir_api::alerts::store::alert_channel;
use weir_api::alerts::Clock;
use weir_testkit::{free_port, Mosquitto};

// ------------------------------------------------------------------ helpers

fn config(clock: &Clock) -> impl FnOnce(&mut weir_api::Config) {
    let clock = clock.clone();
    move |c| {
        c.fleet.kube_fleet = weir_api::fleet::KubeFleet::Off;
        c.fleet.master_key = Some(TEST_MASTER_KEY.to_string());
        c.fleet.fleet_monitor_interval_ms = 100;
        c.fleet.enroll_burst = 1000;
        c.alerts.clock = clock;
        c.alerts.eval_interval_ms = 20;
        c.alerts.retry_base_ms = 20;
        c.alerts.send_timeout_ms = 5_000;
        c.alerts.cluster_probe_interval_ms = 200;
        c.alerts.mqtt_url = None;
    }
}

impl Agent {
    /// A heartbeat reporting `pump-1` in `device_state` (ok, degraded, down).
    async fn heartbeat(&self, app: &TestApp, interval_s: u64, device_state: &str) {
        let r = app
            .post(
                &format!("/api/v1/agents/{}/status", self.id),
                &self.bearer,
                json!({"heartbeatIntervalS": interval_s, "devices": [
                    {"name": "pump-1", "state": device_state, "readings": 10}
                ]}),
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
}

struct World {
    app: TestApp,
    admin: Cred,
    project: String,
    clock: Clock,
}

impl World {
    async fn start(b: Backend, org: &str) -> World {
        let clock = Clock::manual(Utc::now().timestamp_millis());
        let app = TestApp::start_with(b, config(&clock)).await;
        let admin = app.admin().await;
        setup_org(&app, &admin, org, "north").await;
        World {
            app,
            admin,
            project: format!("/api/v1/orgs/{org}/projects/north"),
            clock,
        }
    }
    async fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("{}{path}", self.project);
        self.app.post_ok(&path, &self.admin, body).await
    }
    async fn get(&self, path: &str) -> Value {
        let path = format!("{}{path}", self.project);
        self.app.get_ok(&path, &self.admin).await
    }
    /// (alertname, state, status) of the active alerts.
    async fn active(&self) -> Vec<(String, String, String)> {
        self.get("/alerts/active")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_string(),
                    a["state"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
    async fn passes(&self, n: u64) {
        self.app.running.state.alerts.wait_passes(n).await;
    }
    async fn stop(self) {
        self.app.running.state.alerts.shutdown();
        self.app.stop().await;
    }
}

fn has_active(a: &[(String, String, String)], name: &str, state: &str, status: &str) -> bool {
    a.iter()
        .any(|(n, s, st)| n == name && s == state && st == status)
}

/// Publish a `level` reading to `weir/{org}/ps-1/pump-1/fast` every 100 ms
/// (as an agent's uplink does) until aborted.
fn publish_levels(port: u16, org: &str, value: f64) -> tokio::task::JoinHandle<()> {
    let topic = format!("weir/{org}/ps-1/pump-1/fast");
    tokio::spawn(async move {
        let opts = rumqttc::MqttOptions::new(
            format!("test-pub-{}", uuid::Uuid::new_v4().simple()),
            "127.0.0.1",
            port,
        );
        let (client, mut ev) = rumqttc::AsyncClient::new(opts, 100);
        tokio::spawn(async move { while ev.poll().await.is_ok() {} });
        let mut seq = 0;
        loop {
            seq += 1;
            let msg = uplink(seq, Utc::now().timestamp_millis(), "level", value);
            let _ = client
                .publish(
                    &topic,
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&msg).unwrap(),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

// ------------------------------------------------------------------ tests

/// A gateway that stops heartbeating goes offline and, after the rule's
/// for-duration, fires "gateway offline" to a signed webhook; its device
/// alert is inhibited meanwhile; the return resolves the gateway alert and
/// releases the device alert.
async fn gateway_offline_fires_inhibits_and_resolves(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let w = World::start(b, "riverside").await;
    const SECRET: &str = "webhook-signing-secret-0123456789";
    let ch = w
        .post(
            "/alerts/channels",
            json!({"name": "control room", "kind": "webhook", "url": url, "secret": SECRET,
                   "group_by": ["alertname", "gateway"], "group_wait_secs": 0,
                   "group_interval_secs": 1, "repeat_interval_secs": 3600}),
        )
        .await;
    assert_eq!(ch["secret"], SECRET, "shown once, at creation");
    let ch_id = ch["id"].as_str().unwrap().to_string();

    // The secret is sealed in the database, and never shown again.
    let row = alert_channel::Entity::find_by_id(ch_id.parse::<uuid::Uuid>().unwrap())
        .one(&w.app.running.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.secret, SECRET);
    assert!(!row.secret.contains(SECRET));
    assert!(
        row.secret.starts_with("sealed:v1:"),
        "sealed under the master key: {}",
        row.secret.len()
    );
    for v in [
        w.get("/alerts/channels").await,
        w.get(&format!("/alerts/channels/{ch_id}")).await,
    ] {
        assert!(!v.to_string().contains(SECRET), "secret returned: {v}");
        assert!(
            !v.to_string().contains("sealed:v1:"),
            "sealed value returned: {v}"
        );
    }

    w.post(
        "/alerts/rules",
        json!({"name": "Gateway offline", "kind": "gateway_offline", "for_secs": 60, "severity": "critical"}),
    )
    .await;
    w.post(
        "/alerts/rules",
        json!({"name": "Device down", "kind": "device_down", "for_secs": 30}),
    )
    .await;
    let gateways = format!("{}/gateways", w.project);
    let r = w
        .app
        .post(
            &gateways,
            &w.admin,
            json!({"name": "ps-1", "spec": modbus_spec(1000)}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let agent = Agent::enroll(&w.app, &w.admin, &gateways, "ps-1").await;

    // The last heartbeat says pump-1 is down: the device rule goes pending.
    agent.heartbeat(&w.app, 1, "down").await;
    until("device alert pending", || async {
        has_active(&w.active().await, "Device down", "pending", "active")
    })
    .await;

    // No more heartbeats: 3 missed 1 s intervals and the fleet marks it offline.
    until(
        "gateway alert pending (fleet marked it offline)",
        || async { has_active(&w.active().await, "Gateway offline", "pending", "active") },
    )
    .await;
    let ro = w.get("/rollout").await;
    assert_eq!(ro[0]["online"], false);
    w.passes(5).await;
    assert_eq!(hook.count(), 0, "nothing fires before the for-duration");
    w.clock.advance(Duration::from_secs(59));
    w.passes(5).await;
    assert_eq!(
        hook.notices_about(),
        vec![],
        "nothing sent at 59 s: the gateway alert waits for its 60 s, and the \
         (already firing) device alert is inhibited while its gateway is offline"
    );

    w.clock.advance(Duration::from_secs(1));
    until("gateway offline notice", || async { hook.count() >= 1 }).await;
    w.passes(10).await;
    let a = w.active().await;
    assert!(
        has_active(&a, "Gateway offline", "firing", "active"),
        "{a:?}"
    );
    assert!(
        has_active(&a, "Device down", "firing", "inhibited"),
        "the device alert of an offline gateway is inhibited: {a:?}"
    );
    assert_eq!(
        hook.notices_about(),
        vec![(
            "firing".to_string(),
            "Gateway offline".to_string(),
            "ps-1".to_string()
        )],
        "exactly one notice, for the gateway; none for its inhibited device"
    );
    let body = &hook.bodies()[0];
    assert_eq!(body["alerts"][0]["summary"], "gateway ps-1 is offline");
    assert!(
        hook.all_signed_with(SECRET),
        "signed with the sealed secret"
    );

    // The gateway returns (pump-1 still down): the gateway alert resolves and
    // the device alert, no longer inhibited, goes out.
    w.clock.advance(Duration::from_secs(2));
    agent.heartbeat(&w.app, 30, "down").await;
    until("resolved gateway notice", || async {
        hook.has("resolved", "Gateway offline")
    })
    .await;
    until("device alert released", || async {
        hook.has("firing", "Device down")
    })
    .await;
    let a = w.active().await;
    assert!(
        !a.iter().any(|(n, _, _)| n == "Gateway offline"),
        "resolved: {a:?}"
    );
    assert!(has_active(&a, "Device down", "firing", "active"), "{a:?}");
    // The device answers again: its alert resolves too.
    w.clock.advance(Duration::from_secs(2));
    agent.heartbeat(&w.app, 30, "ok").await;
    until("resolved device notice", || async {
        hook.has("resolved", "Device down")
    })
    .await;
    assert!(hook.all_signed_with(SECRET));
    let n = hook.notices_about();
    assert_eq!(
        n.iter()
            .filter(|(s, a, _)| s == "firing" && a == "Gateway offline")
            .count(),
        1,
        "the gateway alert was sent once: {n:?}"
    );
    let hist = w.get("/alerts/history").await;
    assert!(
        hist.as_array().unwrap().len() >= 6,
        "pending, firing, resolved of both: {hist}"
    );
    w.stop().await;
}
on_both_databases!(
    gateway_offline,
    super::gateway_offline_fires_inhibits_and_resolves
);

/// A channel stored before secrets were sealed (plain text in the row)
/// still signs, and is sealed when the api starts again.
async fn legacy_plain_text_secret_keeps_working(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let mut w = World::start(b, "lakeside").await;
    let project_id: uuid::Uuid = w.get("").await["id"].as_str().unwrap().parse().unwrap();
    const LEGACY: &str = "legacy-plain-text-secret-42";
    let id = uuid::Uuid::new_v4();
    alert_channel::ActiveModel {
        id: Set(id),
        project_id: Set(project_id),
        name: Set("old hook".into()),
        kind: Set("webhook".into()),
        config: Set(json!({ "url": url }).to_string()),
        secret: Set(LEGACY.into()),
        group_by: Set("[\"alertname\"]".into()),
        group_wait_secs: Set(0),
        group_interval_secs: Set(60),
        repeat_interval_secs: Set(3600),
        created_at: Set(Utc::now()),
    }
    .insert(&w.app.running.state.db)
    .await
    .unwrap();
    let r = w
        .post(&format!("/alerts/channels/{id}/test"), json!({}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(hook.all_signed_with(LEGACY));

    // Restart on the same database: the row is sealed, and still signs.
    w.app.running.state.alerts.shutdown();
    w.app.running.task.abort();
    w.app.running.state.db.clone().close().await.ok();
    let mut cfg = common::test_config(&w.app.db.url);
    config(&w.clock)(&mut cfg);
    w.app.running = weir_api::start(cfg).await.expect("api restarts");
    w.admin = w.app.admin().await;
    let row = alert_channel::Entity::find_by_id(id)
        .one(&w.app.running.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.secret.starts_with("sealed:v1:") && !row.secret.contains(LEGACY));
    let r = w
        .post(&format!("/alerts/channels/{id}/test"), json!({}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(hook.count(), 2);
    assert!(hook.all_signed_with(LEGACY));
    w.stop().await;
}
on_both_databases!(legacy_secret, super::legacy_plain_text_secret_keeps_working);

/// The api reads the project's adopted cluster (no WEIR_ALERTS_MQTT_URL):
/// readings published there drive a threshold rule. The cluster stops
/// answering: the periodic health check fires "cluster degraded"; it comes
/// back: resolved.
async fn adopted_cluster_ingest_and_degraded(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let port = free_port();
    let broker = Mosquitto::builder().port(port).start().await;
    let w = World::start(b, "hillside").await;
    w.post(
        "/alerts/channels",
        json!({"name": "hook", "kind": "webhook", "url": url, "group_by": ["alertname"],
               "group_wait_secs": 0, "group_interval_secs": 1}),
    )
    .await;
    let c = w
        .post(
            "/clusters",
            json!({"name": "plant-broker", "backend": "external", "url": format!("mqtt://127.0.0.1:{port}")}),
        )
        .await;
    assert_eq!(c["health"]["reachable"], true, "{c}");
    w.post(
        "/alerts/rules",
        json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}),
    )
    .await;
    w.post(
        "/alerts/rules",
        json!({"name": "Cluster degraded", "kind": "cluster_degraded", "severity": "critical"}),
    )
    .await;

    alerts_support::gateways(&w.app, &w.admin, "hillside", "north", &["ps-1"]).await;
    let publisher = publish_levels(port, "hillside", 7.5);
    until(
        "threshold alert from the adopted cluster's readings",
        || async { hook.has("firing", "Level high") },
    )
    .await;
    publisher.abort();
    assert!(
        !hook.has("firing", "Cluster degraded"),
        "a healthy cluster: {:?}",
        hook.notices_about()
    );

    // The broker goes away: the next health check finds it unreachable.
    drop(broker);
    until("cluster degraded notice", || async {
        hook.has("firing", "Cluster degraded")
    })
    .await;
    let n = hook.notices_about();
    assert!(
        n.contains(&(
            "firing".to_string(),
            "Cluster degraded".to_string(),
            "plant-broker".to_string()
        )),
        "{n:?}"
    );
    let cl = w.get("/clusters/plant-broker").await;
    assert_eq!(cl["health"]["reachable"], false, "{cl}");

    // It comes back: resolved.
    w.clock.advance(Duration::from_secs(2));
    let _broker = Mosquitto::builder().port(port).start().await;
    until("cluster resolved notice", || async {
        hook.has("resolved", "Cluster degraded")
    })
    .await;
    w.stop().await;
}
on_both_databases!(adopted_cluster, super::adopted_cluster_ingest_and_degraded);
