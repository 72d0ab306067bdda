//! Signed checkpoints of the chain's head. A checkpoint kept outside the
//! database (a file, a ticket, another system) pins entry `seq` to `hash`:
//! verifying with it later tells whether the newest entries were deleted
//! (the chain ends before `seq`) or the history rewritten (entry `seq` has
//! another hash), which the chain alone cannot show.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::keys::AuditKeys;
use super::{fmt_time, GENESIS};
use crate::error::{ApiError, FieldError};
use crate::extract::Validate;

/// The head of the audit chain, signed with the installation's checkpoint key.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Sequence number of the newest entry (0: empty chain).
    #[schema(minimum = 0)]
    pub seq: i64,
    /// That entry's hash (64 lowercase hex digits; the genesis hash for an empty chain).
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
    /// When the checkpoint was taken (microsecond precision).
    pub at: DateTime<Utc>,
    /// Entries in the chain then (equals `seq`).
    #[schema(minimum = 0)]
    pub entries: i64,
    /// Ed25519 public key that signed it, base64 (32 bytes).
    #[schema(min_length = 44, max_length = 44, format = Byte)]
    pub public_key: String,
    /// Ed25519 signature over the canonical text of the other fields, base64 (64 bytes).
    #[schema(min_length = 88, max_length = 88, format = Byte)]
    pub signature: String,
}

/// The exact bytes a checkpoint's signature covers.
pub fn canonical(seq: i64, hash: &str, at: &DateTime<Utc>, entries: i64) -> String {
    format!(
        "weir audit checkpoint v1\nseq: {seq}\nhash: {hash}\nentries: {entries}\nat: {}\n",
        fmt_time(at)
    )
}

impl Checkpoint {
    /// Sign the head `(seq, hash)` of a chain of `entries` entries, now.
    pub fn sign(keys: &AuditKeys, seq: i64, hash: &str, entries: i64) -> Checkpoint {
        let at = Utc::now().trunc_subsecs(6);
        let sig = keys
            .signing_key()
            .sign(canonical(seq, hash, &at, entries).as_bytes());
        Checkpoint {
            seq,
            hash: hash.to_string(),
            at,
            entries,
            public_key: keys.public_key_b64(),
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// Accept only a checkpoint signed by this installation's key, with a
    /// strictly valid signature over exactly these fields. The error names
    /// the field at fault (`prefix` + field) and says why.
    pub fn check(&self, keys: &AuditKeys, prefix: &str) -> Result<(), ApiError> {
        let bad = |f: &str, m: &str| ApiError::invalid(&format!("{prefix}{f}"), m);
        let pk: [u8; 32] = B64
            .decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("public_key", "must be 32 bytes, base64"))?;
        let pk = VerifyingKey::from_bytes(&pk)
            .map_err(|_| bad("public_key", "is not an Ed25519 public key"))?;
        // A checkpoint carries its own public key so it can be checked
        // elsewhere; here only ours counts, or anyone could sign one.
        if pk != keys.public_key() {
            return Err(bad(
                "public_key",
                "is not this installation's audit checkpoint key (another master key?)",
            ));
        }
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signature", "must be 64 bytes, base64"))?;
        let msg = canonical(self.seq, &self.hash, &self.at, self.entries);
        pk.verify_strict(msg.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| {
                bad(
                    "signature",
                    "does not verify: the checkpoint was altered or not signed by this installation",
                )
            })
    }
}

impl Checkpoint {
    /// Shape problems (before the signature is checked), fields named
    /// `prefix` + field.
    pub fn field_errors(&self, prefix: &str) -> Vec<FieldError> {
        let mut errs = vec![];
        let mut bad = |f: &str, m: &str| errs.push(FieldError::new(format!("{prefix}{f}"), m));
        if self.seq < 0 {
            bad("seq", "must be 0 or more");
        }
        if self.entries < 0 {
            bad("entries", "must be 0 or more");
        }
        let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        if self.hash.len() != 64 || !self.hash.bytes().all(hex) {
            bad("hash", "must be 64 lowercase hex digits");
        } else if self.seq == 0 && self.hash != GENESIS {
            bad("hash", "must be the genesis hash when seq is 0");
        }
        errs
    }
}

impl Validate for Checkpoint {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        crate::extract::check::finish(self.field_errors(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    fn keys(b: u8) -> AuditKeys {
        AuditKeys::derive(&MasterKey::from_bytes(&[b; 32]))
    }

    #[test]
    fn canonical_text_is_fixed() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T21:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            canonical(7, "ab", &at, 7),
            "weir audit checkpoint v1\nseq: 7\nhash: ab\nentries: 7\nat: 2026-12-06T21:00:00.123456Z\n"
        );
    }

    #[test]
    fn signed_checkpoint_verifies_and_survives_json() {
        let k = keys(1);
        let cp = Checkpoint::sign(&k, 3, &"a".repeat(64), 3);
        cp.check(&k, "").unwrap();
        let back: Checkpoint = serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
        assert_eq!(back, cp);
        back.check(&k, "").unwrap();
        assert!(back.validate().is_ok());
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Validation(f) => f[0].field.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn altered_or_foreign_checkpoints_are_refused() {
        let k = keys(1);
        let cp = Checkpoint::sign(&k, 3, &"a".repeat(64), 3);
        // A flipped signature byte.
        let mut raw = B64.decode(&cp.signature).unwrap();
        raw[10] ^= 1;
        let flipped = Checkpoint {
            signature: B64.encode(&raw),
            ..cp.clone()
        };
        assert_eq!(field_of(flipped.check(&k, "").unwrap_err()), "signature");
        // Moved to an older head, signature kept.
        let moved = Checkpoint {
            seq: 2,
            entries: 2,
            ..cp.clone()
        };
        assert_eq!(
            field_of(moved.check(&k, "checkpoint.").unwrap_err()),
            "checkpoint.signature"
        );
        // Signed by someone else's key, with that key attached.
        let forged = Checkpoint::sign(&keys(2), 3, &"a".repeat(64), 3);
        assert_eq!(field_of(forged.check(&k, "").unwrap_err()), "public_key");
        let garbage = Checkpoint {
            signature: "nope".into(),
            ..cp
        };
        assert_eq!(field_of(garbage.check(&k, "").unwrap_err()), "signature");
    }
}
