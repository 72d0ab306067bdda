//! What every authenticated read looks up, kept for a few seconds: the API
//! token or agent token behind a hash, the caller's roles in an org, and the
//! org and project behind the slugs of the path. Without it a read costs four
//! to six queries before the handler runs its own.
//!
//! An entry is good while both hold:
//! - no change was committed through [`crate::db::WriteLock`] in this process
//!   since it was read (every change of tokens, users, members, orgs,
//!   projects and agents goes through it: revoking a token, disabling a user
//!   or removing a member takes effect at once here), and
//! - it is younger than [`TTL`], which bounds how long a change made by
//!   another api replica sharing the database goes unseen here.
//!
//! Misses (unknown tokens) are never kept, so guessing costs a query each
//! time as before, and authorization is still decided on every request from
//! the cached facts.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::entities::{api_token, org, project, user};
use crate::fleet::entities::agent;
use crate::rbac::Grant;

/// How long another replica's change may go unseen here.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries per map before stale ones are swept (then all, if still full).
const CAPACITY: usize = 10_000;
/// Record a token's last use at most this often (per token and process).
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

struct Entry<V> {
    at: Instant,
    generation: u64,
    value: V,
}

/// A map whose entries expire after [`TTL`] or when the write generation
/// moves on.
pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> Default for TtlCache<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn get(&self, key: &K, generation: u64) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|e| e.generation == generation && e.at.elapsed() < TTL)
            .map(|e| e.value.clone())
    }

    /// Keep `value`, read from the database after `generation` was taken.
    pub fn insert(&self, key: K, generation: u64, value: V) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, e| e.generation == generation && e.at.elapsed() < TTL);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(
            key,
            Entry {
                at: Instant::now(),
                generation,
                value,
            },
        );
    }

    pub fn remove(&self, key: &K) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The caches of [`crate::state::AppState`].
#[derive(Default)]
pub struct AuthCache {
    /// SHA-256 of an API token → the token and its creator.
    pub tokens: TtlCache<String, (api_token::Model, user::Model)>,
    /// SHA-256 of an agent bearer token → when it expires, and its agent.
    pub agents: TtlCache<String, (DateTime<Utc>, agent::Model)>,
    /// (user, org) → the user's own roles there (an API token's limit is
    /// applied on top per request).
    pub grants: TtlCache<(Uuid, Uuid), Vec<Grant>>,
    /// Org slug → org.
    pub orgs: TtlCache<String, org::Model>,
    /// (org, project slug) → project.
    pub projects: TtlCache<(Uuid, String), project::Model>,
    last_used: Mutex<HashMap<Uuid, Instant>>,
}

impl AuthCache {
    /// Whether to record a use of token `id` now: when this process has not
    /// in the last minute (the stored time says whether anyone did).
    pub fn should_record_use(&self, id: Uuid, stored: Option<DateTime<Utc>>) -> bool {
        let now = Utc::now();
        if stored.is_some_and(|l| (now - l).to_std().unwrap_or_default() < LAST_USED_EVERY) {
            return false;
        }
        let mut m = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&id).is_some_and(|t| t.elapsed() < LAST_USED_EVERY) {
            return false;
        }
        if m.len() >= CAPACITY {
            m.retain(|_, t| t.elapsed() < LAST_USED_EVERY);
        }
        m.insert(id, Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lasts_until_the_next_write() {
        let c: TtlCache<&str, u32> = TtlCache::default();
        c.insert("a", 7, 1);
        assert_eq!(c.get(&"a", 7), Some(1));
        // A change was committed since the read: the entry is stale.
        assert_eq!(c.get(&"a", 8), None);
        c.insert("a", 8, 2);
        assert_eq!(c.get(&"a", 8), Some(2));
        c.remove(&"a");
        assert_eq!(c.get(&"a", 8), None);
    }

    #[test]
    fn a_token_use_is_recorded_once_a_minute() {
        let c = AuthCache::default();
        let id = Uuid::new_v4();
        assert!(c.should_record_use(id, None));
        assert!(!c.should_record_use(id, None));
        let other = Uuid::new_v4();
        assert!(!c.should_record_use(other, Some(Utc::now())));
        assert!(c.should_record_use(other, Some(Utc::now() - chrono::Duration::minutes(2))));
    }
}
