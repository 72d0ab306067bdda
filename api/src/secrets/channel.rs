//! Channel secrets at rest (webhook signing secret, SMTP password): sealed
//! with AES-256-GCM under the api's master key (`WEIR_MASTER_KEY`, the same
//! key and helper that protect signing keys and broker passwords), bound to
//! their channel row. The column holds `sealed:v1:<base64 nonce+ciphertext>`.
//!
//! Rows written before secrets were sealed hold the plain text; they are
//! still read, and `alerts::store::seal_legacy` re-writes them sealed when the api starts
//! with a master key. A secret is never logged and never returned by the
//! HTTP API after the channel was created.

use uuid::Uuid;

use super::MasterKey;
use crate::error::ApiError;

/// Marks a sealed value (anything else is a legacy plain-text secret).
pub const SEALED_PREFIX: &str = "sealed:v1:";

fn aad(channel: Uuid) -> String {
    format!("alert-channel:{channel}")
}

/// Seal a channel's secret for its row. An empty secret stays empty (no secret).
pub fn seal(key: &MasterKey, channel: Uuid, plain: &str) -> String {
    if plain.is_empty() {
        return String::new();
    }
    format!(
        "{SEALED_PREFIX}{}",
        key.seal(plain.as_bytes(), &aad(channel))
    )
}

/// The stored value is sealed (or empty: no secret).
pub fn is_sealed(stored: &str) -> bool {
    stored.is_empty() || stored.starts_with(SEALED_PREFIX)
}

/// The plain secret of a stored value (sealed or legacy plain text).
pub fn open(key: Option<&MasterKey>, channel: Uuid, stored: &str) -> Result<String, ApiError> {
    let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
        return Ok(stored.to_string());
    };
    let key = key.ok_or_else(|| {
        ApiError::Unavailable("channel secrets need the master key (WEIR_MASTER_KEY)".into())
    })?;
    String::from_utf8(key.open(sealed, &aad(channel))?)
        .map_err(|_| ApiError::internal("a sealed channel secret is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_round_trip_bound_to_the_row_and_legacy_plain_text() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let s = seal(&key, a, "hunter2-hunter2-hunter2");
        assert!(s.starts_with(SEALED_PREFIX) && !s.contains("hunter2"));
        assert!(is_sealed(&s));
        assert_eq!(open(Some(&key), a, &s).unwrap(), "hunter2-hunter2-hunter2");
        assert!(open(Some(&key), b, &s).is_err(), "copied to another row");
        assert!(open(None, a, &s).is_err(), "no key, no secret");
        assert!(open(Some(&MasterKey::from_bytes(&[8u8; 32])), a, &s).is_err());
        assert_eq!(open(None, a, "plain-legacy").unwrap(), "plain-legacy");
        assert!(!is_sealed("plain-legacy"));
        assert_eq!(seal(&key, a, ""), "");
    }
}
