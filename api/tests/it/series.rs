//! `GET .../gateways/{gateway}/series` against a real PostgreSQL historian
//! database: known readings in, time buckets (avg/min/max/count) out; the
//! device filter; bad readings, other tenants and out-of-range rows left
//! out; each bad parameter named; another organization's user gets 404;
//! 503 in words when the historian is not configured, not the historian's,
//! or unreachable.

use crate::common;
use crate::historian_support;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, Cred, TestApp};
use historian_support::{HistorianDb, Reading};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub(crate) const T0: &str = "2026-01-01T00:00:00Z";

pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(T0)
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

pub(crate) fn series_path(org: &str, q: &str) -> String {
    format!("/api/v1/orgs/{org}/projects/p/gateways/gw/series?{q}")
}

/// Organization `org` with project `p` and gateway `gw`, owned by `owner`.
async fn org_with_gateway(app: &TestApp, admin: &Cred, org: &str, owner: &str) {
    let r = app
        .post(
            "/api/v1/orgs",
            admin,
            json!({"slug": org, "name": org, "owner_email": owner}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            admin,
            json!({"slug": "p", "name": "P"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/orgs/{org}/projects/p/gateways"),
            admin,
            json!({"name": "gw", "spec": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

pub(crate) fn error_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_from_the_historian() {
    let hist = HistorianDb::new().await;
    let url = hist.url.clone();
    let app = TestApp::start_with(Backend::Sqlite, |c| c.fleet.historian_url = Some(url)).await;
    let admin = app.admin().await;
    let (_, owner) = app.user(&admin, "owner@acme.test").await;
    let (_, other) = app.user(&admin, "owner@other.test").await;
    let (_, viewer) = app.user(&admin, "viewer@acme.test").await;
    org_with_gateway(&app, &admin, "acme", "owner@acme.test").await;
    org_with_gateway(&app, &admin, "other", "owner@other.test").await;
    let r = app
        .post(
            "/api/v1/orgs/acme/projects/p/members",
            &owner,
            json!({"email": "viewer@acme.test", "role": "project-viewer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // acme/gw, device d1, tag level: 0, 1, ..., 17 every 10 s from T0.
    let mut rows: Vec<Reading> = (0..18)
        .map(|i| Reading::new("acme", "gw", "d1", "level", at(i * 10), i as f64, i))
        .collect();
    // Another device with the same tag, in the first minute.
    rows.push(Reading::new("acme", "gw", "d2", "level", at(5), 100.0, 1));
    // A bad reading (quality != 0): never averaged.
    let mut bad = Reading::new("acme", "gw", "d1", "level", at(31), 1000.0, 100);
    bad.quality = 3;
    rows.push(bad);
    // Outside [from, to): before, and exactly at `to` (exclusive).
    rows.push(Reading::new(
        "acme",
        "gw",
        "d1",
        "level",
        at(-1),
        -50.0,
        101,
    ));
    rows.push(Reading::new(
        "acme",
        "gw",
        "d1",
        "level",
        at(240),
        -50.0,
        102,
    ));
    // Another tag, and another tenant's gateway of the same name.
    rows.push(Reading::new("acme", "gw", "d1", "flow", at(15), 7.0, 103));
    rows.push(Reading::new("other", "gw", "d1", "level", at(15), 999.0, 1));
    hist.insert(&rows).await;

    let q = format!(
        "tag=level&from={T0}&to={}&step=1m&mode=buckets",
        at(240).to_rfc3339().replace('+', "%2B")
    );
    for who in [&viewer, &owner, &admin] {
        let r = app.get(&series_path("acme", &q), who).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let b = &r.body;
        assert_eq!(b["gateway"], "gw");
        assert_eq!(b["mode"], "buckets");
        assert_eq!(b["series"][0]["tag"], "level");
        assert_eq!(b["series"][0]["device"], Value::Null);
        assert_eq!(b["step_seconds"], 60.0);
        let pts = b["series"][0]["points"].as_array().unwrap();
        // Minute 0: d1 0..5 and d2's 100; minute 1: 6..11; minute 2: 12..17;
        // minute 3 has no readings and is absent.
        assert_eq!(pts.len(), 3, "{b}");
        let t = |p: &Value| {
            DateTime::parse_from_rfc3339(p["t"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(t(&pts[0]), at(0));
        assert_eq!(t(&pts[1]), at(60));
        assert_eq!(t(&pts[2]), at(120));
        assert_eq!(pts[0]["count"], 7);
        assert!(close(&pts[0]["avg"], 115.0 / 7.0), "{}", pts[0]);
        assert!(close(&pts[0]["min"], 0.0));
        assert!(close(&pts[0]["max"], 100.0));
        assert_eq!(pts[1]["count"], 6);
        assert!(close(&pts[1]["avg"], 8.5));
        assert!(close(&pts[1]["min"], 6.0));
        assert!(close(&pts[1]["max"], 11.0));
        assert!(close(&pts[2]["avg"], 14.5));
    }

    // One device only; seconds as a plain number; a range that is not a
    // multiple of the step (the last bucket is partial).
    let r = app
        .get(
            &series_path(
                "acme",
                &format!(
                    "tag=level&device=d1&from={T0}&to=2026-01-01T00:01:30Z&step=30&mode=buckets"
                ),
            ),
            &viewer,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let pts = r.body["series"][0]["points"].as_array().unwrap().clone();
    assert_eq!(pts.len(), 3, "{:?}", r.body);
    assert_eq!(r.body["series"][0]["device"], "d1");
    assert!(close(&pts[0]["avg"], 1.0)); // 0, 1, 2
    assert!(close(&pts[1]["avg"], 4.0)); // 3, 4, 5 (the bad 1000 is left out)
    assert_eq!(pts[1]["count"], 3);
    assert!(close(&pts[2]["max"], 8.0)); // 6, 7, 8

    // A bucket origin that is not on the minute: buckets start at `from`.
    let r = app
        .get(
            &series_path(
                "acme",
                "tag=level&device=d1&from=2026-01-01T00:00:25Z&to=2026-01-01T00:01:25Z&step=1m&mode=buckets",
            ),
            &viewer,
        )
        .await;
    let pts = r.body["series"][0]["points"].as_array().unwrap().clone();
    assert_eq!(pts.len(), 1, "{:?}", r.body);
    assert_eq!(pts[0]["t"], "2026-01-01T00:00:25Z");
    assert_eq!(pts[0]["count"], 6); // 30 s .. 80 s
    assert!(close(&pts[0]["avg"], 5.5));

    // Another tag of the same gateway.
    let r = app
        .get(
            &series_path(
                "acme",
                &format!("tag=flow&from={T0}&to=2026-01-01T01:00:00Z&mode=buckets"),
            ),
            &viewer,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["step_seconds"], 15.0, "default step for an hour");
    let pts = r.body["series"][0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 1);
    assert!(close(&pts[0]["avg"], 7.0));

    // No readings in the range: 200 with no points.
    let r = app.get(&series_path("acme", "tag=level"), &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["series"][0]["points"], json!([]));
    assert_eq!(r.body["series"][0]["readings"], json!([]));

    // The other organization sees its own gateway `gw` only ...
    let r = app.get(&series_path("other", &q), &other).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let pts = r.body["series"][0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 1);
    assert!(close(&pts[0]["avg"], 999.0));
    // ... and acme's gateway is not there for it (nor for anyone signed out).
    let r = app.get(&series_path("acme", &q), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = app.get(&series_path("acme", &q), &Cred::None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .get(
            "/api/v1/orgs/acme/projects/p/gateways/nope/series?tag=level",
            &viewer,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Bad parameters, each named.
    let bad: &[(&str, &[&str], StatusCode)] = &[
        (
            "tag=level&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            &["from"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tag=level&from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            &["from"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tag=level&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&step=1s",
            &["step"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tag=level&step=5w",
            &["step"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tag=level&step=0",
            &["step"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tag=level&from=yesterday",
            &["from"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tag=level&to=2026-13-01",
            &["to"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("tag=", &["tag"], StatusCode::UNPROCESSABLE_ENTITY),
        ("tag=a%2Fb", &["tag"], StatusCode::UNPROCESSABLE_ENTITY),
        (
            "tag=level&device=",
            &["device"],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "from=2026-01-01T00:00:00Z",
            &["series"],
            StatusCode::BAD_REQUEST,
        ),
        (
            "tag=level&form=2026-01-01T00:00:00Z",
            &["form"],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (q, fields, status) in bad {
        let r = app.get(&series_path("acme", q), &viewer).await;
        assert_eq!(r.status, *status, "{q}: {:?}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json", "{q}");
        assert_eq!(&error_fields(&r.body), fields, "{q}: {:?}", r.body);
        let msg = r.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(msg.len() > 10, "{q}: message in words: {:?}", r.body);
    }
    let r = app
        .get(
            &series_path(
                "acme",
                "tag=level&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&step=1s",
            ),
            &viewer,
        )
        .await;
    let msg = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("at least 9s"), "{msg}");
    // Another org's user learns nothing from a bad query either.
    let r = app
        .get(&series_path("acme", "tag=level&step=0"), &other)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    app.stop().await;
    hist.drop_db().await;
}

async fn unavailable(historian_url: Option<String>, says: &str) {
    let app = TestApp::start_with(Backend::Sqlite, |c| c.fleet.historian_url = historian_url).await;
    let admin = app.admin().await;
    let (_, other) = app.user(&admin, "owner@other.test").await;
    app.user(&admin, "spare@acme.test").await;
    org_with_gateway(&app, &admin, "acme", "spare@acme.test").await;
    org_with_gateway(&app, &admin, "other", "owner@other.test").await;
    let r = app.get(&series_path("acme", "tag=level"), &admin).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(says), "{says:?} not in {detail:?}");
    // Authorisation comes first: another org still gets 404, bad input 422.
    let r = app.get(&series_path("acme", "tag=level"), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(&series_path("acme", "tag=level&step=x"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_unavailable_in_words() {
    unavailable(None, "WEIR_HISTORIAN_URL").await;
    // A database that is not the historian's (no `readings` table).
    let empty = HistorianDb::empty().await;
    unavailable(Some(empty.url.clone()), "no `readings` table").await;
    empty.drop_db().await;
    // Nothing listens on port 1.
    unavailable(
        Some("postgres://postgres@127.0.0.1:1/weir".into()),
        "unreachable",
    )
    .await;
    unavailable(Some("mysql://nope".into()), "not a usable PostgreSQL URL").await;
}
