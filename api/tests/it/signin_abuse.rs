//! Sign-in abuse (issue 18): an attacker guessing passwords cannot lock the
//! admin out, is throttled per address, cannot flood the audit log or pile
//! up password hashes, and every refusal shows in the metrics. Clients pick
//! their source address on loopback (127.0.0.2, ...), which is what the api
//! sees as the client address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{Backend, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

struct Answer {
    status: StatusCode,
    kind: String,
    retry_after: Option<u64>,
    took: Duration,
}

/// An HTTP client whose connections come from `ip`.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn login(app: &TestApp, from: &reqwest::Client, email: &str, password: &str) -> Answer {
    login_via(app, from, None, email, password).await
}

/// A sign-in, optionally relayed by a proxy that says `X-Forwarded-For: xff`.
async fn login_via(
    app: &TestApp,
    from: &reqwest::Client,
    xff: Option<&str>,
    email: &str,
    password: &str,
) -> Answer {
    let started = Instant::now();
    let mut rb = from.post(app.url("/api/v1/auth/login"));
    if let Some(xff) = xff {
        rb = rb.header("x-forwarded-for", xff);
    }
    let r = rb
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request");
    let status = r.status();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        kind: body["type"].as_str().unwrap_or("").to_string(),
        retry_after,
        took: started.elapsed(),
    }
}

async fn admin_signin_from_elsewhere_survives_a_lockout(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.login_max_failures = 3;
        c.login_lockout_secs = 3600;
        c.login_addr_burst = 100;
    })
    .await;
    let attacker = client_from("127.0.0.2");
    for i in 0..10 {
        let a = login(&app, &attacker, ADMIN_EMAIL, "guess").await;
        let want = if i < 3 { 401 } else { 429 };
        assert_eq!(a.status, want, "attempt {i}: {}", a.kind);
    }
    // The attacker's address is locked out of the account, even with the
    // right password, and told for how long.
    let a = login(&app, &attacker, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.kind, "https://weir.dev/problems/account-locked");
    assert!(
        a.retry_after.is_some_and(|s| s > 3000),
        "{:?}",
        a.retry_after
    );
    // The admin, from another address, signs in.
    let a = login(&app, &client_from("127.0.0.3"), ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.kind);
    app.stop().await;
}
on_both_databases!(
    admin_signin_from_elsewhere_survives_a_lockout,
    super::admin_signin_from_elsewhere_survives_a_lockout
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_throttled_across_accounts() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.login_addr_burst = 5;
        c.login_addr_per_min = 1;
    })
    .await;
    let attacker = client_from("127.0.0.4");
    for i in 0..5 {
        let a = login(&app, &attacker, &format!("u{i}@spray.test"), "guess").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Spraying one more account, or even the right admin password: refused
    // before any password is checked, with a time to come back.
    for (email, pw) in [("u5@spray.test", "guess"), (ADMIN_EMAIL, ADMIN_PASSWORD)] {
        let a = login(&app, &attacker, email, pw).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert_eq!(a.kind, "https://weir.dev/problems/too-many-attempts");
        assert!(a.retry_after.is_some_and(|s| (1..=60).contains(&s)));
    }
    // Only that address.
    let a = login(&app, &client_from("127.0.0.1"), ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::OK);
    app.stop().await;
}

async fn failed_signins_are_aggregated_in_the_audit_log(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.login_addr_burst = 1000;
        c.login_audit_window_secs = 2;
    })
    .await;
    let admin = app.admin().await;
    let attacker = client_from("127.0.0.2");
    for _ in 0..50 {
        let a = login(&app, &attacker, ADMIN_EMAIL, "guess").await;
        assert!(a.status == 401 || a.status == 429, "{}", a.status);
    }
    // Wait for the window to close and its tally to be written.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (rows, total) = loop {
        let page = app
            .get_ok(
                "/api/v1/audit?action=auth.login&outcome=failure&limit=500",
                &admin,
            )
            .await;
        let rows: Vec<Value> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["client_addr"] == "127.0.0.2")
            .cloned()
            .collect();
        let total: u64 = rows
            .iter()
            .map(|r| r["details"]["count"].as_u64().unwrap_or(1))
            .sum();
        if total >= 50 || Instant::now() > deadline {
            break (rows, total);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(total, 50, "every attempt is counted: {rows:#?}");
    assert!(rows.len() <= 10, "{} entries for 50 attempts", rows.len());
    let agg = rows
        .iter()
        .find(|r| r["details"]["count"].as_u64() > Some(1))
        .expect("an aggregate entry");
    assert_eq!(agg["target"], format!("user:{ADMIN_EMAIL}"));
    assert_eq!(agg["details"]["window_secs"], 2);
    assert!(matches!(
        weir_api::audit::verify(&app.running.state.db)
            .await
            .unwrap(),
        weir_api::audit::Verdict::Intact { .. }
    ));
    app.stop().await;
}
on_both_databases!(
    failed_signins_are_aggregated_in_the_audit_log,
    super::failed_signins_are_aggregated_in_the_audit_log
);

/// The value of one sample in the Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_signins_are_counted_in_metrics() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.login_addr_burst = 2;
        c.login_addr_per_min = 1;
    })
    .await;
    let attacker = client_from("127.0.0.5");
    for _ in 0..4 {
        login(&app, &attacker, "victim@metrics.test", "guess").await;
    }
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = |reason: &str| {
        sample(
            &text,
            &format!("weir_api_auth_login_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("bad_credentials"), Some(2.0), "{text}");
    assert_eq!(refused("address_limit"), Some(2.0), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_password_hashes_are_capped() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.login_addr_burst = 1000;
        c.login_max_concurrent_hashes = 1;
        c.login_hash_wait_ms = 0;
    })
    .await;
    let attacker = client_from("127.0.0.6");
    let attempts = (0..16).map(|i| {
        let (app, attacker) = (&app, &attacker);
        async move { login(app, attacker, &format!("u{i}@flood.test"), "guess").await }
    });
    let answers = futures::future::join_all(attempts).await;
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    let checked = answers.iter().filter(|a| a.status == 401).count();
    assert!(!busy.is_empty(), "no attempt was turned away");
    assert!(checked >= 1, "some passwords were checked");
    for a in &busy {
        assert_eq!(a.kind, "https://weir.dev/problems/too-many-attempts");
        assert_eq!(a.retry_after, Some(1));
        // Turned away at once, not after waiting for the hashes in front.
        assert!(a.took < Duration::from_secs(1), "{:?}", a.took);
    }
    // The server is still there for the admin once the flood is over.
    let a = login(&app, &app.http, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::OK);
    app.stop().await;
}

/// Behind a trusted proxy (e.g. the ingress) every client would otherwise
/// share the proxy's address, and one attacker would spend everyone's
/// budget; an untrusted client cannot dodge its budget with a forged header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_are_told_apart() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.login_addr_burst = 2;
        c.login_addr_per_min = 1;
        c.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let admin = app.admin().await;
    let proxy = client_from("127.0.0.2");
    let (attacker, other) = (Some("203.0.113.5, 10.9.9.9"), Some("198.51.100.7"));
    // The proxy's own hop 10.9.9.9 is not trusted: it is the client then.
    for _ in 0..2 {
        let a = login_via(&app, &proxy, attacker, "x@proxy.test", "guess").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = login_via(&app, &proxy, attacker, "x@proxy.test", "guess").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let a = login_via(&app, &proxy, other, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::OK, "another client of the proxy");
    let page = app
        .get_ok("/api/v1/audit?action=auth.login&outcome=failure", &admin)
        .await;
    assert_eq!(page["items"][0]["client_addr"], "10.9.9.9");

    // Not from a trusted proxy: the header is ignored.
    let forger = client_from("127.0.0.3");
    for i in 0..3 {
        let xff = format!("192.0.2.{i}");
        let a = login_via(&app, &forger, Some(&xff), "y@proxy.test", "guess").await;
        let want = if i < 2 { 401 } else { 429 };
        assert_eq!(a.status, want, "attempt {i}");
    }
    app.stop().await;
}
