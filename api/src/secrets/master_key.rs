//! Secrets at rest: AES-256-GCM under the master key (`WEIR_MASTER_KEY`).
//!
//! The master key is 32 bytes, given as base64 or hex. Without it, the
//! embedded default (SQLite in a file) generates one into `weir-master.key`
//! (mode 0600) next to the database and logs that it did — never the key
//! itself. With PostgreSQL the key must be given: replicas share the
//! database, so they must share the key too.
//!
//! Other keys are derived from it with HKDF-SHA256 ([`MasterKey::derive`],
//! one `info` string per use: the audit chain's MAC and checkpoint keys), so
//! backing up this one key backs them all up.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use crate::error::ApiError;

/// File name of the generated master key.
pub const MASTER_KEY_FILE: &str = "weir-master.key";

/// The key that encrypts signing keys and broker passwords.
pub struct MasterKey {
    cipher: Aes256Gcm,
    hkdf: Hkdf<Sha256>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// HKDF salt: fixed, so a key derives the same subkeys on every replica.
const DERIVE_SALT: &[u8] = b"weir master key derivation v1";

/// Decode 32 bytes given as hex (64 digits) or base64.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).map_err(|e| e.to_string())?
    } else {
        B64.decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .map_err(|_| "not hex or base64".to_string())?
    };
    bytes
        .try_into()
        .map_err(|v: Vec<u8>| format!("must be 32 bytes, got {}", v.len()))
}

impl MasterKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            hkdf: Hkdf::<Sha256>::new(Some(DERIVE_SALT), key),
        }
    }

    /// A 32-byte subkey for one purpose. Distinct `info` strings give
    /// independent keys; the master key cannot be recovered from them.
    pub fn derive(&self, info: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.hkdf
            .expand(info.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// Like [`MasterKey::resolve`], but never generates a key (for tools
    /// that only read, like `weir-api audit verify`): `None` when no key is
    /// configured and no key file exists.
    pub fn resolve_existing(
        configured: Option<&str>,
        database_url: &str,
    ) -> Result<Option<Self>, ApiError> {
        if configured.is_some_and(|t| !t.trim().is_empty()) {
            return Self::resolve(configured, database_url).map(Some);
        }
        match sqlite_dir(database_url) {
            Some(SqliteLocation::Dir(dir)) if dir.join(MASTER_KEY_FILE).exists() => {
                Self::load_or_create(&dir.join(MASTER_KEY_FILE)).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Resolve the master key: the configured value, else the key file next
    /// to a file SQLite database (generated on first start), else an
    /// ephemeral key for an in-memory database. PostgreSQL without a key is
    /// an error.
    pub fn resolve(configured: Option<&str>, database_url: &str) -> Result<Self, ApiError> {
        if let Some(text) = configured.filter(|t| !t.trim().is_empty()) {
            let key = parse_key(text)
                .map_err(|e| ApiError::internal(format!("WEIR_MASTER_KEY is invalid: {e}")))?;
            return Ok(Self::from_bytes(&key));
        }
        match sqlite_dir(database_url) {
            Some(SqliteLocation::Memory) => {
                tracing::warn!(
                    "no WEIR_MASTER_KEY and an in-memory database: using an ephemeral master key"
                );
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                Ok(Self::from_bytes(&key))
            }
            Some(SqliteLocation::Dir(dir)) => Self::load_or_create(&dir.join(MASTER_KEY_FILE)),
            None => Err(ApiError::Unavailable(
                "WEIR_MASTER_KEY is not set: it is required with PostgreSQL to encrypt signing keys"
                    .into(),
            )),
        }
    }

    fn load_or_create(path: &Path) -> Result<Self, ApiError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = parse_key(&text).map_err(|e| {
                    ApiError::internal(format!(
                        "master key file {} is invalid: {e}",
                        path.display()
                    ))
                })?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(path, &B64.encode(key))
                    .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
                tracing::warn!(
                    path = %path.display(),
                    "WEIR_MASTER_KEY is not set: generated a new master key into this file; \
                     back it up, signing keys cannot be decrypted without it"
                );
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(ApiError::internal(format!(
                "reading {}: {e}",
                path.display()
            ))),
        }
    }

    /// Encrypt; `aad` binds the ciphertext to its row (a key id, a cluster id)
    /// so it cannot be copied to another row.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail for small inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, ApiError> {
        let raw = B64
            .decode(sealed)
            .map_err(|_| ApiError::internal("sealed secret is not base64"))?;
        if raw.len() < 12 + 16 {
            return Err(ApiError::internal("sealed secret is too short"));
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                ApiError::internal("cannot decrypt a stored secret: wrong WEIR_MASTER_KEY?")
            })
    }
}

enum SqliteLocation {
    Memory,
    Dir(PathBuf),
}

fn sqlite_dir(url: &str) -> Option<SqliteLocation> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return Some(SqliteLocation::Memory);
    }
    let p = Path::new(path);
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Some(SqliteLocation::Dir(dir))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_to_aad() {
        let k = MasterKey::from_bytes(&[7u8; 32]);
        let s = k.seal(b"seed bytes", "key-1");
        assert_eq!(k.open(&s, "key-1").unwrap(), b"seed bytes");
        assert!(k.open(&s, "key-2").is_err(), "moved to another row");
        let other = MasterKey::from_bytes(&[8u8; 32]);
        assert!(other.open(&s, "key-1").is_err(), "wrong master key");
    }

    #[test]
    fn derived_keys_are_stable_and_distinct_per_purpose() {
        let k = MasterKey::from_bytes(&[7u8; 32]);
        assert_eq!(k.derive("a"), MasterKey::from_bytes(&[7u8; 32]).derive("a"));
        assert_ne!(k.derive("a"), k.derive("b"));
        assert_ne!(k.derive("a"), MasterKey::from_bytes(&[8u8; 32]).derive("a"));
        assert_ne!(k.derive("a"), [7u8; 32]);
    }

    #[test]
    fn resolve_existing_never_creates_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("weir.db").display());
        assert!(MasterKey::resolve_existing(None, &url).unwrap().is_none());
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
        let a = MasterKey::resolve(None, &url).unwrap();
        let b = MasterKey::resolve_existing(None, &url).unwrap().unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        assert!(MasterKey::resolve_existing(None, "postgres://x/y")
            .unwrap()
            .is_none());
    }

    #[test]
    fn parses_hex_and_base64() {
        let hex = "11".repeat(32);
        assert_eq!(parse_key(&hex).unwrap(), [0x11; 32]);
        assert_eq!(parse_key(&B64.encode([3u8; 32])).unwrap(), [3; 32]);
        assert!(parse_key("abc").is_err());
    }

    #[test]
    fn generates_a_private_key_file_next_to_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("weir.db").display());
        let a = MasterKey::resolve(None, &url).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The second start reads the same key back.
        let b = MasterKey::resolve(None, &url).unwrap();
        let s = a.seal(b"x", "r");
        assert_eq!(b.open(&s, "r").unwrap(), b"x");
        assert!(MasterKey::resolve(None, "postgres://x/y").is_err());
    }
}
