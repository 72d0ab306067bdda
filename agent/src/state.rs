//! What the agent keeps in its data dir, written atomically (temp file,
//! fsync, rename) so a power cut leaves the old or the new file, never half.
//!
//! - `agent.key`: the agent's Ed25519 secret key, base64, mode 0600.
//! - `identity.json`: agent id, tenant, gateway, api URL, MQTT credentials.
//! - `trust.json`: the pinned config-signing key (replaced only by a
//!   rotation signed by the old and the new key).
//! - `config-state.json`: highest accepted bundle version.
//! - `bundle.json`: the last good signed bundle.
//! - `queue/`: the store-and-forward queue.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use weir_crds::agent_api::MqttCredentials;
use weir_crds::bundle::{SignedBundle, TrustAnchor};

use crate::error::{Error, IoContext, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub agent_id: String,
    pub tenant: String,
    pub gateway: String,
    /// The api base URL the agent enrolled with.
    pub server: String,
    pub mqtt: MqttCredentials,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigState {
    pub highest_version: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).ctx(|| format!("creating data dir {}", root.display()))?;
        // The dir holds the key: keep others out.
        let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o700));
        Ok(Self { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    /// Load the agent key, or make one (mode 0600) on first start.
    pub fn load_or_create_key(&self) -> Result<(SigningKey, bool)> {
        let path = self.root.join("agent.key");
        if path.exists() {
            return read_key(&path).map(|k| (k, false));
        }
        let key = weir_crds::bundle::generate_key();
        write_key(&path, &key)?;
        Ok((key, true))
    }

    pub fn identity(&self) -> Result<Option<Identity>> {
        read_json(&self.root.join("identity.json"))
    }
    pub fn save_identity(&self, id: &Identity) -> Result<()> {
        write_json(&self.root.join("identity.json"), id, 0o600)
    }
    pub fn trust(&self) -> Result<Option<TrustAnchor>> {
        read_json(&self.root.join("trust.json"))
    }
    pub fn save_trust(&self, t: &TrustAnchor) -> Result<()> {
        write_json(&self.root.join("trust.json"), t, 0o644)
    }
    pub fn config_state(&self) -> Result<ConfigState> {
        Ok(read_json(&self.root.join("config-state.json"))?.unwrap_or_default())
    }
    pub fn save_config_state(&self, s: &ConfigState) -> Result<()> {
        write_json(&self.root.join("config-state.json"), s, 0o644)
    }
    pub fn bundle(&self) -> Result<Option<SignedBundle>> {
        read_json(&self.root.join("bundle.json"))
    }
    pub fn save_bundle(&self, b: &SignedBundle) -> Result<()> {
        write_json(&self.root.join("bundle.json"), b, 0o644)
    }
}

pub fn read_key(path: &Path) -> Result<SigningKey> {
    let text = fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
    let bytes = B64.decode(text.trim()).map_err(|e| Error::Corrupt {
        path: path.into(),
        message: format!("key is not base64: {e}"),
    })?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::Corrupt {
        path: path.into(),
        message: "key must be 32 bytes".into(),
    })?;
    Ok(SigningKey::from_bytes(&arr))
}

pub fn write_key(path: &Path, key: &SigningKey) -> Result<()> {
    write_atomic(path, B64.encode(key.to_bytes()).as_bytes(), 0o600)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.into(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T, mode: u32) -> Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(v)?, mode)
}

/// Write to a temp file with `mode`, fsync, rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .ctx(|| format!("creating {}", tmp.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", tmp.display()))?;
    f.write_all(bytes)
        .ctx(|| format!("writing {}", tmp.display()))?;
    f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path()).unwrap();
        let (k1, new) = d.load_or_create_key().unwrap();
        assert!(new);
        let mode = fs::metadata(dir.path().join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (k2, new) = d.load_or_create_key().unwrap();
        assert!(!new);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
    }
}
