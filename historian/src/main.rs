//! weir-historian: readings from the tenant's MQTT cluster into PostgreSQL,
//! each exactly once. `weir-historian` runs the sink; `weir-historian
//! migrate` creates or upgrades the schema and exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use weir_historian::{self as historian, Config};

#[derive(Parser, Debug)]
#[command(name = "weir-historian", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Benchmarks: write each commit's exact per-frame lags to this file as
    /// lines `read_ms received_us commit_us rows` (see the metrics module). Off by
    /// default; the file grows for as long as the historian runs.
    #[arg(long, env = "WEIR_LAG_SAMPLES")]
    lag_samples: Option<std::path::PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "WEIR_LOG_JSON", global = true)]
    log_json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or upgrade the historian schema, then exit.
    Migrate {
        /// Create the database first if it does not exist.
        #[arg(long, env = "WEIR_HISTORIAN_CREATE_DATABASE")]
        create_database: bool,
    },
}

#[derive(Args, Debug)]
struct DbArgs {
    /// PostgreSQL URL of the historian database.
    #[arg(
        long,
        env = "WEIR_HISTORIAN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/weir",
        hide_env_values = true,
        global = true
    )]
    database_url: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// MQTT broker of the tenant cluster.
    #[arg(long, env = "WEIR_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// MQTT user name.
    #[arg(long, env = "WEIR_MQTT_USERNAME")]
    mqtt_username: Option<String>,
    /// MQTT password (or JWT).
    #[arg(long, env = "WEIR_MQTT_PASSWORD", hide_env_values = true)]
    mqtt_password: Option<String>,
    /// File holding the MQTT password (or JWT), read again at every
    /// reconnect so a renewed JWT in a mounted Secret is used without a restart.
    #[arg(
        long,
        env = "WEIR_MQTT_PASSWORD_FILE",
        conflicts_with = "mqtt_password"
    )]
    mqtt_password_file: Option<std::path::PathBuf>,
    /// MQTT client id; must be stable per instance (the broker keeps its
    /// session and queued messages). Default: weir-historian-<hostname>.
    #[arg(long, env = "WEIR_HISTORIAN_CLIENT_ID")]
    client_id: Option<String>,
    /// Tenant whose readings to store; `+` for all tenants on the broker.
    #[arg(long, env = "WEIR_TENANT", default_value = "+")]
    tenant: String,
    /// First topic level of readings topics.
    #[arg(long, env = "WEIR_TOPIC_PREFIX", default_value = "weir")]
    topic_prefix: String,
    /// Shared-subscription group; instances in one group split the load.
    #[arg(
        long,
        env = "WEIR_HISTORIAN_SHARE_GROUP",
        default_value = "weir-historian"
    )]
    share_group: String,
    /// Messages the broker may send before we acknowledge (MQTT 5 Receive Maximum).
    #[arg(long, env = "WEIR_HISTORIAN_MQTT_INFLIGHT", default_value_t = 1000)]
    mqtt_inflight: u16,
    /// Seconds the broker keeps our session and queues readings while we are away.
    #[arg(long, env = "WEIR_HISTORIAN_SESSION_EXPIRY_SECS", default_value_t = 7 * 24 * 3600)]
    session_expiry_secs: u32,
    /// Largest MQTT message accepted, in bytes.
    #[arg(long, env = "WEIR_HISTORIAN_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_message_bytes: u32,
    /// Rows per batch (one COPY, one commit).
    #[arg(long, env = "WEIR_HISTORIAN_BATCH_ROWS", default_value_t = 20_000)]
    batch_rows: usize,
    /// Longest wait, in milliseconds, for a batch to fill before it is written.
    #[arg(long, env = "WEIR_HISTORIAN_LINGER_MS", default_value_t = 10)]
    linger_ms: u64,
    /// Parallel PostgreSQL connections writing batches.
    #[arg(long, env = "WEIR_HISTORIAN_WRITERS", default_value_t = 2)]
    writers: usize,
    /// Drop readings partitions older than this many days; 0 keeps everything.
    #[arg(long, env = "WEIR_HISTORIAN_RETENTION_DAYS", default_value_t = 0)]
    retention_days: u32,
    /// Daily partitions created ahead of time.
    #[arg(
        long,
        env = "WEIR_HISTORIAN_PARTITIONS_AHEAD_DAYS",
        default_value_t = 3
    )]
    partitions_ahead_days: u32,
    /// Address for /metrics and /healthz; empty to disable.
    #[arg(
        long,
        env = "WEIR_HISTORIAN_METRICS_LISTEN",
        default_value = "127.0.0.1:9103"
    )]
    metrics_listen: String,
    /// Seconds a hole in a gateway's seq may stay open before it counts as a
    /// gap and the agent is asked to replay it.
    #[arg(long, env = "WEIR_HISTORIAN_GAP_GRACE_SECS", default_value_t = 10)]
    gap_grace_secs: u64,
    /// Milliseconds between gap checks (one replica checks at a time).
    #[arg(long, env = "WEIR_HISTORIAN_GAP_CHECK_MS", default_value_t = 1000)]
    gap_check_ms: u64,
    /// Seconds between replay requests for a gap that stays open.
    #[arg(long, env = "WEIR_HISTORIAN_REPLAY_RETRY_SECS", default_value_t = 15)]
    replay_retry_secs: u64,
    /// Seconds after the first replay request without the gap filling (or
    /// the agent answering what it no longer holds) before the gap is
    /// recorded in reading_gaps as agent-unreachable.
    #[arg(long, env = "WEIR_HISTORIAN_REPLAY_WINDOW_SECS", default_value_t = 120)]
    replay_window_secs: u64,
    /// Most frames asked for in one replay request; bigger gaps are split.
    #[arg(
        long,
        env = "WEIR_HISTORIAN_REPLAY_MAX_FRAMES",
        default_value_t = 10_000
    )]
    replay_max_frames: u64,
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

impl RunArgs {
    fn config(self, database_url: String) -> anyhow::Result<Config> {
        let metrics_listen = if self.metrics_listen.is_empty() {
            None
        } else {
            Some(
                self.metrics_listen
                    .parse::<SocketAddr>()
                    .with_context(|| format!("--metrics-listen {:?}", self.metrics_listen))?,
            )
        };
        Ok(Config {
            mqtt_url: self.mqtt_url,
            mqtt_username: self.mqtt_username,
            mqtt_password: self.mqtt_password,
            mqtt_password_file: self.mqtt_password_file,
            client_id: self
                .client_id
                .unwrap_or_else(|| format!("weir-historian-{}", hostname())),
            topic_prefix: self.topic_prefix,
            tenant: self.tenant,
            share_group: self.share_group,
            mqtt_inflight: self.mqtt_inflight,
            session_expiry_secs: self.session_expiry_secs,
            max_message_bytes: self.max_message_bytes,
            database_url,
            batch_rows: self.batch_rows,
            linger: Duration::from_millis(self.linger_ms),
            writers: self.writers,
            retention_days: self.retention_days,
            partitions_ahead_days: self.partitions_ahead_days,
            metrics_listen,
            gap_grace: Duration::from_secs(self.gap_grace_secs),
            gap_check_interval: Duration::from_millis(self.gap_check_ms),
            replay_retry: Duration::from_secs(self.replay_retry_secs),
            replay_window: Duration::from_secs(self.replay_window_secs),
            replay_max_frames: self.replay_max_frames,
            ..Config::default()
        })
    }
}

/// Cancel on SIGINT or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }

    let database_url = cli.db.database_url;
    match cli.command {
        Some(Command::Migrate { create_database }) => {
            if create_database && historian::create_database(&database_url).await? {
                tracing::info!(database = %historian::redact_url(&database_url), "created database");
            }
            let layout = historian::migrate(&database_url).await?;
            tracing::info!(
                ?layout,
                version = historian::schema::SCHEMA_VERSION,
                "schema is current"
            );
            Ok(())
        }
        None => {
            let cfg = cli.run.config(database_url)?;
            let mut metrics = historian::Metrics::new();
            if let Some(path) = &cli.lag_samples {
                metrics = metrics
                    .write_lag_samples(path)
                    .with_context(|| format!("--lag-samples {}", path.display()))?;
                tracing::info!(file = %path.display(), "writing exact lag samples");
            }
            historian::run_with_metrics(cfg, Arc::new(metrics), shutdown_on_signals()).await?;
            Ok(())
        }
    }
}
