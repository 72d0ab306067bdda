//! The fleet: MQTT clusters, edge gateways with immutable config versions,
//! templates and batch changes, enrollment, agent authentication, signed
//! config distribution, MQTT credentials and the rollout view.
//!
//! Shared pieces live in [`Fleet`] (in `AppState::fleet`): the master key,
//! the Kubernetes client when one is configured, the enrollment rate
//! limiter, and two broadcast channels — [`Fleet::events`] carries
//! [`FleetEventRecord`]s (`gateway_offline` / `gateway_online`, also stored
//! in the `fleet_events` table), and `bundles` wakes agents that long-poll
//! for a new config. Health reaches the alerts engine as
//! [`crate::fleet_events::FleetEvent`]s.

pub mod agents;
pub mod broker_identity;
pub mod broker_stats;
pub mod clusters;
pub mod credentials;
pub mod data_gaps;
pub mod enrollment;
pub mod entities;
pub mod gap_status;
pub mod gateways;
pub mod historian_identity;
pub mod keys;
pub mod kube_backend;
pub mod kube_status;
pub mod kube_sync;
pub mod latest;
pub mod mqtt_probe;
pub mod ratelimit;
pub mod revoke;
pub mod rollout;
pub mod series;
pub mod templates;
pub mod writes;

use std::sync::Arc;

use clap::Args;
use tokio::sync::broadcast;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::error::ApiError;
use crate::fleet_events::FleetEventRecord;
use crate::secrets::MasterKey;
use crate::state::AppState;

/// Run `pass` every `every` for the life of the process. Failures are
/// logged as `what` failed: the first of a streak, then every 100th, so a
/// dependency that is down does not flood the log.
pub(crate) fn spawn_periodic<F, Fut>(
    st: &AppState,
    every: std::time::Duration,
    what: &'static str,
    pass: F,
) where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ApiError>> + Send,
{
    let st = st.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tick.tick().await;
            match pass(st.clone()).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures % 100 == 1 {
                        tracing::warn!(error = %e, "{what} failed");
                    }
                }
            }
        }
    });
}

/// Fleet settings; flattened into [`crate::Config`].
#[derive(Args, Clone, Debug)]
pub struct FleetConfig {
    /// 32-byte key (base64 or hex) that encrypts signing keys and broker
    /// passwords at rest. Unset with SQLite: generated into `weir-master.key`
    /// next to the database. Required with PostgreSQL.
    #[arg(long, env = "WEIR_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// Days a signed config bundle stays valid.
    #[arg(long, env = "WEIR_BUNDLE_VALIDITY_DAYS", default_value_t = 30)]
    pub bundle_validity_days: i64,

    /// A bundle is re-signed (as a new version) this many days before it expires.
    #[arg(long, env = "WEIR_BUNDLE_RESIGN_DAYS", default_value_t = 7)]
    pub bundle_resign_days: i64,

    /// Days new bundles carry the key rotation (signed by old and new key) after a rotation.
    #[arg(long, env = "WEIR_KEY_ROTATION_GRACE_DAYS", default_value_t = 30)]
    pub key_rotation_grace_days: i64,

    /// Lifetime of an agent's bearer token, in seconds.
    #[arg(long, env = "WEIR_AGENT_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub agent_token_ttl_secs: i64,

    /// Lifetime of an MQTT JWT, in seconds.
    #[arg(long, env = "WEIR_MQTT_JWT_TTL_SECS", default_value_t = 6 * 3600)]
    pub mqtt_jwt_ttl_secs: i64,

    /// Enrollment attempts allowed per client address and minute.
    #[arg(long, env = "WEIR_ENROLL_RATE_PER_MINUTE", default_value_t = 10)]
    pub enroll_rate_per_minute: u32,

    /// Enrollment attempts a client address may make in a burst.
    #[arg(long, env = "WEIR_ENROLL_BURST", default_value_t = 10)]
    pub enroll_burst: u32,

    /// How often the fleet monitor checks heartbeats and bundle expiry, in milliseconds.
    #[arg(long, env = "WEIR_FLEET_MONITOR_INTERVAL_MS", default_value_t = 5000)]
    pub fleet_monitor_interval_ms: u64,

    /// Heartbeat interval assumed when an agent does not report one, in seconds.
    #[arg(long, env = "WEIR_DEFAULT_HEARTBEAT_SECS", default_value_t = 30)]
    pub default_heartbeat_secs: i64,

    /// Longest long-poll wait for `GET /api/v1/agents/{id}/config?wait=`, in seconds.
    #[arg(long, env = "WEIR_MAX_CONFIG_WAIT_SECS", default_value_t = 60)]
    pub max_config_wait_secs: u64,

    /// Registry (optionally with a path) the EMQX image of a kubernetes
    /// cluster must come from; a project's `spec.image` outside it is refused.
    /// The default is where the default image `emqx/emqx` lives.
    #[arg(
        long,
        env = "WEIR_CLUSTER_IMAGE_REGISTRY",
        default_value = "docker.io/emqx"
    )]
    pub cluster_image_registry: String,

    /// Kubernetes backend for clusters and gateways: auto (when in-cluster or
    /// KUBECONFIG config is found), on, or off (external clusters, embedded gateways).
    #[arg(long, env = "WEIR_KUBE_FLEET", default_value = "auto")]
    pub kube_fleet: KubeFleet,

    /// PostgreSQL URL of the historian's database (the one weir-historian
    /// writes `readings` to); the gateways' `/series` charts read from it.
    /// Unset: those reads answer 503.
    #[arg(long, env = "WEIR_HISTORIAN_URL", hide_env_values = true)]
    pub historian_url: Option<String>,

    /// How often the historian's `reading_gaps` are read for new data gaps
    /// (fleet events `data_gap`), in milliseconds; 0: never. Only with
    /// WEIR_HISTORIAN_URL.
    #[arg(long, env = "WEIR_DATA_GAP_POLL_MS", default_value_t = 5000)]
    pub data_gap_poll_ms: u64,

    /// How long a setpoint write (`POST …/gateways/{gateway}/writes`) waits
    /// for the agent's answer, in milliseconds (1 to 120000), counted from
    /// when the api starts connecting to the gateway's broker.
    #[arg(long, env = "WEIR_WRITE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=120_000))]
    pub write_timeout_ms: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeFleet {
    Auto,
    On,
    Off,
}

/// Fleet state shared by the handlers (see the module docs).
pub struct Fleet {
    pub config: FleetConfig,
    master: Result<MasterKey, String>,
    /// Fleet-health events for the alerts engine: `state.fleet.events.subscribe()`.
    pub events: broadcast::Sender<FleetEventRecord>,
    /// Gateway ids whose signed bundle changed (wakes long-polling agents).
    pub bundles: broadcast::Sender<Uuid>,
    pub enroll_limiter: ratelimit::RateLimiter,
    /// Present when the Kubernetes backend is active.
    pub kube: Option<kube::Client>,
    pub public_url: String,
    /// The historian's database, for `/series` (see [`series::Historian`]).
    pub historian: Arc<series::Historian>,
    /// What was written to each EdgeGateway's status, and the tasks that write it.
    pub status_writer: Arc<kube_status::Writer>,
}

impl Fleet {
    pub async fn new(config: &crate::Config) -> Result<Arc<Fleet>, ApiError> {
        let fc = config.fleet.clone();
        let master = MasterKey::resolve(fc.master_key.as_deref(), &config.database_url)
            .map_err(|e| e.to_string());
        if let Err(e) = &master {
            tracing::warn!("fleet signing unavailable until configured: {e}");
        }
        let kube = match fc.kube_fleet {
            KubeFleet::Off => None,
            mode => match kube_backend::client().await {
                Ok(c) => {
                    tracing::info!(
                        "fleet: Kubernetes backend active (clusters and gateways as resources)"
                    );
                    Some(c)
                }
                Err(e) if mode == KubeFleet::On => {
                    return Err(ApiError::internal(format!(
                        "WEIR_KUBE_FLEET=on but no Kubernetes config: {e}"
                    )))
                }
                Err(_) => None,
            },
        };
        Ok(Arc::new(Fleet {
            enroll_limiter: ratelimit::RateLimiter::new(
                fc.enroll_burst.max(1),
                fc.enroll_rate_per_minute.max(1),
            ),
            events: broadcast::channel(1024).0,
            bundles: broadcast::channel(1024).0,
            kube,
            public_url: config.public_url.trim_end_matches('/').to_string(),
            historian: series::Historian::new(fc.historian_url.as_deref()),
            status_writer: Default::default(),
            master,
            config: fc,
        }))
    }

    pub fn master(&self) -> Result<&MasterKey, ApiError> {
        self.master
            .as_ref()
            .map_err(|e| ApiError::Unavailable(e.clone()))
    }
}

/// Every fleet route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(clusters::router())
        .merge(gateways::router())
        .merge(templates::router())
        .merge(enrollment::router())
        .merge(agents::router())
        .merge(revoke::router())
        .merge(keys::router())
        .merge(rollout::router())
        .merge(series::router())
        .merge(latest::router())
        .merge(writes::router())
        .merge(gap_status::router())
        .merge(credentials::routes::router())
        .merge(credentials::agent::router())
}

/// Start the fleet monitor (heartbeats → online/offline events, bundle
/// re-signing before expiry) and the data-gap poller. It stops when the state is dropped.
pub fn spawn_background(st: &AppState) {
    rollout::spawn_monitor(st);
    data_gaps::spawn(st);
    historian_identity::spawn(st);
    kube_sync::spawn(st);
}
