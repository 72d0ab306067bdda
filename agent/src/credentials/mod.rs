//! Device credentials (what an OPC UA device logs in with). Bundles are
//! signed, not encrypted, so a config only names a credential
//! (`devices[].opcUa.credential`); this store gets each named one before
//! the config's devices start ([`CredentialStore::refresh`], called by
//! [`crate::runtime::Runtime::apply`]) and hands it to the adapters through
//! [`CredentialSource`].
//!
//! Where a credential comes from, in order:
//! - enrolled: the api (`GET /api/v1/agents/{id}/credentials/{name}`, which
//!   answers only for credentials the gateway's current config names); the
//!   answer is kept in `{data_dir}/credentials/{name}.json`, mode 0600. A
//!   refusal (404) deletes the kept copy: a credential removed from the
//!   project or from the config stops working here too. When the api cannot
//!   be reached, the kept copy is used, then the local file;
//! - air-gapped (no api): the local credentials file ([`local_file`]), then
//!   a kept copy from an earlier enrolled life.
//!
//! Copies of credentials no config names any more are deleted. Secrets are
//! never logged: only names, kinds and where a credential came from.

pub mod local_file;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use weir_crds::agent_api::DeviceCredential;
use weir_crds::gateway::GatewayConfig;

use crate::enroll::{ApiClient, CredentialFetch};
use crate::error::{IoContext, Result};
use crate::state::{write_atomic, DataDir};

/// What the adapters ask for a device's credential by name.
pub trait CredentialSource: Send + Sync {
    fn get(&self, name: &str) -> Option<DeviceCredential>;

    /// Why `name` is not available (refused by the api, missing from the
    /// local file, ...), for the device's error; `None` when it is.
    fn why_missing(&self, name: &str) -> Option<String> {
        self.get(name)
            .is_none()
            .then(|| format!("credential '{name}' is not available"))
    }
}

/// A credential name as `devices[].opcUa.credential` allows (also a safe
/// file name: no '/', no '.').
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'-' || c == b'_')
}

/// The credential names a config's devices use.
pub fn named(config: &GatewayConfig) -> BTreeSet<String> {
    config
        .devices
        .iter()
        .filter_map(|d| d.opc_ua.as_ref()?.credential.clone())
        .collect()
}

/// Where each credential of a refresh came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Api,
    /// The copy kept in the data dir (the api was unreachable, or none).
    Stored,
    LocalFile,
}

#[derive(Clone, Default)]
struct Held {
    /// The names the running config uses.
    wanted: BTreeSet<String>,
    creds: HashMap<String, DeviceCredential>,
    /// The api's ETag of each credential it handed out (to re-check it).
    etags: HashMap<String, String>,
    missing: HashMap<String, String>,
}

/// A credential found, where, and the api's ETag of it.
struct Got {
    credential: DeviceCredential,
    origin: Origin,
    etag: Option<String>,
}

type LocalMap = Option<std::result::Result<HashMap<String, DeviceCredential>, String>>;

/// The agent's credentials: see the module docs.
pub struct CredentialStore {
    dir: PathBuf,
    api: Option<Arc<ApiClient>>,
    local: Option<PathBuf>,
    held: RwLock<Held>,
    /// One refresh at a time: a re-check must not overwrite what a newer
    /// config's refresh decided.
    refreshing: tokio::sync::Mutex<()>,
}

impl CredentialStore {
    /// `local`: the air-gapped credentials file, read once here so a broken
    /// one stops the agent at start with the reason.
    pub fn new(
        data: &DataDir,
        api: Option<Arc<ApiClient>>,
        local: Option<PathBuf>,
    ) -> Result<Self> {
        if let Some(path) = &local {
            let n = local_file::read(path)?.len();
            tracing::info!(path = %path.display(), credentials = n, "credentials file read");
        }
        let dir = data.path().join("credentials");
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        Ok(Self {
            dir,
            api,
            local,
            held: RwLock::new(Held::default()),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The file a credential is kept in.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Get every credential `config` names (before its devices start) and
    /// forget the others. Returns where each one came from; the missing
    /// ones are logged and answered by [`CredentialSource::why_missing`].
    pub async fn refresh(&self, config: &GatewayConfig) -> HashMap<String, Origin> {
        let _one = self.refreshing.lock().await;
        self.refresh_names(named(config)).await
    }

    /// Look again at the running config's credentials: a replaced one is
    /// fetched (the api answers 304 for the others), a refused one deleted,
    /// a newly created one found.
    pub async fn recheck(&self) -> HashMap<String, Origin> {
        let _one = self.refreshing.lock().await;
        let wanted = self.snapshot().wanted;
        self.refresh_names(wanted).await
    }

    /// [`CredentialStore::recheck`] every `every` until cancelled.
    pub async fn run_rechecks(
        self: Arc<Self>,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.recheck().await;
        }
    }

    fn snapshot(&self) -> Held {
        self.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn refresh_names(&self, wanted: BTreeSet<String>) -> HashMap<String, Origin> {
        let prev = self.snapshot();
        let mut next = Held {
            wanted: wanted.clone(),
            ..Held::default()
        };
        let mut origins = HashMap::new();
        let mut local: LocalMap = None;
        for name in &wanted {
            let known = prev.etags.get(name).zip(prev.creds.get(name));
            match self.obtain(name, known, &mut local).await {
                Ok(got) => {
                    // Log news only: re-checks that change nothing stay quiet.
                    if prev.creds.get(name) != Some(&got.credential) {
                        tracing::info!(credential = %name, kind = kind(&got.credential), from = ?got.origin, "device credential ready");
                    }
                    origins.insert(name.clone(), got.origin);
                    if let Some(e) = got.etag {
                        next.etags.insert(name.clone(), e);
                    }
                    next.creds.insert(name.clone(), got.credential);
                }
                Err(why) => {
                    if prev.missing.get(name) != Some(&why) {
                        tracing::warn!(credential = %name, "device credential unavailable: {why}");
                    }
                    next.missing.insert(name.clone(), why);
                }
            }
        }
        self.forget_others(&wanted);
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = next;
        origins
    }

    /// One credential, from the first source that has it; else why not.
    /// `known`: the api's ETag and the credential it named, to re-check.
    async fn obtain(
        &self,
        name: &str,
        known: Option<(&String, &DeviceCredential)>,
        local: &mut LocalMap,
    ) -> std::result::Result<Got, String> {
        let mut tried = Vec::new();
        if let Some(api) = &self.api {
            match api
                .device_credential(name, known.map(|k| k.0.as_str()))
                .await
            {
                Ok(CredentialFetch::Found(credential, etag)) => {
                    if let Err(e) = self.keep(name, &credential) {
                        // Still usable now; only the offline fallback is lost.
                        tracing::error!(credential = %name, "keeping the credential failed: {e}");
                    }
                    let origin = Origin::Api;
                    return Ok(Got {
                        credential,
                        origin,
                        etag,
                    });
                }
                Ok(CredentialFetch::Unchanged) => {
                    if let Some((etag, c)) = known {
                        let (credential, etag) = (c.clone(), Some(etag.clone()));
                        return Ok(Got {
                            credential,
                            origin: Origin::Api,
                            etag,
                        });
                    }
                    tried.push("the api answered 'unchanged' to a plain fetch".into());
                }
                Ok(CredentialFetch::Refused(reason)) => {
                    self.discard(name);
                    return Err(format!("refused by the api: {reason}"));
                }
                Err(e) => {
                    tracing::warn!(credential = %name, "api unreachable for the credential ({e}); trying the stored copy");
                    tried.push(format!("the api is unreachable ({e})"));
                }
            }
        }
        let fallbacks = if self.api.is_some() {
            [Origin::Stored, Origin::LocalFile]
        } else {
            [Origin::LocalFile, Origin::Stored]
        };
        for source in fallbacks {
            let found = match source {
                Origin::LocalFile => self.in_local_file(name, local),
                _ => self.stored(name),
            };
            match found {
                Ok((credential, origin)) => {
                    let etag = None;
                    return Ok(Got {
                        credential,
                        origin,
                        etag,
                    });
                }
                Err(e) => tried.push(e),
            }
        }
        Err(tried.join("; "))
    }

    fn stored(&self, name: &str) -> std::result::Result<(DeviceCredential, Origin), String> {
        let path = self.path_of(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(|c| (c, Origin::Stored))
                .map_err(|_| format!("the stored copy {} is unreadable", path.display())),
            Err(_) => Err("no stored copy".into()),
        }
    }

    fn in_local_file(
        &self,
        name: &str,
        cache: &mut LocalMap,
    ) -> std::result::Result<(DeviceCredential, Origin), String> {
        let Some(path) = &self.local else {
            return Err("no --credentials-file".into());
        };
        // Read once per refresh: an edit is picked up at the next config.
        let map = cache.get_or_insert_with(|| local_file::read(path).map_err(|e| e.to_string()));
        match map {
            Ok(m) => m
                .get(name)
                .cloned()
                .map(|c| (c, Origin::LocalFile))
                .ok_or_else(|| format!("{} has no entry '{name}'", path.display())),
            Err(e) => Err(e.clone()),
        }
    }

    fn keep(&self, name: &str, c: &DeviceCredential) -> Result<()> {
        write_atomic(&self.path_of(name), &serde_json::to_vec(c)?, 0o600)
    }

    fn discard(&self, name: &str) {
        let path = self.path_of(name);
        if path.exists() {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(credential = %name, "stored copy deleted"),
                Err(e) => tracing::error!(credential = %name, "deleting {}: {e}", path.display()),
            }
        }
    }

    /// Delete the kept copies no config names any more.
    fn forget_others(&self, wanted: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".json") {
                if !wanted.contains(name) {
                    self.discard(name);
                }
            }
        }
    }
}

fn kind(c: &DeviceCredential) -> &'static str {
    match c {
        DeviceCredential::UserPassword { .. } => "userPassword",
        DeviceCredential::Certificate { .. } => "certificate",
    }
}

impl CredentialSource for CredentialStore {
    fn get(&self, name: &str) -> Option<DeviceCredential> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        held.creds.get(name).cloned()
    }

    fn why_missing(&self, name: &str) -> Option<String> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        if held.creds.contains_key(name) {
            return None;
        }
        Some(match held.missing.get(name) {
            Some(why) => format!("credential '{name}': {why}"),
            None => format!("credential '{name}' is not named by the running config"),
        })
    }
}
