//! What an entry's hash covers, and walking the chain to check it.
//!
//! An entry's hash is over its canonical content (every field but `hash`
//! and `mac`, in a fixed order, `prev_hash` included, so each entry pins
//! the whole history before it). `mac` says how: `hmac-sha256` under the
//! audit key (entries written since issue 18), or plain `sha256` (entries
//! written before: they still verify, and are counted as legacy). A plain
//! entry after a keyed one is refused: that is what rewriting history
//! without the key would look like.

use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait, QueryOrder};
use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::keys::{AuditKeys, MAC_HMAC, MAC_LEGACY};
use super::{fmt_time, GENESIS};
use crate::db::entities::audit_entry;
use crate::error::ApiError;
use crate::secrets::constant_time_eq;

/// The bytes an entry's hash covers (timestamps in microseconds, what both
/// databases keep). Fixed: stored hashes depend on it.
pub fn content(m: &audit_entry::Model) -> String {
    serde_json::json!([
        m.seq,
        fmt_time(&m.at),
        m.actor_id.map(|u| u.to_string()),
        m.actor,
        m.org_id.map(|u| u.to_string()),
        m.project_id.map(|u| u.to_string()),
        m.action,
        m.target,
        m.outcome,
        m.client_addr,
        m.user_agent,
        m.details,
        m.prev_hash,
    ])
    .to_string()
}

/// The hash an entry should have under `mac`; `None` for a keyed entry
/// when no key is at hand.
fn expected_hash(m: &audit_entry::Model, keys: Option<&AuditKeys>) -> Option<String> {
    match m.mac.as_str() {
        MAC_LEGACY => Some(hex::encode(Sha256::digest(content(m).as_bytes()))),
        _ => keys.map(|k| k.mac(content(m).as_bytes())),
    }
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        entries: u64,
    },
    /// Entry `seq` is not what was written (or entries before it are missing).
    Broken {
        seq: i64,
        reason: String,
    },
    /// A checkpoint names entry `checkpoint_seq` but the chain ends at `chain_end`.
    Truncated {
        checkpoint_seq: i64,
        chain_end: i64,
    },
}

impl Verdict {
    pub fn is_intact(&self) -> bool {
        matches!(self, Verdict::Intact { .. })
    }

    /// `(entry, reason)` of a chain that is not intact.
    pub fn problem(&self) -> Option<(i64, String)> {
        match self {
            Verdict::Intact { .. } => None,
            Verdict::Broken { seq, reason } => Some((*seq, reason.clone())),
            Verdict::Truncated {
                checkpoint_seq,
                chain_end,
            } => Some((
                *checkpoint_seq,
                format!(
                    "TRUNCATED: the checkpoint at entry {checkpoint_seq} is missing \
                     (chain ends at {chain_end})"
                ),
            )),
        }
    }
}

/// A whole walk: the verdict and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// Entries checked (up to the first problem).
    pub entries: u64,
    /// Of those, entries hashed without a key (written before issue 18).
    pub legacy_entries: u64,
    /// The newest entry checked, `(0, GENESIS)` for an empty chain.
    pub head_seq: i64,
    pub head_hash: String,
}

/// What is wrong with entry `e`, if anything, given the one before it.
fn check_entry(
    e: &audit_entry::Model,
    expected_seq: i64,
    prev: &str,
    keyed_seen: bool,
    keys: Option<&AuditKeys>,
) -> Result<Option<String>, ApiError> {
    if e.seq != expected_seq {
        return Ok(Some(format!(
            "expected entry {expected_seq}: entries are missing"
        )));
    }
    if e.prev_hash != prev {
        return Ok(Some(
            "prev_hash does not match the previous entry's hash".into(),
        ));
    }
    match e.mac.as_str() {
        MAC_HMAC => {}
        MAC_LEGACY if keyed_seen => {
            return Ok(Some(
                "unkeyed (sha256) entry after keyed ones: rewritten without the audit key".into(),
            ))
        }
        MAC_LEGACY => {}
        other => return Ok(Some(format!("unknown mac {other:?}"))),
    }
    let Some(want) = expected_hash(e, keys) else {
        return Err(ApiError::Unavailable(
            "the chain has keyed entries: checking them needs the master key \
             (WEIR_MASTER_KEY, or weir-master.key next to the SQLite database)"
                .into(),
        ));
    };
    if !constant_time_eq(want.as_bytes(), e.hash.as_bytes()) {
        return Ok(Some(if e.mac == MAC_HMAC {
            "content does not match its keyed hash (entry altered or forged, or another master key)"
                .into()
        } else {
            "content does not match its hash (entry was altered)".into()
        }));
    }
    Ok(None)
}

/// Walk the whole chain in order and recompute every hash. With a
/// checkpoint (whose signature must verify under `keys`), also check that
/// its entry is still there with the same hash.
pub async fn verify_with(
    db: &DatabaseConnection,
    keys: Option<&AuditKeys>,
    checkpoint: Option<&Checkpoint>,
) -> Result<Report, ApiError> {
    if let Some(cp) = checkpoint {
        let errs = cp.field_errors("checkpoint.");
        if !errs.is_empty() {
            return Err(ApiError::Validation(errs));
        }
        let keys = keys.ok_or_else(|| {
            ApiError::Unavailable("checking a checkpoint needs the master key".into())
        })?;
        cp.check(keys, "checkpoint.")?;
    }
    let mut r = Report {
        verdict: Verdict::Intact { entries: 0 },
        entries: 0,
        legacy_entries: 0,
        head_seq: 0,
        head_hash: GENESIS.to_string(),
    };
    let mut pages = audit_entry::Entity::find()
        .order_by_asc(audit_entry::Column::Seq)
        .paginate(db, 1000);
    while let Some(page) = pages.fetch_and_next().await? {
        for e in page {
            let keyed_seen = r.entries > r.legacy_entries;
            if let Some(reason) = check_entry(&e, r.head_seq + 1, &r.head_hash, keyed_seen, keys)? {
                r.verdict = Verdict::Broken { seq: e.seq, reason };
                return Ok(r);
            }
            if let Some(cp) = checkpoint.filter(|cp| cp.seq == e.seq && cp.hash != e.hash) {
                r.verdict = Verdict::Broken {
                    seq: cp.seq,
                    reason:
                        "differs from the signed checkpoint: history rewritten since it was taken"
                            .into(),
                };
                return Ok(r);
            }
            r.entries += 1;
            r.legacy_entries += u64::from(e.mac == MAC_LEGACY);
            r.head_seq = e.seq;
            r.head_hash = e.hash;
        }
    }
    r.verdict = match checkpoint {
        Some(cp) if cp.seq > r.head_seq => Verdict::Truncated {
            checkpoint_seq: cp.seq,
            chain_end: r.head_seq,
        },
        _ => Verdict::Intact { entries: r.entries },
    };
    Ok(r)
}

/// Check the chain with the keys this process appends with (no checkpoint).
pub async fn verify(db: &DatabaseConnection) -> Result<Verdict, ApiError> {
    let keys = super::keys::installed();
    Ok(verify_with(db, keys.as_deref(), None).await?.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;
    use chrono::{DateTime, Utc};

    fn entry(seq: i64, prev: &str, mac: &str) -> audit_entry::Model {
        audit_entry::Model {
            seq,
            at: DateTime::parse_from_rfc3339("2026-12-06T21:00:00.000001Z")
                .unwrap()
                .with_timezone(&Utc),
            actor_id: None,
            actor: "system".into(),
            org_id: None,
            project_id: None,
            action: "org.create".into(),
            target: "org:a".into(),
            outcome: "success".into(),
            client_addr: "127.0.0.1".into(),
            user_agent: "t".into(),
            details: "{}".into(),
            prev_hash: prev.into(),
            hash: String::new(),
            mac: mac.into(),
        }
    }

    #[test]
    fn canonical_content_is_fixed() {
        // Stored hashes depend on this exact text: it must never change.
        assert_eq!(
            content(&entry(1, GENESIS, MAC_HMAC)),
            format!(
                r#"[1,"2026-12-06T21:00:00.000001Z",null,"system",null,null,"org.create","org:a","success","127.0.0.1","t","{{}}","{GENESIS}"]"#
            )
        );
    }

    #[test]
    fn keyed_entries_need_the_key_and_legacy_ones_only_come_first() {
        let k = AuditKeys::derive(&MasterKey::from_bytes(&[3u8; 32]));
        let other = AuditKeys::derive(&MasterKey::from_bytes(&[4u8; 32]));
        let mut e = entry(1, GENESIS, MAC_HMAC);
        e.hash = k.mac(content(&e).as_bytes());
        assert_eq!(check_entry(&e, 1, GENESIS, false, Some(&k)).unwrap(), None);
        assert!(check_entry(&e, 1, GENESIS, false, Some(&other))
            .unwrap()
            .is_some());
        assert!(check_entry(&e, 1, GENESIS, false, None).is_err());
        // A forger without the key: plain SHA-256, kept as "hmac-sha256".
        e.target = "org:forged".into();
        e.hash = hex::encode(Sha256::digest(content(&e).as_bytes()));
        assert!(check_entry(&e, 1, GENESIS, false, Some(&k))
            .unwrap()
            .is_some());
        // ... or relabelled as legacy: fine only before any keyed entry.
        e.mac = MAC_LEGACY.into();
        assert_eq!(check_entry(&e, 1, GENESIS, false, Some(&k)).unwrap(), None);
        let why = check_entry(&e, 1, GENESIS, true, Some(&k))
            .unwrap()
            .unwrap();
        assert!(why.contains("unkeyed"), "{why}");
    }
}
