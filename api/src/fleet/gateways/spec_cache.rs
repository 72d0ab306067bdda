//! The config of each gateway version, kept in memory once read: a version
//! is written once and never changed (a change or a rollback is a new
//! version), so what `(gateway id, version)` names never goes stale, here
//! or on another replica. Lists and single reads then take no query for
//! the config, and the summary fields a list shows (site, mode, cluster)
//! are parsed out once rather than on every request.
//!
//! Only reads outside a transaction fill it ([`super::current_specs`]
//! takes the pool, not a transaction): a version read inside a transaction
//! that later rolls back could be written again with other content.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Bytes of configs kept before the cache starts over (a few thousand
/// gateways' configs).
const MAX_BYTES: usize = 32 << 20;

/// One version's config and what a list shows of it.
#[derive(Debug)]
pub struct CachedSpec {
    /// The stored text of the `EdgeGatewaySpec`.
    pub raw: Box<RawValue>,
    /// `spec.clusterRef`.
    pub cluster: Option<String>,
    /// `spec.site` as stored (`{}` when the config has none).
    pub site: Box<RawValue>,
    /// `spec.mode`.
    pub mode: Option<String>,
}

impl CachedSpec {
    pub fn parse(raw: Box<RawValue>) -> Self {
        #[derive(Deserialize)]
        struct Summary<'a> {
            #[serde(rename = "clusterRef", default)]
            cluster_ref: Option<String>,
            #[serde(borrow, default)]
            site: Option<&'a RawValue>,
            #[serde(default)]
            mode: Option<String>,
        }
        let s = serde_json::from_str::<Summary>(raw.get()).ok();
        let (cluster, site, mode) = match s {
            Some(s) => (s.cluster_ref, s.site.map(RawValue::to_owned), s.mode),
            None => (None, None, None),
        };
        Self {
            cluster,
            site: site.unwrap_or_else(empty_object),
            mode,
            raw,
        }
    }
}

pub fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).expect("{} is JSON")
}

#[derive(Default)]
struct Inner {
    map: HashMap<(Uuid, i64), Arc<CachedSpec>>,
    bytes: usize,
}

/// Shared by every api in the process (ids are random UUIDs, so two
/// databases cannot name the same version).
static CACHE: LazyLock<Mutex<Inner>> = LazyLock::new(Mutex::default);

pub fn get(id: Uuid, version: i64) -> Option<Arc<CachedSpec>> {
    let c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.map.get(&(id, version)).cloned()
}

pub fn insert(id: Uuid, version: i64, spec: Arc<CachedSpec>) {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let size = spec.raw.get().len() + spec.site.get().len();
    if c.bytes + size > MAX_BYTES {
        c.map.clear();
        c.bytes = 0;
    }
    if c.map.insert((id, version), spec).is_none() {
        c.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_read_from_the_config() {
        let raw = RawValue::from_string(
            r#"{"site":{"name":"North"},"mode":"external","clusterRef":"c1","devices":[]}"#
                .to_string(),
        )
        .unwrap();
        let s = CachedSpec::parse(raw);
        assert_eq!(s.site.get(), r#"{"name":"North"}"#);
        assert_eq!(s.mode.as_deref(), Some("external"));
        assert_eq!(s.cluster.as_deref(), Some("c1"));
        let bare = CachedSpec::parse(RawValue::from_string("{}".into()).unwrap());
        assert_eq!(bare.site.get(), "{}");
        assert_eq!(bare.cluster, None);
    }
}
