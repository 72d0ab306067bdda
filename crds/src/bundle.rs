//! Signed config bundles: a canonical JSON payload signed with Ed25519.
//!
//! Wire form ([`SignedBundle`]): the payload bytes (base64), the key id and the
//! signature. The signature covers the exact payload bytes; the verifier also
//! insists the bytes are canonical, so there is only one valid encoding of a
//! payload. Verification uses `verify_strict` (no malleable signatures, no
//! small-order keys).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::gateway::GatewayConfig;

/// Bumped when the payload changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// Rotations a bundle carries at most (`rotation_chain` and `rotation`): a
/// signer keeps the last ones; an agent that was away for more rotations
/// than this cannot follow and must be enrolled again.
pub const MAX_ROTATIONS: usize = 16;

/// What is signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundlePayload {
    pub tenant: String,
    pub gateway: String,
    pub schema_version: u32,
    /// Only goes up; agents refuse anything not newer than what they run.
    pub version: u64,
    pub issued_at: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub config: GatewayConfig,
}

/// The bundle as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedBundle {
    /// Base64 of the canonical payload bytes.
    pub payload: String,
    pub key_id: String,
    /// Base64 Ed25519 signature over the payload bytes.
    pub signature: String,
    /// Present while the signer rotates keys: the new key endorsed by the old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<KeyRotation>,
    /// The rotations before `rotation`, oldest first, each handing over to
    /// the next one's old key: an agent that pinned a key older than
    /// `rotation.old_key_id` follows them ([`follow_rotations`]). Agents that
    /// do not know the field read `rotation` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotation_chain: Vec<KeyRotation>,
}

/// A public key an agent trusts, as pinned at enrollment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustAnchor {
    pub key_id: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
}

/// "Key `old_key_id` hands over to `new_key`", signed by both keys so that
/// neither a stolen old key alone nor an unknown new key can take over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    pub old_key_id: String,
    pub new_key: TrustAnchor,
    pub issued_at: DateTime<Utc>,
    pub signature_old: String,
    pub signature_new: String,
}

/// Why a bundle was refused. The text is reported to the api as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is malformed: {0}")]
    Malformed(String),
    #[error("bundle payload is not in canonical form")]
    NotCanonical,
    #[error("bundle is signed by key {got}, but this gateway trusts key {trusted}")]
    UnknownKey { got: String, trusted: String },
    #[error("bundle signature does not verify: payload or signature was altered")]
    BadSignature,
    #[error("bundle schema version {0} is not supported (this agent reads {SCHEMA_VERSION})")]
    UnsupportedSchema(u32),
    #[error("bundle is for tenant '{got}', this gateway belongs to '{expected}'")]
    WrongTenant { expected: String, got: String },
    #[error("bundle is for gateway '{got}', this is gateway '{expected}'")]
    WrongGateway { expected: String, got: String },
    #[error("bundle expired at {expires} (now {now})")]
    Expired {
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("bundle was issued at {issued_at}, in the future (now {now})")]
    NotYetValid {
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("bundle version {version} is not newer than the accepted version {last_accepted}")]
    VersionNotNewer { version: u64, last_accepted: u64 },
    #[error("key rotation does not verify: {0}")]
    BadRotation(String),
}

/// What the verifier expects of a bundle.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    pub tenant: &'a str,
    pub gateway: &'a str,
    /// Highest version accepted so far; the bundle must be greater.
    pub last_accepted: Option<u64>,
    pub now: DateTime<Utc>,
}

/// Clock skew tolerated for `issued_at`.
const MAX_SKEW: i64 = 300;

/// `ed25519:` and the first 16 hex digits of SHA-256 of the public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", &hex_lower(&digest)[..16])
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TrustAnchor {
    pub fn from_key(key: &VerifyingKey) -> Self {
        Self {
            key_id: key_id(key),
            public_key: B64.encode(key.as_bytes()),
        }
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, BundleError> {
        let bytes = B64
            .decode(&self.public_key)
            .map_err(|e| BundleError::Malformed(format!("public key is not base64: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| BundleError::Malformed("public key must be 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|e| BundleError::Malformed(format!("public key is invalid: {e}")))?;
        if key_id(&key) != self.key_id {
            return Err(BundleError::Malformed(
                "key id does not match the public key".into(),
            ));
        }
        Ok(key)
    }
}

/// The one byte form of a JSON value: object keys sorted by their UTF-8
/// bytes, no whitespace, numbers and strings as serde_json writes them.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    serde_json::to_string(k)
                        .expect("string serializes")
                        .as_bytes(),
                );
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(
            serde_json::to_string(other)
                .expect("scalar serializes")
                .as_bytes(),
        ),
    }
}

impl BundlePayload {
    /// A payload valid for `validity` from `now`.
    pub fn new(
        tenant: &str,
        gateway: &str,
        version: u64,
        config: GatewayConfig,
        now: DateTime<Utc>,
        validity: Duration,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            gateway: gateway.into(),
            schema_version: SCHEMA_VERSION,
            version,
            issued_at: now,
            expires: now + validity,
            config,
        }
    }

    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical_json(&serde_json::to_value(self).expect("payload serializes"))
    }
}

/// Sign a payload.
pub fn sign(payload: &BundlePayload, key: &SigningKey) -> SignedBundle {
    let bytes = payload.canonical_bytes();
    let signature = key.sign(&bytes);
    SignedBundle {
        payload: B64.encode(&bytes),
        key_id: key_id(&key.verifying_key()),
        signature: B64.encode(signature.to_bytes()),
        rotation: None,
        rotation_chain: vec![],
    }
}

/// Check signature, key, canonical form, schema, tenant, gateway, time and
/// version; return the payload only if everything holds.
pub fn verify(
    bundle: &SignedBundle,
    trusted: &VerifyingKey,
    expect: &Expectations<'_>,
) -> Result<BundlePayload, BundleError> {
    let trusted_id = key_id(trusted);
    if bundle.key_id != trusted_id {
        return Err(BundleError::UnknownKey {
            got: bundle.key_id.clone(),
            trusted: trusted_id,
        });
    }
    let bytes = B64
        .decode(&bundle.payload)
        .map_err(|e| BundleError::Malformed(format!("payload is not base64: {e}")))?;
    let sig_bytes = B64
        .decode(&bundle.signature)
        .map_err(|e| BundleError::Malformed(format!("signature is not base64: {e}")))?;
    let signature = Signature::from_slice(&sig_bytes).map_err(|_| BundleError::BadSignature)?;
    trusted
        .verify_strict(&bytes, &signature)
        .map_err(|_| BundleError::BadSignature)?;

    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| BundleError::Malformed(format!("payload is not JSON: {e}")))?;
    if canonical_json(&value) != bytes {
        return Err(BundleError::NotCanonical);
    }
    let schema_version = value
        .get("schemaVersion")
        .and_then(Value::as_u64)
        .ok_or_else(|| BundleError::Malformed("payload has no schemaVersion".into()))?;
    if schema_version != u64::from(SCHEMA_VERSION) {
        return Err(BundleError::UnsupportedSchema(schema_version as u32));
    }
    let payload: BundlePayload = serde_json::from_value(value)
        .map_err(|e| BundleError::Malformed(format!("payload: {e}")))?;
    if payload.tenant != expect.tenant {
        return Err(BundleError::WrongTenant {
            expected: expect.tenant.into(),
            got: payload.tenant,
        });
    }
    if payload.gateway != expect.gateway {
        return Err(BundleError::WrongGateway {
            expected: expect.gateway.into(),
            got: payload.gateway,
        });
    }
    if payload.expires <= expect.now {
        return Err(BundleError::Expired {
            expires: payload.expires,
            now: expect.now,
        });
    }
    if payload.issued_at > expect.now + Duration::seconds(MAX_SKEW) {
        return Err(BundleError::NotYetValid {
            issued_at: payload.issued_at,
            now: expect.now,
        });
    }
    if let Some(last) = expect.last_accepted {
        if payload.version <= last {
            return Err(BundleError::VersionNotNewer {
                version: payload.version,
                last_accepted: last,
            });
        }
    }
    Ok(payload)
}

fn rotation_message(old_key_id: &str, new_key: &TrustAnchor, issued_at: &DateTime<Utc>) -> Vec<u8> {
    format!(
        "weir-key-rotation\n{old_key_id}\n{}\n{}\n{}",
        new_key.key_id,
        new_key.public_key,
        issued_at.to_rfc3339()
    )
    .into_bytes()
}

/// Endorse `new` as the successor of `old`, signed by both.
pub fn sign_rotation(old: &SigningKey, new: &SigningKey, now: DateTime<Utc>) -> KeyRotation {
    let old_key_id = key_id(&old.verifying_key());
    let new_key = TrustAnchor::from_key(&new.verifying_key());
    let msg = rotation_message(&old_key_id, &new_key, &now);
    KeyRotation {
        signature_old: B64.encode(old.sign(&msg).to_bytes()),
        signature_new: B64.encode(new.sign(&msg).to_bytes()),
        old_key_id,
        new_key,
        issued_at: now,
    }
}

/// Check a rotation against the key currently trusted; return the new key to pin.
pub fn verify_rotation(
    rotation: &KeyRotation,
    trusted: &VerifyingKey,
) -> Result<VerifyingKey, BundleError> {
    let bad = |m: &str| BundleError::BadRotation(m.to_string());
    if rotation.old_key_id != key_id(trusted) {
        return Err(bad("it was not issued by the trusted key"));
    }
    let new_key = rotation.new_key.verifying_key()?;
    let msg = rotation_message(&rotation.old_key_id, &rotation.new_key, &rotation.issued_at);
    for (key, sig, who) in [
        (trusted, &rotation.signature_old, "old"),
        (&new_key, &rotation.signature_new, "new"),
    ] {
        let bytes = B64
            .decode(sig)
            .map_err(|_| bad(&format!("{who} signature is not base64")))?;
        let sig = Signature::from_slice(&bytes)
            .map_err(|_| bad(&format!("{who} signature is malformed")))?;
        key.verify_strict(&msg, &sig)
            .map_err(|_| bad(&format!("{who} key's signature does not verify")))?;
    }
    Ok(new_key)
}

/// The key `bundle` is signed with, reached from the `trusted` key through
/// the rotations the bundle carries (`rotation_chain`, then `rotation`),
/// each verified against the key before it: `None` when no rotation is
/// needed (the bundle names the trusted key, or carries no rotation, which
/// [`verify`] then refuses if the key differs).
pub fn follow_rotations(
    bundle: &SignedBundle,
    trusted: &VerifyingKey,
) -> Result<Option<VerifyingKey>, BundleError> {
    let trusted_id = key_id(trusted);
    if bundle.key_id == trusted_id || bundle.rotation.is_none() {
        return Ok(None);
    }
    let links: Vec<&KeyRotation> = bundle
        .rotation_chain
        .iter()
        .chain(bundle.rotation.as_ref())
        .collect();
    if links.len() > MAX_ROTATIONS {
        return Err(BundleError::Malformed(format!(
            "{} key rotations, more than the {MAX_ROTATIONS} a bundle may carry",
            links.len()
        )));
    }
    let start = links
        .iter()
        .position(|r| r.old_key_id == trusted_id)
        .ok_or_else(|| BundleError::BadRotation("it was not issued by the trusted key".into()))?;
    let mut key = *trusted;
    for link in &links[start..] {
        key = verify_rotation(link, &key)?;
    }
    Ok(Some(key))
}

/// A new random signing key.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Uplink;

    fn payload(version: u64) -> BundlePayload {
        let now = Utc::now();
        BundlePayload::new(
            "riverside-water",
            "pump-station-1",
            version,
            GatewayConfig {
                uplink: Uplink::default(),
                ..Default::default()
            },
            now,
            Duration::days(30),
        )
    }

    fn expect(last: Option<u64>) -> Expectations<'static> {
        Expectations {
            tenant: "riverside-water",
            gateway: "pump-station-1",
            last_accepted: last,
            now: Utc::now(),
        }
    }

    #[test]
    fn valid_bundle_verifies() {
        let key = generate_key();
        let b = sign(&payload(3), &key);
        let p = verify(&b, &key.verifying_key(), &expect(Some(2))).unwrap();
        assert_eq!(p.version, 3);
    }

    #[test]
    fn tampered_payload_is_refused() {
        let key = generate_key();
        let mut b = sign(&payload(3), &key);
        let mut bytes = B64.decode(&b.payload).unwrap();
        let text = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("pump-station-1", "pump-station-2");
        bytes = text.into_bytes();
        b.payload = B64.encode(bytes);
        assert_eq!(
            verify(&b, &key.verifying_key(), &expect(None)),
            Err(BundleError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let key = generate_key();
        let mut b = sign(&payload(3), &key);
        let mut sig = B64.decode(&b.signature).unwrap();
        sig[5] ^= 0x01;
        b.signature = B64.encode(sig);
        assert_eq!(
            verify(&b, &key.verifying_key(), &expect(None)),
            Err(BundleError::BadSignature)
        );
    }

    #[test]
    fn wrong_key_is_refused() {
        let key = generate_key();
        let other = generate_key();
        let b = sign(&payload(3), &other);
        assert!(matches!(
            verify(&b, &key.verifying_key(), &expect(None)),
            Err(BundleError::UnknownKey { .. })
        ));
        // Even when the attacker copies the trusted key id, the signature fails.
        let mut forged = b.clone();
        forged.key_id = key_id(&key.verifying_key());
        assert_eq!(
            verify(&forged, &key.verifying_key(), &expect(None)),
            Err(BundleError::BadSignature)
        );
    }

    #[test]
    fn wrong_gateway_and_tenant_are_refused() {
        let key = generate_key();
        let b = sign(&payload(3), &key);
        let mut e = expect(None);
        e.gateway = "filtration-1";
        assert!(matches!(
            verify(&b, &key.verifying_key(), &e),
            Err(BundleError::WrongGateway { .. })
        ));
        let mut e = expect(None);
        e.tenant = "hillside";
        assert!(matches!(
            verify(&b, &key.verifying_key(), &e),
            Err(BundleError::WrongTenant { .. })
        ));
    }

    #[test]
    fn expired_bundle_is_refused() {
        let key = generate_key();
        let mut p = payload(3);
        p.issued_at = Utc::now() - Duration::days(10);
        p.expires = Utc::now() - Duration::seconds(1);
        let b = sign(&p, &key);
        assert!(matches!(
            verify(&b, &key.verifying_key(), &expect(None)),
            Err(BundleError::Expired { .. })
        ));
    }

    #[test]
    fn version_must_be_newer() {
        let key = generate_key();
        let b = sign(&payload(3), &key);
        assert_eq!(
            verify(&b, &key.verifying_key(), &expect(Some(3))),
            Err(BundleError::VersionNotNewer {
                version: 3,
                last_accepted: 3
            })
        );
        assert!(verify(&b, &key.verifying_key(), &expect(Some(7))).is_err());
    }

    #[test]
    fn non_canonical_payload_is_refused_even_if_signed() {
        let key = generate_key();
        let p = payload(3);
        let pretty = serde_json::to_vec_pretty(&p).unwrap();
        let b = SignedBundle {
            payload: B64.encode(&pretty),
            key_id: key_id(&key.verifying_key()),
            signature: B64.encode(key.sign(&pretty).to_bytes()),
            rotation: None,
            rotation_chain: vec![],
        };
        assert_eq!(
            verify(&b, &key.verifying_key(), &expect(None)),
            Err(BundleError::NotCanonical)
        );
    }

    #[test]
    fn canonical_form_ignores_field_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":1}],"x":"s"},"c":1.5}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"c":1.5,"a":{"x":"s","y":[1,{"p":1,"q":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":{"x":"s","y":[1,{"p":1,"q":2}]},"b":1,"c":1.5}"#
        );
        // And the same payload always signs to the same bytes.
        let p = payload(1);
        let reparsed: BundlePayload =
            serde_json::from_slice(&serde_json::to_vec_pretty(&p).unwrap()).unwrap();
        assert_eq!(p.canonical_bytes(), reparsed.canonical_bytes());
    }

    #[test]
    fn rotation_needs_both_keys() {
        let old = generate_key();
        let new = generate_key();
        let rot = sign_rotation(&old, &new, Utc::now());
        assert_eq!(
            verify_rotation(&rot, &old.verifying_key()).unwrap(),
            new.verifying_key()
        );
        // Not trusted: issued by a key we do not pin.
        let stranger = generate_key();
        assert!(verify_rotation(&rot, &stranger.verifying_key()).is_err());
        // New key's signature swapped for another key's: refused.
        let mut forged = rot.clone();
        let evil = generate_key();
        forged.signature_new = sign_rotation(&old, &evil, rot.issued_at).signature_new;
        assert!(verify_rotation(&forged, &old.verifying_key()).is_err());
    }

    #[test]
    fn a_rotation_chain_is_followed_from_any_key_in_it() {
        let k0 = generate_key();
        let k1 = generate_key();
        let k2 = generate_key();
        let mut b = sign(&payload(3), &k2);
        b.rotation_chain = vec![sign_rotation(&k0, &k1, Utc::now())];
        b.rotation = Some(sign_rotation(&k1, &k2, Utc::now()));
        for pinned in [&k0, &k1] {
            let key = follow_rotations(&b, &pinned.verifying_key())
                .unwrap()
                .expect("rotated");
            assert_eq!(key, k2.verifying_key());
            assert_eq!(verify(&b, &key, &expect(None)).unwrap().version, 3);
        }
        assert_eq!(follow_rotations(&b, &k2.verifying_key()).unwrap(), None);
        // A key outside the chain gets nowhere.
        assert!(matches!(
            follow_rotations(&b, &generate_key().verifying_key()),
            Err(BundleError::BadRotation(_))
        ));
        // A broken link (k1 -> k2 endorsed by a stranger instead of k1) stops the walk.
        let evil = generate_key();
        let mut broken = b.clone();
        let mut link = sign_rotation(&evil, &k2, Utc::now());
        link.old_key_id = key_id(&k1.verifying_key());
        broken.rotation = Some(link);
        assert!(follow_rotations(&broken, &k0.verifying_key()).is_err());
        // Without the chain, an agent pinned to k0 cannot follow k1 -> k2.
        let mut short = b.clone();
        short.rotation_chain.clear();
        assert!(follow_rotations(&short, &k0.verifying_key()).is_err());
        // Longer than a bundle may carry: refused before any link is checked.
        let mut long = b.clone();
        long.rotation_chain = vec![long.rotation_chain[0].clone(); MAX_ROTATIONS];
        assert!(matches!(
            follow_rotations(&long, &k0.verifying_key()),
            Err(BundleError::Malformed(_))
        ));
        // The chain is optional on the wire, so older bundles still parse.
        let json = serde_json::to_value(&short).unwrap();
        assert!(json.get("rotationChain").is_none());
        let back: SignedBundle = serde_json::from_value(json).unwrap();
        assert_eq!(back, short);
    }
}
