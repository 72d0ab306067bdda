//! Secrets, in one place: random tokens and their digests (sessions, API
//! and enrollment tokens), and sealing at rest under the master key
//! ([`master_key`]: signing keys, broker passwords; [`channel`]: the
//! notification channels' webhook secrets and SMTP passwords). The stored
//! formats are fixed: rows written by earlier versions must still open.

pub mod channel;
pub mod master_key;

pub use master_key::MasterKey;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compare without an early exit, so timing does not leak a prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
