//! Alert evaluation benchmark (harness = false). Prints:
//!
//! 1. readings/s that 1,000 rules evaluate on one core (the pure engine:
//!    250 tags x 4 rules each: `>`, `<`, `outside`, rate; 1,000 series), and
//! 2. the delay from a reading entering the api's alert runtime to its
//!    webhook notification arriving, p50/p99, while the runtime is fed
//!    readings at the rate of part 1's goal (1,000,000 readings/s offered),
//!    on SQLite and on PostgreSQL (where the replica coordination runs too).
//!
//! Run: `cargo bench -p weir-api --bench alerts_eval`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;
use weir_api::alerts::engine::{Engine, Reading, RuleDef};
use weir_crds::message::{Frame, TagValue, UplinkMessage};

mod support;

const TAGS: usize = 250;

fn rule_specs() -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for t in 0..TAGS {
        let tag = format!("t{t}");
        v.push(json!({"name": format!("hi-{t}"), "kind": "threshold", "tag": tag, "op": ">", "threshold": 1000.0}));
        v.push(json!({"name": format!("lo-{t}"), "kind": "threshold", "tag": tag, "op": "<", "threshold": -1000.0}));
        v.push(json!({"name": format!("band-{t}"), "kind": "threshold", "tag": tag, "op": "outside", "low": -2000.0, "high": 2000.0, "for_secs": 60}));
        v.push(json!({"name": format!("rate-{t}"), "kind": "rate", "tag": tag, "max_rate_per_sec": 1e6}));
    }
    v
}

fn throughput() -> f64 {
    let rules: Vec<RuleDef> = rule_specs()
        .into_iter()
        .map(|s| RuleDef {
            id: Uuid::new_v4(),
            project_id: Uuid::nil(),
            tenant: "bench".into(),
            spec: serde_json::from_value(s).unwrap(),
        })
        .collect();
    assert_eq!(rules.len(), 1000);
    let mut e = Engine::new();
    let mut out = Vec::new();
    e.set_rules(rules, 0, &mut out);
    let gateways: Vec<String> = (0..4).map(|i| format!("gw-{i}")).collect();
    // A reading reaches the rules of its gateway's project only.
    e.set_gateways(gateways.iter().map(|g| ("bench", g.as_str(), Uuid::nil())));
    let tags: Vec<String> = (0..TAGS).map(|i| format!("t{i}")).collect();
    // Warm up: create every series.
    let run = |e: &mut Engine, out: &mut Vec<_>, n: usize, t0: i64| {
        for i in 0..n {
            let tag = &tags[i % TAGS];
            let gw = &gateways[(i / TAGS) % 4];
            let now = t0 + (i / 1000) as i64;
            let r = Reading {
                tenant: "bench",
                gateway: gw,
                device: "dev",
                tag,
                value: (i % 97) as f64,
                ts_ms: now,
            };
            e.observe(now, &r, out);
        }
    };
    run(&mut e, &mut out, 100_000, 0);
    let n = 5_000_000;
    let t0 = Instant::now();
    run(&mut e, &mut out, n, 1_000_000);
    let s = t0.elapsed().as_secs_f64();
    assert!(out.is_empty(), "no reading breaks a rule in this load");
    n as f64 / s
}

#[derive(Default)]
struct Hook {
    arrivals: Mutex<BTreeMap<String, Instant>>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Arc<Hook>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let now = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(alerts) = v["alerts"].as_array() {
        let mut a = h.arrivals.lock().unwrap();
        for x in alerts {
            if let Some(d) = x["labels"]["device"].as_str() {
                a.entry(d.to_string()).or_insert(now);
            }
        }
    }
    axum::http::StatusCode::OK
}

async fn delay_at_load(url: &str) -> (f64, f64, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = weir_api::Config::for_database(url);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.bootstrap_admin_email = "bench@weir.test".into();
    cfg.bootstrap_admin_password = Some("bench-password-123".into());
    cfg.web_dir = dir.path().join("none");
    cfg.alerts.eval_interval_ms = 100;
    // Seals the webhook's signing secret (PostgreSQL has no key file to make).
    cfg.fleet.master_key =
        Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into());
    cfg.fleet.kube_fleet = weir_api::fleet::KubeFleet::Off;
    // The webhook receiver listens on loopback (refused by default).
    cfg.outbound_allow_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    let api = weir_api::start(cfg).await.expect("api starts");
    let http = reqwest::Client::new();
    let base = api.url();
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "bench@weir.test", "password": "bench-password-123"}))
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("weir_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .unwrap();
    let v: serde_json::Value = login.json().await.unwrap();
    let csrf = v["csrf_token"].as_str().unwrap().to_string();
    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        let cookie = cookie.clone();
        let csrf = csrf.clone();
        let base = base.clone();
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .header("cookie", format!("weir_session={cookie}"))
                .header("x-csrf-token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
    };
    post(
        "/api/v1/orgs".into(),
        json!({"slug": "bench", "name": "Bench"}),
    )
    .await;
    post(
        "/api/v1/orgs/bench/projects".into(),
        json!({"slug": "p", "name": "P"}),
    )
    .await;
    // Readings of gateways the api does not know reach no rule.
    for g in ["gw-0", "gw-1", "gw-2", "gw-3", "gw-probe"] {
        post(
            "/api/v1/orgs/bench/projects/p/gateways".into(),
            json!({"name": g, "spec": {}}),
        )
        .await;
    }
    let hk = Arc::new(Hook::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(hk.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let abase = "/api/v1/orgs/bench/projects/p/alerts".to_string();
    post(format!("{abase}/channels"), json!({"name": "hook", "kind": "webhook", "url": hook_url, "group_by": ["device"], "group_wait_secs": 0, "group_interval_secs": 0})).await;
    for s in rule_specs() {
        post(format!("{abase}/rules"), s).await;
    }
    let alerts = api.state.alerts.clone();
    alerts.sync().await;

    // Offered load: 1,000,000 readings/s as messages of 250 tags (one per tag),
    // in slices of 10 ms; every 20 ms one extra message on a fresh device
    // carries a reading above the `>` limit and is timed until its webhook.
    let template: BTreeMap<String, TagValue> = (0..TAGS)
        .map(|t| (format!("t{t}"), TagValue::Float((t % 50) as f64)))
        .collect();
    let per_slice = 1_000_000 / 100 / TAGS; // messages per 10 ms
    let duration = Duration::from_secs(5);
    let mut injected: BTreeMap<String, Instant> = BTreeMap::new();
    let start = Instant::now();
    let mut sent_readings = 0u64;
    let mut slice = 0u64;
    let mut seq = 0u64;
    while start.elapsed() < duration {
        let slice_start = start + Duration::from_millis(10 * slice);
        for m in 0..per_slice {
            seq += 1;
            let msg = UplinkMessage {
                frames: vec![Frame {
                    seq,
                    timestamp: chrono::Utc::now().timestamp_millis(),
                    values: template.clone(),
                    errors: Default::default(),
                }],
            };
            alerts
                .ingest("bench", &format!("gw-{}", m % 4), "dev", msg)
                .await;
            sent_readings += TAGS as u64;
        }
        if slice.is_multiple_of(2) {
            let dev = format!("probe-{slice}");
            let mut values = BTreeMap::new();
            values.insert("t0".to_string(), TagValue::Float(5000.0));
            seq += 1;
            let msg = UplinkMessage {
                frames: vec![Frame {
                    seq,
                    timestamp: chrono::Utc::now().timestamp_millis(),
                    values,
                    errors: Default::default(),
                }],
            };
            injected.insert(dev.clone(), Instant::now());
            alerts.ingest("bench", "gw-probe", &dev, msg).await;
        }
        slice += 1;
        let next = slice_start + Duration::from_millis(10);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    alerts.sync().await;
    let achieved = sent_readings as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while hk.arrivals.lock().unwrap().len() < injected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = hk.arrivals.lock().unwrap().clone();
    let mut delays: Vec<f64> = injected
        .iter()
        .filter_map(|(d, t)| {
            arrivals
                .get(d)
                .map(|a| a.duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let lost = injected.len() - delays.len();
    let pct = |p: f64| {
        delays
            .get(((delays.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    alerts.shutdown();
    api.task.abort();
    api.state.db.clone().close().await.ok();
    (achieved, pct(0.5), pct(0.99), lost)
}

fn main() {
    let rate = throughput();
    println!("alerts_eval: 1000 rules, one core: {rate:.0} readings/s (goal >= 1,000,000)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        report("SQLite", delay_at_load(&sqlite).await);
        match support::temp_pg().await {
            Ok(pg) => {
                report("PostgreSQL", delay_at_load(&pg.url).await);
                pg.drop_db().await;
            }
            Err(e) => println!("alerts_eval: PostgreSQL skipped: {e}"),
        }
    });
}

fn report(db: &str, (achieved, p50, p99, lost): (f64, f64, f64, usize)) {
    println!(
        "alerts_eval: reading -> webhook delay ({db}) at {achieved:.0} readings/s offered through the runtime: p50 {p50:.1} ms, p99 {p99:.1} ms (goal p99 <= 1000 ms){}",
        if lost > 0 { format!(", {lost} probes never notified") } else { String::new() }
    );
}
