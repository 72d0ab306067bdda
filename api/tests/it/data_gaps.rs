//! Data gaps (issue 20) from a real historian database: rows of
//! `reading_gaps` become `data_gap` fleet events once (also for a second
//! replica or after a restart, both fresh processes on the same database),
//! a `data_gap` rule's webhook gets the gateway and the lost range, another
//! organization with a gateway of the same name never sees it, the alert
//! resolves on its own, and `/series` answers the gaps of its window;
//! `GET …/data-gaps` lists the gaps being replayed now and the latest recorded.

use crate::alerts_support;
use crate::common;
use crate::fleet_support;
use crate::historian_support;

use std::time::Duration;

use alerts_support::{until, webhook_receiver, Hook};
use chrono::{DateTime, Utc};
use common::{Backend, Cred, TestApp};
use historian_support::{HistorianDb, Reading};
use sea_orm::sqlx::{self, Executor};
use serde_json::{json, Value};
use weir_api::alerts::Clock;
use weir_api::fleet::data_gaps::poll_once;
use weir_crds::historian::READING_GAPS_DDL;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::seconds(secs)
}

fn config(clock: &Clock, historian: &str, poll_ms: u64) -> impl FnOnce(&mut weir_api::Config) {
    let clock = clock.clone();
    let historian = historian.to_string();
    move |c| {
        c.fleet.kube_fleet = weir_api::fleet::KubeFleet::Off;
        c.fleet.master_key = Some(fleet_support::TEST_MASTER_KEY.to_string());
        c.fleet.historian_url = Some(historian);
        c.fleet.data_gap_poll_ms = poll_ms;
        c.alerts.clock = clock;
        c.alerts.eval_interval_ms = 20;
        c.alerts.retry_base_ms = 20;
        c.alerts.send_timeout_ms = 5_000;
        c.alerts.rebalance_interval_ms = 100;
        c.alerts.mqtt_url = None;
    }
}

async fn historian() -> HistorianDb {
    let h = HistorianDb::new().await;
    h.pool.execute(READING_GAPS_DDL).await.expect("gaps table");
    h
}

/// A row of `reading_gaps`, as weir-historian writes it.
async fn add_gap(h: &HistorianDb, tenant: &str, gateway: &str, seqs: (i64, i64), ts: (i64, i64)) {
    sqlx::query(
        "INSERT INTO reading_gaps (tenant, gateway, seq_from, seq_to, ts_from, ts_to, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, 'not-retained')",
    )
    .bind(tenant)
    .bind(gateway)
    .bind(seqs.0)
    .bind(seqs.1)
    .bind(at(ts.0))
    .bind(at(ts.1))
    .execute(&h.pool)
    .await
    .expect("insert gap");
}

/// Organization `org`, project `north`, gateway `ps-1`, a webhook channel
/// and a `data_gap` rule.
async fn org_with_rule(app: &TestApp, admin: &Cred, org: &str, hook: &str) -> String {
    fleet_support::setup_org(app, admin, org, "north").await;
    alerts_support::gateways(app, admin, org, "north", &["ps-1"]).await;
    let base = format!("/api/v1/orgs/{org}/projects/north");
    app.post_ok(
        &format!("{base}/alerts/channels"),
        admin,
        json!({"name": "on call", "kind": "webhook", "url": hook,
               "group_by": ["alertname", "gateway", "seq_from"], "group_wait_secs": 0,
               "group_interval_secs": 1, "repeat_interval_secs": 3600}),
    )
    .await;
    app.post_ok(
        &format!("{base}/alerts/rules"),
        admin,
        json!({"name": "Readings lost", "kind": "data_gap", "severity": "critical"}),
    )
    .await;
    base
}

async fn gap_events(app: &TestApp, admin: &Cred, base: &str) -> Vec<Value> {
    let v = app
        .get_ok(&format!("{base}/fleet-events?kind=data_gap"), admin)
        .await;
    v.as_array().unwrap().clone()
}

/// (status, gateway, seq_from, seq_to, reason) of every alert notified.
fn gap_notices(h: &Hook) -> Vec<(String, String, String, String, String)> {
    let mut out = vec![];
    for b in h.bodies() {
        for a in b["alerts"].as_array().cloned().unwrap_or_default() {
            let l = &a["labels"];
            let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
            out.push((
                a["status"].as_str().unwrap_or("").to_string(),
                s("gateway"),
                s("seq_from"),
                s("seq_to"),
                s("reason"),
            ));
        }
    }
    out
}

fn notice(status: &str, from: &str, to: &str) -> (String, String, String, String, String) {
    (
        status.into(),
        "ps-1".into(),
        from.into(),
        to.into(),
        "not-retained".into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_a_fleet_event_once_and_alerts_its_own_org() {
    let hist = historian().await;
    let clock = Clock::manual(Utc::now().timestamp_millis());
    let app = TestApp::start_with(Backend::Postgres, config(&clock, &hist.url, 100)).await;
    let admin = app.admin().await;
    let (hook, url) = webhook_receiver(0).await;
    let (other_hook, other_url) = webhook_receiver(0).await;
    let river = org_with_rule(&app, &admin, "riverside", &url).await;
    // Another organization with a gateway of the same name and its own rule.
    let lake = org_with_rule(&app, &admin, "lakeside", &other_url).await;

    add_gap(&hist, "riverside", "ps-1", (100, 149), (10, 25)).await;
    // Unknown tenant and unknown gateway: skipped.
    add_gap(&hist, "nobody", "ps-1", (1, 5), (10, 25)).await;
    add_gap(&hist, "riverside", "ps-404", (1, 5), (10, 25)).await;

    until("the data_gap fleet event", || async {
        gap_events(&app, &admin, &river).await.len() == 1
    })
    .await;
    let ev = &gap_events(&app, &admin, &river).await[0];
    assert_eq!(ev["kind"], "data_gap");
    assert_eq!(ev["gateway"], "ps-1");
    assert_eq!(ev["gap"]["seq_from"], 100);
    assert_eq!(ev["gap"]["seq_to"], 149);
    assert_eq!(ev["gap"]["reason"], "not-retained");
    assert_eq!(
        ev["gap"]["ts_from"]
            .as_str()
            .map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(at(10))
    );
    assert_eq!(
        ev["gap"]["ts_to"]
            .as_str()
            .map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(at(25))
    );
    until("the webhook hears of the gap", || async {
        gap_notices(&hook).contains(&notice("firing", "100", "149"))
    })
    .await;
    let body = hook.bodies()[0].clone();
    assert!(
        body.to_string().contains("seq 100..149"),
        "the default summary names the range: {body}"
    );

    // A second replica and a restarted api are fresh processes on the same
    // database: neither records the gap again.
    let other = app.replica(config(&clock, &hist.url, 0)).await;
    assert_eq!(poll_once(&other.running.state).await.unwrap(), vec![]);
    assert_eq!(poll_once(&app.running.state).await.unwrap(), vec![]);

    // A new gap with both replicas polling at once: recorded once.
    add_gap(&hist, "riverside", "ps-1", (200, 260), (40, 47)).await;
    let (a, b) = tokio::join!(
        poll_once(&other.running.state),
        poll_once(&app.running.state)
    );
    // The background poller of the first replica may have taken it already.
    assert!(a.unwrap().len() + b.unwrap().len() <= 1);
    until("the second gap", || async {
        gap_events(&app, &admin, &river).await.len() == 2
    })
    .await;
    until("the webhook hears of the second gap", || async {
        gap_notices(&hook).contains(&notice("firing", "200", "260"))
    })
    .await;

    // The other organization saw none of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gap_events(&app, &admin, &lake).await, Vec::<Value>::new());
    assert_eq!(other_hook.count(), 0, "{:?}", other_hook.bodies());
    let firing: Vec<_> = gap_notices(&hook)
        .into_iter()
        .filter(|n| n.0 == "firing")
        .collect();
    assert_eq!(
        firing,
        vec![
            notice("firing", "100", "149"),
            notice("firing", "200", "260")
        ],
        "one notice per gap"
    );

    // Nothing to wait for: the alerts resolve on their own after 10 minutes.
    clock.advance(Duration::from_secs(601));
    until("the gap alerts resolve", || async {
        let n = gap_notices(&hook);
        n.contains(&notice("resolved", "100", "149"))
            && n.contains(&notice("resolved", "200", "260"))
    })
    .await;

    other.running.task.abort();
    app.running.state.alerts.shutdown();
    app.stop().await;
    hist.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_gap_rule_fires_at_once() {
    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.admin().await;
    fleet_support::setup_org(&app, &admin, "riverside", "north").await;
    let r = app
        .post(
            "/api/v1/orgs/riverside/projects/north/alerts/rules",
            &admin,
            json!({"name": "Lost", "kind": "data_gap", "for_secs": 60}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "for_secs", "{:?}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_answers_the_gaps_of_its_window() {
    let hist = historian().await;
    let url = hist.url.clone();
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.fleet.historian_url = Some(url);
        c.fleet.data_gap_poll_ms = 0;
    })
    .await;
    let admin = app.admin().await;
    fleet_support::setup_org(&app, &admin, "riverside", "north").await;
    alerts_support::gateways(&app, &admin, "riverside", "north", &["ps-1"]).await;
    let rows: Vec<Reading> = [(0, 1), (5, 2), (30, 40), (35, 41)]
        .iter()
        .map(|(s, q)| Reading::new("riverside", "ps-1", "pump-1", "level", at(*s), 1.0, *q))
        .collect();
    hist.insert(&rows).await;
    add_gap(&hist, "riverside", "ps-1", (3, 39), (5, 30)).await;
    // Outside the window, and another tenant's gap in it.
    add_gap(&hist, "riverside", "ps-1", (900, 950), (7200, 7300)).await;
    add_gap(&hist, "lakeside", "ps-1", (3, 39), (5, 30)).await;

    let s = app
        .get_ok(
            "/api/v1/orgs/riverside/projects/north/gateways/ps-1/series?tag=level\
             &from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z&step=5s&mode=buckets",
            &admin,
        )
        .await;
    let gaps = s["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{s}");
    assert_eq!(gaps[0]["seq_from"], 3);
    assert_eq!(gaps[0]["seq_to"], 39);
    assert_eq!(gaps[0]["reason"], "not-retained");
    assert_eq!(
        gaps[0]["ts_from"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        at(5)
    );
    assert_eq!(s["series"][0]["points"].as_array().unwrap().len(), 4);
    app.stop().await;
    hist.drop_db().await;
}

/// The historian's `seq_holes` table (weir-historian schema v2,
/// historian/src/schema.rs; its columns are the contract
/// `weir_crds::historian::OPEN_GAPS_SQL` reads).
const SEQ_HOLES_DDL: &str = r#"CREATE TABLE IF NOT EXISTS seq_holes (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    seq_from bigint NOT NULL, seq_to bigint NOT NULL,
    ts_before_ms bigint, ts_after_ms bigint, first_seen_ms bigint NOT NULL,
    requests integer NOT NULL, first_request_ms bigint, last_request_ms bigint,
    PRIMARY KEY (tenant, gateway, seq_from))"#;

/// A hole the historian tracks: first seen at `at(seen)`, `requests`
/// replay requests sent, the last at `at(last)`.
async fn add_hole(
    h: &HistorianDb,
    tenant: &str,
    gateway: &str,
    seqs: (i64, i64),
    seen: i64,
    requests: i32,
    last: Option<i64>,
) {
    let ms = |s: i64| at(s).timestamp_millis();
    sqlx::query(
        "INSERT INTO seq_holes (tenant, gateway, seq_from, seq_to, first_seen_ms, requests, \
         first_request_ms, last_request_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(tenant)
    .bind(gateway)
    .bind(seqs.0)
    .bind(seqs.1)
    .bind(ms(seen))
    .bind(requests)
    .bind(last.map(ms))
    .execute(&h.pool)
    .await
    .expect("insert hole");
}

/// A `reading_gaps` row detected at `at(detected)`.
async fn add_recorded(
    h: &HistorianDb,
    gateway: &str,
    seqs: (i64, i64),
    detected: i64,
    reason: &str,
) {
    sqlx::query(
        "INSERT INTO reading_gaps (tenant, gateway, seq_from, seq_to, ts_from, detected_at, reason) \
         VALUES ('riverside', $1, $2, $3, $4, $5, $6)",
    )
    .bind(gateway)
    .bind(seqs.0)
    .bind(seqs.1)
    .bind(at(detected - 30))
    .bind(at(detected))
    .bind(reason)
    .execute(&h.pool)
    .await
    .expect("insert gap");
}

fn gaps_path(org: &str, gw: &str) -> String {
    format!("/api/v1/orgs/{org}/projects/north/gateways/{gw}/data-gaps")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_status_shows_open_and_recorded_gaps() {
    let hist = historian().await;
    hist.pool.execute(SEQ_HOLES_DDL).await.expect("holes table");
    let url = hist.url.clone();
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.fleet.historian_url = Some(url);
        c.fleet.data_gap_poll_ms = 0;
    })
    .await;
    let admin = app.admin().await;
    for org in ["riverside", "lakeside"] {
        fleet_support::setup_org(&app, &admin, org, "north").await;
        alerts_support::gateways(&app, &admin, org, "north", &["ps-1", "ps-3"]).await;
    }

    // Nothing missing yet.
    let v = app.get_ok(&gaps_path("riverside", "ps-1"), &admin).await;
    assert_eq!(v, json!({"historian": true, "open": [], "recorded": []}));

    // Being replayed (requests sent), and one still within the historian's
    // grace period (no request yet: not a gap).
    add_hole(&hist, "riverside", "ps-1", (500, 519), 100, 3, Some(160)).await;
    add_hole(&hist, "riverside", "ps-1", (300, 300), 90, 1, Some(95)).await;
    add_hole(&hist, "riverside", "ps-1", (600, 610), 170, 0, None).await;
    // Another organization's gateway of the same name, and another gateway.
    add_hole(&hist, "lakeside", "ps-1", (700, 799), 100, 2, Some(150)).await;
    add_hole(&hist, "riverside", "ps-2", (800, 899), 100, 2, Some(150)).await;
    for (seqs, detected) in [((10, 19), 10), ((40, 49), 40), ((20, 29), 20)] {
        add_recorded(&hist, "ps-1", seqs, detected, "not-retained").await;
    }
    add_recorded(&hist, "ps-2", (1, 2), 50, "agent-unreachable").await;
    for i in 0..25 {
        add_recorded(&hist, "ps-3", (i * 10, i * 10 + 1), 100 + i, "not-retained").await;
    }
    sqlx::query(
        "INSERT INTO reading_gaps (tenant, gateway, seq_from, seq_to, detected_at, reason) \
         VALUES ('lakeside', 'ps-1', 1000, 1009, $1, 'agent-unreachable')",
    )
    .bind(at(60))
    .execute(&hist.pool)
    .await
    .unwrap();

    let v = app.get_ok(&gaps_path("riverside", "ps-1"), &admin).await;
    assert_eq!(v["historian"], true);
    assert_eq!(
        v["open"],
        json!([
            {"seq_from": 300, "seq_to": 300, "frames": 1, "since": "2026-01-01T00:01:30Z",
             "replay_requests": 1, "last_request_at": "2026-01-01T00:01:35Z"},
            {"seq_from": 500, "seq_to": 519, "frames": 20, "since": "2026-01-01T00:01:40Z",
             "replay_requests": 3, "last_request_at": "2026-01-01T00:02:40Z"},
        ]),
        "{v}"
    );
    let recorded: Vec<(i64, i64, String)> = v["recorded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            assert_eq!(g["reason"], "not-retained");
            let detected = g["detected_at"].as_str().unwrap().parse::<DateTime<Utc>>();
            let ts_from = g["ts_from"].as_str().unwrap().parse::<DateTime<Utc>>();
            assert_eq!(
                detected.unwrap() - ts_from.unwrap(),
                chrono::Duration::seconds(30)
            );
            assert_eq!(g["ts_to"], Value::Null);
            (
                g["seq_from"].as_i64().unwrap(),
                g["seq_to"].as_i64().unwrap(),
                g["frames"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        vec![
            (40, 49, "10".into()),
            (20, 29, "10".into()),
            (10, 19, "10".into())
        ],
        "newest first: {v}"
    );

    // The latest 20 only.
    let many = app.get_ok(&gaps_path("riverside", "ps-3"), &admin).await;
    let many = many["recorded"].as_array().unwrap();
    assert_eq!(many.len(), 20);
    assert_eq!(many[0]["seq_from"], 240);
    assert_eq!(many[19]["seq_from"], 50);

    // The other organization's ps-1 sees only its own.
    let lake = app.get_ok(&gaps_path("lakeside", "ps-1"), &admin).await;
    assert_eq!(lake["open"].as_array().unwrap().len(), 1, "{lake}");
    assert_eq!(lake["open"][0]["seq_from"], 700);
    assert_eq!(lake["recorded"].as_array().unwrap().len(), 1, "{lake}");
    assert_eq!(lake["recorded"][0]["seq_from"], 1000);
    assert_eq!(lake["recorded"][0]["reason"], "agent-unreachable");

    // Who may not read the gateway may not read its gaps: the same answer
    // as the gateway itself (another organization's owner, a viewer of
    // another project), and unknown gateways are 404.
    let (_, owner) = app.user(&admin, "owner@lakeside.test").await;
    let (_, viewer) = app.user(&admin, "viewer@riverside.test").await;
    app.post_ok(
        "/api/v1/orgs/lakeside/members",
        &admin,
        json!({"email": "owner@lakeside.test", "role": "org-owner"}),
    )
    .await;
    app.post_ok(
        "/api/v1/orgs/riverside/projects",
        &admin,
        json!({"slug": "south", "name": "south"}),
    )
    .await;
    app.post_ok(
        "/api/v1/orgs/riverside/projects/south/members",
        &admin,
        json!({"email": "viewer@riverside.test", "role": "project-viewer"}),
    )
    .await;
    for who in [&owner, &viewer] {
        let gw = app
            .get("/api/v1/orgs/riverside/projects/north/gateways/ps-1", who)
            .await;
        let r = app.get(&gaps_path("riverside", "ps-1"), who).await;
        assert!([403, 404].contains(&r.status.as_u16()), "{:?}", r.body);
        assert_eq!(r.status, gw.status, "{:?}", r.body);
        assert!(!r.body.to_string().contains("500"), "{:?}", r.body);
    }
    assert_eq!(
        app.get(&gaps_path("lakeside", "ps-1"), &owner).await.status,
        200
    );
    assert_eq!(
        app.get(&gaps_path("riverside", "ps-404"), &admin)
            .await
            .status,
        404
    );

    app.stop().await;
    hist.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_gaps_without_a_historian_or_its_tables() {
    // A historian database from before issue 20: no gap tables, no gaps.
    let old = HistorianDb::new().await;
    let url = old.url.clone();
    for historian_url in [None, Some(url)] {
        let configured = historian_url.is_some();
        let app = TestApp::start_with(Backend::Sqlite, |c| {
            c.fleet.historian_url = historian_url;
            c.fleet.data_gap_poll_ms = 0;
        })
        .await;
        let admin = app.admin().await;
        fleet_support::setup_org(&app, &admin, "riverside", "north").await;
        alerts_support::gateways(&app, &admin, "riverside", "north", &["ps-1"]).await;
        let v = app.get_ok(&gaps_path("riverside", "ps-1"), &admin).await;
        assert_eq!(
            v,
            json!({"historian": configured, "open": [], "recorded": []})
        );
        app.stop().await;
    }
    old.drop_db().await;

    // Configured but unreachable: 503 in words, not an empty answer.
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.fleet.historian_url = Some("postgres://weir@127.0.0.1:1/weir".into());
        c.fleet.data_gap_poll_ms = 0;
    })
    .await;
    let admin = app.admin().await;
    fleet_support::setup_org(&app, &admin, "riverside", "north").await;
    alerts_support::gateways(&app, &admin, "riverside", "north", &["ps-1"]).await;
    let r = app.get(&gaps_path("riverside", "ps-1"), &admin).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("WEIR_HISTORIAN_URL"), "{detail}");
    app.stop().await;
}
