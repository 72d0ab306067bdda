//! Signed config: verify, persist, apply; and the loop that fetches bundles.
//!
//! A bundle is applied only if it verifies against the pinned key (or a
//! chain of rotations from it, each signed by the old and the new key), is
//! for this tenant and gateway, has not expired, is newer than every bundle
//! accepted before, and its config validates and compiles. Otherwise the reason is logged and
//! kept for the next status report, and the last good config keeps running.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::RefusedBundle;
use weir_crds::bundle::{
    follow_rotations, verify, BundleError, BundlePayload, Expectations, SignedBundle, TrustAnchor,
};
use weir_crds::gateway::validate_config;

use crate::enroll::{ApiClient, ConfigFetch};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::state::{ConfigState, DataDir};

/// Decides about bundles and remembers what it decided.
pub struct Gate {
    dir: DataDir,
    key: VerifyingKey,
    tenant: String,
    gateway: String,
    state: ConfigState,
    /// The latest refusal, for the next status report.
    pub refused: Arc<Mutex<Option<RefusedBundle>>>,
}

/// Read the payload without verifying it (to learn tenant/gateway or the
/// version for a refusal message). Never trusted for anything else.
pub fn peek_payload(bundle: &SignedBundle) -> Option<BundlePayload> {
    let bytes = B64.decode(&bundle.payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Gate {
    pub fn new(dir: DataDir, anchor: TrustAnchor, tenant: &str, gateway: &str) -> Result<Self> {
        let key = anchor.verifying_key()?;
        let state = dir.config_state()?;
        Ok(Self {
            dir,
            key,
            tenant: tenant.into(),
            gateway: gateway.into(),
            state,
            refused: Arc::new(Mutex::new(None)),
        })
    }

    pub fn highest_version(&self) -> Option<u64> {
        self.state.highest_version
    }

    /// Check a bundle; on success return its payload and, if it carried a
    /// valid rotation, the key to pin from now on.
    pub fn check(
        &self,
        bundle: &SignedBundle,
    ) -> Result<(BundlePayload, Option<TrustAnchor>), BundleError> {
        // A bundle signed by a newer key carries the rotations from ours to it.
        let (key, new_anchor) = match follow_rotations(bundle, &self.key)? {
            Some(k) => (k, Some(TrustAnchor::from_key(&k))),
            None => (self.key, None),
        };
        let expect = Expectations {
            tenant: &self.tenant,
            gateway: &self.gateway,
            last_accepted: self.state.highest_version,
            now: Utc::now(),
        };
        let payload = verify(bundle, &key, &expect)?;
        if let Err(errs) = validate_config(&payload.config) {
            let msg = errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BundleError::Malformed(format!(
                "config does not validate: {msg}"
            )));
        }
        Ok((payload, new_anchor))
    }

    /// Record a refusal: log it, keep it for the status report.
    pub fn refuse(&self, bundle: &SignedBundle, reason: String) {
        let version = peek_payload(bundle).map(|p| p.version);
        tracing::warn!(
            version,
            "config bundle refused: {reason}; keeping the last good config"
        );
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(RefusedBundle {
            version,
            reason,
            at: Utc::now(),
        });
    }

    /// Verify, apply and persist. Returns whether it was applied.
    pub async fn offer(&mut self, bundle: &SignedBundle, runtime: &Runtime) -> bool {
        let (payload, new_anchor) = match self.check(bundle) {
            Ok(x) => x,
            Err(e) => {
                self.refuse(bundle, e.to_string());
                return false;
            }
        };
        if let Err(e) = runtime.apply(&payload.config, payload.version).await {
            self.refuse(bundle, format!("config does not compile: {e}"));
            return false;
        }
        if let Some(a) = new_anchor {
            match a.verifying_key() {
                Ok(k) => {
                    if let Err(e) = self.dir.save_trust(&a) {
                        tracing::error!("saving rotated trust anchor: {e}");
                    }
                    tracing::info!(key_id = %a.key_id, "config-signing key rotated");
                    self.key = k;
                }
                Err(e) => tracing::error!("rotated key unusable: {e}"),
            }
        }
        self.state.highest_version = Some(payload.version);
        // A refusal describes the state before this bundle; running a newer
        // good one ends it (the api then clears the gateway's error).
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = self
            .dir
            .save_config_state(&self.state)
            .and_then(|_| self.dir.save_bundle(bundle))
        {
            tracing::error!("persisting accepted bundle: {e}");
        }
        true
    }

    /// Start from the last good bundle on disk, if any. It was accepted
    /// before, so only its signature and expiry are checked again.
    pub async fn start_from_disk(&mut self, runtime: &Runtime) -> Result<bool> {
        let Some(bundle) = self.dir.bundle()? else {
            return Ok(false);
        };
        let key = follow_rotations(&bundle, &self.key)?.unwrap_or(self.key);
        let expect = Expectations {
            tenant: &self.tenant,
            gateway: &self.gateway,
            last_accepted: None,
            now: Utc::now(),
        };
        let payload = match verify(&bundle, &key, &expect) {
            Ok(p) => p,
            Err(BundleError::Expired { expires, .. }) => {
                // The server has been away longer than the bundle's life.
                // Stopping the plant's data flow would be worse than running
                // a config that was good: run it and say so.
                tracing::warn!(%expires, "last good bundle has expired; running it until a new one arrives");
                peek_payload(&bundle)
                    .ok_or_else(|| Error::Config("stored bundle unreadable".into()))?
            }
            Err(e) => return Err(e.into()),
        };
        runtime.apply(&payload.config, payload.version).await?;
        tracing::info!(
            version = payload.version,
            "running the last good bundle from disk"
        );
        Ok(true)
    }
}

/// Long-poll the api for bundles until cancelled.
pub async fn run_config_loop(
    api: Arc<ApiClient>,
    mut gate: Gate,
    runtime: Arc<Runtime>,
    cancel: CancellationToken,
) {
    let mut etag: Option<String> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let r = tokio::select! {
            _ = cancel.cancelled() => return,
            r = api.fetch_config(etag.as_deref(), Duration::from_secs(30)) => r,
        };
        match r {
            Ok(ConfigFetch::NotModified) => backoff = Duration::from_secs(1),
            Ok(ConfigFetch::New { bundle, etag: e }) => {
                backoff = Duration::from_secs(1);
                let same = peek_payload(&bundle)
                    .map(|p| Some(p.version) == gate.highest_version())
                    .unwrap_or(false);
                // The server re-sends the bundle we run (no ETag support, or
                // after our restart): not a replay worth reporting.
                if !same {
                    gate.offer(&bundle, &runtime).await;
                }
                etag = e;
                if etag.is_none() {
                    // Without ETags a server answers at once: do not spin.
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(retry_in_s = backoff.as_secs(), "config fetch failed: {e}");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
