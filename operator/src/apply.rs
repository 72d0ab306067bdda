//! Writing desired objects without hot loops.
//!
//! Every desired object carries the SHA-256 of its own rendered form in the
//! annotation [`HASH_ANNOTATION`]. The reconciler reads the live object and
//! applies (server-side apply, field manager `weir-operator`) only when that
//! hash differs. Comparing our own rendering with our own rendering is immune
//! to the API server's defaulting (quantities, ports, `imagePullPolicy`), which
//! is what made emqx-operator patch Services and pods forever.
//!
//! The hash alone misses hand edits: someone who runs `kubectl edit` on a
//! StatefulSet changes its replicas but not our annotation. So when the hash
//! matches, [`ensure`] also checks that the live object still holds every
//! field the rendering sets, with the value it sets ([`covers`]): fields the
//! API server or others added are ignored, lists of named items are matched
//! by name, quantities by value. A difference is drift, and the object is
//! applied again (force: the operator owns those fields). Should the API
//! server keep an object in a form [`covers`] cannot match (a normalisation
//! it does not know), the form it returned after our apply is remembered and
//! not fought again, so the steady state stays free of writes.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::FIELD_MANAGER;

/// Hash of the rendered desired object, kept on the live object.
pub const HASH_ANNOTATION: &str = "weir.dev/applied-hash";
/// Label naming the weir.dev object an object belongs to.
pub const MANAGED_BY: (&str, &str) = (weir_crds::names::labels::MANAGED_BY, "weir-operator");

/// Hex SHA-256 of any serializable value (its JSON form; serde_json writes
/// struct fields in declaration order and maps sorted, so it is stable).
pub fn hash_of<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("desired objects serialize");
    hex::encode(Sha256::digest(bytes))
}

/// Stamp `obj` with the hash of its rendering and return the hash.
pub fn stamp<K: Resource + Serialize>(obj: &mut K) -> String {
    obj.meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .remove(HASH_ANNOTATION);
    let hash = hash_of(obj);
    obj.meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(HASH_ANNOTATION.into(), hash.clone());
    hash
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied<K> {
    /// The live object already matched; nothing was written.
    Unchanged(K),
    /// The object was created or updated.
    Written(K),
}

impl<K> Applied<K> {
    pub fn written(&self) -> bool {
        matches!(self, Applied::Written(_))
    }
    pub fn into_inner(self) -> K {
        match self {
            Applied::Unchanged(k) | Applied::Written(k) => k,
        }
    }
}

/// Server-side apply `desired` unless the live object already carries its
/// hash and still holds the fields it sets (see the module notes on drift).
pub async fn ensure<K>(ctx: &Context, api: &Api<K>, mut desired: K) -> Result<Applied<K>>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = desired
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let hash = stamp(&mut desired);
    let want = serde_json::to_value(&desired).expect("desired objects serialize");
    let key = format!("{}/{name}", api.resource_url());
    if let Some(live) = api.get_opt(&name).await? {
        if live.annotations().get(HASH_ANNOTATION) == Some(&hash) {
            let have = project(
                &serde_json::to_value(&live).expect("live objects serialize"),
                &want,
            );
            if equivalent(&have, &want) || ctx.drift_accepted(&key, &hash, &hash_of(&have)) {
                return Ok(Applied::Unchanged(live));
            }
            tracing::info!(object = %key, "owned object was changed by someone else; applying it again");
            ctx.metrics
                .drift(api.resource_url().rsplit('/').next().unwrap_or_default());
        }
    }
    let written = apply(api, &name, &desired).await?;
    let after = project(
        &serde_json::to_value(&written).expect("live objects serialize"),
        &want,
    );
    ctx.remember_applied(&key, &hash, &hash_of(&after));
    Ok(Applied::Written(written))
}

/// Whether `live` holds every field `desired` sets, with the value it sets.
/// Fields only `live` has (server defaults, other managers' fields) are
/// ignored.
pub fn covers(live: &Value, desired: &Value) -> bool {
    equivalent(&project(live, desired), desired)
}

/// The keys a list item is known by, in the order they are tried: named
/// items (containers, env, ports, volumes), owner references, ports
/// without a name, mounts.
const ITEM_KEYS: &[&str] = &[
    "name",
    "uid",
    "containerPort",
    "port",
    "mountPath",
    "topologyKey",
    "type",
];

fn item_key(item: &Value) -> Option<(&'static str, &Value)> {
    let obj = item.as_object()?;
    ITEM_KEYS.iter().find_map(|k| obj.get(*k).map(|v| (*k, v)))
}

/// The part of `live` that `desired` speaks about, in `desired`'s shape
/// (`null` where `live` lacks a field).
pub fn project(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => Value::Object(
            d.iter()
                .map(|(k, dv)| (k.clone(), project(l.get(k).unwrap_or(&Value::Null), dv)))
                .collect(),
        ),
        (Value::Array(l), Value::Array(d)) if d.iter().all(|x| item_key(x).is_some()) => {
            Value::Array(
                d.iter()
                    .map(|dv| {
                        let (k, id) = item_key(dv).expect("checked above");
                        // RBAC subjects may share a name across kinds.
                        let kind = dv.get("kind");
                        l.iter()
                            .find(|lv| {
                                lv.get(k) == Some(id)
                                    && kind.is_none_or(|x| lv.get("kind") == Some(x))
                            })
                            .map_or(Value::Null, |lv| project(lv, dv))
                    })
                    .collect(),
            )
        }
        (Value::Array(l), Value::Array(d))
            if l.len() == d.len() && d.iter().all(Value::is_object) =>
        {
            Value::Array(l.iter().zip(d).map(|(lv, dv)| project(lv, dv)).collect())
        }
        _ => live.clone(),
    }
}

/// Zero values the API server drops (`omitempty`): absent means the same.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

/// `have` (a projection) says what `want` says.
fn equivalent(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (_, Value::Null) => true,
        (Value::Null, w) => is_empty(w),
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| equivalent(h.get(k).unwrap_or(&Value::Null), wv)),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| equivalent(hv, wv))
        }
        (Value::String(h), Value::String(w)) => {
            h == w
                || matches!((quantity(h), quantity(w)), (Some(a), Some(b)) if (a - b).abs() <= 1e-9 * b.abs().max(1.0))
        }
        (h, w) => h == w,
    }
}

/// A Kubernetes quantity ("1536Mi", "1.5Gi", "500m", "2") as a number.
pub fn quantity(s: &str) -> Option<f64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let f = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * f)
}

/// Server-side apply with force: the operator owns these fields.
pub async fn apply<K>(api: &Api<K>, name: &str, desired: &K) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(name, &pp, &Patch::Apply(desired)).await?)
}

/// Delete `name` if it exists; returns whether a delete was sent.
pub async fn ensure_absent<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if api.get_opt(name).await?.is_none() {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Create `desired` only when no object of that name exists. For generated
/// credentials and keys: regenerating them on every reconcile would lock
/// everyone out. Returns the live object and whether it was created now.
pub async fn create_once<K>(api: &Api<K>, desired: impl FnOnce() -> K) -> Result<(K, bool)>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let obj = desired();
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    if let Some(live) = api.get_opt(&name).await? {
        return Ok((live, false));
    }
    match api.create(&PostParams::default(), &obj).await {
        Ok(created) => Ok((created, true)),
        // Lost a race with another writer: use theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok((api.get(&name).await?, false)),
        Err(e) => Err(e.into()),
    }
}

/// Replace the finalizer list (merge patch with resourceVersion so a
/// concurrent change fails instead of being overwritten).
pub async fn set_finalizers<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj.resource_version(),
        }
    });
    Ok(api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

/// Add or remove `finalizer` when its presence differs from `want`; no write otherwise.
pub async fn sync_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str, want: bool) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let has = obj.finalizers().iter().any(|f| f == finalizer);
    if has == want {
        return Ok(false);
    }
    let mut list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    if want {
        list.push(finalizer.to_string());
    }
    set_finalizers(api, obj, list).await?;
    Ok(true)
}

/// Patch the status subresource when `new` differs from `old`; no write otherwise.
pub async fn sync_status<K, S>(api: &Api<K>, obj: &K, old: Option<&S>, new: &S) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(false);
    }
    apply_status(api, obj, new).await?;
    Ok(true)
}

/// One server-side apply of `status` on the status subresource.
async fn apply_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    S: Serialize,
{
    let dt = K::DynamicType::default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&obj.name_any(), &pp, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// The fields of `status` (its JSON form) named in `owned`, and no others.
/// A status written by more than one field manager is written by each with
/// only its own fields: server-side apply then leaves the others' fields as
/// their managers wrote them.
pub fn owned_fields<S: Serialize>(status: &S, owned: &[&str]) -> serde_json::Map<String, Value> {
    match serde_json::to_value(status).expect("status serializes") {
        Value::Object(m) => m
            .into_iter()
            .filter(|(k, _)| owned.contains(&k.as_str()))
            .collect(),
        _ => Default::default(),
    }
}

/// [`sync_status`] for a status the operator shares with other writers:
/// only the fields named in `owned` (JSON names) are compared and applied.
/// What others wrote (e.g. the api's heartbeat fields of an EdgeGateway) is
/// neither copied into the operator's apply nor a reason to write.
pub async fn sync_owned_status<K, S>(
    api: &Api<K>,
    obj: &K,
    old: Option<&S>,
    new: &S,
    owned: &[&str],
) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    S: Serialize,
{
    let want = owned_fields(new, owned);
    if old.map(|o| owned_fields(o, owned)).as_ref() == Some(&want) {
        return Ok(false);
    }
    apply_status(api, obj, &want).await?;
    Ok(true)
}

/// Labels every object of one weir.dev resource carries: managed-by, and
/// `owner` (a key of `weir_crds::names::labels`) naming the resource.
pub fn labels(owner: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    [
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (owner.to_string(), name.to_string()),
    ]
    .into_iter()
    .collect()
}

/// The three standard conditions, merged into `existing` so transition
/// times survive when a status did not change (no needless status write).
pub fn standard_conditions(
    existing: &[weir_crds::Condition],
    generation: Option<i64>,
    ready: (bool, &str, String),
    progressing: (bool, &str, String),
    degraded: (bool, &str, String),
) -> Vec<weir_crds::Condition> {
    use weir_crds::condition::set_condition;
    use weir_crds::{Condition, ConditionStatus};
    let st = |b: bool| {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    };
    let mut out = existing.to_vec();
    for (type_, (value, reason, message)) in [
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
    ] {
        set_condition(
            &mut out,
            Condition::new(type_, st(value), reason, message, generation),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    #[test]
    fn stamp_is_stable_and_ignores_previous_stamp() {
        let mut a = ConfigMap {
            metadata: ObjectMeta {
                name: Some("x".into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        let h1 = stamp(&mut a);
        let h2 = stamp(&mut a);
        assert_eq!(h1, h2);
        a.data = Some([("k".to_string(), "w".to_string())].into());
        assert_ne!(stamp(&mut a), h1);
    }

    #[test]
    fn covers_ignores_server_defaults_and_others_fields() {
        let want = serde_json::json!({
            "metadata": {"name": "s", "labels": {"a": "1"}},
            "spec": {
                "replicas": 3,
                "paused": false,
                "ports": [{"name": "mqtt", "port": 1883}, {"name": "ws", "port": 8083}],
                "args": ["run", "--x"],
                "resources": {"limits": {"cpu": "0.5", "memory": "1.5Gi"}},
                "claims": [{"metadata": {"name": "data"}}],
                "empty": {}
            }
        });
        let live = serde_json::json!({
            "metadata": {"name": "s", "labels": {"a": "1", "kubernetes.io/x": "y"},
                         "resourceVersion": "7", "managedFields": []},
            "spec": {
                "replicas": 3,
                "ports": [{"name": "ws", "port": 8083, "protocol": "TCP"},
                          {"name": "mqtt", "port": 1883, "protocol": "TCP", "nodePort": 31883},
                          {"name": "added-by-someone", "port": 9}],
                "args": ["run", "--x"],
                "resources": {"limits": {"cpu": "500m", "memory": "1536Mi"}},
                "claims": [{"metadata": {"name": "data"}, "status": {"phase": "Pending"}}],
                "clusterIP": "10.0.0.1"
            },
            "status": {"replicas": 3}
        });
        assert!(covers(&live, &want));
    }

    #[test]
    fn covers_sees_changed_and_removed_fields() {
        let want = serde_json::json!({"spec": {"replicas": 3,
            "ports": [{"name": "mqtt", "port": 1883, "kind": "User"}], "args": ["run"],
            "data": {"emqx.conf": "a = 1"}}});
        let base = serde_json::json!({"spec": {"replicas": 3,
            "ports": [{"name": "mqtt", "port": 1883, "kind": "Group"}, {"name": "mqtt", "port": 1883, "kind": "User"}], "args": ["run"],
            "data": {"emqx.conf": "a = 1"}}});
        assert!(covers(&base, &want));
        for edit in [
            serde_json::json!({"spec": {"replicas": 1}}),
            serde_json::json!({"spec": {"ports": [{"name": "mqtt", "port": 1884}]}}),
            serde_json::json!({"spec": {"ports": [{"name": "other", "port": 1883}]}}),
            serde_json::json!({"spec": {"args": ["run", "--debug"]}}),
            serde_json::json!({"spec": {"data": {"emqx.conf": "a = 2"}}}),
            serde_json::json!({"spec": {"replicas": null}}),
            serde_json::json!({"spec": {"ports": [{"name": "mqtt", "port": 1883, "kind": "Group"}]}}),
        ] {
            let mut live = base.clone();
            for (k, v) in edit["spec"].as_object().unwrap() {
                live["spec"][k] = v.clone();
            }
            assert!(!covers(&live, &want), "{edit}");
        }
    }
}
