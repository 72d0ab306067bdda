//! `GET .../gateways/{gateway}/latest` against a real PostgreSQL historian
//! partitioned by day as `weir-historian` lays it out: each tag of the
//! gateway's current config with its newest reading, picked across day
//! partitions and from its own device only; a read error shows its code
//! and meaning; a tag never read is null; a tag gone from the config is
//! gone from the answer; callers of another organization or project learn
//! nothing; 503 in words without a historian.

use crate::common;
use crate::historian_support;

use chrono::{DateTime, NaiveDate, Utc};
use common::{Backend, Cred, TestApp};
use historian_support::{HistorianDb, Reading};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const LATEST: &str = "/api/v1/orgs/acme/projects/p/gateways/gw/latest";

/// `2026-01-0{day}T{hh}:00:00Z`.
fn at(day: u32, hh: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 1, day)
        .unwrap()
        .and_hms_opt(hh, 0, 0)
        .unwrap()
        .and_utc()
}

fn spec() -> Value {
    json!({"site": {"name": "Pump station"}, "devices": [
        {"name": "pump", "adapter": "modbusTcp", "modbus": {"host": "10.0.0.5"},
         "groups": [
            {"name": "fast", "intervalMs": 1000, "tags": [
                {"name": "flow", "address": "1!400001", "dataType": "float32", "unit": "m3/h", "decimals": 1}]},
            {"name": "slow", "intervalMs": 5000, "tags": [
                {"name": "running", "address": "1!000001", "dataType": "bool"}]}]},
        {"name": "tank", "adapter": "modbusTcp", "modbus": {"host": "10.0.0.6"},
         "groups": [{"name": "fast", "intervalMs": 1000, "tags": [
            {"name": "level", "address": "1!400001", "dataType": "float32", "unit": "m", "decimals": 2},
            {"name": "flow", "address": "1!400003", "dataType": "float32"},
            {"name": "spare", "address": "1!400005", "dataType": "int16"}]}]}
    ]})
}

async fn org(app: &TestApp, admin: &Cred, org: &str, owner: &str, spec: Value) {
    app.post_ok(
        "/api/v1/orgs",
        admin,
        json!({"slug": org, "name": org, "owner_email": owner}),
    )
    .await;
    for p in ["p", "q"] {
        app.post_ok(
            &format!("/api/v1/orgs/{org}/projects"),
            admin,
            json!({"slug": p, "name": p}),
        )
        .await;
    }
    app.post_ok(
        &format!("/api/v1/orgs/{org}/projects/p/gateways"),
        admin,
        json!({"name": "gw", "spec": spec}),
    )
    .await;
}

/// The answer's tag `device/tag`.
fn tag<'a>(b: &'a Value, device: &str, tag: &str) -> &'a Value {
    let d = b["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == device)
        .unwrap_or_else(|| panic!("no device {device} in {b}"));
    d["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tag)
        .unwrap_or_else(|| panic!("no tag {device}/{tag} in {b}"))
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn readings() -> Vec<Reading> {
    let r = |d: &str, t: &str, at: DateTime<Utc>, v: f64, seq: i64| {
        Reading::new("acme", "gw", d, t, at, v, seq)
    };
    let mut rows = vec![
        // pump/flow on each of the three days; the newest is day 3's.
        r("pump", "flow", at(1, 10), 1.0, 1),
        r("pump", "flow", at(2, 10), 2.0, 2),
        r("pump", "flow", at(3, 9), 3.25, 3),
        // tank's own `flow` is newer and must not become pump's.
        r("tank", "flow", at(3, 11), 99.0, 4),
        // tank/level was read on day 1 only: found behind two newer days.
        r("tank", "level", at(1, 8), 4.5, 5),
        r("tank", "level", at(1, 7), 4.0, 6),
        // pump/running: good on day 2, then a timeout.
        r("pump", "running", at(2, 6), 1.0, 7),
        // A tag the current config no longer has.
        r("pump", "old", at(3, 12), 7.0, 8),
        // Newer readings of other gateways and tenants with the same names.
        Reading::new("acme", "gw2", "pump", "flow", at(3, 20), 55.0, 1),
        Reading::new("other", "gw", "pump", "flow", at(3, 21), 66.0, 1),
    ];
    let mut err = r("pump", "running", at(2, 7), 0.0, 9);
    (err.value, err.quality) = (None, 1001);
    rows.push(err);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_values_from_the_historian() {
    let hist = HistorianDb::daily(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), 3).await;
    hist.insert(&readings()).await;
    let url = hist.url.clone();
    let app = TestApp::start_with(Backend::Sqlite, |c| c.fleet.historian_url = Some(url)).await;
    let admin = app.admin().await;
    let (_, owner) = app.user(&admin, "owner@acme.test").await;
    let (_, viewer) = app.user(&admin, "viewer@acme.test").await;
    let (_, q_viewer) = app.user(&admin, "q@acme.test").await;
    let (_, other) = app.user(&admin, "owner@other.test").await;
    org(&app, &admin, "acme", "owner@acme.test", spec()).await;
    org(&app, &admin, "other", "owner@other.test", spec()).await;
    for (p, email) in [("p", "viewer@acme.test"), ("q", "q@acme.test")] {
        app.post_ok(
            &format!("/api/v1/orgs/acme/projects/{p}/members"),
            &owner,
            json!({"email": email, "role": "project-viewer"}),
        )
        .await;
    }

    let b = app.get_ok(LATEST, &viewer).await;
    assert_eq!(b["gateway"], "gw");
    assert_eq!(b["version"], 1);
    let names: Vec<&str> = b["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pump", "tank"], "config order: {b}");

    let flow = tag(&b, "pump", "flow");
    assert_eq!(flow["value"], 3.25, "{flow}");
    assert_eq!(ts(flow), at(3, 9));
    assert_eq!(
        (flow["unit"].as_str(), flow["decimals"].as_u64()),
        (Some("m3/h"), Some(1))
    );
    assert_eq!(flow["data_type"], "float32");
    assert_eq!(flow["error"], Value::Null);
    assert_eq!(tag(&b, "tank", "flow")["value"], 99.0);

    let level = tag(&b, "tank", "level");
    assert_eq!((level["value"].as_f64(), ts(level)), (Some(4.5), at(1, 8)));

    let running = tag(&b, "pump", "running");
    assert_eq!(ts(running), at(2, 7));
    assert_eq!(
        running["value"],
        Value::Null,
        "an error has no value: {running}"
    );
    assert_eq!(running["error"]["code"], 1001);
    assert_eq!(
        running["error"]["meaning"],
        "the device did not answer in time"
    );

    let spare = tag(&b, "tank", "spare");
    for k in ["ts", "value", "value_text", "error"] {
        assert_eq!(spare[k], Value::Null, "never read: {spare}");
    }
    assert!(!b.to_string().contains("\"old\""), "not in the config: {b}");

    // The other organization's gateway of the same name has its own (none).
    let o = app
        .get_ok("/api/v1/orgs/other/projects/p/gateways/gw/latest", &other)
        .await;
    assert_eq!(tag(&o, "pump", "flow")["value"], 66.0);
    assert_eq!(tag(&o, "tank", "level")["ts"], Value::Null);

    // A new config version is what the table lists from then on.
    let r = app
        .call(
            Method::PATCH,
            "/api/v1/orgs/acme/projects/p/gateways/gw",
            &owner,
            Some(json!({"spec": {"site": {"name": "Pump station"}, "devices": [spec()["devices"][1].clone()]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let b = app.get_ok(LATEST, &viewer).await;
    assert_eq!(b["version"], 2);
    assert_eq!(b["devices"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(tag(&b, "tank", "level")["value"], 4.5);

    // Walls: another organization, another project, nobody, no gateway.
    let nowhere = app
        .get(
            "/api/v1/orgs/acme/projects/nowhere/gateways/gw/latest",
            &q_viewer,
        )
        .await;
    assert!([403, 404].contains(&nowhere.status.as_u16()));
    for (who, want) in [(&other, StatusCode::NOT_FOUND), (&q_viewer, nowhere.status)] {
        let r = app.get(LATEST, who).await;
        assert_eq!(r.status, want, "{:?}", r.body);
        assert!(!r.body.to_string().contains("4.5"), "{:?}", r.body);
    }
    let r = app.get(LATEST, &Cred::None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .get("/api/v1/orgs/acme/projects/p/gateways/nope/latest", &viewer)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    app.stop().await;
    hist.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_values_unavailable_in_words() {
    let app = TestApp::start_with(Backend::Sqlite, |c| c.fleet.historian_url = None).await;
    let admin = app.admin().await;
    app.user(&admin, "owner@acme.test").await;
    let (_, other) = app.user(&admin, "owner@other.test").await;
    org(&app, &admin, "acme", "owner@acme.test", spec()).await;
    org(&app, &admin, "other", "owner@other.test", json!({})).await;
    let r = app.get(LATEST, &admin).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("WEIR_HISTORIAN_URL"), "{detail}");
    // Authorisation comes first: another organization still gets 404.
    let r = app.get(LATEST, &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Even a gateway without tags says the historian is missing.
    let r = app
        .get("/api/v1/orgs/other/projects/p/gateways/gw/latest", &other)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    app.stop().await;
}
