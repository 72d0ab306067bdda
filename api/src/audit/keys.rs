//! The audit chain's keys, derived from the master key (never stored in
//! the database, never logged): an HMAC-SHA256 key that each new entry's
//! hash is made with, and an Ed25519 key that signs checkpoints of the
//! chain's head.
//!
//! `audit::append(db, ev, meta)` is called from some sixty places with a
//! transaction and no state, so it finds the key in a process-wide holder
//! that start-up fills ([`install`], from `build_state`). One process serves
//! one database with one master key; a second api in the same process (tests,
//! replicas) must use the same key, else its start fails rather than writing
//! entries its own `verify` would call forged. Verification and checkpoints
//! take the keys explicitly (derived from `AppState::fleet`'s master key, or
//! in the CLI from the configured key).

use std::sync::{Arc, RwLock};

use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;
use crate::secrets::MasterKey;

/// HKDF `info` of the chain's MAC key.
const MAC_INFO: &str = "weir audit chain hmac-sha256 v1";
/// HKDF `info` of the checkpoint signing key's seed.
const SIGN_INFO: &str = "weir audit checkpoint ed25519 v1";

/// `mac` of entries keyed with [`AuditKeys::mac`].
pub const MAC_HMAC: &str = "hmac-sha256";
/// `mac` of entries written before the chain was keyed (plain SHA-256).
pub const MAC_LEGACY: &str = "sha256";

pub struct AuditKeys {
    mac_key: [u8; 32],
    signing: SigningKey,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKeys(public {})", self.public_key_b64())
    }
}

impl AuditKeys {
    pub fn derive(master: &MasterKey) -> Self {
        Self {
            mac_key: master.derive(MAC_INFO),
            signing: SigningKey::from_bytes(&master.derive(SIGN_INFO)),
        }
    }

    /// Hex HMAC-SHA256 of `content`.
    pub fn mac(&self, content: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .expect("HMAC takes keys of any length");
        m.update(content);
        hex::encode(m.finalize().into_bytes())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The checkpoint public key, standard base64 of its 32 bytes.
    pub fn public_key_b64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.public_key().as_bytes())
    }
}

/// `Some(keys)` once an api with a master key started in this process.
static INSTALLED: RwLock<Option<Arc<AuditKeys>>> = RwLock::new(None);

/// Make `keys` the ones [`super::append`] uses in this process. `None` (no
/// master key: PostgreSQL without `WEIR_MASTER_KEY`) leaves entries
/// unkeyed and says so. A different key than one already installed is an
/// error (see the module docs).
pub fn install(keys: Option<AuditKeys>) -> Result<(), ApiError> {
    let mut slot = INSTALLED.write().unwrap_or_else(|e| e.into_inner());
    match (keys, slot.as_ref()) {
        (Some(k), None) => *slot = Some(Arc::new(k)),
        (Some(k), Some(cur)) if cur.public_key() == k.public_key() => {}
        (None, None) => tracing::warn!(
            "no master key: new audit entries are not keyed (plain SHA-256) and checkpoints \
             cannot be signed; set WEIR_MASTER_KEY"
        ),
        (_, Some(_)) => {
            return Err(ApiError::internal(
                "another weir-api in this process keys the audit chain with a different \
                 master key: one process serves one master key",
            ))
        }
    }
    Ok(())
}

pub(crate) fn installed() -> Option<Arc<AuditKeys>> {
    INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_master_key_and_differ_by_purpose() {
        let a = AuditKeys::derive(&MasterKey::from_bytes(&[1u8; 32]));
        let b = AuditKeys::derive(&MasterKey::from_bytes(&[1u8; 32]));
        let c = AuditKeys::derive(&MasterKey::from_bytes(&[2u8; 32]));
        assert_eq!(a.mac(b"x"), b.mac(b"x"));
        assert_ne!(a.mac(b"x"), c.mac(b"x"), "another master key, another MAC");
        assert_ne!(a.mac(b"x"), a.mac(b"y"));
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        assert_ne!(&a.mac_key, a.signing.as_bytes(), "independent subkeys");
        // The Debug form shows the public key only.
        assert!(!format!("{a:?}").contains(&hex::encode(a.mac_key)));
    }
}
