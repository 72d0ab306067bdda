//! The air-gapped credentials file (`--credentials-file`,
//! `WEIR_AGENT_CREDENTIALS_FILE`): a JSON or YAML map of credential name →
//! `DeviceCredential`, e.g.
//!
//! ```yaml
//! scada-login: {kind: userPassword, username: operator, password: "..."}
//! plc-cert:
//!   kind: certificate
//!   certificatePem: |
//!     -----BEGIN CERTIFICATE-----
//!     ...
//!   privateKeyPem: |
//!     -----BEGIN PRIVATE KEY-----
//!     ...
//! ```
//!
//! It is read at start (a broken file stops the agent with the entry and the
//! reason) and again at every config change, so an edit is picked up with
//! the next bundle. Errors never quote the file's values.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use weir_crds::agent_api::DeviceCredential;

use crate::error::{Error, Result};

const SHAPE: &str = "expected {kind: userPassword, username, password} or {kind: certificate, certificatePem, privateKeyPem}";

/// Read and check the file. A file others may read is used, with a warning.
pub fn read(path: &Path) -> Result<HashMap<String, DeviceCredential>> {
    let bad =
        |message: String| Error::Config(format!("credentials file {}: {message}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if let Some(warning) = exposure(meta.permissions().mode()) {
        tracing::warn!(path = %path.display(), "credentials file {warning}; run: chmod 600 {}", path.display());
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    parse(&text).map_err(bad)
}

/// Who else may read the file, if anyone: the mode bits of "other".
pub fn exposure(mode: u32) -> Option<String> {
    (mode & 0o007 != 0).then(|| {
        format!(
            "is readable by every user of this machine (mode {:o}); it holds passwords and keys",
            mode & 0o777
        )
    })
}

/// Parse the map; each entry is checked on its own so the error names it.
pub fn parse(text: &str) -> std::result::Result<HashMap<String, DeviceCredential>, String> {
    if text.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let map: HashMap<String, serde_yaml::Value> = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" (line {})", l.line()))
            .unwrap_or_default();
        format!("is not a JSON or YAML map of credential name to credential{at}")
    })?;
    let mut out = HashMap::with_capacity(map.len());
    for (name, value) in map {
        if !super::is_name(&name) {
            return Err(format!(
                "'{name}' is not a credential name (lowercase letters, digits, '-' and '_', as devices[].opcUa.credential)"
            ));
        }
        let c: DeviceCredential = serde_yaml::from_value(value)
            .map_err(|e| format!("credential '{name}': {}; {SHAPE}", redact(&e.to_string())))?;
        if let Some(field) = empty_field(&c) {
            return Err(format!("credential '{name}': {field} is empty"));
        }
        out.insert(name, c);
    }
    Ok(out)
}

/// serde's "invalid type: integer `1234`" would print a password: keep
/// only the kind of mistake.
fn redact(msg: &str) -> String {
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        "a field has the wrong type (text expected)".into()
    } else {
        msg.split(" at line").next().unwrap_or(msg).to_string()
    }
}

fn empty_field(c: &DeviceCredential) -> Option<&'static str> {
    match c {
        DeviceCredential::UserPassword { username, .. } if username.is_empty() => Some("username"),
        DeviceCredential::UserPassword { password, .. } if password.is_empty() => Some("password"),
        DeviceCredential::Certificate {
            certificate_pem, ..
        } if certificate_pem.trim().is_empty() => Some("certificatePem"),
        DeviceCredential::Certificate {
            private_key_pem, ..
        } if private_key_pem.trim().is_empty() => Some("privateKeyPem"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_maps_parse() {
        let y = "scada-login: {kind: userPassword, username: operator, password: pw-1}\n";
        let m = parse(y).unwrap();
        assert_eq!(
            m["scada-login"],
            DeviceCredential::UserPassword {
                username: "operator".into(),
                password: "pw-1".into()
            }
        );
        let j = r#"{"plc": {"kind": "certificate", "certificatePem": "C", "privateKeyPem": "K"}}"#;
        assert!(matches!(
            parse(j).unwrap()["plc"],
            DeviceCredential::Certificate { .. }
        ));
    }

    #[test]
    fn errors_name_the_entry_and_never_quote_a_secret() {
        let e =
            parse("scada: {kind: userPassword, username: op, password: 987654321}\n").unwrap_err();
        assert!(e.contains("credential 'scada'"), "{e}");
        assert!(!e.contains("987654321"), "{e}");
        let e = parse("scada: {kind: userPassword, username: op}\n").unwrap_err();
        assert!(e.contains("missing field `password`"), "{e}");
        let e = parse("Bad Name: {kind: userPassword, username: op, password: x}\n").unwrap_err();
        assert!(e.contains("'Bad Name' is not a credential name"), "{e}");
        let e = parse("scada: {kind: userPassword, username: op, password: ''}\n").unwrap_err();
        assert!(e.contains("password is empty"), "{e}");
        let e = parse("- just a list\n").unwrap_err();
        assert!(e.contains("not a JSON or YAML map"), "{e}");
    }

    #[test]
    fn world_readable_files_are_reported() {
        assert!(exposure(0o100600).is_none());
        assert!(exposure(0o100640).is_none());
        assert!(exposure(0o100644).unwrap().contains("mode 644"));
    }
}
