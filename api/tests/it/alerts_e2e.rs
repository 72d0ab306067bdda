//! Alerts end to end: a real api (SQLite and PostgreSQL), a real Mosquitto,
//! a real SMTP server (aiosmtpd) and a webhook receiver, with the alert
//! clock under the test's control (no sleeps as synchronisation: the test
//! moves the clock, then waits for evaluation passes or polls a condition).

use crate::alerts_support;
use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use alerts_support::{until, uplink, verify, wait_port, webhook_receiver};
use common::{Backend, Cred, TestApp};
use serde_json::{json, Value};
use weir_api::alerts::{Clock, FleetEvent};
use weir_testkit::{free_port, Mosquitto, Proc};

// ------------------------------------------------------------------ helpers

/// aiosmtpd writing every received mail into a maildir (in `dir`, the
/// caller's: it outlives the server).
async fn smtp_server(dir: &tempfile::TempDir) -> (Proc, u16, PathBuf) {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs the PyPI package aiosmtpd (`pip install aiosmtpd`) and python3"
    );
    let port = free_port();
    let mbox = dir.path().join("mail");
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "aiosmtpd",
        "-n",
        "-l",
        &format!("127.0.0.1:{port}"),
        "-c",
        "aiosmtpd.handlers.Mailbox",
    ])
    .arg(&mbox);
    let p = Proc::spawn("aiosmtpd", &mut cmd, dir.path()).expect("start aiosmtpd");
    wait_port(port, "aiosmtpd to listen").await;
    (p, port, mbox)
}

fn mails(mbox: &std::path::Path) -> Vec<String> {
    let mut v: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(mbox.join("new"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    (
                        e.metadata().unwrap().modified().unwrap(),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|x| x.1).collect()
}

fn tweak(clock: &Clock, mqtt: Option<u16>) -> impl FnOnce(&mut weir_api::Config) {
    let clock = clock.clone();
    move |c| {
        c.alerts.clock = clock;
        c.alerts.eval_interval_ms = 20;
        c.alerts.retry_base_ms = 20;
        c.alerts.send_timeout_ms = 5_000;
        c.alerts.mqtt_url = mqtt.map(|p| format!("mqtt://127.0.0.1:{p}"));
    }
}

struct World {
    app: TestApp,
    admin: Cred,
    base: String,
    org: String,
    project_id: uuid::Uuid,
}

async fn world(app: TestApp) -> World {
    let admin = app.admin().await;
    let org = format!("w{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let r = app
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": org, "name": "Riverside Water"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            &admin,
            json!({"slug": "north", "name": "North Plant"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let project_id = r.body["id"].as_str().unwrap().parse().unwrap();
    alerts_support::gateways(&app, &admin, &org, "north", &["ps-1", "ps-9"]).await;
    World {
        project_id,
        base: format!("/api/v1/orgs/{org}/projects/north/alerts"),
        app,
        admin,
        org,
    }
}

impl World {
    async fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("{}{path}", self.base);
        self.app.post_ok(&path, &self.admin, body).await
    }
    async fn get(&self, path: &str) -> Value {
        let path = format!("{}{path}", self.base);
        self.app.get_ok(&path, &self.admin).await
    }
    async fn active(&self) -> Vec<Value> {
        self.get("/active").await.as_array().unwrap().clone()
    }
    /// A reading straight into the engine (what the MQTT ingestion does).
    async fn reading(&self, gateway: &str, device: &str, tag: &str, value: f64) {
        let msg = uplink(1, self.app.running.state.alerts.now_ms(), tag, value);
        let a = &self.app.running.state.alerts;
        a.ingest(&self.org, gateway, device, msg).await;
        a.sync().await;
    }
    async fn passes(&self, n: u64) {
        self.app.running.state.alerts.wait_passes(n).await;
    }
    async fn stop(self) {
        self.app.running.state.alerts.shutdown();
        self.app.stop().await;
    }
}

// ------------------------------------------------------------------ tests

/// Readings published to Mosquitto drive a threshold rule through pending →
/// firing → resolved with the for-duration honoured; the SMTP server gets
/// exactly one mail for the firing alert and one for its resolution.
async fn mqtt_threshold_rule_mails_once_per_state(b: Backend) {
    let mosq = Mosquitto::start().await;
    let mport = mosq.port;
    let smtp_dir = tempfile::tempdir().unwrap();
    let (_smtp, sport, mbox) = smtp_server(&smtp_dir).await;
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let w = world(TestApp::start_with(b, tweak(&clock, Some(mport))).await).await;
    w.post(
        "/channels",
        json!({"name": "control room", "kind": "email", "group_wait_secs": 0, "group_interval_secs": 60,
               "email": {"smtp_host": "127.0.0.1", "smtp_port": sport, "tls": "none", "from": "weir@example.org", "to": ["ops@example.org"]}}),
    )
    .await;
    w.post(
        "/rules",
        json!({"name": "Chlorine low", "kind": "threshold", "tag": "chlorine", "op": "<", "threshold": 0.2, "for_secs": 60,
               "severity": "critical", "summary": "{{gateway}}/{{tag}} is {{value}} (limit {{threshold}})"}),
    )
    .await;

    let mut opts = rumqttc::MqttOptions::new("test-publisher", "127.0.0.1", mport);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 64);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let topic = weir_crds::message::topic("weir", &w.org, "ps-1", "pump-1", "fast");
    let publish = |v: f64, seq: u64| {
        let client = client.clone();
        let topic = topic.clone();
        let ts = clock.now_ms();
        async move {
            let msg = uplink(seq, ts, "chlorine", v);
            client
                .publish(
                    topic,
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&msg).unwrap(),
                )
                .await
                .unwrap();
        }
    };
    // The engine subscribes once the rule exists; publish until a reading got through.
    let mut seq = 0;
    until("a low reading over MQTT makes the alert pending", || {
        seq += 1;
        let p = publish(0.1, seq);
        let w = &w;
        async move {
            p.await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            w.active()
                .await
                .first()
                .is_some_and(|a| a["state"] == "pending")
        }
    })
    .await;
    clock.advance(Duration::from_secs(59));
    w.passes(3).await;
    let a = w.active().await;
    assert_eq!(
        a[0]["state"], "pending",
        "must not fire before the for-duration"
    );
    assert!(mails(&mbox).is_empty());
    clock.advance(Duration::from_secs(1));
    until("the alert fires after 60 s", || async {
        w.active()
            .await
            .first()
            .is_some_and(|a| a["state"] == "firing")
    })
    .await;
    until("one mail for the firing alert", || async {
        mails(&mbox).len() == 1
    })
    .await;
    let m = &mails(&mbox)[0];
    assert!(m.contains("Subject: [FIRING:1] Chlorine low"), "{m}");
    assert!(m.contains("ps-1/chlorine is 0.1 (limit 0.2)"), "{m}");

    clock.advance(Duration::from_secs(1));
    publish(0.5, 1000).await;
    until("the alert resolves", || async {
        w.active().await.is_empty()
    })
    .await;
    clock.advance(Duration::from_secs(60));
    until("one mail for the resolution", || async {
        mails(&mbox).len() == 2
    })
    .await;
    assert!(mails(&mbox)[1].contains("Subject: [RESOLVED] Chlorine low"));
    clock.advance(Duration::from_secs(3600));
    w.passes(5).await;
    assert_eq!(mails(&mbox).len(), 2, "nothing more after the resolution");
    let h = w.get("/history").await;
    let seq: Vec<(String, String)> = h
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seq,
        vec![
            ("inactive".into(), "pending".into()),
            ("pending".into(), "firing".into()),
            ("firing".into(), "resolved".into())
        ]
    );
    let metrics = w
        .app
        .http
        .get(w.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weir_api_alerts_notifications_sent_total{kind=\"email\"} 2"),
        "{metrics}"
    );
    w.stop().await;
}
on_both_databases!(
    mqtt_threshold_rule,
    super::mqtt_threshold_rule_mails_once_per_state
);

/// The webhook is signed, retried after two 500s, and a group gets one
/// notice per group interval however many alerts join it.
async fn webhook_signed_retried_grouped(b: Backend) {
    let (hook, url) = webhook_receiver(2).await;
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let w = world(TestApp::start_with(b, tweak(&clock, None)).await).await;
    let ch = w
        .post("/channels", json!({"name": "hook", "kind": "webhook", "url": url, "group_by": ["alertname"], "group_wait_secs": 10, "group_interval_secs": 60}))
        .await;
    let secret = ch["secret"]
        .as_str()
        .expect("secret shown once at creation")
        .to_string();
    let id = ch["id"].as_str().unwrap().to_string();
    let shown = w.get(&format!("/channels/{id}")).await;
    assert!(
        shown.get("secret").is_none() && shown["has_secret"] == true,
        "{shown}"
    );
    assert!(!w.get("/channels").await.to_string().contains(&secret));

    w.post("/rules", json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0})).await;
    w.reading("ps-1", "tank-1", "level", 7.0).await;
    w.passes(3).await;
    assert_eq!(hook.count(), 0, "group wait");
    clock.advance(Duration::from_secs(10));
    until("delivered after two 500s", || async { hook.count() == 3 }).await;
    let reqs = hook.requests.lock().unwrap().clone();
    for (sig, body) in &reqs {
        assert!(verify(&secret, sig, body), "bad signature {sig}");
    }
    assert_eq!(reqs[0].1, reqs[2].1, "a retry sends the same body");
    let b0 = &hook.bodies()[2];
    assert_eq!(b0["status"], "firing");
    assert_eq!(b0["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(b0["alerts"][0]["labels"]["device"], "tank-1");
    until("delivery logged", || async {
        w.get(&format!("/channels/{id}/deliveries"))
            .await
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    let d = &w.get(&format!("/channels/{id}/deliveries")).await[0];
    assert_eq!(
        (
            d["attempts"].as_i64(),
            d["ok"].as_bool(),
            d["http_status"].as_i64()
        ),
        (Some(3), Some(true), Some(200))
    );

    // Two more alerts of the same group inside the group interval: no notice yet.
    w.reading("ps-1", "tank-2", "level", 8.0).await;
    clock.advance(Duration::from_secs(30));
    w.reading("ps-1", "tank-3", "level", 9.0).await;
    w.passes(5).await;
    assert_eq!(hook.count(), 3, "one notice per group interval");
    clock.advance(Duration::from_secs(30));
    until("the grouped notice", || async { hook.count() == 4 }).await;
    assert_eq!(hook.bodies()[3]["alerts"].as_array().unwrap().len(), 3);
    clock.advance(Duration::from_secs(59));
    w.passes(5).await;
    assert_eq!(
        hook.count(),
        4,
        "unchanged group: nothing until the repeat interval"
    );

    // Send test.
    let r = w.post(&format!("/channels/{id}/test"), json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(hook.count(), 5);
    assert_eq!(
        hook.bodies()[4]["alerts"][0]["labels"]["alertname"],
        "Test notification"
    );
    let audit = w
        .app
        .get(&format!("/api/v1/orgs/{}/audit", w.org), &w.admin)
        .await;
    let text = audit.body.to_string();
    assert!(
        text.contains("alert_channel.create")
            && text.contains("alert_rule.create")
            && text.contains("alert_channel.test"),
        "{text}"
    );
    assert!(
        !text.contains(&secret),
        "the secret never reaches the audit log"
    );
    w.stop().await;
}
on_both_databases!(webhook_delivery, super::webhook_signed_retried_grouped);

/// A silenced alert sends nothing and shows as silenced; device alerts of an
/// offline gateway are inhibited while the gateway alert is sent.
async fn silences_and_inhibition(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let w = world(TestApp::start_with(b, tweak(&clock, None)).await).await;
    w.post("/channels", json!({"name": "hook", "kind": "webhook", "url": url, "group_by": ["alertname", "gateway"], "group_wait_secs": 0})).await;
    w.post("/rules", json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0})).await;
    w.post(
        "/rules",
        json!({"name": "Gateway offline", "kind": "gateway_offline", "severity": "critical"}),
    )
    .await;
    let ms = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .timestamp_millis()
    };
    let now = clock.now_ms();
    let s = w.post("/silences", json!({"matchers": [{"name": "gateway", "value": "ps-9"}], "duration_secs": 3600, "comment": "maintenance"})).await;
    assert_eq!(s["active"], true);
    assert_eq!(s["author"], common::ADMIN_EMAIL);
    assert_eq!(
        (ms(&s["starts_at"]), ms(&s["ends_at"])),
        (now, now + 3_600_000)
    );
    // A silence that starts in an hour is listed but not in effect yet.
    let later = w.post("/silences", json!({"matchers": [{"name": "gateway", "value": "ps-9"}], "starts_in_secs": 3600, "duration_secs": 60, "comment": "later"})).await;
    assert_eq!(later["active"], false);
    assert_eq!(
        (ms(&later["starts_at"]), ms(&later["ends_at"])),
        (now + 3_600_000, now + 3_660_000)
    );
    // A silence of no time: 422 naming the field. The old body's absolute
    // end is an unknown field: 400 naming it and the fields to send.
    let wr = &w;
    let refused = |body: Value| async move {
        let r = wr
            .app
            .post(&format!("{}/silences", wr.base), &wr.admin, body)
            .await;
        (r.status.as_u16(), r.body["errors"][0].clone())
    };
    let m = json!([{"name": "gateway", "value": "ps-9"}]);
    let (st, e) = refused(json!({"matchers": m, "duration_secs": 0, "comment": "x"})).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("duration_secs")));
    let (st, e) =
        refused(json!({"matchers": m, "ends_at": "2099-01-01T00:00:00Z", "comment": "x"})).await;
    assert_eq!((st, e["field"].as_str()), (400, Some("ends_at")));
    assert!(
        e["message"].as_str().unwrap().contains("duration_secs"),
        "{e}"
    );

    w.reading("ps-9", "tank-1", "level", 7.0).await;
    w.passes(5).await;
    let a = w.active().await;
    assert_eq!(
        (a.len(), a[0]["state"].as_str(), a[0]["status"].as_str()),
        (1, Some("firing"), Some("silenced"))
    );
    assert_eq!(a[0]["silenced_by"][0], s["id"]);
    assert_eq!(hook.count(), 0, "a silenced alert sends nothing");

    // Inhibition: ps-1 goes offline, then one of its devices alerts.
    let alerts = w.app.running.state.alerts.clone();
    alerts
        .fleet_event(FleetEvent::GatewayOffline {
            project: w.project_id,
            gateway: "ps-1".into(),
        })
        .await;
    until("gateway offline notice", || async { hook.count() == 1 }).await;
    assert_eq!(
        hook.bodies()[0]["alerts"][0]["summary"],
        "gateway ps-1 is offline"
    );
    w.reading("ps-1", "tank-1", "level", 7.0).await;
    w.passes(5).await;
    let a = w.active().await;
    let dev = a
        .iter()
        .find(|x| x["labels"]["gateway"] == "ps-1" && x["labels"]["alertname"] == "Level high")
        .unwrap();
    assert_eq!(dev["status"], "inhibited");
    assert_eq!(hook.count(), 1, "inhibited alert sends nothing");
    // The gateway comes back: the device alert is no longer inhibited and goes out.
    alerts
        .fleet_event(FleetEvent::GatewayOnline {
            project: w.project_id,
            gateway: "ps-1".into(),
        })
        .await;
    until("device alert sent once the gateway is back", || async {
        hook.bodies()
            .iter()
            .any(|b| b["alerts"][0]["labels"]["alertname"] == "Level high")
    })
    .await;
    // Expiring the silence releases the silenced alert.
    let r = w
        .app
        .call(
            reqwest::Method::DELETE,
            &format!("{}/silences/{}", w.base, s["id"].as_str().unwrap()),
            &w.admin,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    until("silenced alert sent after the silence expired", || async {
        hook.bodies().iter().any(|b| {
            b["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["labels"]["gateway"] == "ps-9")
        })
    })
    .await;
    w.stop().await;
}
on_both_databases!(silences, super::silences_and_inhibition);

/// An api restart while an alert fires neither loses it nor notifies it again.
async fn restart_while_firing(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let mut w = world(TestApp::start_with(b, tweak(&clock, None)).await).await;
    w.post("/channels", json!({"name": "hook", "kind": "webhook", "url": url, "group_wait_secs": 0, "group_interval_secs": 60, "repeat_interval_secs": 3600})).await;
    w.post("/rules", json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0, "for_secs": 5})).await;
    w.reading("ps-1", "tank-1", "level", 7.0).await;
    clock.advance(Duration::from_secs(5));
    until("firing notice", || async { hook.count() == 1 }).await;
    let id = w.get("/channels").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    until("delivery logged", || async {
        !w.get(&format!("/channels/{id}/deliveries"))
            .await
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;

    // Restart: stop everything of the first api, start a new one on the same database.
    w.app.running.state.alerts.shutdown();
    w.app.running.task.abort();
    w.app.running.state.db.clone().close().await.ok();
    let mut cfg = common::test_config(&w.app.db.url);
    tweak(&clock, None)(&mut cfg);
    w.app.running = weir_api::start(cfg).await.expect("api restarts");
    w.admin = w.app.admin().await;
    clock.advance(Duration::from_secs(120));
    w.passes(5).await;
    let a = w.active().await;
    assert_eq!(
        (a.len(), a[0]["state"].as_str()),
        (1, Some("firing")),
        "the firing alert survived the restart"
    );
    w.reading("ps-1", "tank-1", "level", 8.0).await;
    w.passes(5).await;
    assert_eq!(hook.count(), 1, "no duplicate notice after the restart");
    assert_eq!(
        w.get("/history").await.as_array().unwrap().len(),
        2,
        "no new transition either"
    );
    // It still resolves normally.
    w.reading("ps-1", "tank-1", "level", 1.0).await;
    until("resolved notice", || async { hook.count() == 2 }).await;
    assert_eq!(hook.bodies()[1]["status"], "resolved");
    w.stop().await;
}
on_both_databases!(restart, super::restart_while_firing);

/// A summary shows the tag's value with the `decimals` and `unit` of its
/// gateway's current config, in the active list and in the notice; a new
/// config version changes how the next transition reads.
async fn summaries_use_the_tags_decimals_and_unit(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let w = world(TestApp::start_with(b, tweak(&clock, None)).await).await;
    let gateways = format!("/api/v1/orgs/{}/projects/north/gateways", w.org);
    let spec = |decimals: u8, unit: &str| {
        json!({"devices": [{"name": "dosing", "adapter": "simulator", "groups": [{"name": "g", "intervalMs": 1000,
            "tags": [{"name": "chlorine", "address": "sim", "dataType": "float64", "decimals": decimals, "unit": unit,
                "signal": {"kind": "sine", "min": 0.0, "max": 1.0}}]}]}]})
    };
    w.app
        .post_ok(
            &gateways,
            &w.admin,
            json!({"name": "cl-1", "spec": spec(2, "mg/L")}),
        )
        .await;
    w.post("/channels", json!({"name": "hook", "kind": "webhook", "url": url, "group_wait_secs": 0, "group_interval_secs": 60})).await;
    w.post(
        "/rules",
        json!({"name": "Chlorine low", "kind": "threshold", "tag": "chlorine", "op": "<", "threshold": 0.2}),
    )
    .await;
    w.reading("cl-1", "dosing", "chlorine", 0.18341134607608112)
        .await;
    clock.advance(Duration::from_secs(1));
    until("firing notice", || async { hook.count() == 1 }).await;
    let shown = "cl-1/dosing/chlorine is 0.18 mg/L (limit 0.20 mg/L)";
    assert_eq!(w.active().await[0]["summary"], shown);
    assert_eq!(w.active().await[0]["value_text"], "0.18 mg/L");
    assert_eq!(w.get("/history").await[0]["value_text"], "0.18 mg/L");
    assert_eq!(hook.bodies()[0]["alerts"][0]["summary"], shown);
    // A tag the config does not format: six significant digits, no unit.
    w.reading("ps-1", "pump-1", "chlorine", 0.18341134607608112)
        .await;
    clock.advance(Duration::from_secs(1));
    until("the second alert", || async { w.active().await.len() == 2 }).await;
    let summaries: Vec<String> = w
        .active()
        .await
        .iter()
        .map(|a| a["summary"].as_str().unwrap().to_string())
        .collect();
    assert!(
        summaries.contains(&"ps-1/pump-1/chlorine is 0.183411 (limit 0.2)".to_string()),
        "{summaries:?}"
    );

    // A new config version: the next transition reads with it.
    let r = w
        .app
        .call(
            reqwest::Method::PATCH,
            &format!("{gateways}/cl-1"),
            &w.admin,
            Some(json!({"spec": spec(3, "ppm"), "comment": "ppm"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut v = 0.5;
    until("the resolution after the new config reads in ppm", || {
        v += 0.001;
        let w = &w;
        let clock = clock.clone();
        async move {
            w.reading("cl-1", "dosing", "chlorine", v).await;
            clock.advance(Duration::from_secs(1));
            w.passes(2).await;
            let h = w.get("/history").await;
            h.as_array().unwrap().iter().any(|e| {
                e["to"] == "resolved"
                    && e["summary"].as_str().is_some_and(|s| {
                        s.starts_with("cl-1/dosing/chlorine is 0.5")
                            && s.ends_with(" ppm (limit 0.200 ppm)")
                    })
            })
        }
    })
    .await;
    w.stop().await;
}
on_both_databases!(tag_formats, super::summaries_use_the_tags_decimals_and_unit);
