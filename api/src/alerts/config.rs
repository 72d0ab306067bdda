//! Settings of the alerts runtime, flattened into the api's `Config` (every
//! flag has a `WEIR_*` variable), and their defaults for tests and benches.

use super::Clock;

/// Settings of the alerts runtime (flattened into the api's `Config`).
#[derive(clap::Args, Clone, Debug)]
pub struct AlertsConfig {
    /// An extra MQTT broker whose readings the alert rules evaluate, for
    /// every tenant with rules, e.g. `mqtt://127.0.0.1:1883`. The projects'
    /// adopted clusters are read in any case (see `alerts::ingest`).
    #[arg(long = "alerts-mqtt-url", env = "WEIR_ALERTS_MQTT_URL")]
    pub mqtt_url: Option<String>,

    /// First topic level of readings: `{prefix}/{tenant}/{gateway}/{device}/{group}`.
    #[arg(
        long = "alerts-topic-prefix",
        env = "WEIR_ALERTS_TOPIC_PREFIX",
        default_value = "weir"
    )]
    pub topic_prefix: String,

    /// How often pending alerts, absence rules and notification groups are checked, in ms.
    #[arg(
        long = "alerts-eval-interval-ms",
        env = "WEIR_ALERTS_EVAL_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub eval_interval_ms: u64,

    /// Attempts per notification (webhook: on 5xx, 429, timeouts; email: on transient errors).
    #[arg(
        long = "alerts-send-attempts",
        env = "WEIR_ALERTS_SEND_ATTEMPTS",
        default_value_t = 5
    )]
    pub send_attempts: u32,

    /// First retry delay in ms; doubles per attempt.
    #[arg(
        long = "alerts-retry-base-ms",
        env = "WEIR_ALERTS_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,

    /// Timeout of one send attempt, in ms.
    #[arg(
        long = "alerts-send-timeout-ms",
        env = "WEIR_ALERTS_SEND_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub send_timeout_ms: u64,

    /// How often the api checks every cluster's health (MQTT round trip for
    /// adopted brokers, status for Kubernetes ones), in ms; cluster-degraded
    /// rules evaluate the result. 0: only on demand (`.../probe`).
    #[arg(
        long = "cluster-probe-interval-ms",
        env = "WEIR_CLUSTER_PROBE_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub cluster_probe_interval_ms: u64,

    /// Lifetime of the api's own MQTT JWT for `apiJwt` clusters, in
    /// seconds (4 s up to `WEIR_MQTT_JWT_TTL_SECS`); it reconnects with a
    /// fresh one before expiry.
    #[arg(
        long = "alerts-mqtt-jwt-ttl-secs",
        env = "WEIR_ALERTS_MQTT_JWT_TTL_SECS",
        default_value_t = 900
    )]
    pub api_mqtt_jwt_ttl_secs: i64,

    /// This replica's name in its MQTT username and client id
    /// (`weir-api-{replica}`); default `HOSTNAME` (the pod name in
    /// Kubernetes), else a random name for the process.
    #[arg(long = "replica", env = "WEIR_API_REPLICA")]
    pub replica: Option<String>,

    /// How often replicas on one PostgreSQL database re-divide the tenants
    /// whose rules they evaluate, in ms (a replica that died is replaced
    /// within about this long once PostgreSQL has noticed).
    #[arg(
        long = "alerts-rebalance-interval-ms",
        env = "WEIR_ALERTS_REBALANCE_INTERVAL_MS",
        default_value_t = 2000
    )]
    pub rebalance_interval_ms: u64,

    /// The time the rules see; tests swap in a manual clock.
    #[arg(skip)]
    pub clock: Clock,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            mqtt_url: None,
            topic_prefix: "weir".into(),
            eval_interval_ms: 1000,
            send_attempts: 5,
            retry_base_ms: 1000,
            send_timeout_ms: 10_000,
            cluster_probe_interval_ms: 30_000,
            api_mqtt_jwt_ttl_secs: 900,
            replica: None,
            rebalance_interval_ms: 2000,
            clock: Clock::default(),
        }
    }
}
