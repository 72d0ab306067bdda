//! Walks every route of the generated OpenAPI document as each role, as the
//! owner of another organization and anonymously, and compares each answer
//! with api/rbac/matrix.csv. A route missing from the matrix (or a matrix row
//! whose route is gone) fails the test.
//!
//! The api gets a historian database (real PostgreSQL, empty `readings`)
//! so that reads of series answer 200 to the callers who may read them.

use crate::common;
use crate::historian_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Backend, Cred, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const MATRIX: &str = include_str!("../../rbac/matrix.csv");
const CALLERS: [&str; 9] = [
    "system-admin",
    "org-owner",
    "org-admin",
    "project-admin",
    "project-editor",
    "project-operator",
    "project-viewer",
    "other-org",
    "anonymous",
];
const PASSWORD: &str = "password-for-tests";
/// Each caller's password after its `PUT /api/v1/me/password` row.
const NEW_PASSWORD: &str = "another-password-for-tests";

type Route = (String, String); // (METHOD, path template)

fn parse_matrix() -> BTreeMap<Route, Vec<String>> {
    let mut lines = MATRIX
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[2..], &CALLERS, "matrix columns");
    let mut m = BTreeMap::new();
    for l in lines {
        let cells: Vec<String> = l.split(',').map(|c| c.trim().to_string()).collect();
        assert_eq!(cells.len(), 2 + CALLERS.len(), "row {l}");
        for c in &cells[2..] {
            assert!(
                ["allow", "deny", "hidden", "unauth", "conflict", "public"].contains(&c.as_str()),
                "cell {c} in {l}"
            );
        }
        let prev = m.insert((cells[0].clone(), cells[1].clone()), cells[2..].to_vec());
        assert!(prev.is_none(), "duplicate row {l}");
    }
    m
}

fn documented_routes(doc: &Value) -> BTreeSet<Route> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

struct Actor {
    email: String,
    cred: Cred,
}

struct World {
    app: TestApp,
    admin: Cred,
    actors: BTreeMap<&'static str, Actor>,
    n: AtomicUsize,
}

/// One organization laid out for a caller: the caller holds its role here.
struct Fixture {
    org: String,
    project: String,
    org_target: String,
    project_target: String,
    org_invitation: String,
    project_invitation: String,
    org_token: String,
    project_token: String,
    alert_rule: String,
    alert_channel: String,
    alert_silence: String,
    fleet_enrollment_token: String,
}

impl World {
    fn next(&self) -> usize {
        self.n.fetch_add(1, Ordering::SeqCst)
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let r = self.app.call(method, path, &self.admin, Some(body)).await;
        assert!(
            r.status.is_success(),
            "fixture {path}: {} {:?}",
            r.status,
            r.body
        );
        r.body
    }

    async fn fixture(&self, caller: &str) -> Fixture {
        let org = format!("f{}", self.next());
        self.ok(
            Method::POST,
            "/api/v1/orgs",
            json!({"slug": org, "name": "Fixture", "owner_email": "spare-owner@rbac.test"}),
        )
        .await;
        let base = format!("/api/v1/orgs/{org}");
        self.ok(
            Method::POST,
            &format!("{base}/projects"),
            json!({"slug": "p", "name": "P"}),
        )
        .await;
        let pbase = format!("{base}/projects/p");
        match caller {
            "org-owner" | "org-admin" => {
                self.ok(
                    Method::POST,
                    &format!("{base}/members"),
                    json!({"email": self.actors[caller].email, "role": caller}),
                )
                .await;
            }
            "project-admin" | "project-editor" | "project-operator" | "project-viewer" => {
                self.ok(
                    Method::POST,
                    &format!("{pbase}/members"),
                    json!({"email": self.actors[caller].email, "role": caller}),
                )
                .await;
            }
            _ => {}
        }
        let t = self
            .ok(
                Method::POST,
                &format!("{base}/members"),
                json!({"email": "target@rbac.test", "role": "org-admin"}),
            )
            .await;
        let org_target = t["user_id"].as_str().unwrap().to_string();
        let t = self
            .ok(
                Method::POST,
                &format!("{pbase}/members"),
                json!({"email": "target@rbac.test", "role": "project-viewer"}),
            )
            .await;
        let project_target = t["user_id"].as_str().unwrap().to_string();
        let i = self
            .ok(
                Method::POST,
                &format!("{base}/invitations"),
                json!({"email": "invitee@rbac.test", "role": "org-admin"}),
            )
            .await;
        let org_invitation = i["id"].as_str().unwrap().to_string();
        let i = self
            .ok(
                Method::POST,
                &format!("{pbase}/invitations"),
                json!({"email": "invitee@rbac.test", "role": "project-viewer"}),
            )
            .await;
        let project_invitation = i["id"].as_str().unwrap().to_string();
        let t = self
            .ok(
                Method::POST,
                &format!("{base}/tokens"),
                json!({"name": "t", "role": "org-admin"}),
            )
            .await;
        let org_token = t["id"].as_str().unwrap().to_string();
        let t = self
            .ok(
                Method::POST,
                &format!("{pbase}/tokens"),
                json!({"name": "t", "role": "project-viewer"}),
            )
            .await;
        let project_token = t["id"].as_str().unwrap().to_string();
        let id_of = |v: Value| v["id"].as_str().unwrap().to_string();
        let alert_rule = id_of(
            self.ok(
                Method::POST,
                &format!("{pbase}/alerts/rules"),
                alert_rule_body(),
            )
            .await,
        );
        let alert_channel = id_of(
            self.ok(
                Method::POST,
                &format!("{pbase}/alerts/channels"),
                alert_channel_body(),
            )
            .await,
        );
        let alert_silence = id_of(
            self.ok(
                Method::POST,
                &format!("{pbase}/alerts/silences"),
                alert_silence_body(),
            )
            .await,
        );
        // Fleet: a second project (cluster transfer target), a cluster, a gateway, a template, an enrollment token.
        self.ok(
            Method::POST,
            &format!("{base}/projects"),
            json!({"slug": "q", "name": "Q"}),
        )
        .await;
        self.ok(
            Method::POST,
            &format!("{pbase}/clusters"),
            json!({"name": "c", "backend": "external", "url": "mqtt://127.0.0.1:1"}),
        )
        .await;
        self.ok(
            Method::POST,
            &format!("{pbase}/gateways"),
            json!({"name": "gw", "spec": {}}),
        )
        .await;
        self.ok(
            Method::POST,
            &format!("{pbase}/gateway-templates"),
            json!({"name": "t", "spec": {}}),
        )
        .await;
        self.ok(
            Method::PUT,
            &format!("{pbase}/credentials/cred"),
            json!({"kind": "userPassword", "username": "u", "password": "p"}),
        )
        .await;
        let r = self
            .ok(
                Method::POST,
                &format!("{pbase}/gateways/gw/enrollment-tokens"),
                json!({}),
            )
            .await;
        let fleet_enrollment_token = r["id"].as_str().unwrap().to_string();
        Fixture {
            org,
            project: "p".into(),
            org_target,
            project_target,
            org_invitation,
            project_invitation,
            org_token,
            project_token,
            alert_rule,
            alert_channel,
            alert_silence,
            fleet_enrollment_token,
        }
    }

    fn concrete(&self, f: &Fixture, template: &str) -> String {
        let project_level = template.contains("/projects/{project}");
        let (user, invitation, token) = if project_level {
            (&f.project_target, &f.project_invitation, &f.project_token)
        } else {
            (&f.org_target, &f.org_invitation, &f.org_token)
        };
        // Disable/enable act on the fixture's target account (not an admin).
        let template = &template.replace(
            "/api/v1/users/{id}/",
            &format!("/api/v1/users/{}/", f.org_target),
        );
        template
            .replace("{org}", &f.org)
            .replace("{project}", &f.project)
            .replace("{user}", user)
            .replace("{invitation}", invitation)
            .replace("{token}", token)
            .replace("{rule}", &f.alert_rule)
            .replace("{channel}", &f.alert_channel)
            .replace("{silence}", &f.alert_silence)
            .replace("{cluster}", "c")
            .replace("{gateway}", "gw")
            .replace("{template}", "t")
            .replace("{credential}", "cred")
            .replace("{version}", "1")
            .replace("{enrollment_token}", &f.fleet_enrollment_token)
    }

    /// Make the fixture's rule fire on `gw/tank/level` (readings straight
    /// into the engine, until one arrives after the engine learnt of the
    /// new gateway) and answer a body that acknowledges that alert.
    async fn firing_alert(&self, f: &Fixture) -> Value {
        let a = &self.app.running.state.alerts;
        let active = format!(
            "/api/v1/orgs/{}/projects/{}/alerts/active",
            f.org, f.project
        );
        crate::alerts_support::until("the fixture's alert fires", || async {
            let msg = crate::alerts_support::uplink(1, a.now_ms(), "level", 7.0);
            a.ingest(&f.org, "gw", "tank", msg).await;
            a.sync().await;
            let r = self.app.get(&active, &self.admin).await;
            r.body.as_array().is_some_and(|x| !x.is_empty())
        })
        .await;
        json!({"rule_id": f.alert_rule, "series": "gw/tank/level", "comment": "seen on the SCADA too"})
    }

    /// The query a route requires (like `body`): without it the route's
    /// "allow" cells would fail with 400.
    fn query(&self, method: &str, template: &str) -> &'static str {
        match (method, template) {
            ("GET", t) if t.ends_with("/gateways/{gateway}/series") => "?tag=level",
            _ => "",
        }
    }

    /// A valid body for each route that takes one. A new route that needs a
    /// body must get a sample here (else its "allow" cells fail with 400).
    fn body(&self, method: &str, template: &str, caller: &str) -> Option<Value> {
        let n = self.next();
        let project_level = template.contains("/projects/{project}");
        let b = match (method, template) {
            ("POST", "/api/v1/auth/login") => {
                let email = self
                    .actors
                    .get(caller)
                    .map(|a| a.email.clone())
                    .unwrap_or("spare-owner@rbac.test".into());
                json!({"email": email, "password": PASSWORD})
            }
            ("PUT", "/api/v1/me/password") => {
                json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})
            }
            ("POST", "/api/v1/users") => {
                json!({"email": format!("new{n}@rbac.test"), "name": "New", "password": PASSWORD})
            }
            ("POST", "/api/v1/orgs") => json!({"slug": format!("new{n}"), "name": "New"}),
            ("PATCH", "/api/v1/orgs/{org}")
            | ("PATCH", "/api/v1/orgs/{org}/projects/{project}") => json!({"name": "Renamed"}),
            ("POST", "/api/v1/orgs/{org}/projects") => {
                json!({"slug": format!("new{n}"), "name": "New"})
            }
            ("POST", t) if t.ends_with("/members") => {
                let role = if project_level {
                    "project-viewer"
                } else {
                    "org-admin"
                };
                json!({"email": "candidate@rbac.test", "role": role})
            }
            ("PATCH", t) if t.ends_with("/members/{user}") => {
                json!({"role": if project_level { "project-editor" } else { "org-admin" }})
            }
            ("POST", t) if t.ends_with("/invitations") => {
                let role = if project_level {
                    "project-viewer"
                } else {
                    "org-admin"
                };
                json!({"email": format!("inv{n}@rbac.test"), "role": role})
            }
            ("POST", t) if t.ends_with("/tokens") => {
                json!({"name": "auto", "role": if project_level { "project-viewer" } else { "org-admin" }})
            }
            ("PUT", "/api/v1/orgs/{org}/sso/group-mappings") => {
                json!({"mappings": [{"group": "ops", "role": "org-admin"}]})
            }
            ("POST", t) | ("PUT", t)
                if t.ends_with("/alerts/rules") || t.ends_with("/alerts/rules/{rule}") =>
            {
                alert_rule_body()
            }
            ("POST", t) if t.ends_with("/alerts/channels") => alert_channel_body(),
            ("POST", t) if t.ends_with("/alerts/silences") => alert_silence_body(),
            ("POST", t) if t.ends_with("/clusters") => {
                json!({"name": format!("c{n}"), "backend": "external", "url": "mqtt://127.0.0.1:1"})
            }
            ("PATCH", t) if t.ends_with("/clusters/{cluster}") => json!({"title": "Renamed"}),
            ("DELETE", t) if t.ends_with("/clusters/{cluster}") => json!({"confirm": "c"}),
            ("POST", t) if t.ends_with("/clusters/{cluster}/transfer") => json!({"project": "q"}),
            ("POST", t) if t.ends_with("/gateways") => json!({"name": format!("g{n}"), "spec": {}}),
            ("PATCH", t) if t.ends_with("/gateways/{gateway}") => {
                json!({"merge_patch": {"site": {"name": "Renamed"}}})
            }
            ("POST", t) if t.ends_with("/gateways/{gateway}/rollback") => json!({"version": 1}),
            // The fixture's gateway has no devices: past the permission
            // check, the api refuses the device (409).
            ("POST", t) if t.ends_with("/gateways/{gateway}/writes") => {
                json!({"device": "d", "tag": "t", "value": 1.5, "comment": "matrix"})
            }
            ("POST", t) if t.ends_with("/enrollment-tokens") => json!({}),
            ("POST", t) if t.ends_with("/gateway-templates") => {
                json!({"name": format!("t{n}"), "spec": {}})
            }
            ("PATCH", t) if t.ends_with("/gateway-templates/{template}") => {
                json!({"title": "Renamed"})
            }
            ("PUT", t) if t.ends_with("/credentials/{credential}") => {
                json!({"kind": "userPassword", "username": "operator", "password": "pw"})
            }
            ("POST", t) if t.ends_with("/gateways:batch") => {
                json!({"gateways": ["gw"], "merge_patch": {"site": {"name": "Batch"}}})
            }
            ("POST", "/api/v1/enroll") => {
                json!({"token": "weir_et_not-valid", "publicKey": "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=",
                "facts": {"hostname": "h", "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"}})
            }
            ("POST", "/api/v1/agents/{id}/token") => {
                json!({"timestamp": "2026-01-01T00:00:00Z", "signature": "A".repeat(86) + "=="})
            }
            _ => return None,
        };
        Some(b)
    }
}

fn alert_rule_body() -> Value {
    json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0})
}

/// Port 9 (discard) on localhost refuses at once, so "send test" answers quickly.
fn alert_channel_body() -> Value {
    json!({"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook"})
}

fn alert_silence_body() -> Value {
    json!({"matchers": [{"name": "gateway", "value": "ps-1"}], "duration_secs": 86400, "comment": "maintenance"})
}

fn matches(expect: &str, status: u16) -> bool {
    match expect {
        "allow" => (200..400).contains(&status),
        "deny" => status == 403,
        "hidden" => status == 404,
        "unauth" => status == 401,
        "conflict" => status == 409,
        "public" => status != 401 && status != 403 && status < 500,
        _ => false,
    }
}

async fn rbac_matrix(b: Backend) {
    let historian = historian_support::HistorianDb::new().await;
    let historian_url = historian.url.clone();
    let app = TestApp::start_with(b, |c| c.fleet.historian_url = Some(historian_url)).await;
    let admin = app.admin().await;
    let doc = app.get("/api/v1/openapi.json", &Cred::None).await.body;
    let documented = documented_routes(&doc);
    let matrix = parse_matrix();
    let keys: BTreeSet<Route> = matrix.keys().cloned().collect();
    let missing: Vec<_> = documented.difference(&keys).collect();
    let stale: Vec<_> = keys.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from api/rbac/matrix.csv: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "matrix rows for routes that do not exist: {stale:?}"
    );

    let mut actors = BTreeMap::new();
    for (caller, email) in [
        ("system-admin", "sysadmin@rbac.test".to_string()),
        ("org-owner", "owner@rbac.test".into()),
        ("org-admin", "orgadmin@rbac.test".into()),
        ("project-admin", "padmin@rbac.test".into()),
        ("project-editor", "peditor@rbac.test".into()),
        ("project-operator", "poperator@rbac.test".into()),
        ("project-viewer", "pviewer@rbac.test".into()),
        ("other-org", "other@rbac.test".into()),
    ] {
        let cred = if caller == "system-admin" {
            // Not the fixture builder's account: this caller's password
            // change and sign-out-everywhere must not end `admin`'s session.
            app.post_ok(
                "/api/v1/users",
                &admin,
                json!({"email": email, "name": "Sysadmin", "password": PASSWORD, "system_admin": true}),
            )
            .await;
            app.login(&email, PASSWORD).await
        } else {
            app.user(&admin, &email).await.1
        };
        actors.insert(caller, Actor { email, cred });
    }
    for e in [
        "spare-owner@rbac.test",
        "target@rbac.test",
        "candidate@rbac.test",
    ] {
        app.user(&admin, e).await;
    }
    let r = app
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "elsewhere", "name": "Elsewhere", "owner_email": "other@rbac.test"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let world = World {
        app,
        admin,
        actors,
        n: AtomicUsize::new(0),
    };

    let mut failures = Vec::new();
    let mut checked = 0;
    for (ci, caller) in CALLERS.iter().enumerate() {
        let cred = world
            .actors
            .get(caller)
            .map(|a| a.cred.clone())
            .unwrap_or(Cred::None);
        let shared = world.fixture(caller).await;
        let mut routes: Vec<&Route> = matrix.keys().collect();
        // Reads first on a shared fixture; changes each on a fresh one;
        // then the password change (it ends the caller's other sessions),
        // logout and sign-out-everywhere (they end this one: logout first,
        // so that it still has a session to end).
        routes.sort_by_key(|(m, p)| {
            let last = match p.as_str() {
                "/api/v1/me/password" => 1,
                "/api/v1/auth/logout" => 2,
                "/api/v1/me/sessions" => 3,
                _ => 0,
            };
            (m != "GET", last)
        });
        for route in routes {
            let (method, template) = route;
            let expect = &matrix[route][ci];
            let fresh;
            let f = if method == "GET" {
                &shared
            } else {
                fresh = world.fixture(caller).await;
                &fresh
            };
            let path = world.concrete(f, template) + world.query(method, template);
            let body = if template.ends_with("/alerts/acknowledgements") {
                Some(world.firing_alert(f).await)
            } else {
                world.body(method, template, caller)
            };
            let mut cred = cred.clone();
            if template == "/api/v1/me/sessions" {
                if let Some(a) = world.actors.get(caller) {
                    // Logout just ended the caller's session: sign in again
                    // (with the password its password change set).
                    cred = world.app.login(&a.email, NEW_PASSWORD).await;
                }
            }
            let r = world
                .app
                .call(method.parse().unwrap(), &path, &cred, body)
                .await;
            checked += 1;
            let status = r.status.as_u16();
            if !matches(expect, status) || status >= 500 {
                failures.push(format!(
                    "{caller:>14} {method:6} {template}: expected {expect}, got {status} {}",
                    r.body
                ));
            }
        }
    }
    let app = world.app;
    app.stop().await;
    historian.drop_db().await;
    assert!(
        failures.is_empty(),
        "{} of {checked} checks differ from the matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
on_both_databases!(rbac_matrix, super::rbac_matrix);
