//! Every response carries the browser hardening headers: a CSP that lets
//! the built console run and nothing else (no inline script, no framing,
//! no foreign connections), nosniff, no referrer, no framing; HSTS only
//! when the public URL is https.

use crate::common;

use common::{Backend, Cred, TestApp};
use reqwest::header::HeaderMap;

const CONSOLE_INDEX: &str = "<!doctype html><html><body><div id=\"root\"></div></body></html>";

/// An api whose console directory holds an `index.html`.
async fn start(public_url: &str) -> (TestApp, tempfile::TempDir) {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), CONSOLE_INDEX).unwrap();
    let dir = web.path().to_path_buf();
    let public_url = public_url.to_string();
    let app = TestApp::start_with(Backend::Sqlite, move |c| {
        c.web_dir = dir;
        c.public_url = public_url;
    })
    .await;
    (app, web)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

fn assert_hardened(what: &str, h: &HeaderMap) {
    let csp = header(h, "content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy in {h:?}"));
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP lacks {directive}: {csp}"
        );
    }
    assert!(
        !csp.contains("unsafe-"),
        "{what}: CSP allows unsafe-*: {csp}"
    );
    assert_eq!(
        header(h, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(header(h, "referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(header(h, "x-frame-options"), Some("DENY"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_is_hardened_and_plain_http_gets_no_hsts() {
    let (app, _web) = start("http://weir.test:8080").await;
    let checks = [
        ("api route", "/healthz", 200),
        ("unknown api path (problem)", "/api/v1/no-such-thing", 404),
        ("signed-out api call (problem)", "/api/v1/me", 401),
        ("console index", "/", 200),
        ("console deep link", "/orgs/acme/projects", 200),
    ];
    for (what, path, status) in checks {
        let r = app.get(path, &Cred::None).await;
        assert_eq!(r.status.as_u16(), status, "{what} {path}: {:?}", r.body);
        assert_hardened(what, &r.headers);
        assert_eq!(
            header(&r.headers, "strict-transport-security"),
            None,
            "{what}: HSTS on a plain-http api"
        );
    }
    let index = app.get("/", &Cred::None).await;
    assert_eq!(index.body.as_str(), Some(CONSOLE_INDEX));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_public_url_adds_hsts() {
    let (app, _web) = start("https://weir.example.com").await;
    for (what, path) in [("api route", "/healthz"), ("console index", "/")] {
        let r = app.get(path, &Cred::None).await;
        assert_hardened(what, &r.headers);
        assert_eq!(
            header(&r.headers, "strict-transport-security"),
            Some("max-age=31536000"),
            "{what}"
        );
    }
    let missing = app.get("/api/v1/no-such-thing", &Cred::None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        header(&missing.headers, "strict-transport-security"),
        Some("max-age=31536000")
    );
    app.stop().await;
}
