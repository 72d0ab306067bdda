//! Microbenchmark of one endpoint, in process: `GET /api/v1/orgs/{org}/projects`
//! at a fixed rate (default 500 req/s for 10 s) from a reqwest client that
//! shares the tokio runtime (and so the CPU) of the weir-api it calls, on
//! SQLite and (when reachable) PostgreSQL. Prints p50/p99/max latency.
//!
//! It is not the api's figure: that is `api_mix` (the release binary as its
//! own process, under oha and wrk, over a mix of eight endpoints).
//!
//! `cargo bench -p weir-api --bench api_load`
//! Knobs: WEIR_BENCH_RPS, WEIR_BENCH_SECS, WEIR_TEST_PG_URL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_api::Config;

mod support;

const PASSWORD: &str = "bench-password-123";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn seed(http: &reqwest::Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "admin@bench.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("weir_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    let post = |path: &str, b: Value| {
        http.post(format!("{base}{path}"))
            .header("cookie", format!("weir_session={cookie}"))
            .header("x-csrf-token", &csrf)
            .json(&b)
            .send()
    };
    post(
        "/api/v1/orgs",
        json!({"slug": "riverside-water", "name": "Riverside Water"}),
    )
    .await
    .unwrap();
    for i in 0..20 {
        post(
            "/api/v1/orgs/riverside-water/projects",
            json!({"slug": format!("plant-{i}"), "name": format!("Plant {i}")}),
        )
        .await
        .unwrap();
    }
    let t: Value = post(
        "/api/v1/orgs/riverside-water/tokens",
        json!({"name": "bench", "role": "org-admin"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    t["token"].as_str().unwrap().to_string()
}

async fn run(label: &str, url: &str) {
    let mut cfg = Config::for_database(url);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.bootstrap_admin_email = "admin@bench.test".into();
    cfg.bootstrap_admin_password = Some(PASSWORD.into());
    cfg.web_dir = std::env::temp_dir().join("weir-bench-no-web");
    // One master key for both runs: the audit chain's key is per process
    // (audit::keys), and a second api with another key refuses to start.
    cfg.fleet.master_key =
        Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into());
    let running = weir_api::start(cfg).await.expect("api starts");
    let base = running.url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let token = seed(&http, &base).await;
    let target = format!("{base}/api/v1/orgs/riverside-water/projects");
    // Warm up connections and caches.
    for _ in 0..200 {
        http.get(&target).bearer_auth(&token).send().await.unwrap();
    }

    let rps = env_u64("WEIR_BENCH_RPS", 500);
    let secs = env_u64("WEIR_BENCH_SECS", 10);
    let total = rps * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rps);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    // Open loop: requests are sent on schedule whether or not earlier ones
    // have answered, so a slow server shows up as latency, not lower load.
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (http, target, token, tx) = (http.clone(), target.clone(), token.clone(), tx.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let ok = match http.get(&target).bearer_auth(&token).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let _ = tx.send((t0.elapsed(), ok));
        });
    }
    drop(tx);
    let mut lat = Vec::with_capacity(total as usize);
    let mut errors = 0;
    while let Some((d, ok)) = rx.recv().await {
        if !ok {
            errors += 1;
        }
        lat.push(d);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "{label:<10} one endpoint, in process: GET /api/v1/orgs/{{org}}/projects  {} req in {:.1} s ({:.0} req/s)  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {errors}",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    running.task.abort();
}

fn main() {
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
        run("sqlite", &sqlite).await;

        match support::temp_pg().await {
            Ok(pg) => {
                run("postgres", &pg.url).await;
                pg.drop_db().await;
            }
            Err(e) => println!("postgres   skipped: {e}"),
        }
    });
}
