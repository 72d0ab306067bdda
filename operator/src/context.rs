//! What every reconciler shares: the client, settings, metrics, events and
//! the way to reach EMQX nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use weir_crds::MqttCluster;

use crate::metrics::Metrics;

/// Operator settings (from flags, see `main.rs`).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Namespace the weir api runs in; its pods may reach tenant brokers.
    pub api_namespace: String,
    /// JWKS of the api, used by EMQX to verify client JWTs when a cluster names none.
    pub default_jwks_url: String,
    /// Base URL of weir-api as in-cluster agents reach it (they enroll
    /// there and fetch their config and MQTT credentials from it).
    pub api_url: String,
    /// Image of the agent for in-cluster gateways (tag: the gateway's agentVersion or `agent_version`).
    pub agent_image: String,
    pub agent_version: String,
    /// Image of the historian (`weir-agent historian`), tag `agent_version`.
    pub historian_image: String,
    /// How long a signed bundle stays valid; re-signed when a quarter is left.
    pub bundle_validity_days: i64,
    /// cert-manager ClusterIssuer for TLS listeners whose Secret is missing.
    pub cert_issuer: String,
    /// Seconds between status writes that only refresh connection counts.
    pub status_refresh_secs: u64,
    /// Seconds one rollout step may wait on a node before it is reported.
    pub rollout_timeout_secs: u64,
    /// The operator's own ServiceAccount (`operator_namespace`/`service_account`):
    /// each tenant namespace gets a RoleBinding of `secrets_role` to it, its
    /// only access to Secrets (the chart's `weir-operator` ClusterRole has none).
    pub service_account: String,
    pub operator_namespace: String,
    /// ClusterRole with the Secret verbs, bound per tenant namespace (chart
    /// value `operator.secretsClusterRole`, flag `--secrets-cluster-role`).
    pub secrets_role: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            api_namespace: "weir-system".into(),
            default_jwks_url: "http://weir-api.weir-system.svc:8080/api/v1/jwks.json".into(),
            api_url: "http://weir-api.weir-system.svc:8080".into(),
            agent_image: "ghcr.io/weir-dev/weir-agent".into(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            historian_image: "ghcr.io/weir-dev/weir-agent".into(),
            bundle_validity_days: 30,
            cert_issuer: "weir-ca".into(),
            status_refresh_secs: 60,
            rollout_timeout_secs: 900,
            service_account: "weir-operator".into(),
            operator_namespace: "weir-system".into(),
            secrets_role: "weir-operator-secrets".into(),
        }
    }
}

/// Where to reach a pod's EMQX API. Tests point this at mock servers.
pub trait EmqxLocator: Send + Sync {
    fn base_url(&self, cluster: &MqttCluster, pod: &str) -> String;
}

/// In a cluster: the pod's stable DNS name through the headless Service.
pub struct PodDns;

impl EmqxLocator for PodDns {
    fn base_url(&self, cluster: &MqttCluster, pod: &str) -> String {
        format!(
            "http://{pod}.{}.{}.svc:18083",
            crate::mqtt_cluster::builders::headless_name(cluster),
            kube::ResourceExt::namespace(cluster).unwrap_or_default()
        )
    }
}

/// From a template (`--emqx-url-template`) with `{pod}`, `{service}` (the
/// headless Service), `{namespace}` and `{cluster}` filled in: for an
/// operator outside the cluster network, where `*.svc` names do not resolve,
/// e.g. through a port-forward or a proxy that routes by path.
pub struct UrlTemplate(pub String);

impl EmqxLocator for UrlTemplate {
    fn base_url(&self, cluster: &MqttCluster, pod: &str) -> String {
        self.0
            .replace("{pod}", pod)
            .replace(
                "{service}",
                &crate::mqtt_cluster::builders::headless_name(cluster),
            )
            .replace(
                "{namespace}",
                &kube::ResourceExt::namespace(cluster).unwrap_or_default(),
            )
            .replace("{cluster}", &kube::ResourceExt::name_any(cluster))
            .trim_end_matches('/')
            .to_string()
    }
}

/// Shared by all reconcilers.
pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub emqx: Arc<dyn EmqxLocator>,
    pub http: reqwest::Client,
    /// Consecutive failures per object, for the requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Last status write per object, to rate-limit count-only refreshes.
    written: Mutex<HashMap<String, std::time::Instant>>,
    /// Per owned object: (hash of our rendering, hash of what the API server
    /// kept of it after our last apply). See `apply::ensure` on drift.
    applied: Mutex<HashMap<String, (String, String)>>,
    /// Per object: what it waits on and since when (rollout timeouts).
    /// In memory: a new leader starts the clock again, which only delays
    /// the report.
    waits: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Counts rotations of a tenant signing key, so that every EdgeGateway
    /// is signed again with the new key: the key Secret is read by name,
    /// not watched (see `controllers.rs`).
    key_rotations: tokio::sync::watch::Sender<u64>,
}

impl Context {
    pub fn new(client: Client, config: OperatorConfig, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            emqx: Arc::new(PodDns),
            http: crate::emqx::http_client(),
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            waits: Mutex::new(HashMap::new()),
            key_rotations: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Say that a tenant's signing key was rotated.
    pub fn key_rotated(&self) {
        self.key_rotations.send_modify(|n| *n += 1);
    }

    /// One item after each [`Context::key_rotated`] from now on (several
    /// close together may come as one).
    pub fn key_rotations(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let mut rx = self.key_rotations.subscribe();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    pub fn with_emqx_locator(mut self, locator: Arc<dyn EmqxLocator>) -> Self {
        self.emqx = locator;
        self
    }

    /// How long `key` has waited on `what` (zero when `what` is new).
    pub fn waiting(&self, key: &str, what: &str) -> std::time::Duration {
        let mut w = self.waits.lock().expect("waits lock");
        let now = std::time::Instant::now();
        match w.get(key) {
            Some((on, since)) if on == what => now - *since,
            _ => {
                w.insert(key.to_string(), (what.to_string(), now));
                std::time::Duration::ZERO
            }
        }
    }

    pub fn stop_waiting(&self, key: &str) {
        self.waits.lock().expect("waits lock").remove(key);
    }

    /// Record a failure of `key`; returns how many in a row.
    pub fn failed(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().expect("failures lock");
        let n = f.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    /// Whether `every` has passed since [`Context::mark`] for `key` (or it never was).
    pub fn due(&self, key: &str, every: std::time::Duration) -> bool {
        self.written
            .lock()
            .expect("written lock")
            .get(key)
            .is_none_or(|t| t.elapsed() >= every)
    }

    pub fn mark(&self, key: &str) {
        self.written
            .lock()
            .expect("written lock")
            .insert(key.to_string(), std::time::Instant::now());
    }

    /// Remember what the API server kept of `key` after applying `hash`.
    pub fn remember_applied(&self, key: &str, hash: &str, kept: &str) {
        self.applied
            .lock()
            .expect("applied lock")
            .insert(key.to_string(), (hash.to_string(), kept.to_string()));
    }

    /// Whether the live form `kept` of `key` is exactly what the API server
    /// returned after our last apply of `hash`: applying again would not
    /// change it, so it is not drift.
    pub fn drift_accepted(&self, key: &str, hash: &str, kept: &str) -> bool {
        self.applied
            .lock()
            .expect("applied lock")
            .get(key)
            .is_some_and(|(h, k)| h == hash && k == kept)
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failures lock").remove(key);
    }

    /// Publish an Event on `obj`. Events are for people; failing to publish
    /// one must not fail the reconcile.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}
