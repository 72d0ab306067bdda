//! Sign-in abuse limits (issue 18). The rules:
//!
//! - **Per address**: a token bucket of `login_addr_burst` attempts that
//!   refills at `login_addr_per_min`. A sign-in takes a token before its
//!   password is checked and gets it back if it succeeds, so only failures
//!   spend the budget. Empty: 429 `too-many-attempts` with Retry-After, for
//!   every account tried from that address.
//! - **Per account and address**: `login_max_failures` failures in a row from
//!   one address lock that address out of that account for
//!   `login_lockout_secs` (429 `account-locked`, even with the right
//!   password). The account itself is never locked: failures from one
//!   address never refuse a sign-in from another, so an outsider cannot keep
//!   the admin out. Unknown emails are tracked alike (no existence oracle).
//! - **Per account**: failures from all addresses in the last
//!   `login_lockout_secs` slow every sign-in to that account
//!   (`login_failure_delay_ms` each, at most 3 s) before its password is
//!   checked. This only slows; it never refuses.
//! - **Password hashes**: at most `login_max_concurrent_hashes` argon2 runs
//!   at once; a sign-in that gets no slot within `login_hash_wait_ms` is
//!   answered 429 instead of queueing.
//! - **Audit**: per account and address, the first failure of a
//!   `login_audit_window_secs` window gets its own entry; later failures and
//!   refusals are only counted here, and written as one `auth.login` failure
//!   entry (`details.count`) when the window closes or at that pair's next
//!   successful sign-in. A failed attempt never waits for the write lock
//!   otherwise.
//!
//! The state is in memory and per replica (N replicas give an attacker up to
//! N times the budget); each table keeps at most `login_throttle_max_entries`
//! keys, forgetting the least recently seen first. Tallies not yet written
//! when the process stops are lost; they are also logged at each flush.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ClientMeta;
use crate::audit::{self, AuditEvent, Outcome};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

/// Why a sign-in was refused, as counted in `weir_api_auth_login_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Wrong email or password.
    BadCredentials,
    /// The address spent its failure budget.
    AddressLimit,
    /// This address is locked out of this account.
    Locked,
    /// No free password-hash slot.
    Busy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadCredentials => "bad_credentials",
            Reason::AddressLimit => "address_limit",
            Reason::Locked => "locked",
            Reason::Busy => "busy",
        }
    }
}

/// The longest the per-account slow-down makes anyone wait.
const MAX_ACCOUNT_DELAY: Duration = Duration::from_secs(3);

struct Limits {
    burst: f64,
    per_sec: f64,
    max_failures: u32,
    lockout: Duration,
    failure_delay: Duration,
    hash_wait: Duration,
    audit_window: Duration,
    max_entries: usize,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Pair {
    failures: u32,
    locked_until: Option<Instant>,
}

struct Window {
    failures: u32,
    since: Instant,
}

/// Failures and refusals of one (account, address) not yet in the audit log.
#[derive(Clone, Debug)]
pub struct Tally {
    since: Instant,
    pub since_at: DateTime<Utc>,
    pub failed: u32,
    pub refused: HashMap<&'static str, u32>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            since: Instant::now(),
            since_at: Utc::now(),
            failed: 0,
            refused: HashMap::new(),
        }
    }

    pub fn count(&self) -> u32 {
        self.failed + self.refused.values().sum::<u32>()
    }
}

/// A table that forgets its least recently seen key when full.
struct Lru<K, V> {
    map: HashMap<K, (Instant, V)>,
    max: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    fn new(max: usize) -> Self {
        Lru {
            map: HashMap::new(),
            max: max.max(1),
        }
    }

    fn entry(&mut self, k: &K, make: impl FnOnce() -> V) -> &mut V {
        let now = Instant::now();
        if !self.map.contains_key(k) && self.map.len() >= self.max {
            // O(n), but only when full, and n is bounded.
            if let Some(old) = self
                .map
                .iter()
                .min_by_key(|(_, v)| v.0)
                .map(|e| e.0.clone())
            {
                self.map.remove(&old);
            }
        }
        let e = self.map.entry(k.clone()).or_insert_with(|| (now, make()));
        e.0 = now;
        &mut e.1
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|e| &mut e.1)
    }
}

type PairKey = (String, String);

struct Inner {
    addrs: Lru<String, Bucket>,
    pairs: Lru<PairKey, Pair>,
    accounts: Lru<String, Window>,
    tallies: HashMap<PairKey, Tally>,
}

/// What became of a failed sign-in.
pub struct Failure {
    /// The first failure of this pair's audit window: write its own entry.
    pub first_in_window: bool,
    /// This failure locked the address out of the account: write its own
    /// entry (it is not tallied).
    pub locked: bool,
}

pub struct LoginGuard {
    limits: Limits,
    inner: Mutex<Inner>,
    hashes: Arc<Semaphore>,
}

/// Key under which tallies go once the table is full, so it stays bounded.
const OVERFLOW: &str = "(many)";

impl LoginGuard {
    pub fn new(c: &Config) -> Self {
        let max = c.login_throttle_max_entries;
        LoginGuard {
            limits: Limits {
                burst: c.login_addr_burst.max(1) as f64,
                per_sec: c.login_addr_per_min.max(1) as f64 / 60.0,
                max_failures: c.login_max_failures.max(1),
                lockout: Duration::from_secs(c.login_lockout_secs),
                failure_delay: Duration::from_millis(c.login_failure_delay_ms),
                hash_wait: Duration::from_millis(c.login_hash_wait_ms),
                audit_window: Duration::from_secs(c.login_audit_window_secs.max(1)),
                max_entries: max,
            },
            inner: Mutex::new(Inner {
                addrs: Lru::new(max),
                pairs: Lru::new(max),
                accounts: Lru::new(max),
                tallies: HashMap::new(),
            }),
            hashes: Arc::new(Semaphore::new(c.login_max_concurrent_hashes.max(1))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn audit_window(&self) -> Duration {
        self.limits.audit_window
    }

    /// Before the password check: refuse a locked pair or an address out of
    /// budget (taking one token otherwise), and say how long the account's
    /// recent failures make this attempt wait.
    pub fn admit(&self, email: &str, addr: &str) -> Result<Duration, ApiError> {
        let l = &self.limits;
        let now = Instant::now();
        let mut g = self.lock();
        let key = (email.to_string(), addr.to_string());
        if let Some(until) = g.pairs.get_mut(&key).and_then(|p| p.locked_until) {
            if until > now {
                let left = until - now;
                return Err(ApiError::Locked(
                    Utc::now() + chrono::Duration::from_std(left).unwrap_or_default(),
                ));
            }
        }
        let b = g.addrs.entry(&addr.to_string(), || Bucket {
            tokens: l.burst,
            at: now,
        });
        b.tokens = (b.tokens + (now - b.at).as_secs_f64() * l.per_sec).min(l.burst);
        b.at = now;
        if b.tokens < 1.0 {
            let retry_after = ((1.0 - b.tokens) / l.per_sec).ceil() as u64;
            return Err(ApiError::TooManyAttempts {
                retry_after: retry_after.max(1),
            });
        }
        b.tokens -= 1.0;
        let failures = match g.accounts.get_mut(&email.to_string()) {
            Some(w) if now - w.since < l.lockout => w.failures,
            _ => 0,
        };
        Ok((l.failure_delay * failures).min(MAX_ACCOUNT_DELAY))
    }

    /// A slot to run one password hash in, waiting at most `login_hash_wait_ms`.
    pub async fn hash_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let busy = ApiError::TooManyAttempts { retry_after: 1 };
        if let Ok(p) = self.hashes.clone().try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout(self.limits.hash_wait, self.hashes.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(busy),
        }
    }

    /// A wrong password (or unknown email): count it for the pair, the account
    /// and the audit tally.
    pub fn failed(&self, email: &str, addr: &str) -> Failure {
        let l = &self.limits;
        let now = Instant::now();
        let mut g = self.lock();
        let key = (email.to_string(), addr.to_string());
        let p = g.pairs.entry(&key, Pair::default);
        p.failures += 1;
        let locked = p.failures >= l.max_failures;
        if locked {
            p.failures = 0;
            p.locked_until = Some(now + l.lockout);
        }
        let w = g.accounts.entry(&email.to_string(), || Window {
            failures: 0,
            since: now,
        });
        if now - w.since >= l.lockout {
            *w = Window {
                failures: 0,
                since: now,
            };
        }
        w.failures = w.failures.saturating_add(1);
        // A failure that locks gets its own entry too: not tallied.
        let first_in_window = self.tally(&mut g, key, |t| {
            if !locked {
                t.failed += 1
            }
        });
        Failure {
            first_in_window,
            locked,
        }
    }

    /// A sign-in refused before its password was checked: only counted.
    pub fn refused(&self, email: &str, addr: &str, why: Reason) {
        let mut g = self.lock();
        let key = (email.to_string(), addr.to_string());
        self.tally(&mut g, key, |t| {
            *t.refused.entry(why.as_str()).or_default() += 1
        });
    }

    /// Count into the pair's tally; true when the tally is new (the first
    /// event of its window). A new tally's first failure is written by the
    /// caller, so it starts the count after it.
    fn tally(&self, g: &mut Inner, key: PairKey, count: impl FnOnce(&mut Tally)) -> bool {
        let key = if g.tallies.contains_key(&key) || g.tallies.len() < self.limits.max_entries {
            key
        } else {
            (OVERFLOW.to_string(), OVERFLOW.to_string())
        };
        match g.tallies.get_mut(&key) {
            Some(t) => {
                count(t);
                false
            }
            None => {
                let mut t = Tally::new();
                count(&mut t);
                t.failed = 0;
                g.tallies.insert(key, t);
                true
            }
        }
    }

    /// A successful sign-in: give the address its token back, clear the
    /// pair's failures, and hand over the pair's tally to be written now.
    pub fn succeeded(&self, email: &str, addr: &str) -> Option<Tally> {
        let l = &self.limits;
        let mut g = self.lock();
        if let Some(b) = g.addrs.get_mut(&addr.to_string()) {
            b.tokens = (b.tokens + 1.0).min(l.burst);
        }
        let key = (email.to_string(), addr.to_string());
        if let Some(p) = g.pairs.get_mut(&key) {
            *p = Pair::default();
        }
        g.tallies.remove(&key).filter(|t| t.count() > 0)
    }

    /// Put back a tally taken by [`Self::succeeded`] that was not written.
    pub fn restore(&self, email: &str, addr: &str, t: Tally) {
        let mut g = self.lock();
        let key = (email.to_string(), addr.to_string());
        match g.tallies.get_mut(&key) {
            Some(cur) => {
                cur.failed += t.failed;
                for (k, n) in t.refused {
                    *cur.refused.entry(k).or_default() += n;
                }
            }
            None => {
                g.tallies.insert(key, t);
            }
        }
    }

    /// Tallies whose window has closed (all of them with `all`).
    fn take_due(&self, all: bool) -> Vec<(PairKey, Tally)> {
        let window = self.limits.audit_window;
        let mut g = self.lock();
        let due: Vec<PairKey> = g
            .tallies
            .iter()
            .filter(|(_, t)| all || t.since.elapsed() >= window)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| g.tallies.remove(&k).map(|t| (k, t)))
            .filter(|(_, t)| t.count() > 0)
            .collect()
    }
}

/// Write one tally as an `auth.login` failure entry. Call inside a write
/// transaction.
pub async fn append_tally<C: ConnectionTrait>(
    db: &C,
    email: &str,
    addr: &str,
    t: &Tally,
    window: Duration,
) -> Result<(), ApiError> {
    let meta = ClientMeta {
        addr: addr.to_string(),
        user_agent: String::new(),
    };
    audit::append(
        db,
        AuditEvent::anonymous(email, "auth.login", format!("user:{email}"))
            .outcome(Outcome::Failure)
            .details(serde_json::json!({
                "reason": "repeated failures",
                "count": t.count(),
                "failed": t.failed,
                "refused": t.refused,
                "since": t.since_at,
                "window_secs": window.as_secs(),
            })),
        &meta,
    )
    .await?;
    Ok(())
}

/// Write the tallies whose window closed, every second, in one transaction.
pub fn spawn_flusher(st: &AppState) {
    let st = st.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due = st.login.take_due(false);
            if due.is_empty() {
                continue;
            }
            if let Err(e) = flush(&st, &due).await {
                // Not lost without a trace: the counts go to the log.
                for ((email, addr), t) in &due {
                    tracing::warn!(%email, %addr, count = t.count(), "failed sign-ins not audited");
                }
                tracing::error!(error = %e, "writing failed sign-in tallies");
            }
        }
    });
}

async fn flush(st: &AppState, due: &[(PairKey, Tally)]) -> Result<(), ApiError> {
    let window = st.login.audit_window();
    let tx = st.write().await?;
    for ((email, addr), t) in due {
        append_tally(&*tx, email, addr, t, window).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(tweak: impl FnOnce(&mut Config)) -> LoginGuard {
        let mut c = Config::for_database("sqlite::memory:");
        tweak(&mut c);
        LoginGuard::new(&c)
    }

    #[test]
    fn address_budget_spent_by_failures_only() {
        let g = guard(|c| c.login_addr_burst = 2);
        for _ in 0..5 {
            g.admit("a@x", "1.1.1.1").unwrap();
            g.succeeded("a@x", "1.1.1.1");
        }
        for _ in 0..2 {
            g.admit("a@x", "1.1.1.1").unwrap();
            g.failed("a@x", "1.1.1.1");
        }
        let e = g.admit("b@x", "1.1.1.1").unwrap_err();
        assert!(matches!(e, ApiError::TooManyAttempts { retry_after } if retry_after >= 1));
        assert!(
            g.admit("b@x", "2.2.2.2").is_ok(),
            "other addresses unaffected"
        );
    }

    #[test]
    fn lock_is_per_address_and_tallies_count() {
        let g = guard(|c| c.login_max_failures = 3);
        assert!(g.failed("a@x", "1.1.1.1").first_in_window);
        assert!(!g.failed("a@x", "1.1.1.1").first_in_window);
        assert!(g.failed("a@x", "1.1.1.1").locked);
        assert!(matches!(
            g.admit("a@x", "1.1.1.1"),
            Err(ApiError::Locked(_))
        ));
        g.refused("a@x", "1.1.1.1", Reason::Locked);
        assert!(g.admit("a@x", "2.2.2.2").is_ok());
        let t = g.take_due(true);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].1.count(),
            2,
            "the second failure and the refusal; the first and the locking one have their own"
        );
    }

    #[test]
    fn tables_stay_bounded() {
        let g = guard(|c| c.login_throttle_max_entries = 3);
        for i in 0..50 {
            let a = format!("10.0.0.{i}");
            let _ = g.admit("a@x", &a);
            g.failed(&format!("u{i}@x"), &a);
        }
        let i = g.lock();
        assert!(i.addrs.map.len() <= 3 && i.pairs.map.len() <= 3);
        assert!(i.accounts.map.len() <= 3 && i.tallies.len() <= 4);
    }
}
