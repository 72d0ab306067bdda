//! Alarm acknowledgement and shelving (issue 23) end to end: a real api
//! (SQLite and PostgreSQL), the alerts engine fed readings, a webhook
//! receiver counting notices, and the alert clock under the test's control.

use crate::alerts_support;
use crate::common;

use std::time::Duration;

use alerts_support::{until, uplink, webhook_receiver};
use common::{Backend, Cred, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use weir_api::alerts::Clock;

struct World {
    app: TestApp,
    admin: Cred,
    base: String,
    org: String,
    clock: Clock,
}

async fn world(b: Backend) -> World {
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let c = clock.clone();
    let app = TestApp::start_with(b, move |cfg| {
        cfg.alerts.clock = c;
        cfg.alerts.eval_interval_ms = 20;
        cfg.alerts.retry_base_ms = 20;
    })
    .await;
    let admin = app.admin().await;
    let org = format!("k{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    app.post_ok(
        "/api/v1/orgs",
        &admin,
        json!({"slug": org, "name": "Riverside"}),
    )
    .await;
    for p in ["north", "south"] {
        app.post_ok(
            &format!("/api/v1/orgs/{org}/projects"),
            &admin,
            json!({"slug": p, "name": p}),
        )
        .await;
    }
    alerts_support::gateways(&app, &admin, &org, "north", &["ps-1"]).await;
    World {
        base: format!("/api/v1/orgs/{org}/projects/north/alerts"),
        app,
        admin,
        org,
        clock,
    }
}

impl World {
    async fn post(&self, path: &str, body: Value) -> Value {
        self.app
            .post_ok(&format!("{}{path}", self.base), &self.admin, body)
            .await
    }
    async fn get(&self, path: &str) -> Value {
        self.app
            .get_ok(&format!("{}{path}", self.base), &self.admin)
            .await
    }
    async fn active(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/active{query}"))
            .await
            .as_array()
            .unwrap()
            .clone()
    }
    async fn reading(&self, device: &str, value: f64) {
        let a = &self.app.running.state.alerts;
        a.ingest(
            &self.org,
            "ps-1",
            device,
            uplink(1, a.now_ms(), "level", value),
        )
        .await;
        a.sync().await;
    }
    /// Move the clock and let the worker look at it.
    async fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
        self.app.running.state.alerts.wait_passes(3).await;
    }
    /// A webhook channel (repeat every 10 minutes) and a threshold rule.
    async fn setup(&self, url: &str) -> String {
        self.post(
            "/channels",
            json!({"name": "hook", "kind": "webhook", "url": url,
            "group_by": ["alertname", "device"], "group_wait_secs": 0, "group_interval_secs": 60,
            "repeat_interval_secs": 600}),
        )
        .await;
        let r = self
            .post("/rules", json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}))
            .await;
        r["id"].as_str().unwrap().to_string()
    }
    fn time_in(&self, secs: i64) -> String {
        let ms = self.clock.now_ms() + secs * 1000;
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    }
    async fn audit(&self, action: &str) -> Vec<Value> {
        let r = self
            .app
            .get_ok(
                &format!("/api/v1/orgs/{}/audit?action={action}", self.org),
                &self.admin,
            )
            .await;
        r["items"].as_array().cloned().unwrap_or_default()
    }
    async fn stop(self) {
        self.app.running.state.alerts.shutdown();
        self.app.stop().await;
    }
}

/// (status, device) of each alert in each notice, in arrival order.
fn notices(hook: &alerts_support::Hook) -> Vec<(String, String)> {
    hook.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["status"].as_str().unwrap_or("").to_string(),
                a["labels"]["device"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// An acknowledged alert stays listed, marked with who, when and why; its
/// repeat notices stop, its resolution is still announced, and when it
/// fires again it is a new, unacknowledged alert that notifies.
async fn acknowledged_alert_stops_repeating(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let w = world(b).await;
    let rule = w.setup(&url).await;
    w.reading("tank-1", 7.0).await;
    until("the firing notice", || async { hook.count() == 1 }).await;
    w.advance(600).await;
    until("a repeat notice after 10 minutes", || async {
        hook.count() == 2
    })
    .await;

    let ack = w
        .post(
            "/acknowledgements",
            json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "crew on the way"}),
        )
        .await;
    assert_eq!(ack["by"], common::ADMIN_EMAIL);
    assert!(ack["shelve_until"].is_null());
    let a = w.active("").await;
    assert_eq!(a.len(), 1, "an acknowledged alert stays in the list");
    assert_eq!(a[0]["status"], "acknowledged");
    assert_eq!(a[0]["acknowledgement"]["by"], common::ADMIN_EMAIL);
    assert_eq!(a[0]["acknowledgement"]["comment"], "crew on the way");
    assert!(a[0]["acknowledgement"]["at"].is_string());
    for _ in 0..3 {
        w.advance(600).await;
    }
    assert_eq!(hook.count(), 2, "no repeat notice once acknowledged");

    w.reading("tank-1", 1.0).await;
    w.advance(60).await;
    until("the resolved notice", || async { hook.count() == 3 }).await;
    assert_eq!(notices(&hook)[2], ("resolved".into(), "tank-1".into()));

    // It fires again later: a new alert, not acknowledged, announced.
    w.advance(60).await;
    w.reading("tank-1", 8.0).await;
    let a = w.active("").await;
    assert_eq!(
        (a[0]["status"].as_str(), a[0]["acknowledgement"].is_null()),
        (Some("active"), true)
    );
    w.advance(60).await;
    until("the new alert's notice", || async { hook.count() == 4 }).await;
    assert_eq!(notices(&hook)[3], ("firing".into(), "tank-1".into()));

    let h = w.get("/history").await;
    let acked: Vec<&Value> = h
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "acknowledged")
        .collect();
    assert_eq!(acked.len(), 1, "{h}");
    assert_eq!(
        (
            acked[0]["by"].as_str(),
            acked[0]["comment"].as_str(),
            acked[0]["to"].as_str()
        ),
        (
            Some(common::ADMIN_EMAIL),
            Some("crew on the way"),
            Some("firing")
        )
    );
    assert!(h
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "transition" && e["to"] == "resolved"));
    let audit = w.audit("alert.acknowledge").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let d = &audit[0]["details"];
    assert_eq!(
        (
            d["series"].as_str(),
            d["comment"].as_str(),
            d["rule_id"].as_str()
        ),
        (
            Some("ps-1/tank-1/level"),
            Some("crew on the way"),
            Some(rule.as_str())
        )
    );
    w.stop().await;
}
on_both_databases!(acknowledge, super::acknowledged_alert_stops_repeating);

/// A shelved alert leaves the default active list (listed with
/// `include_shelved=true`), sends nothing while shelved, and once the shelve
/// ends it is back and notifies again; other alerts go on as before.
async fn shelved_alert_is_hidden_and_silent(b: Backend) {
    let (hook, url) = webhook_receiver(0).await;
    let w = world(b).await;
    let rule = w.setup(&url).await;
    w.reading("tank-1", 7.0).await;
    w.reading("tank-2", 7.0).await;
    until("both firing notices", || async {
        notices(&hook).len() == 2
    })
    .await;

    let until_t = w.time_in(2 * 3600);
    let s = w
        .post(
            "/acknowledgements",
            json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "sensor being replaced", "shelve_until": until_t}),
        )
        .await;
    let ms = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(ms(&s["shelve_until"]), ms(&json!(until_t)));
    let a = w.active("").await;
    assert_eq!(a.len(), 1, "the shelved alert is hidden: {a:?}");
    assert_eq!(a[0]["labels"]["device"], "tank-2");
    let all = w.active("?include_shelved=true").await;
    let shelved: Vec<&Value> = all.iter().filter(|x| x["status"] == "shelved").collect();
    assert_eq!(shelved.len(), 1, "{all:?}");
    assert_eq!(shelved[0]["labels"]["device"], "tank-1");
    assert_eq!(
        shelved[0]["acknowledgement"]["comment"],
        "sensor being replaced"
    );

    // An hour on: tank-2 repeats, the shelved tank-1 says nothing.
    w.advance(600).await;
    until("tank-2 repeats", || async {
        notices(&hook)[2..].iter().any(|(_, d)| d == "tank-2")
    })
    .await;
    for _ in 0..5 {
        w.advance(600).await;
    }
    let n = notices(&hook);
    assert!(
        n[2..].iter().all(|(_, d)| d == "tank-2"),
        "nothing about the shelved alert: {n:?}"
    );
    // The shelve ends (two hours after it began): tank-1 is back and notifies.
    w.advance(3600).await;
    until(
        "the shelved alert notifies again after its time",
        || async {
            notices(&hook)[2..]
                .iter()
                .any(|(s, d)| s == "firing" && d == "tank-1")
        },
    )
    .await;
    let a = w.active("").await;
    assert_eq!(a.len(), 2, "back in the default list: {a:?}");
    assert!(a.iter().all(|x| x["status"] == "active"), "{a:?}");

    let h = w.get("/history").await;
    let e = h
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "shelved")
        .expect("the shelve is in the history");
    assert_eq!(ms(&e["shelve_until"]), ms(&json!(until_t)));
    assert_eq!(e["comment"], "sensor being replaced");
    let audit = w.audit("alert.shelve").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        ms(&audit[0]["details"]["shelve_until"]),
        ms(&json!(until_t))
    );
    assert_eq!(audit[0]["details"]["series"], "ps-1/tank-1/level");
    w.stop().await;
}
on_both_databases!(shelve, super::shelved_alert_is_hidden_and_silent);

/// Who may (an operator does; a viewer 403, another organization or
/// project 404), and bad input answered naming the field.
async fn refusals_name_the_field(b: Backend) {
    let w = world(b).await;
    let rule = w.setup("http://127.0.0.1:9/hook").await;
    w.reading("tank-1", 7.0).await;
    let path = format!("{}/acknowledgements", w.base);
    let good = json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "seen"});
    let call = |cred: Cred, body: Value| {
        let (app, path) = (&w.app, path.clone());
        async move {
            let r = app.call(Method::POST, &path, &cred, Some(body)).await;
            (r.status.as_u16(), r.body)
        }
    };

    let (_, viewer) = w.app.user(&w.admin, "viewer@ack.test").await;
    let (_, south) = w.app.user(&w.admin, "south@ack.test").await;
    let (_, stranger) = w.app.user(&w.admin, "stranger@ack.test").await;
    let (_, operator) = w.app.user(&w.admin, "operator@ack.test").await;
    let members = |p: &str| format!("/api/v1/orgs/{}/projects/{p}/members", w.org);
    w.app
        .post_ok(
            &members("north"),
            &w.admin,
            json!({"email": "viewer@ack.test", "role": "project-viewer"}),
        )
        .await;
    w.app
        .post_ok(
            &members("south"),
            &w.admin,
            json!({"email": "south@ack.test", "role": "project-editor"}),
        )
        .await;
    w.app
        .post_ok(
            &members("north"),
            &w.admin,
            json!({"email": "operator@ack.test", "role": "project-operator"}),
        )
        .await;
    w.app
        .post_ok("/api/v1/orgs", &w.admin, json!({"slug": format!("{}-x", w.org), "name": "X", "owner_email": "stranger@ack.test"}))
        .await;
    assert_eq!(call(viewer, good.clone()).await.0, 403, "a viewer may not");
    assert_eq!(
        call(south, good.clone()).await.0,
        404,
        "another project's editor"
    );
    assert_eq!(
        call(stranger, good.clone()).await.0,
        404,
        "another organization's owner"
    );
    assert_eq!(call(Cred::None, good.clone()).await.0, 401);

    let admin = || w.admin.clone();
    let field = |b: &Value| b["errors"][0]["field"].as_str().unwrap_or("").to_string();
    let unknown = uuid::Uuid::new_v4();
    let (st, b) = call(
        admin(),
        json!({"rule_id": unknown, "series": "ps-1/tank-1/level", "comment": "x"}),
    )
    .await;
    assert_eq!(st, 404);
    assert!(
        b["detail"].as_str().unwrap().contains(&unknown.to_string()),
        "{b}"
    );
    let (st, b) = call(
        admin(),
        json!({"rule_id": rule, "series": "ps-1/tank-9/level", "comment": "x"}),
    )
    .await;
    assert_eq!((st, field(&b).as_str()), (409, "series"), "{b}");
    assert!(b["type"].as_str().unwrap().ends_with("/not-active"), "{b}");
    for (until_t, why) in [(w.time_in(-60), "past"), (w.time_in(31 * 86400), "too far")] {
        let (st, b) = call(admin(), json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "x", "shelve_until": until_t})).await;
        assert_eq!(
            (st, field(&b).as_str()),
            (422, "shelve_until"),
            "{why}: {b}"
        );
    }
    let (st, b) = call(admin(), json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "x", "shelve_until": "tomorrow"})).await;
    assert_eq!((st, field(&b).as_str()), (400, "shelve_until"), "{b}");
    let (st, b) = call(
        admin(),
        json!({"rule_id": rule, "series": "ps-1/tank-1/level"}),
    )
    .await;
    assert_eq!((st, field(&b).as_str()), (400, "comment"), "{b}");
    let (st, b) = call(
        admin(),
        json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "  "}),
    )
    .await;
    assert_eq!((st, field(&b).as_str()), (422, "comment"), "{b}");
    let (st, b) = call(
        admin(),
        json!({"rule_id": rule, "series": "ps-1/tank-1/level", "comment": "x", "until": 5}),
    )
    .await;
    assert_eq!((st, field(&b).as_str()), (400, "until"), "{b}");
    // A rule of another project of the organization is not found either.
    let south_rule = w
        .app
        .post_ok(
            &format!("/api/v1/orgs/{}/projects/south/alerts/rules", w.org),
            &w.admin,
            json!({"name": "South", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}),
        )
        .await["id"]
        .clone();
    let (st, _) = call(
        admin(),
        json!({"rule_id": south_rule, "series": "ps-1/tank-1/level", "comment": "x"}),
    )
    .await;
    assert_eq!(st, 404);
    // Refusals change nothing.
    assert!(w.audit("alert.acknowledge").await.is_empty());
    assert!(w.audit("alert.shelve").await.is_empty());
    // A project operator may.
    let (st, b) = call(operator, good).await;
    assert_eq!(
        (st, b["by"].as_str()),
        (201, Some("operator@ack.test")),
        "{b}"
    );
    w.stop().await;
}
on_both_databases!(refusals, super::refusals_name_the_field);
