//! An in-memory Kubernetes API server behind kube's mock service
//! (`tower-test`), for the reconciler tests and the benchmark.
//!
//! It stores objects by URL path and answers the calls the operator makes:
//! get, list (with label selectors), server-side apply (create or replace,
//! status subresource), merge patch, create, replace (with the
//! resourceVersion precondition), delete (honouring finalizers) and
//! delete-collection. Every call is recorded as `"METHOD path"` so tests
//! can assert the exact sequence, as kube-rs' `controller-rs` does. Failures
//! can be injected per method and path, and so can another client's write
//! just before a call ([`FakeApiServer::before`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::{json, Value};

/// `(api prefix, namespace, plural, name)`.
type Key = (String, Option<String>, String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    prefix: String,
    ns: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Loc> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        "apis" => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    let s = |i: usize| rest.get(i).map(|s| s.to_string());
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        Some(Loc {
            prefix,
            ns: s(1),
            plural: s(2)?,
            name: s(3),
            sub: s(4),
        })
    } else {
        Some(Loc {
            prefix,
            ns: None,
            plural: s(0)?,
            name: s(1),
            sub: s(2),
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn matches_selector(obj: &Value, selector: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v),
            None => labels.get(term).is_some(),
        })
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[derive(Debug, Clone)]
struct Failure {
    method: String,
    path_contains: String,
    code: u16,
    remaining: usize,
}

/// Run once, just before the first call it matches is answered.
struct Hook {
    method: String,
    path_contains: String,
    run: Box<dyn FnOnce(&FakeApiServer) + Send>,
}

/// Changes the API server makes to an applied object (defaulting,
/// normalisation, a mutating webhook), per plural.
type Mutation = (String, fn(&mut Value));

#[derive(Default)]
struct State {
    mutations: Vec<Mutation>,
    objects: BTreeMap<Key, Value>,
    calls: Vec<String>,
    failures: Vec<Failure>,
    hooks: Vec<Hook>,
    resource_version: u64,
    uid: u64,
}

impl State {
    /// What the API server does to an applied object of `plural` ([`FakeApiServer::on_apply`]).
    fn mutate(&self, plural: &str, obj: &mut Value) {
        for (p, f) in &self.mutations {
            if p == plural {
                f(obj);
            }
        }
    }
}

/// The fake API server. Cheap to clone; all clones share the state.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

impl FakeApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube `Client` whose requests this server answers (on a spawned task).
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                if parts.uri.query().is_some_and(|q| q.contains("watch=true")) {
                    // A watch with nothing to report: it stays open, as a
                    // quiet API server's would, so controllers run on what
                    // they listed.
                    me.state
                        .lock()
                        .unwrap()
                        .calls
                        .push(format!("WATCH {}", parts.uri.path()));
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        drop(send);
                    });
                    continue;
                }
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let (code, value) = me.handle(
                    parts.method.as_str(),
                    parts.uri.path(),
                    parts.uri.query().unwrap_or(""),
                    parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                    &bytes,
                );
                let response = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).expect("json")))
                    .expect("response");
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    /// Every call so far as `"METHOD path"` (list calls add `?labelSelector=…`).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls other than GET (creates, applies, patches, deletes).
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET "))
            .collect()
    }

    /// Forget the recorded calls.
    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Answer the next `times` calls of `method` whose path contains
    /// `path_contains` with HTTP `code`.
    pub fn fail(&self, method: &str, path_contains: &str, code: u16, times: usize) {
        self.state.lock().unwrap().failures.push(Failure {
            method: method.into(),
            path_contains: path_contains.into(),
            code,
            remaining: times,
        });
    }

    /// Before the next call of `method` whose path contains `path_contains`
    /// is answered, run `f` (which may change stored objects): another
    /// client's write landing between a read and a write.
    pub fn before(
        &self,
        method: &str,
        path_contains: &str,
        f: impl FnOnce(&FakeApiServer) + Send + 'static,
    ) {
        self.state.lock().unwrap().hooks.push(Hook {
            method: method.into(),
            path_contains: path_contains.into(),
            run: Box::new(f),
        });
    }

    /// Rewrite every object of `plural` written by server-side apply with
    /// `f`, as an API server's defaulting or a mutating webhook would.
    pub fn on_apply(&self, plural: &str, f: fn(&mut Value)) {
        self.state
            .lock()
            .unwrap()
            .mutations
            .push((plural.to_string(), f));
    }

    /// Store an object as is (seed state, or play the part of a built-in controller).
    pub fn put<K: Resource<DynamicType = ()> + Serialize>(&self, obj: &K) {
        let mut value = serde_json::to_value(obj).expect("serializes");
        let key = Self::key_of::<K>(obj);
        let mut st = self.state.lock().unwrap();
        st.resource_version += 1;
        st.uid += 1;
        let rv = st.resource_version.to_string();
        let uid = format!("uid-{}", st.uid);
        let meta = value["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(rv));
        meta.entry("uid").or_insert(json!(uid));
        meta.entry("generation").or_insert(json!(1));
        st.objects.insert(key, value);
    }

    fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> Key {
        let ns = obj.meta().namespace.clone();
        let url = K::url_path(&(), ns.as_deref());
        let loc = parse_path(&url).expect("valid url");
        (
            loc.prefix,
            loc.ns,
            loc.plural,
            obj.meta().name.clone().expect("name"),
        )
    }

    /// The stored object of type `K`, if any.
    pub fn get<K: Resource<DynamicType = ()> + serde::de::DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        let url = K::url_path(&(), namespace);
        let loc = parse_path(&url)?;
        let key = (loc.prefix, loc.ns, loc.plural, name.to_string());
        let st = self.state.lock().unwrap();
        st.objects
            .get(&key)
            .map(|v| serde_json::from_value(v.clone()).expect("stored object deserializes"))
    }

    /// Change a stored object in place (e.g. a pod becoming ready).
    pub fn edit<K, F>(&self, namespace: Option<&str>, name: &str, f: F)
    where
        K: Resource<DynamicType = ()> + serde::de::DeserializeOwned + Serialize,
        F: FnOnce(&mut K),
    {
        let mut obj: K = self
            .get(namespace, name)
            .unwrap_or_else(|| panic!("no {} {name} to edit", K::kind(&())));
        f(&mut obj);
        self.put(&obj);
    }

    /// Remove a stored object without recording a call.
    pub fn remove<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>, name: &str) {
        let url = K::url_path(&(), namespace);
        let loc = parse_path(&url).expect("url");
        let key = (loc.prefix, loc.ns, loc.plural, name.to_string());
        self.state.lock().unwrap().objects.remove(&key);
    }

    /// How many objects of type `K` are stored (in `namespace`, or anywhere).
    pub fn count<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>) -> usize {
        let url = K::url_path(&(), namespace);
        let loc = parse_path(&url).expect("url");
        let st = self.state.lock().unwrap();
        st.objects
            .keys()
            .filter(|k| {
                k.0 == loc.prefix && k.2 == loc.plural && (namespace.is_none() || k.1 == loc.ns)
            })
            .count()
    }

    fn handle(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let hook = {
            let mut st = self.state.lock().unwrap();
            st.hooks
                .iter()
                .position(|h| h.method == method && path.contains(&h.path_contains))
                .map(|i| st.hooks.remove(i))
        };
        if let Some(h) = hook {
            (h.run)(self);
        }
        let mut st = self.state.lock().unwrap();
        let selector = query_param(query, "labelSelector");
        let call = match &selector {
            Some(s) => format!("{method} {path}?labelSelector={s}"),
            None => format!("{method} {path}"),
        };
        st.calls.push(call);
        if let Some(f) = st
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.contains(&f.path_contains))
        {
            f.remaining -= 1;
            let code = f.code;
            return status(
                code,
                "InternalError",
                format!("injected failure for {method} {path}"),
            );
        }
        let Some(loc) = parse_path(path) else {
            return status(404, "NotFound", format!("unknown path {path}"));
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", format!("body is not JSON: {e}")),
            }
        };
        match (method, &loc.name) {
            ("GET", Some(name)) => {
                let key = (loc.prefix, loc.ns, loc.plural, name.clone());
                match st.objects.get(&key) {
                    Some(v) => (200, v.clone()),
                    None => status(404, "NotFound", format!("{} \"{name}\" not found", key.2)),
                }
            }
            ("GET", None) => (200, Self::list(&st, &loc, selector.as_deref())),
            ("PATCH", Some(name)) => Self::patch(&mut st, loc.clone(), name, content_type, body),
            ("PUT", Some(name)) if loc.sub.is_none() => {
                Self::replace(&mut st, loc.clone(), name, body)
            }
            ("POST", None) => {
                let Some(name) = body["metadata"]["name"].as_str().map(String::from) else {
                    return status(422, "Invalid", "metadata.name is required".into());
                };
                let key = (loc.prefix, loc.ns.clone(), loc.plural, name.clone());
                if st.objects.contains_key(&key) {
                    return status(409, "AlreadyExists", format!("\"{name}\" already exists"));
                }
                let obj = Self::fresh(&mut st, body, loc.ns.as_deref());
                st.objects.insert(key, obj.clone());
                (201, obj)
            }
            ("DELETE", Some(name)) => {
                let key = (loc.prefix, loc.ns, loc.plural, name.clone());
                Self::delete(&mut st, &key)
            }
            ("DELETE", None) => {
                let keys: Vec<Key> = st
                    .objects
                    .iter()
                    .filter(|(k, v)| {
                        k.0 == loc.prefix
                            && k.1 == loc.ns
                            && k.2 == loc.plural
                            && selector.as_deref().is_none_or(|s| matches_selector(v, s))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut items = vec![];
                for k in keys {
                    items.push(Self::delete(&mut st, &k).1);
                }
                (
                    200,
                    json!({"kind":"List","apiVersion":"v1","metadata":{},"items":items}),
                )
            }
            _ => status(405, "MethodNotAllowed", format!("{method} {path}")),
        }
    }

    fn list(st: &State, loc: &Loc, selector: Option<&str>) -> Value {
        // Keys sort by (prefix, namespace, plural, name): a namespaced list
        // is one contiguous range.
        let range: Box<dyn Iterator<Item = (&Key, &Value)>> = match &loc.ns {
            Some(ns) => Box::new(
                st.objects
                    .range(
                        (
                            loc.prefix.clone(),
                            Some(ns.clone()),
                            loc.plural.clone(),
                            String::new(),
                        )..,
                    )
                    .take_while(|(k, _)| {
                        k.0 == loc.prefix && k.1.as_ref() == Some(ns) && k.2 == loc.plural
                    }),
            ),
            None => Box::new(st.objects.iter()),
        };
        let items: Vec<Value> = range
            .filter(|(k, v)| {
                k.0 == loc.prefix
                    && k.2 == loc.plural
                    && (loc.ns.is_none() || k.1 == loc.ns)
                    && selector.is_none_or(|s| matches_selector(v, s))
            })
            .map(|(_, v)| v.clone())
            .collect();
        json!({"kind":"List","apiVersion":"v1",
               "metadata":{"resourceVersion": st.resource_version.to_string()},
               "items": items})
    }

    fn fresh(st: &mut State, mut obj: Value, ns: Option<&str>) -> Value {
        st.resource_version += 1;
        st.uid += 1;
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert(
            "resourceVersion".into(),
            json!(st.resource_version.to_string()),
        );
        meta.insert("uid".into(), json!(format!("uid-{}", st.uid)));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        if let Some(ns) = ns {
            meta.insert("namespace".into(), json!(ns));
        }
        obj.as_object_mut().expect("object").remove("status");
        obj
    }

    fn patch(
        st: &mut State,
        loc: Loc,
        name: &str,
        content_type: &str,
        body: Value,
    ) -> (u16, Value) {
        let key = (
            loc.prefix.clone(),
            loc.ns.clone(),
            loc.plural.clone(),
            name.to_string(),
        );
        let existing = st.objects.get(&key).cloned();
        let is_apply = content_type.starts_with("application/apply-patch");
        let updated = match (existing, loc.sub.as_deref()) {
            (None, Some(_)) => return status(404, "NotFound", format!("\"{name}\" not found")),
            (None, None) if is_apply => {
                let mut obj = Self::fresh(st, body, loc.ns.as_deref());
                st.mutate(&loc.plural, &mut obj);
                obj
            }
            (None, None) => return status(404, "NotFound", format!("\"{name}\" not found")),
            (Some(mut live), Some("status")) => {
                if is_apply {
                    live["status"] = body["status"].clone();
                } else {
                    merge_patch(&mut live, &json!({"status": body["status"].clone()}));
                }
                st.resource_version += 1;
                live["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
                live
            }
            (Some(live), _) => {
                if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
                    if live["metadata"]["resourceVersion"].as_str() != Some(rv) {
                        return status(409, "Conflict", "the object has been modified".into());
                    }
                }
                let mut new = if is_apply {
                    // Our apply carries the whole object the operator owns.
                    let mut new = body.clone();
                    for keep in [
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "generation",
                    ] {
                        if let Some(v) = live["metadata"].get(keep) {
                            new["metadata"][keep] = v.clone();
                        }
                    }
                    for keep in ["name", "namespace"] {
                        if new["metadata"].get(keep).is_none() {
                            if let Some(v) = live["metadata"].get(keep) {
                                new["metadata"][keep] = v.clone();
                            }
                        }
                    }
                    if new["metadata"].get("finalizers").is_none() {
                        if let Some(f) = live["metadata"].get("finalizers") {
                            new["metadata"]["finalizers"] = f.clone();
                        }
                    }
                    if let Some(s) = live.get("status") {
                        new["status"] = s.clone();
                    }
                    new
                } else {
                    let mut new = live.clone();
                    merge_patch(&mut new, &body);
                    new
                };
                if is_apply {
                    st.mutate(&loc.plural, &mut new);
                }
                if new.get("spec") != live.get("spec") {
                    let g = live["metadata"]["generation"].as_i64().unwrap_or(1);
                    new["metadata"]["generation"] = json!(g + 1);
                }
                st.resource_version += 1;
                new["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
                let gone = new["metadata"].get("deletionTimestamp").is_some()
                    && new["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty());
                if gone {
                    st.objects.remove(&key);
                    return (200, new);
                }
                new
            }
        };
        st.objects.insert(key, updated.clone());
        (200, updated)
    }

    /// Update (PUT): the whole object, refused with 409 when it names a
    /// resourceVersion that is not the stored one. The status stays.
    fn replace(st: &mut State, loc: Loc, name: &str, mut body: Value) -> (u16, Value) {
        let key = (loc.prefix, loc.ns, loc.plural, name.to_string());
        let Some(live) = st.objects.get(&key).cloned() else {
            return status(404, "NotFound", format!("\"{name}\" not found"));
        };
        match body["metadata"]["resourceVersion"].as_str() {
            // Without one the update is unconditional (as for most kinds).
            None => {}
            Some(rv) if live["metadata"]["resourceVersion"].as_str() == Some(rv) => {}
            Some(_) => {
                return status(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", key.2),
                )
            }
        }
        for keep in ["uid", "creationTimestamp", "generation"] {
            if let Some(v) = live["metadata"].get(keep) {
                body["metadata"][keep] = v.clone();
            }
        }
        match live.get("status") {
            Some(s) => body["status"] = s.clone(),
            None => {
                if let Some(o) = body.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if body.get("spec") != live.get("spec") {
            let g = live["metadata"]["generation"].as_i64().unwrap_or(1);
            body["metadata"]["generation"] = json!(g + 1);
        }
        st.resource_version += 1;
        body["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
        st.objects.insert(key, body.clone());
        (200, body)
    }

    fn delete(st: &mut State, key: &Key) -> (u16, Value) {
        let Some(mut live) = st.objects.get(key).cloned() else {
            return status(404, "NotFound", format!("\"{}\" not found", key.3));
        };
        let has_finalizers = live["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            live["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            st.resource_version += 1;
            live["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
            st.objects.insert(key.clone(), live.clone());
        } else {
            st.objects.remove(key);
        }
        (200, live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        let l = parse_path("/api/v1/namespaces/weir-a").unwrap();
        assert_eq!(
            (l.plural.as_str(), l.name.as_deref()),
            ("namespaces", Some("weir-a"))
        );
        let l = parse_path("/api/v1/namespaces/weir-a/secrets").unwrap();
        assert_eq!(
            (l.ns.as_deref(), l.plural.as_str(), l.name),
            (Some("weir-a"), "secrets", None)
        );
        let l = parse_path("/apis/weir.dev/v1alpha1/namespaces/n/mqttclusters/m/status").unwrap();
        assert_eq!(l.sub.as_deref(), Some("status"));
        assert_eq!(percent_decode("a%3Db%2Cc%3Dd"), "a=b,c=d");
    }
}

pub mod emqx;
