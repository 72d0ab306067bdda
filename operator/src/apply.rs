//! Writing desired objects without hot loops.
//!
//! Every desired object carries the SHA-256 of its own rendered form in the
//! annotation [`HASH_ANNOTATION`]. The reconciler reads the live object and
//! applies (server-side apply, field manager `weir-operator`) only when that
//! hash differs. Comparing our own rendering with our own rendering is immune
//! to the API server's defaulting (quantities, ports, `imagePullPolicy`), which
//! is what made emqx-operator patch Services and pods forever.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::FIELD_MANAGER;

/// Hash of the rendered desired object, kept on the live object.
pub const HASH_ANNOTATION: &str = "weir.dev/applied-hash";
/// Label naming the weir.dev object an object belongs to.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "weir-operator");

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

/// Server-side apply `desired` unless the live object already carries its hash.
pub async fn ensure<K>(api: &Api<K>, mut desired: K) -> Result<Applied<K>>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = desired
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let hash = stamp(&mut desired);
    if let Some(live) = api.get_opt(&name).await? {
        if live.annotations().get(HASH_ANNOTATION) == Some(&hash) {
            return Ok(Applied::Unchanged(live));
        }
    }
    apply(api, &name, &desired).await.map(Applied::Written)
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
    let dt = K::DynamicType::default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "status": new,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&obj.name_any(), &pp, &Patch::Apply(&patch))
        .await?;
    Ok(true)
}

/// Labels every object of one weir.dev resource carries.
pub fn labels(kind: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    [
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (format!("weir.dev/{kind}"), name.to_string()),
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
}
