//! Projects are walls (DESIGN.md, "Control plane"): nothing of project Q is
//! reachable from a role in project P of the same organization, as data
//! flows, not only status codes.
//!
//! - Readings of Q's gateway, published to a real Mosquitto, never reach
//!   P's rules (with or without a gateway filter; threshold, rate, absence,
//!   device down): nothing in P's active alerts, history or webhook, while
//!   Q's own rule fires on the same readings.
//! - A rule of P naming Q's gateway is refused (422, field `gateway`), in
//!   the same words as a gateway that exists nowhere.
//! - Every route under `/projects/{project}` (from the OpenAPI document),
//!   called by P's project roles, as sessions and as API tokens: on Q's
//!   paths, and on P's paths naming Q's rule, channel, silence, gateway,
//!   cluster, template, token, member...: the same answer as for a name
//!   that exists nowhere, no Q data in it, and Q unchanged afterwards. Q's
//!   series are not readable through P's path.

use crate::alerts_support;
use crate::common;

use std::time::Duration;

use alerts_support::{gateways, until, uplink, webhook_receiver};
use common::{Backend, Cred, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use weir_api::alerts::Clock;
use weir_crds::message::{ErrorCode, Frame, UplinkMessage};
use weir_testkit::Mosquitto;

fn org_slug() -> String {
    format!("w{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Org with projects `p` (gateway `gp`) and `q` (gateway `gq`).
async fn two_projects(app: &TestApp, admin: &Cred) -> String {
    let org = org_slug();
    app.post_ok("/api/v1/orgs", admin, json!({"slug": org, "name": org}))
        .await;
    for p in ["p", "q"] {
        app.post_ok(
            &format!("/api/v1/orgs/{org}/projects"),
            admin,
            json!({"slug": p, "name": p.to_uppercase()}),
        )
        .await;
    }
    gateways(app, admin, &org, "p", &["gp"]).await;
    gateways(app, admin, &org, "q", &["gq"]).await;
    org
}

/// A project role in `p` for `email`, and a project API token of that role.
async fn member_and_token(
    app: &TestApp,
    admin: &Cred,
    org: &str,
    role: &str,
) -> (String, Cred, Cred) {
    let email = format!("{role}-{}@walls.test", &org[1..]);
    let (_, session) = app.user(admin, &email).await;
    let pbase = format!("/api/v1/orgs/{org}/projects/p");
    app.post_ok(
        &format!("{pbase}/members"),
        admin,
        json!({"email": email, "role": role}),
    )
    .await;
    let t = app
        .post_ok(
            &format!("{pbase}/tokens"),
            admin,
            json!({"name": format!("{role} automation"), "role": role}),
        )
        .await;
    let token = Cred::Bearer(t["token"].as_str().unwrap().to_string());
    (email, session, token)
}

// ------------------------------------------------------- readings and rules

fn frame_down(seq: u64, ts: i64) -> UplinkMessage {
    UplinkMessage {
        frames: vec![Frame {
            seq,
            timestamp: ts,
            values: Default::default(),
            errors: [("level".to_string(), ErrorCode::Timeout as i32)]
                .into_iter()
                .collect(),
        }],
    }
}

/// An org with projects P and Q, alert rules in both, a webhook for P,
/// and a publisher on the Mosquitto the api reads.
struct Flow {
    app: TestApp,
    admin: Cred,
    org: String,
    clock: Clock,
    client: rumqttc::AsyncClient,
    hook: std::sync::Arc<alerts_support::Hook>,
    /// `.../projects/p/alerts` and `.../projects/q/alerts`.
    pa: String,
    qa: String,
    q_rule: String,
    _mosq: Mosquitto,
}

impl Flow {
    async fn start(b: Backend) -> Flow {
        let mosq = Mosquitto::start().await;
        let port = mosq.port;
        let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
        let c2 = clock.clone();
        let app = TestApp::start_with(b, move |c| {
            c.alerts.clock = c2;
            c.alerts.eval_interval_ms = 20;
            c.alerts.mqtt_url = Some(format!("mqtt://127.0.0.1:{port}"));
        })
        .await;
        let admin = app.admin().await;
        let org = two_projects(&app, &admin).await;
        let (hook, url) = webhook_receiver(0).await;
        let pa = format!("/api/v1/orgs/{org}/projects/p/alerts");
        let qa = format!("/api/v1/orgs/{org}/projects/q/alerts");
        app.post_ok(
            &format!("{pa}/channels"),
            &admin,
            json!({"name": "p hook", "kind": "webhook", "url": url, "group_wait_secs": 0}),
        )
        .await;
        // P's rules name no gateway: before the walls, they saw every project's.
        for body in [
            json!({"name": "P level", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}),
            json!({"name": "P jump", "kind": "rate", "tag": "level", "max_rate_per_sec": 1.0}),
            json!({"name": "P quiet", "kind": "absence", "tag": "level", "absent_secs": 30}),
            json!({"name": "P device", "kind": "device_down"}),
        ] {
            app.post_ok(&format!("{pa}/rules"), &admin, body).await;
        }
        let q_rule = app
            .post_ok(
                &format!("{qa}/rules"),
                &admin,
                json!({"name": "Q level", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}),
            )
            .await;
        let opts = rumqttc::MqttOptions::new("walls-publisher", "127.0.0.1", port);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 64);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        Flow {
            app,
            admin,
            org,
            clock,
            client,
            hook,
            pa,
            qa,
            q_rule: q_rule["id"].as_str().unwrap().to_string(),
            _mosq: mosq,
        }
    }

    async fn publish(&self, gw: &str, msg: UplinkMessage) {
        let topic = weir_crds::message::topic("weir", &self.org, gw, "tank-1", "fast");
        let body = serde_json::to_vec(&msg).unwrap();
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
    }

    async fn list(&self, base: &str, what: &str, cred: &Cred) -> Vec<Value> {
        let v = self.app.get_ok(&format!("{base}/{what}"), cred).await;
        v.as_array().unwrap().clone()
    }

    /// Publish `value` from `gw` until `done` holds (the first publishes
    /// may precede the api's subscription).
    async fn publish_until<F, Fut>(&self, what: &str, gw: &str, value: f64, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut seq = 0;
        until(what, || {
            seq += 1;
            let p = self.publish(gw, uplink(seq, self.clock.now_ms(), "level", value));
            let d = done();
            async move {
                p.await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                d.await
            }
        })
        .await;
    }

    /// Q's gateway sends a value over the limit, a jump and a device timing
    /// out, then falls silent: Q's rule fires, and P (its rules, history,
    /// webhook; for P's members and tokens) hears nothing of it.
    async fn q_readings_stay_in_q(&self, readers: &[(&str, &Cred)]) {
        self.publish_until("Q's rule fires on Q's readings", "gq", 7.0, || async {
            !self.list(&self.qa, "active", &self.admin).await.is_empty()
        })
        .await;
        self.clock.advance(Duration::from_secs(1));
        let alerts = &self.app.running.state.alerts;
        let before = alerts.processed();
        self.publish("gq", uplink(1000, self.clock.now_ms(), "level", 70.0))
            .await;
        self.publish("gq", frame_down(1001, self.clock.now_ms()))
            .await;
        until("the last readings were processed", || async {
            alerts.processed() >= before + 2
        })
        .await;
        alerts.sync().await;
        self.clock.advance(Duration::from_secs(60));
        alerts.wait_passes(5).await;
        let (pa, q_rule) = (&self.pa, &self.q_rule);
        for (who, cred) in readers {
            let a = self.list(pa, "active", cred).await;
            assert!(
                a.is_empty(),
                "{who} sees alerts of Q's readings in P: {a:?}"
            );
            let h = self.list(pa, "history", cred).await;
            assert!(
                h.is_empty(),
                "{who} sees Q's readings in P's history: {h:?}"
            );
            let h = self.list(pa, &format!("history?rule={q_rule}"), cred).await;
            assert!(h.is_empty(), "{who} reads Q's rule's history through P");
        }
        let h = self.list(&self.qa, "history", &self.admin).await;
        assert!(!h.is_empty(), "Q's own history has it");
        let hook = &self.hook;
        assert_eq!(hook.count(), 0, "P's channel was told: {:?}", hook.bodies());
    }

    /// P's rules work: P's own gateway fires them, and only it is in P's history.
    async fn p_readings_reach_p(&self, reader: &Cred) {
        self.publish("gp", uplink(2000, self.clock.now_ms(), "level", 9.0))
            .await;
        until("P's rule fires on P's gateway", || async {
            self.hook.has("firing", "P level")
        })
        .await;
        let h = self.list(&self.pa, "history", reader).await;
        let series: Vec<&str> = h.iter().map(|e| e["series"].as_str().unwrap()).collect();
        assert!(
            series.iter().all(|s| s.starts_with("gp/")),
            "P's history: {series:?}"
        );
    }

    /// Q's gateway is deleted and its name made again in P: its readings
    /// follow it to P's rules, and Q's rules no longer see them.
    async fn a_moved_gateway_takes_its_readings_along(&self) {
        let (app, org) = (&self.app, &self.org);
        let path = format!("/api/v1/orgs/{org}/projects/q/gateways/gq");
        let r = app
            .call(reqwest::Method::DELETE, &path, &self.admin, None)
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        gateways(app, &self.admin, org, "p", &["gq"]).await;
        let in_p = |v: Vec<Value>, state: &str| {
            v.iter().any(|e| {
                e["series"] == "gq/tank-1/level" && e["rule_name"] == "P level" && e["to"] == state
            })
        };
        let fired = || async { in_p(self.list(&self.pa, "history", &self.admin).await, "firing") };
        self.publish_until(
            "the moved gateway's readings fire P's rule",
            "gq",
            8.0,
            fired,
        )
        .await;
        self.publish("gq", uplink(4000, self.clock.now_ms(), "level", 1.0))
            .await;
        until("P's alert on the moved gateway resolves", || async {
            in_p(
                self.list(&self.pa, "history", &self.admin).await,
                "resolved",
            )
        })
        .await;
        let q = self.list(&self.qa, "active", &self.admin).await;
        assert!(
            q.iter()
                .any(|a| a["series"] == "gq/tank-1/level" && a["state"] == "firing"),
            "the reading that resolved P's alert reached Q's rule: {q:?}"
        );
    }
}

/// Readings of Q's gateway, over MQTT, reach Q's rule and none of P's.
async fn readings_of_a_sibling_project_reach_none_of_its_rules(b: Backend) {
    let f = Flow::start(b).await;
    let (_, viewer, token) = member_and_token(&f.app, &f.admin, &f.org, "project-viewer").await;
    let readers = [
        ("admin", &f.admin),
        ("P's viewer", &viewer),
        ("P's token", &token),
    ];
    f.q_readings_stay_in_q(&readers).await;
    f.p_readings_reach_p(&token).await;
    f.a_moved_gateway_takes_its_readings_along().await;
    f.app.running.state.alerts.shutdown();
    f.app.stop().await;
}
on_both_databases!(
    readings_of_a_sibling_project,
    super::readings_of_a_sibling_project_reach_none_of_its_rules
);

/// A rule of P may name only P's gateways, at create and at update; Q's
/// gateway gets the same answer as one that exists nowhere.
async fn a_rule_naming_a_sibling_projects_gateway_is_refused(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let org = two_projects(&app, &admin).await;
    let (_, editor, token) = member_and_token(&app, &admin, &org, "project-editor").await;
    let rules = format!("/api/v1/orgs/{org}/projects/p/alerts/rules");
    let body = |gw: &str| json!({"name": "Level high", "kind": "threshold", "gateway": gw, "tag": "level", "op": ">", "threshold": 5.0});
    for cred in [&editor, &token] {
        let r = app.post(&rules, cred, body("gq")).await;
        assert_eq!(r.status, 422, "rule naming Q's gateway: {:?}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "gateway", "{:?}", r.body);
        assert_eq!(
            r.body["errors"][0]["message"], "no gateway named gq in this project",
            "{:?}",
            r.body
        );
        let nowhere = app.post(&rules, cred, body("gx")).await;
        assert_eq!(nowhere.status, 422);
        assert_eq!(
            nowhere.body["errors"][0]["message"],
            "no gateway named gx in this project"
        );
    }
    let ok = app.post_ok(&rules, &editor, body("gp")).await;
    let id = ok["id"].as_str().unwrap();
    let r = app
        .call(
            Method::PUT,
            &format!("{rules}/{id}"),
            &token,
            Some(body("gq")),
        )
        .await;
    assert_eq!(r.status, 422, "update naming Q's gateway: {:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "gateway");
    let kept = app.get_ok(&format!("{rules}/{id}"), &editor).await;
    assert_eq!(kept["gateway"], "gp", "the refused update changed nothing");
    let listed = app.get_ok(&rules, &editor).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    app.stop().await;
}
on_both_databases!(
    rule_naming_a_sibling_gateway,
    super::a_rule_naming_a_sibling_projects_gateway_is_refused
);
