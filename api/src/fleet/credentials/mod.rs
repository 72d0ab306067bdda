//! Device credentials (issue 22): what an OPC UA device logs in with — a
//! user name and password, or a client certificate and key — kept per
//! project under a name that `devices[].opcUa.credential` refers to.
//!
//! Bundles are signed, not encrypted, so they only name a credential; the
//! agent of a gateway whose current config names it fetches it over its
//! authenticated channel ([`agent`]). The secret is sealed under the master
//! key (AES-256-GCM, bound to the row) and never leaves the api except to
//! such an agent: the list shows names, kinds and user names, the audit log
//! records who changed or fetched what, never the secret.
//!
//! Permissions: project members read the list (`project.read`: a viewer
//! already sees the names in the gateways' configs), editors and admins
//! create, replace and delete (`project.write`, like the configs that use
//! them).

pub mod agent;
pub mod routes;

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use weir_crds::agent_api::DeviceCredential;

use super::entities::device_credential;
use crate::error::{ApiError, FieldError};
use crate::extract::{check as chk, Validate};
use crate::secrets::MasterKey;

/// Longest user name, password and PEM text accepted.
pub const MAX_USERNAME: usize = weir_crds::agent_api::CREDENTIAL_USERNAME_LEN.1;
pub const MAX_PASSWORD: usize = weir_crds::agent_api::CREDENTIAL_PASSWORD_LEN.1;
pub const MAX_PEM: usize = weir_crds::agent_api::CREDENTIAL_PEM_MAX;

pub const KIND_USER_PASSWORD: &str = "userPassword";
pub const KIND_CERTIFICATE: &str = "certificate";

static NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(weir_crds::gateway::NAME_PATTERN).unwrap());

/// A credential name is a device-style name (what `opcUa.credential` allows).
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            "must be 1-63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit",
        ))
    }
}

/// A credential as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialSummary {
    pub name: String,
    /// `userPassword` or `certificate`.
    pub kind: String,
    /// The user name of a `userPassword` credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&device_credential::Model> for CredentialSummary {
    fn from(m: &device_credential::Model) -> Self {
        Self {
            name: m.name.clone(),
            kind: m.kind.clone(),
            username: (m.kind == KIND_USER_PASSWORD).then(|| m.username.clone()),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

pub fn kind_of(c: &DeviceCredential) -> &'static str {
    match c {
        DeviceCredential::UserPassword { .. } => KIND_USER_PASSWORD,
        DeviceCredential::Certificate { .. } => KIND_CERTIFICATE,
    }
}

fn aad(id: Uuid) -> String {
    format!("device-credential:{id}")
}

/// Seal the whole credential for its row.
pub fn seal(key: &MasterKey, id: Uuid, c: &DeviceCredential) -> Result<String, ApiError> {
    let json = serde_json::to_vec(c).map_err(ApiError::internal)?;
    Ok(key.seal(&json, &aad(id)))
}

/// Open a row's credential.
pub fn open(key: &MasterKey, m: &device_credential::Model) -> Result<DeviceCredential, ApiError> {
    let json = key.open(&m.secret_enc, &aad(m.id))?;
    serde_json::from_slice(&json)
        .map_err(|_| ApiError::internal("a sealed device credential is not a DeviceCredential"))
}

impl Validate for DeviceCredential {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        match self {
            DeviceCredential::UserPassword { username, password } => {
                chk::text(&mut e, "username", username, 1, MAX_USERNAME);
                if username.chars().any(char::is_control) {
                    e.push(FieldError::new(
                        "username",
                        "must not contain control characters",
                    ));
                }
                chk::text(&mut e, "password", password, 1, MAX_PASSWORD);
            }
            DeviceCredential::Certificate {
                certificate_pem,
                private_key_pem,
            } => {
                check_certificate(&mut e, certificate_pem);
                check_private_key(&mut e, private_key_pem);
            }
        }
        chk::finish(e)
    }
}

fn check_certificate(e: &mut Vec<FieldError>, pem: &str) {
    const F: &str = "certificatePem";
    if pem.trim().is_empty() || pem.len() > MAX_PEM {
        e.push(FieldError::new(
            F,
            format!("must be a PEM certificate of at most {MAX_PEM} bytes"),
        ));
        return;
    }
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    match certs.next() {
        Some(Ok(c)) if looks_like_der_sequence(&c) => {}
        Some(Ok(_)) => e.push(FieldError::new(
            F,
            "the CERTIFICATE block does not hold a DER certificate",
        )),
        Some(Err(err)) => e.push(FieldError::new(F, format!("is not valid PEM: {err:?}"))),
        None => e.push(FieldError::new(
            F,
            "holds no '-----BEGIN CERTIFICATE-----' block",
        )),
    }
}

fn check_private_key(e: &mut Vec<FieldError>, pem: &str) {
    const F: &str = "privateKeyPem";
    if pem.trim().is_empty() || pem.len() > MAX_PEM {
        e.push(FieldError::new(
            F,
            format!("must be a PEM private key of at most {MAX_PEM} bytes"),
        ));
        return;
    }
    // Never echo the key's text or its parse details: only what is missing.
    if PrivateKeyDer::from_pem_slice(pem.as_bytes()).is_err() {
        e.push(FieldError::new(
            F,
            "holds no PEM private key ('-----BEGIN PRIVATE KEY-----', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')",
        ));
    }
}

/// A DER certificate is a SEQUENCE (0x30) with a length; enough to refuse
/// a PEM block whose base64 holds something else entirely.
fn looks_like_der_sequence(der: &[u8]) -> bool {
    der.len() > 16 && der[0] == 0x30
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(c: &DeviceCredential) -> Vec<String> {
        c.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect()
    }

    #[test]
    fn empty_fields_are_named() {
        let c = DeviceCredential::UserPassword {
            username: String::new(),
            password: String::new(),
        };
        let f = fields(&c);
        assert!(f.iter().any(|m| m.starts_with("username:")), "{f:?}");
        assert!(f.iter().any(|m| m.starts_with("password:")), "{f:?}");
    }

    #[test]
    fn pem_that_does_not_parse_is_refused_without_echoing_it() {
        let c = DeviceCredential::Certificate {
            certificate_pem: "not a certificate".into(),
            private_key_pem:
                "-----BEGIN PRIVATE KEY-----\nsecret-bytes\n-----END PRIVATE KEY-----\n".into(),
        };
        let f = fields(&c);
        assert!(f.iter().any(|m| m.starts_with("certificatePem:")), "{f:?}");
        assert!(f.iter().any(|m| m.starts_with("privateKeyPem:")), "{f:?}");
        assert!(!f.join(" ").contains("secret-bytes"));
    }

    #[test]
    fn sealed_credentials_open_only_on_their_row() {
        let key = MasterKey::from_bytes(&[9u8; 32]);
        let c = DeviceCredential::UserPassword {
            username: "op".into(),
            password: "s3cret-pw".into(),
        };
        let id = Uuid::new_v4();
        let sealed = seal(&key, id, &c).unwrap();
        assert!(!sealed.contains("s3cret"));
        let now = Utc::now();
        let mut m = device_credential::Model {
            id,
            org_id: Uuid::nil(),
            project_id: Uuid::nil(),
            name: "n".into(),
            kind: KIND_USER_PASSWORD.into(),
            username: "op".into(),
            secret_enc: sealed,
            created_at: now,
            updated_at: now,
        };
        assert_eq!(open(&key, &m).unwrap(), c);
        m.id = Uuid::new_v4();
        assert!(open(&key, &m).is_err(), "copied to another row");
        assert!(!format!("{m:?}").contains(&m.secret_enc));
    }
}
