//! Test harness: a real weir-api on a random port over a fresh database,
//! SQLite (temp file) or PostgreSQL (a uniquely named database, dropped at
//! the end). PostgreSQL must be reachable: tests fail, never skip, without it.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use weir_api::{Config, Running};

pub const ADMIN_EMAIL: &str = "admin@weir.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test: a SQLite file in a temporary directory,
/// or a PostgreSQL database of its own (testkit's; dropped with this).
pub struct TestDb {
    pub url: String,
    dir: Option<tempfile::TempDir>,
    pg: Option<weir_testkit::TestDb>,
}

impl TestDb {
    pub async fn new(b: Backend) -> TestDb {
        match b {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("weir.db").display());
                TestDb {
                    url,
                    dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let pg = weir_testkit::TestDb::create("weir_api").await;
                TestDb {
                    url: pg.url.clone(),
                    dir: None,
                    pg: Some(pg),
                }
            }
        }
    }

    /// Remove the database now (its connections are closed first by the
    /// callers; PostgreSQL's are ended anyway). Dropping does the same.
    pub async fn drop_db(self) {
        drop(self);
    }
}

pub fn test_config(url: &str) -> Config {
    let mut c = Config::for_database(url);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.bootstrap_admin_email = ADMIN_EMAIL.to_string();
    c.bootstrap_admin_password = Some(ADMIN_PASSWORD.to_string());
    c.login_failure_delay_ms = 5;
    c.db_max_connections = 8;
    c.web_dir = std::env::temp_dir().join("weir-api-no-web-dir");
    // Fleet: PostgreSQL has no file to generate a master key next to; never
    // pick up a developer's KUBECONFIG.
    c.fleet.master_key =
        Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into());
    c.fleet.kube_fleet = weir_api::fleet::KubeFleet::Off;
    // The tests' webhook receivers, SMTP servers and brokers listen on
    // loopback, which the outbound policy refuses unless allowed; the
    // outbound tests clear this to see the default.
    c.outbound_allow_cidrs = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
    c
}

pub struct TestApp {
    pub running: Running,
    pub db: TestDb,
    pub http: reqwest::Client,
}

/// How a test request authenticates.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Session { cookie: String, csrf: String },
    Bearer(String),
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub async fn start(b: Backend) -> TestApp {
        Self::start_with(b, |_| {}).await
    }

    pub async fn start_with(b: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::new(b).await;
        let mut cfg = test_config(&db.url);
        tweak(&mut cfg);
        let running = weir_api::start(cfg).await.expect("api starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp { running, db, http }
    }

    /// Another api process on this app's database (a second replica); its
    /// `stop` leaves the database to this app.
    pub async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut cfg = test_config(&self.db.url);
        tweak(&mut cfg);
        let running = weir_api::start(cfg).await.expect("replica starts");
        TestApp {
            running,
            db: TestDb {
                url: self.db.url.clone(),
                dir: None,
                pg: None,
            },
            http: self.http.clone(),
        }
    }

    pub async fn stop(self) {
        self.running.task.abort();
        self.running.state.db.clone().close().await.ok();
        self.db.drop_db().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.running.url(), path)
    }

    pub async fn call(&self, method: Method, path: &str, cred: &Cred, body: Option<Value>) -> Resp {
        let mut rb = self.http.request(method, self.url(path));
        match cred {
            Cred::None => {}
            Cred::Session { cookie, csrf } => {
                rb = rb
                    .header("cookie", format!("weir_session={cookie}"))
                    .header("x-csrf-token", csrf);
            }
            Cred::Bearer(t) => rb = rb.bearer_auth(t),
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, cred: &Cred) -> Resp {
        self.call(Method::GET, path, cred, None).await
    }

    pub async fn post(&self, path: &str, cred: &Cred, body: Value) -> Resp {
        self.call(Method::POST, path, cred, Some(body)).await
    }

    /// POST that must succeed; its body.
    pub async fn post_ok(&self, path: &str, cred: &Cred, body: Value) -> Value {
        let r = self.post(path, cred, body).await;
        assert!(
            r.status.is_success(),
            "POST {path}: {} {:?}",
            r.status,
            r.body
        );
        r.body
    }

    /// GET that must answer 200; its body.
    pub async fn get_ok(&self, path: &str, cred: &Cred) -> Value {
        let r = self.get(path, cred).await;
        assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
        r.body
    }

    /// Sign in with a password; panics unless it works.
    pub async fn login(&self, email: &str, password: &str) -> Cred {
        let r = self
            .post(
                "/api/v1/auth/login",
                &Cred::None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {:?}", r.body);
        let cookie = session_cookie(&r.headers).expect("session cookie");
        let csrf = r.body["csrf_token"].as_str().unwrap().to_string();
        Cred::Session { cookie, csrf }
    }

    pub async fn admin(&self) -> Cred {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Create a local account as `admin` and sign it in.
    pub async fn user(&self, admin: &Cred, email: &str) -> (String, Cred) {
        let r = self
            .post(
                "/api/v1/users",
                admin,
                serde_json::json!({"email": email, "name": email, "password": "password-for-tests"}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create user {email}: {:?}",
            r.body
        );
        let id = r.body["id"].as_str().unwrap().to_string();
        (id, self.login(email, "password-for-tests").await)
    }
}

pub fn session_cookie(h: &reqwest::header::HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("weir_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

/// Run a test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body($crate::common::Backend::Postgres).await
            }
        }
    };
}
