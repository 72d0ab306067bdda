//! Single sign-on end to end against a real OpenID provider: the npm
//! `oidc-provider` in e2e/oidc, started by this test (`npm install` there
//! first; the test fails with a clear message when node or the package is
//! missing). Follows the redirects and fills the provider's login and
//! consent forms like a browser would.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use common::{Backend, Cred, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use weir_testkit::free_port;

struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(redirect_uri: &str) -> Provider {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the OpenID provider is not installed: run `npm install` in {}",
        dir.display()
    );
    let port = free_port();
    let child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("CLIENT_ID", "weir")
        .env("CLIENT_SECRET", "weir-secret")
        .env("REDIRECT_URI", redirect_uri)
        .env(
            "USERS",
            json!({"pm@plant.test": ["riverside-ops"], "viewer@plant.test": ["north-viewers"]})
                .to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is required for the SSO test (apt-get install nodejs)");
    // Owned by `Provider` at once, so the process is killed and reaped on every path.
    let mut provider = Provider {
        child,
        issuer: String::new(),
    };
    // Read its stdout on a thread (blocking reads) and hand over the issuer
    // it announces; the thread keeps draining so the provider never blocks
    // on a full pipe. The wait for it has a deadline.
    let stdout = provider.child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(issuer) = line.trim().strip_prefix("READY ") {
                let _ = ready_tx.send(issuer.to_string());
            }
        }
    });
    match ready_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(issuer) => provider.issuer = issuer,
        Err(RecvTimeoutError::Disconnected) => panic!("oidc-provider exited before it was ready"),
        Err(RecvTimeoutError::Timeout) => panic!("oidc-provider was not ready after 60 s"),
    }
    provider
}

/// Resolve a Location header against the URL it came from.
fn resolve(base: &str, loc: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(loc)
        .unwrap()
        .to_string()
}

/// Follow the sign-in from the api's login URL through the provider's forms
/// back to the api's callback; returns the api's final answer.
async fn browser_sign_in(
    http: &reqwest::Client,
    start: &str,
    login: &str,
    callback_prefix: &str,
) -> reqwest::Response {
    let form_re = regex::Regex::new(r#"(?s)<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>"#).unwrap();
    let input_re = regex::Regex::new(r#"<input[^>]*>"#).unwrap();
    let name_re = regex::Regex::new(r#"name="([^"]+)""#).unwrap();
    let value_re = regex::Regex::new(r#"value="([^"]*)""#).unwrap();
    let mut url = start.to_string();
    let mut method = Method::GET;
    let mut form: Vec<(String, String)> = Vec::new();
    for _ in 0..20 {
        let mut rb = http.request(method.clone(), &url);
        if method == Method::POST {
            rb = rb.form(&form);
        }
        let resp = rb.send().await.unwrap();
        if url.starts_with(callback_prefix) {
            return resp;
        }
        if resp.status().is_redirection() {
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            url = resolve(&url, &loc);
            method = Method::GET;
            continue;
        }
        let status = resp.status();
        let html = resp.text().await.unwrap();
        assert!(
            status.is_success(),
            "provider answered {status} at {url}: {html}"
        );
        let cap = form_re
            .captures(&html)
            .unwrap_or_else(|| panic!("no form at {url}: {html}"));
        let action = resolve(&url, &cap[1]);
        form = input_re
            .find_iter(&cap[2])
            .filter_map(|tag| {
                let tag = tag.as_str();
                let name = name_re.captures(tag)?[1].to_string();
                let value = match name.as_str() {
                    "login" => login.to_string(),
                    "password" => "any-password".to_string(),
                    _ => value_re
                        .captures(tag)
                        .map(|v| v[1].to_string())
                        .unwrap_or_default(),
                };
                Some((name, value))
            })
            .collect();
        url = action;
        method = Method::POST;
    }
    panic!("sign-in did not come back to the api");
}

async fn sso_end_to_end(b: Backend) {
    let api_port = free_port();
    let public = format!("http://127.0.0.1:{api_port}");
    let callback = format!("{public}/api/v1/auth/oidc/callback");
    let provider = start_provider(&callback);
    let issuer = provider.issuer.clone();
    let app = TestApp::start_with(b, |c| {
        c.listen = format!("127.0.0.1:{api_port}").parse().unwrap();
        c.public_url = public.clone();
        c.oidc.issuer = Some(issuer);
        c.oidc.client_id = Some("weir".into());
        c.oidc.client_secret = Some("weir-secret".into());
    })
    .await;
    let admin = app.admin().await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "riverside", "name": "Riverside"}),
    )
    .await;
    app.post(
        "/api/v1/orgs/riverside/projects",
        &admin,
        json!({"slug": "north", "name": "North"}),
    )
    .await;
    let r = app
        .call(
            Method::PUT,
            "/api/v1/orgs/riverside/sso/group-mappings",
            &admin,
            Some(json!({"mappings": [
                {"group": "riverside-ops", "role": "org-admin"},
                {"group": "north-viewers", "role": "project-viewer", "project": "north"}
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let providers = app.get("/api/v1/auth/providers", &Cred::None).await;
    assert_eq!(
        providers.body["oidc"]["login_url"],
        "/api/v1/auth/oidc/login"
    );

    for (login, check) in [("pm@plant.test", "org"), ("viewer@plant.test", "project")] {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let start = format!("{public}/api/v1/auth/oidc/login?return_to=/orgs/riverside");
        let done = browser_sign_in(&http, &start, login, &callback).await;
        assert_eq!(
            done.status(),
            StatusCode::SEE_OTHER,
            "{:?}",
            done.text().await
        );
        assert_eq!(done.headers()["location"], "/orgs/riverside");
        let cookie = common::session_cookie(done.headers()).expect("session cookie after SSO");
        let me = app
            .get(
                "/api/v1/me",
                &Cred::Session {
                    cookie,
                    csrf: String::new(),
                },
            )
            .await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["user"]["email"], login, "just-in-time user");
        assert_eq!(me.body["user"]["has_password"], false);
        if check == "org" {
            assert_eq!(me.body["orgs"][0]["org"], "riverside", "{:?}", me.body);
            assert_eq!(me.body["orgs"][0]["role"], "org-admin");
        } else {
            assert!(me.body["orgs"].as_array().unwrap().is_empty());
            assert_eq!(me.body["projects"][0]["project"], "north", "{:?}", me.body);
            assert_eq!(me.body["projects"][0]["role"], "project-viewer");
        }
    }
    // A replayed or forged state is refused.
    let r = app
        .get(
            "/api/v1/auth/oidc/callback?code=abc&state=forged",
            &Cred::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let audit = app
        .get("/api/v1/audit?action=auth.login&outcome=failure", &admin)
        .await;
    assert!(!audit.body["items"].as_array().unwrap().is_empty());
    let audit = app
        .get("/api/v1/audit?action=auth.login&outcome=success", &admin)
        .await;
    assert!(audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["details"]["method"] == "oidc"));
    app.stop().await;
    drop(provider);
}
on_both_databases!(sso_end_to_end, super::sso_end_to_end);
