//! Projects are walls, route by route: every route under
//! `/orgs/{org}/projects/{project}` of the OpenAPI document, called by each
//! project role of P (a session and an API token each):
//!
//! 1. on Q's paths (Q's rule, channel, silence, gateway, ... ids), and
//! 2. on P's own paths with one of Q's ids or names in place of P's,
//!
//! answers exactly as it does for a project or id that exists nowhere
//! (403 or 404: nothing tells Q's things exist), carries none of Q's data,
//! and leaves Q as it was. Q's series are not readable through P's path.
//!
//! The api gets a historian database (real PostgreSQL) so the series
//! route answers with data where it may.

use crate::common;
use crate::historian_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Backend, Cred, TestApp};
use historian_support::{HistorianDb, Reading};
use serde_json::{json, Value};

const ROLES: [&str; 3] = ["project-admin", "project-editor", "project-viewer"];

/// Words only Q's things carry: none may appear in an answer to P.
const Q_SECRETS: [&str; 5] = [
    "q-secret-rule",
    "q-secret-hook",
    "q-secret-quiet",
    "q-secret-site",
    "q-secret-template",
];

/// Path parameters, by project: the values a route template gets.
type Ids = BTreeMap<&'static str, String>;

struct World {
    app: TestApp,
    admin: Cred,
    org: String,
    n: AtomicUsize,
}

impl World {
    async fn ok(&self, path: &str, body: Value) -> Value {
        self.app.post_ok(path, &self.admin, body).await
    }

    /// Project `p` of the org with one of everything; names carry `p`.
    async fn project(&self, p: &str) -> Ids {
        let base = format!("/api/v1/orgs/{}/projects", self.org);
        self.ok(&base, json!({"slug": p, "name": p})).await;
        let pb = format!("{base}/{p}");
        let id = |v: Value| v["id"].as_str().unwrap().to_string();
        let secret = |what: &str| format!("{p}-secret-{what}");
        let mut ids = Ids::new();
        let gw = format!("g{p}");
        self.ok(
            &format!("{pb}/gateways"),
            json!({"name": gw, "spec": {"site": {"name": secret("site")}}}),
        )
        .await;
        let rule = self
            .ok(
                &format!("{pb}/alerts/rules"),
                json!({"name": secret("rule"), "kind": "threshold", "gateway": gw, "tag": "level", "op": ">", "threshold": 5.0}),
            )
            .await;
        ids.insert("rule", id(rule));
        let ch = self
            .ok(
                &format!("{pb}/alerts/channels"),
                json!({"name": secret("hook"), "kind": "webhook", "url": format!("http://127.0.0.1:9/{}", secret("hook"))}),
            )
            .await;
        ids.insert("channel", id(ch));
        let si = self
            .ok(
                &format!("{pb}/alerts/silences"),
                json!({"matchers": [{"name": "gateway", "value": gw}], "duration_secs": 31536000, "comment": secret("quiet")}),
            )
            .await;
        ids.insert("silence", id(si));
        let cl = format!("c{p}");
        self.ok(
            &format!("{pb}/clusters"),
            json!({"name": cl, "backend": "external", "url": "mqtt://127.0.0.1:1"}),
        )
        .await;
        let tpl = format!("t{p}");
        self.ok(
            &format!("{pb}/gateway-templates"),
            json!({"name": tpl, "title": secret("template"), "spec": {}}),
        )
        .await;
        let et = self
            .ok(&format!("{pb}/gateways/{gw}/enrollment-tokens"), json!({}))
            .await;
        ids.insert("enrollment_token", id(et));
        let email = format!("{p}-member@walls.test");
        let (user, _) = self.app.user(&self.admin, &email).await;
        self.ok(
            &format!("{pb}/members"),
            json!({"email": email, "role": "project-viewer"}),
        )
        .await;
        ids.insert("user", user);
        let inv = self
            .ok(
                &format!("{pb}/invitations"),
                json!({"email": format!("{p}-invitee@walls.test"), "role": "project-viewer"}),
            )
            .await;
        ids.insert("invitation", id(inv));
        let tok = self
            .ok(
                &format!("{pb}/tokens"),
                json!({"name": "reader", "role": "project-viewer"}),
            )
            .await;
        ids.insert("token", id(tok));
        let cred = format!("k{p}");
        let r = self
            .app
            .call(
                "PUT".parse().unwrap(),
                &format!("{pb}/credentials/{cred}"),
                &self.admin,
                Some(json!({"kind": "userPassword", "username": secret("user"), "password": secret("password")})),
            )
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.body);
        ids.insert("credential", cred);
        ids.insert("project", p.to_string());
        ids.insert("gateway", gw);
        ids.insert("cluster", cl);
        ids.insert("template", tpl);
        ids.insert("version", "1".into());
        ids
    }

    /// Ids of things that exist nowhere, shaped like real ones.
    fn nowhere() -> Ids {
        let mut ids = Ids::new();
        for k in [
            "rule",
            "channel",
            "silence",
            "enrollment_token",
            "user",
            "invitation",
            "token",
        ] {
            ids.insert(k, uuid::Uuid::new_v4().to_string());
        }
        for (k, v) in [
            ("project", "nowhere"),
            ("gateway", "gnowhere"),
            ("cluster", "cnowhere"),
            ("template", "tnowhere"),
            ("credential", "knowhere"),
            ("version", "1"),
        ] {
            ids.insert(k, v.into());
        }
        ids
    }

    fn concrete(&self, template: &str, ids: &Ids) -> String {
        let mut path = template.replace("{org}", &self.org);
        for (k, v) in ids {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        assert!(!path.contains('{'), "a parameter without a sample: {path}");
        if template.ends_with("/series") {
            path.push_str("?tag=level");
        }
        path
    }

    /// A valid body for each route that takes one (a bad body answers
    /// 400/422 before the project is looked at, which would test nothing).
    fn body(&self, method: &str, template: &str, ids: &Ids) -> Option<Value> {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let b = match (method, template) {
            ("PATCH", t) if t.ends_with("/projects/{project}") => json!({"name": "Renamed"}),
            ("POST", t) if t.ends_with("/members") => {
                json!({"email": "candidate@walls.test", "role": "project-viewer"})
            }
            ("PATCH", t) if t.ends_with("/members/{user}") => json!({"role": "project-editor"}),
            ("POST", t) if t.ends_with("/invitations") => {
                json!({"email": format!("inv{n}@walls.test"), "role": "project-viewer"})
            }
            ("POST", t) if t.ends_with("/tokens") => json!({"name": "t", "role": "project-viewer"}),
            ("POST", t) | ("PUT", t)
                if t.ends_with("/alerts/rules") || t.ends_with("/alerts/rules/{rule}") =>
            {
                json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0})
            }
            ("POST", t) if t.ends_with("/alerts/channels") => {
                json!({"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook"})
            }
            ("POST", t) if t.ends_with("/alerts/silences") => {
                json!({"matchers": [{"name": "gateway", "value": "gp"}], "duration_secs": 31536000, "comment": "x"})
            }
            ("POST", t) if t.ends_with("/clusters") => {
                json!({"name": format!("c{n}"), "backend": "external", "url": "mqtt://127.0.0.1:1"})
            }
            ("PATCH", t) if t.ends_with("/clusters/{cluster}") => json!({"title": "Renamed"}),
            ("DELETE", t) if t.ends_with("/clusters/{cluster}") => {
                json!({"confirm": ids["cluster"]})
            }
            // Into the caller's own project: stealing Q's cluster.
            ("POST", t) if t.ends_with("/transfer") => json!({"project": "p"}),
            ("POST", t) if t.ends_with("/gateways") => json!({"name": format!("g{n}"), "spec": {}}),
            ("PATCH", t) if t.ends_with("/gateways/{gateway}") => {
                json!({"merge_patch": {"site": {"name": "Renamed"}}})
            }
            ("POST", t) if t.ends_with("/rollback") => json!({"version": 1}),
            ("POST", t) if t.ends_with("/enrollment-tokens") => json!({}),
            ("POST", t) if t.ends_with("/gateway-templates") => {
                json!({"name": format!("t{n}"), "spec": {}})
            }
            ("PATCH", t) if t.ends_with("/gateway-templates/{template}") => {
                json!({"title": "Renamed"})
            }
            ("PUT", t) if t.ends_with("/credentials/{credential}") => {
                json!({"kind": "userPassword", "username": "stolen", "password": "stolen"})
            }
            // Q's rule, acknowledged through P's path.
            ("POST", t) if t.ends_with("/alerts/acknowledgements") => {
                json!({"rule_id": ids["rule"], "series": format!("{}/d/t", ids["gateway"]), "comment": "wall"})
            }
            ("POST", t) if t.ends_with("/gateways/{gateway}/writes") => {
                json!({"device": "d", "tag": "t", "value": 1.5, "comment": "wall"})
            }
            // The gateway is named in the body.
            ("POST", t) if t.ends_with("/gateways:batch") => {
                json!({"gateways": [ids["gateway"]], "merge_patch": {"site": {"name": "Batch"}}})
            }
            _ => return None,
        };
        Some(b)
    }

    async fn call(&self, method: &str, template: &str, ids: &Ids, cred: &Cred) -> (u16, String) {
        let path = self.concrete(template, ids);
        let body = self.body(method, template, ids);
        let r = self
            .app
            .call(method.parse().unwrap(), &path, cred, body)
            .await;
        (r.status.as_u16(), r.body.to_string())
    }

    /// What an admin sees of a project: every list, by id or name.
    async fn snapshot(&self, p: &str) -> Vec<String> {
        let pb = format!("/api/v1/orgs/{}/projects/{p}", self.org);
        let mut out = vec![];
        for (list, key) in [
            ("alerts/rules", "id"),
            ("alerts/channels", "id"),
            ("alerts/silences", "id"),
            ("clusters", "name"),
            ("gateways", "name"),
            ("gateway-templates", "name"),
            ("members", "user_id"),
            ("invitations", "id"),
            ("tokens", "id"),
            ("gateways/gq/enrollment-tokens", "id"),
            ("credentials", "username"),
        ] {
            if list.contains("/gq/") && p != "q" {
                continue;
            }
            let v = self.app.get_ok(&format!("{pb}/{list}"), &self.admin).await;
            let items = v.as_array().or(v["items"].as_array()).cloned();
            let mut names: Vec<String> = items
                .unwrap_or_default()
                .iter()
                .map(|x| x[key].to_string())
                .collect();
            names.sort();
            out.push(format!("{list}: {}", names.join(",")));
        }
        let rule = self
            .app
            .get_ok(&format!("{pb}/alerts/rules"), &self.admin)
            .await;
        out.push(format!("rules: {rule}"));
        let gw = self
            .app
            .get_ok(&format!("{pb}/gateways/g{p}"), &self.admin)
            .await;
        out.push(format!("gateway spec: {}", gw["spec"]));
        out
    }
}

fn project_routes(doc: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/orgs/{org}/projects/{project}") {
            continue;
        }
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                out.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    // Reads first, then changes; deleting the project last.
    out.sort_by_key(|(m, p)| (m != "GET", p.ends_with("/projects/{project}")));
    out
}

/// The path parameters of a template besides org and project (and the
/// batch route's gateway, named in its body).
fn children(template: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = [
        "rule",
        "channel",
        "silence",
        "gateway",
        "cluster",
        "template",
        "enrollment_token",
        "user",
        "invitation",
        "token",
        "credential",
    ]
    .into_iter()
    .filter(|k| template.contains(&format!("{{{k}}}")))
    .collect();
    if template.ends_with("/gateways:batch") {
        out.push("gateway");
    }
    out
}

impl World {
    /// P's project roles, each as a session and as an API token of P.
    async fn callers(&self) -> Vec<(String, Cred)> {
        let mut out = vec![];
        let pb = format!("/api/v1/orgs/{}/projects/p", self.org);
        for role in ROLES {
            let email = format!("{role}@walls.test");
            let (_, session) = self.app.user(&self.admin, &email).await;
            self.ok(
                &format!("{pb}/members"),
                json!({"email": email, "role": role}),
            )
            .await;
            let t = self
                .ok(&format!("{pb}/tokens"), json!({"name": role, "role": role}))
                .await;
            out.push((format!("{role} session"), session));
            let token = Cred::Bearer(t["token"].as_str().unwrap().to_string());
            out.push((format!("{role} token"), token));
        }
        out
    }

    /// P's viewer reads P's gateway's series, not Q's through either path.
    async fn series_stay_behind_the_wall(&self, historian: &HistorianDb, viewer: &Cred) {
        let org = &self.org;
        let ts = chrono::Utc::now() - chrono::Duration::minutes(5);
        historian
            .insert(&[
                Reading::new(org, "gp", "d1", "level", ts, 1.5, 1),
                Reading::new(org, "gq", "d1", "level", ts, 987.25, 1),
            ])
            .await;
        let series = |p: &str, g: &str| {
            format!("/api/v1/orgs/{org}/projects/{p}/gateways/{g}/series?tag=level")
        };
        let own = self.app.get_ok(&series("p", "gp"), viewer).await;
        assert!(own.to_string().contains("1.5"), "P's own series: {own}");
        for path in [series("p", "gq"), series("q", "gq")] {
            let r = self.app.get(&path, viewer).await;
            assert_eq!(r.status, 404, "{path}: {}", r.body);
            assert!(!r.body.to_string().contains("987.25"), "{path}: {}", r.body);
        }
    }

    /// One call with Q's `ids` and one with `control` (nothing there): a
    /// failure line unless both answer alike, refuse, and leak none of Q.
    async fn compare(
        &self,
        (method, template): (&str, &str),
        (who, cred): (&str, &Cred),
        (case, ids, control): (&str, &Ids, &Ids),
    ) -> Option<String> {
        let (got, body) = self.call(method, template, ids, cred).await;
        let (want, want_body) = self.call(method, template, control, cred).await;
        let leaked: Vec<&&str> = Q_SECRETS.iter().filter(|s| body.contains(**s)).collect();
        // The same words as for nothing there, once the names are swapped.
        let mut same = body.clone();
        for (k, v) in ids {
            if v.len() > 1 && *k != "version" {
                same = same.replace(v.as_str(), &control[k]);
            }
        }
        // The batch answers 200 with each gateway's own 404.
        let refused = got == 403
            || got == 404
            || (template.ends_with(":batch") && got == 200 && body.contains("\"updated\":0"));
        if got == want && same == want_body && refused && leaked.is_empty() {
            return None;
        }
        Some(format!(
            "{who:>22} {method:6} {template} ({case}): {got} (for nothing there: {want}), leaks {leaked:?}: {body}"
        ))
    }
}

async fn every_route_of_a_sibling_project_is_walled(b: Backend) {
    let historian = HistorianDb::new().await;
    let hurl = historian.url.clone();
    let app = TestApp::start_with(b, |c| c.fleet.historian_url = Some(hurl)).await;
    let admin = app.admin().await;
    let org = format!("w{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    app.post_ok("/api/v1/orgs", &admin, json!({"slug": org, "name": org}))
        .await;
    app.user(&admin, "candidate@walls.test").await;
    let w = World {
        app,
        admin,
        org,
        n: AtomicUsize::new(0),
    };
    let p_ids = w.project("p").await;
    let q_ids = w.project("q").await;
    let callers = w.callers().await;
    w.series_stay_behind_the_wall(&historian, &callers[4].1)
        .await;

    let doc = w.app.get("/api/v1/openapi.json", &Cred::None).await.body;
    let routes = project_routes(&doc);
    assert!(routes.len() > 40, "project routes: {}", routes.len());
    let (q_before, p_before) = (w.snapshot("q").await, w.snapshot("p").await);
    let nowhere = World::nowhere();
    let mut failures = vec![];
    let mut checked = 0;
    for (who, cred) in &callers {
        for (method, template) in &routes {
            // 1. Q's path, with Q's ids, against a project that exists nowhere.
            let mut cases = vec![("Q's path".to_string(), q_ids.clone(), nowhere.clone())];
            // 2. P's path with one of Q's ids, against one that exists nowhere.
            for k in children(template) {
                // PUT …/credentials/{name} creates or replaces by name in
                // the path's own project: Q's name in P's path is just a new
                // name in P (case 1 covers reaching Q's credential).
                if method == "PUT" && k == "credential" {
                    continue;
                }
                let (mut foreign, mut none) = (p_ids.clone(), p_ids.clone());
                foreign.insert(k, q_ids[k].clone());
                none.insert(k, nowhere[k].clone());
                cases.push((format!("P's path with Q's {k}"), foreign, none));
            }
            for (case, ids, control) in &cases {
                checked += 1;
                let route = (method.as_str(), template.as_str());
                let caller = (who.as_str(), cred);
                if let Some(f) = w.compare(route, caller, (case, ids, control)).await {
                    failures.push(f);
                }
            }
        }
    }
    let (q_after, p_after) = (w.snapshot("q").await, w.snapshot("p").await);
    w.app.stop().await;
    historian.drop_db().await;
    assert!(
        failures.is_empty(),
        "{} of {checked} calls reach through the wall:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(q_before, q_after, "Q changed");
    assert_eq!(p_before, p_after, "P took something of Q's");
}
on_both_databases!(
    every_route_of_a_sibling_project,
    super::every_route_of_a_sibling_project_is_walled
);
