//! `GET .../gateways/{gateway}/series` with several `series=device/tag`
//! across two devices of a gateway, against a real PostgreSQL historian:
//! raw readings (with read errors and their codes) for a short range,
//! buckets per series for a long one or when asked, `mode=raw` refused
//! over too many readings, the count limit and bad or unknown pairs named,
//! and another organization's gateway out of reach.

use crate::common;
use crate::historian_support;
use crate::series::{at, close, error_fields, series_path, T0};

use chrono::{DateTime, Duration, Utc};
use common::{Backend, TestApp};
use historian_support::{HistorianDb, Reading};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A gateway config with two devices: `dosing` (chlorine in mg/L, 2
/// decimals; dose in kg/h) and `filter` (turbidity in NTU, 3 decimals).
fn two_devices() -> Value {
    json!({"site": {"name": "Works"}, "devices": [
        {"name": "dosing", "adapter": "modbusTcp", "modbus": {"host": "10.0.0.5"},
         "groups": [{"name": "fast", "intervalMs": 1000, "tags": [
            {"name": "chlorine", "address": "1!400001", "dataType": "float32", "unit": "mg/L", "decimals": 2},
            {"name": "dose", "address": "1!400003", "dataType": "float32", "unit": "kg/h"}]}]},
        {"name": "filter", "adapter": "modbusTcp", "modbus": {"host": "10.0.0.6"},
         "groups": [{"name": "fast", "intervalMs": 1000, "tags": [
            {"name": "turbidity", "address": "1!400001", "dataType": "float32", "unit": "NTU", "decimals": 3}]}]}
    ]})
}

fn times(s: &Value, key: &str) -> Vec<DateTime<Utc>> {
    s[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            DateTime::parse_from_rfc3339(p["t"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        })
        .collect()
}

fn enc(t: DateTime<Utc>) -> String {
    t.to_rfc3339().replace('+', "%2B")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_series_raw_or_in_buckets() {
    let hist = HistorianDb::new().await;
    let url = hist.url.clone();
    let app = TestApp::start_with(Backend::Sqlite, |c| c.fleet.historian_url = Some(url)).await;
    let admin = app.admin().await;
    let (_, owner) = app.user(&admin, "owner@acme.test").await;
    let (_, other) = app.user(&admin, "owner@other.test").await;
    for (org, who) in [("acme", "owner@acme.test"), ("other", "owner@other.test")] {
        app.post_ok(
            "/api/v1/orgs",
            &admin,
            json!({"slug": org, "name": org, "owner_email": who}),
        )
        .await;
        app.post_ok(
            &format!("/api/v1/orgs/{org}/projects"),
            &admin,
            json!({"slug": "p", "name": "P"}),
        )
        .await;
        app.post_ok(
            &format!("/api/v1/orgs/{org}/projects/p/gateways"),
            &admin,
            json!({"name": "gw", "spec": two_devices()}),
        )
        .await;
    }

    // Minute 0: chlorine every 10 s (0.50, 0.51, ...), turbidity every 10 s
    // from 5 s (0, 0.1, ...) with a read error (no answer) at 25 s.
    let mut rows: Vec<Reading> = (0..6)
        .map(|i| {
            Reading::new(
                "acme",
                "gw",
                "dosing",
                "chlorine",
                at(i * 10),
                0.5 + i as f64 / 100.0,
                i,
            )
        })
        .collect();
    rows.extend((0..6).map(|i| {
        Reading::new(
            "acme",
            "gw",
            "filter",
            "turbidity",
            at(5 + i * 10),
            i as f64 / 10.0,
            10 + i,
        )
    }));
    let mut err = Reading::new("acme", "gw", "filter", "turbidity", at(27), 0.0, 30);
    (err.value, err.quality) = (None, 1001);
    rows.push(err);
    // The same names in the other organization, and another tag of dosing.
    rows.push(Reading::new(
        "other",
        "gw",
        "dosing",
        "chlorine",
        at(10),
        777.0,
        1,
    ));
    rows.push(Reading::new(
        "acme",
        "gw",
        "dosing",
        "dose",
        at(10),
        2.5,
        40,
    ));
    hist.insert(&rows).await;

    let two = "series=dosing/chlorine&series=filter%2Fturbidity";
    let r = app
        .get_ok(
            &series_path("acme", &format!("{two}&from={T0}&to={}", enc(at(60)))),
            &owner,
        )
        .await;
    // Few readings: the raw ones, per series, in the order asked, with the
    // config's unit and decimals.
    assert_eq!(r["mode"], "raw", "{r}");
    assert_eq!(r["raw_limit"], 2000);
    let s = r["series"].as_array().unwrap();
    assert_eq!(s.len(), 2, "{r}");
    assert_eq!(
        (
            &s[0]["device"],
            &s[0]["tag"],
            &s[0]["unit"],
            &s[0]["decimals"]
        ),
        (
            &json!("dosing"),
            &json!("chlorine"),
            &json!("mg/L"),
            &json!(2)
        )
    );
    assert_eq!(
        (
            &s[1]["device"],
            &s[1]["tag"],
            &s[1]["unit"],
            &s[1]["decimals"]
        ),
        (
            &json!("filter"),
            &json!("turbidity"),
            &json!("NTU"),
            &json!(3)
        )
    );
    assert_eq!(s[0]["points"], json!([]));
    assert_eq!(
        times(&s[0], "readings"),
        (0..6).map(|i| at(i * 10)).collect::<Vec<_>>()
    );
    let chlorine: Vec<f64> = s[0]["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(chlorine, [0.5, 0.51, 0.52, 0.53, 0.54, 0.55]);
    let turb = s[1]["readings"].as_array().unwrap();
    assert_eq!(turb.len(), 7, "{r}");
    assert!(close(&turb[2]["value"], 0.2));
    assert_eq!(turb[2]["error"], Value::Null);
    // The read error, in time order between 25 s and 35 s, with its code.
    assert_eq!(times(&s[1], "readings")[3], at(27));
    assert_eq!(turb[3]["value"], Value::Null);
    assert_eq!(turb[3]["error"]["code"], 1001);
    assert!(
        turb[3]["error"]["meaning"].as_str().unwrap().len() > 10,
        "{}",
        turb[3]
    );
    assert!(
        !r.to_string().contains("777"),
        "another tenant's reading: {r}"
    );

    // Asked for buckets, the same range is bucketed per series: only good
    // readings count.
    let r = app
        .get_ok(
            &series_path(
                "acme",
                &format!("{two}&from={T0}&to={}&step=30s&mode=buckets", enc(at(60))),
            ),
            &owner,
        )
        .await;
    assert_eq!(r["mode"], "buckets", "{r}");
    let s = r["series"].as_array().unwrap();
    assert_eq!(s[0]["readings"], json!([]));
    let (c, t) = (&s[0]["points"], &s[1]["points"]);
    assert_eq!(
        (c[0]["count"].as_i64(), c[1]["count"].as_i64()),
        (Some(3), Some(3)),
        "{r}"
    );
    assert!(
        close(&c[0]["avg"], 0.51) && close(&c[1]["max"], 0.55),
        "{r}"
    );
    assert_eq!(
        (t[0]["count"].as_i64(), t[1]["count"].as_i64()),
        (Some(3), Some(3)),
        "{r}"
    );
    assert!(close(&t[0]["max"], 0.2) && close(&t[1]["min"], 0.3), "{r}");

    // A long range: chlorine once a second for 40 minutes (2,400 readings,
    // more than a raw answer holds) and turbidity once a minute; `auto`
    // answers in buckets, for both series.
    let day2 = at(86_400);
    hist.insert_every(
        ("acme", "gw", "dosing", "chlorine"),
        day2,
        1.0,
        2400,
        60,
        1000,
    )
    .await;
    hist.insert_every(
        ("acme", "gw", "filter", "turbidity"),
        day2,
        60.0,
        40,
        1000,
        5000,
    )
    .await;
    let long = format!(
        "{two}&from={}&to={}&step=1m",
        enc(day2),
        enc(day2 + Duration::minutes(40))
    );
    let r = app.get_ok(&series_path("acme", &long), &owner).await;
    assert_eq!(r["mode"], "buckets", "{}", &r.to_string()[..300]);
    let s = r["series"].as_array().unwrap();
    let c = s[0]["points"].as_array().unwrap();
    assert_eq!(c.len(), 40);
    assert!(c
        .iter()
        .all(|p| p["count"] == 60 && close(&p["avg"], 29.5) && close(&p["max"], 59.0)));
    let t = s[1]["points"].as_array().unwrap();
    assert_eq!(t.len(), 40);
    assert!(close(&t[39]["avg"], 39.0) && t[39]["count"] == 1);
    assert_eq!(times(&s[1], "points")[1], day2 + Duration::minutes(1));
    // Raw is refused there, naming the series that has too many.
    let r = app
        .get(
            &series_path("acme", &long.replace("&step=1m", "&mode=raw")),
            &owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(error_fields(&r.body), ["mode"]);
    let msg = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("dosing/chlorine") && !msg.contains("turbidity"),
        "{msg}"
    );
    // The turbidity alone over the same range has few readings: raw.
    let r = app
        .get_ok(
            &series_path("acme", &long.replace("series=dosing/chlorine&", "")),
            &owner,
        )
        .await;
    assert_eq!(r["mode"], "raw");
    assert_eq!(r["series"][0]["readings"].as_array().unwrap().len(), 40);

    // Bad pairs and too many, each naming the parameter.
    let nine = (0..9)
        .map(|i| format!("series=dosing/t{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let bad: &[(&str, &str, &str)] = &[
        (&nine, "series", "at most 8"),
        ("series=dosing", "series", "not device/tag"),
        (
            "series=pump/flow",
            "series",
            "no device \"pump\" (devices: dosing, filter)",
        ),
        (
            "series=dosing/ph",
            "series",
            "no tag \"ph\" in the gateway's config (version 1; its tags: chlorine, dose)",
        ),
        (
            "series=dosing/chlorine&series=dosing/chlorine",
            "series",
            "twice",
        ),
        (
            "series=dosing/chlorine&mode=fast",
            "mode",
            "auto, raw or buckets",
        ),
        (
            "series=dosing/chlorine&mode=raw&step=5s",
            "step",
            "no buckets",
        ),
        ("series=dosing/chlorine&tag=chlorine", "tag", "not both"),
    ];
    for (q, field, says) in bad {
        let r = app.get(&series_path("acme", q), &owner).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {:?}",
            r.body
        );
        assert_eq!(error_fields(&r.body), [*field], "{q}: {:?}", r.body);
        let msg = r.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{q}: {says:?} not in {msg:?}");
    }

    // The wall: another organization's owner gets 404 for acme's gateway
    // (even with a bad query), and reads only its own `gw`.
    for q in [two, "series=dosing/nope"] {
        let r = app.get(&series_path("acme", q), &other).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{q}: {:?}", r.body);
    }
    let r = app
        .get_ok(
            &series_path("other", &format!("{two}&from={T0}&to={}", enc(at(60)))),
            &other,
        )
        .await;
    assert_eq!(r["series"][0]["readings"][0]["value"], 777.0, "{r}");
    assert_eq!(r["series"][1]["readings"], json!([]));

    app.stop().await;
    hist.drop_db().await;
}
