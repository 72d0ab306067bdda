//! Single sign-on end to end against a real OpenID provider: the npm
//! `oidc-provider` in e2e/oidc, started by this test (`npm install` there
//! first; the test fails with a clear message when node or the package is
//! missing). Follows the redirects and fills the provider's login and
//! consent forms like a browser would. The provider runs in both modes
//! weir-api must handle: scope claims only from UserInfo (the package's
//! default) and in the ID token too.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use common::{Backend, Cred, TestApp, ADMIN_EMAIL};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use weir_api::Config;
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

/// Where the provider keeps the scope claims (email, name, groups).
#[derive(Clone, Copy, Debug)]
enum Claims {
    /// Only UserInfo has them (oidc-provider's default).
    InUserInfo,
    /// The ID token has them too.
    InIdToken,
}

fn start_provider(redirect_uri: &str, users: &Value, claims: Claims) -> Provider {
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
        .env("USERS", users.to_string())
        .env(
            "CLAIMS_IN_ID_TOKEN",
            if matches!(claims, Claims::InIdToken) {
                "1"
            } else {
                "0"
            },
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

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// weir-api (on a port fixed before start, SSO pointed at the provider)
/// with its own provider.
struct Sso {
    app: TestApp,
    public: String,
    callback: String,
    _provider: Provider,
}

impl Sso {
    async fn start(
        b: Backend,
        users: Value,
        claims: Claims,
        tweak: impl FnOnce(&mut Config),
    ) -> Sso {
        let api_port = free_port();
        let public = format!("http://127.0.0.1:{api_port}");
        let callback = format!("{public}/api/v1/auth/oidc/callback");
        let provider = start_provider(&callback, &users, claims);
        let issuer = provider.issuer.clone();
        let app = TestApp::start_with(b, |c| {
            c.listen = format!("127.0.0.1:{api_port}").parse().unwrap();
            c.public_url = public.clone();
            c.oidc.issuer = Some(issuer);
            c.oidc.client_id = Some("weir".into());
            c.oidc.client_secret = Some("weir-secret".into());
            tweak(c);
        })
        .await;
        Sso {
            app,
            public,
            callback,
            _provider: provider,
        }
    }

    fn login_url(&self) -> String {
        format!(
            "{}/api/v1/auth/oidc/login?return_to=/orgs/riverside",
            self.public
        )
    }

    /// Start a sign-in in `http` and fill the provider's forms as `login`;
    /// the callback URL the provider sends the browser to, not yet visited.
    async fn to_callback(&self, http: &reqwest::Client, login: &str) -> String {
        let form_re =
            regex::Regex::new(r#"(?s)<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>"#).unwrap();
        let input_re = regex::Regex::new(r#"<input[^>]*>"#).unwrap();
        let name_re = regex::Regex::new(r#"name="([^"]+)""#).unwrap();
        let value_re = regex::Regex::new(r#"value="([^"]*)""#).unwrap();
        let mut url = self.login_url();
        let mut method = Method::GET;
        let mut form: Vec<(String, String)> = Vec::new();
        for _ in 0..20 {
            if url.starts_with(&self.callback) {
                return url;
            }
            let mut rb = http.request(method.clone(), &url);
            if method == Method::POST {
                rb = rb.form(&form);
            }
            let resp = rb.send().await.unwrap();
            if resp.status().is_redirection() {
                let loc = resp.headers()["location"].to_str().unwrap().to_string();
                url = resolve(&url, &loc);
                method = Method::GET;
                continue;
            }
            let status = resp.status();
            let html = resp.text().await.unwrap();
            assert!(status.is_success(), "answered {status} at {url}: {html}");
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

    /// A whole sign-in as `login` in a fresh browser: the api's answer at
    /// the callback.
    async fn sign_in(&self, login: &str) -> reqwest::Response {
        let http = browser();
        let callback = self.to_callback(&http, login).await;
        http.get(&callback).send().await.unwrap()
    }

    /// The signed-in user's `/me`; panics unless the sign-in worked.
    async fn me_after(&self, resp: reqwest::Response) -> Value {
        let headers = resp.headers().clone();
        let status = resp.status();
        assert_eq!(status, StatusCode::SEE_OTHER, "{:?}", resp.text().await);
        assert_eq!(headers["location"], "/orgs/riverside");
        let cookie = common::session_cookie(&headers).expect("session cookie after SSO");
        let cred = Cred::Session {
            cookie,
            csrf: String::new(),
        };
        self.app.get_ok("/api/v1/me", &cred).await
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

/// A refused sign-in: `status`, no session; the problem.
async fn refused(resp: reqwest::Response, status: StatusCode) -> Value {
    let session = common::session_cookie(resp.headers());
    assert_eq!(resp.status(), status);
    assert_eq!(session, None, "a refused sign-in opens no session");
    resp.json().await.unwrap()
}

/// The audit log's failed sign-ins.
async fn failed_logins(app: &TestApp, admin: &Cred) -> Vec<Value> {
    app.get_ok("/api/v1/audit?action=auth.login&outcome=failure", admin)
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn sso_end_to_end(b: Backend, claims: Claims) {
    let users = json!({"pm@plant.test": ["riverside-ops"], "viewer@plant.test": ["north-viewers"]});
    let sso = Sso::start(b, users, claims, |_| {}).await;
    let app = &sso.app;
    let admin = app.admin().await;
    app.post_ok(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "riverside", "name": "Riverside"}),
    )
    .await;
    app.post_ok(
        "/api/v1/orgs/riverside/projects",
        &admin,
        json!({"slug": "north", "name": "North"}),
    )
    .await;
    // A mapping to a project the org does not have: 409 naming the entry.
    let r = app
        .call(
            Method::PUT,
            "/api/v1/orgs/riverside/sso/group-mappings",
            &admin,
            Some(json!({"mappings": [
                {"group": "riverside-ops", "role": "org-admin"},
                {"group": "south-viewers", "role": "project-viewer", "project": "south"}
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "mappings[1].project");
    let r = app
        .call(
            Method::PUT,
            "/api/v1/orgs/riverside/sso/group-mappings",
            &admin,
            // Two mappings for one group: the higher role (operator) wins.
            Some(json!({"mappings": [
                {"group": "riverside-ops", "role": "org-admin"},
                {"group": "north-viewers", "role": "project-viewer", "project": "north"},
                {"group": "north-viewers", "role": "project-operator", "project": "north"}
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
        let me = sso.me_after(sso.sign_in(login).await).await;
        assert_eq!(me["user"]["email"], login, "just-in-time user");
        assert_eq!(me["user"]["name"], login.split('@').next().unwrap());
        assert_eq!(me["user"]["has_password"], false);
        if check == "org" {
            assert_eq!(me["orgs"][0]["org"], "riverside", "{me:?}");
            assert_eq!(me["orgs"][0]["role"], "org-admin");
        } else {
            assert!(me["orgs"].as_array().unwrap().is_empty());
            assert_eq!(me["projects"][0]["project"], "north", "{me:?}");
            assert_eq!(me["projects"][0]["role"], "project-operator");
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
    assert!(!failed_logins(app, &admin).await.is_empty());
    let audit = app
        .get_ok("/api/v1/audit?action=auth.login&outcome=success", &admin)
        .await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["details"]["method"] == "oidc"));
    sso.stop().await;
}

/// The package's default: email, name and groups only from UserInfo.
async fn sso_claims_from_userinfo(b: Backend) {
    sso_end_to_end(b, Claims::InUserInfo).await
}
on_both_databases!(sso_end_to_end_userinfo, super::sso_claims_from_userinfo);

async fn sso_claims_in_id_token(b: Backend) {
    sso_end_to_end(b, Claims::InIdToken).await
}
on_both_databases!(sso_end_to_end_id_token, super::sso_claims_in_id_token);

/// With linking off (the default), a provider account with the email of an
/// existing account never gets in: not the administrator's, verified or
/// not, nor anyone else's; and no second account is made.
async fn sso_never_takes_over_accounts(b: Backend) {
    let users = json!({
        "admin-unverified": {"email": ADMIN_EMAIL, "email_verified": false},
        "admin-verified": {"email": ADMIN_EMAIL},
        "ops-verified": {"email": "ops@plant.test"},
    });
    let sso = Sso::start(b, users, Claims::InUserInfo, |_| {}).await;
    let app = &sso.app;
    let admin = app.admin().await;
    app.user(&admin, "ops@plant.test").await;
    for (login, email) in [
        ("admin-unverified", ADMIN_EMAIL),
        ("admin-verified", ADMIN_EMAIL),
        ("ops-verified", "ops@plant.test"),
    ] {
        let problem = refused(sso.sign_in(login).await, StatusCode::CONFLICT).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("an account with this email already exists"),
            "{problem:?}"
        );
        let fails = failed_logins(app, &admin).await;
        assert!(
            fails
                .iter()
                .any(|e| e["details"]["subject"] == login && e["details"]["email"] == email),
            "audited: {fails:?}"
        );
    }
    let accounts = app.get_ok("/api/v1/users", &admin).await;
    let emails: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, [ADMIN_EMAIL, "ops@plant.test"], "no second account");
    sso.stop().await;
}
on_both_databases!(
    sso_no_account_takeover,
    super::sso_never_takes_over_accounts
);

/// With linking on, a verified email links to an ordinary account; an
/// unverified one does not, nor does the administrator's even verified.
async fn sso_links_only_verified_ordinary_accounts(b: Backend) {
    let users = json!({
        "ops@plant.test": {"groups": []},
        "guard-unverified": {"email": "guard@plant.test", "email_verified": false},
        "admin-verified": {"email": ADMIN_EMAIL},
    });
    let sso = Sso::start(b, users, Claims::InIdToken, |c| {
        c.oidc.link_verified_email = true;
    })
    .await;
    let app = &sso.app;
    let admin = app.admin().await;
    let (ops_id, _) = app.user(&admin, "ops@plant.test").await;
    app.user(&admin, "guard@plant.test").await;
    let me = sso.me_after(sso.sign_in("ops@plant.test").await).await;
    assert_eq!(
        me["user"]["id"],
        ops_id.as_str(),
        "linked to the local account"
    );
    assert_eq!(me["user"]["has_password"], true);
    for login in ["guard-unverified", "admin-verified"] {
        refused(sso.sign_in(login).await, StatusCode::CONFLICT).await;
    }
    let fails = failed_logins(app, &admin).await;
    for sub in ["guard-unverified", "admin-verified"] {
        assert!(
            fails.iter().any(|e| e["details"]["subject"] == sub),
            "{sub} audited: {fails:?}"
        );
    }
    sso.stop().await;
}
on_both_databases!(
    sso_linking_verified_email,
    super::sso_links_only_verified_ordinary_accounts
);

/// An invitation goes to whoever owns the email: an unverified claim of it
/// signs in but gets nothing from the invitation.
async fn sso_invitations_need_verified_email(b: Backend) {
    let users = json!({
        "x@plant.test": {"email_verified": false},
        "y@plant.test": {"groups": []},
    });
    let sso = Sso::start(b, users, Claims::InUserInfo, |_| {}).await;
    let app = &sso.app;
    let admin = app.admin().await;
    app.post_ok(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "riverside", "name": "Riverside"}),
    )
    .await;
    app.post_ok(
        "/api/v1/orgs/riverside/projects",
        &admin,
        json!({"slug": "north", "name": "North"}),
    )
    .await;
    for email in ["x@plant.test", "y@plant.test"] {
        app.post_ok(
            "/api/v1/orgs/riverside/projects/north/invitations",
            &admin,
            json!({"email": email, "role": "project-editor"}),
        )
        .await;
    }
    let me = sso.me_after(sso.sign_in("x@plant.test").await).await;
    assert_eq!(me["user"]["email"], "x@plant.test");
    assert!(me["projects"].as_array().unwrap().is_empty(), "{me:?}");
    assert!(me["orgs"].as_array().unwrap().is_empty(), "{me:?}");
    let me = sso.me_after(sso.sign_in("y@plant.test").await).await;
    assert_eq!(me["projects"][0]["project"], "north", "{me:?}");
    assert_eq!(me["projects"][0]["role"], "project-editor");
    sso.stop().await;
}
on_both_databases!(
    sso_invitations_verified_only,
    super::sso_invitations_need_verified_email
);

/// The callback URL of a sign-in started in one browser does nothing in
/// another (login CSRF: an attacker's sign-in delivered to a victim), and
/// works once in the browser that started it.
async fn sso_state_bound_to_browser(b: Backend) {
    let users = json!({"pm@plant.test": []});
    let sso = Sso::start(b, users, Claims::InUserInfo, |_| {}).await;
    let app = &sso.app;
    let admin = app.admin().await;
    let r = browser().get(sso.login_url()).send().await.unwrap();
    let set: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let state = set
        .iter()
        .find(|c| c.starts_with("weir_oidc_state="))
        .expect("state cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/api/v1/auth/oidc",
        "Max-Age=600",
    ] {
        assert!(state.contains(attr), "{attr} in {state}");
    }

    let browser1 = browser();
    let callback = sso.to_callback(&browser1, "pm@plant.test").await;
    // No state cookie at all, and another sign-in's cookie: both refused.
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    refused(
        stranger.get(&callback).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let browser2 = browser();
    browser2.get(sso.login_url()).send().await.unwrap();
    let r = browser2.get(&callback).send().await.unwrap();
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("weir_oidc_state=;"));
    assert!(cleared, "the callback clears the state cookie");
    let problem = refused(r, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not started in this browser"),
        "{problem:?}"
    );
    let fails = failed_logins(app, &admin).await;
    let unbound = fails
        .iter()
        .filter(|e| {
            e["details"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not started in this browser"))
        })
        .count();
    assert_eq!(unbound, 2, "both refusals audited: {fails:?}");

    let done = browser1.get(&callback).send().await.unwrap();
    let me = sso.me_after(done).await;
    assert_eq!(me["user"]["email"], "pm@plant.test");
    // Used once: the same URL again is refused.
    refused(
        browser1.get(&callback).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    sso.stop().await;
}
on_both_databases!(sso_state_binding, super::sso_state_bound_to_browser);

/// A disabled account cannot sign in with SSO either (refused, audited,
/// no session); enabled again, it can.
async fn sso_refuses_disabled_accounts(b: Backend) {
    let users = json!({"ops": {"email": "ops@plant.test"}});
    let sso = Sso::start(b, users, Claims::InUserInfo, |_| {}).await;
    let app = &sso.app;
    let admin = app.admin().await;
    let me = sso.me_after(sso.sign_in("ops").await).await;
    let id = me["user"]["id"].as_str().unwrap().to_string();
    app.post_ok(&format!("/api/v1/users/{id}/disable"), &admin, json!({}))
        .await;
    let problem = refused(sso.sign_in("ops").await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["detail"], "this account is disabled");
    let fails = failed_logins(app, &admin).await;
    assert!(
        fails.iter().any(|e| e["details"]["subject"] == "ops"
            && e["details"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("disabled")),
        "audited: {fails:?}"
    );
    app.post_ok(&format!("/api/v1/users/{id}/enable"), &admin, json!({}))
        .await;
    sso.me_after(sso.sign_in("ops").await).await;
    sso.stop().await;
}
on_both_databases!(sso_disabled_account, super::sso_refuses_disabled_accounts);
