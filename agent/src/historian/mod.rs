//! Historian: readings from the tenant's MQTT cluster into PostgreSQL, each
//! exactly once.
//!
//! The sink subscribes to `$share/{share_group}/{prefix}/{tenant}/#` (several
//! instances split the load), parses the agents' uplink messages
//! ([`weir_crds::message`]), writes their readings into `readings` with
//! binary COPY and acknowledges each MQTT message only after its rows are
//! committed. Redelivered messages are deduplicated by the table's unique key
//! (see [`schema`]), so at-least-once delivery from the broker becomes
//! exactly-once rows in the table.
//!
//! Entry points: [`run`] (the long-running sink, used by the `weir-historian`
//! binary and anything that embeds it) and [`migrate`] (create or upgrade the
//! schema and exit). [`query`] holds the SQL for downsampled series.

mod metrics;
mod mqtt;
mod pipeline;
pub mod query;
mod rows;
pub mod schema;
mod writer;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;
pub use rows::{parse_message, Malformed, MessageRows, Reading};
pub use schema::Layout;

/// Everything that can stop the historian.
#[derive(Debug, thiserror::Error)]
pub enum HistorianError {
    #[error("database {database:?} does not exist on {host}; create it (`createdb {database}` or `weir-historian migrate --create-database`)")]
    DatabaseMissing { database: String, host: String },
    #[error("cannot reach PostgreSQL at {host}: {source}")]
    DatabaseUnreachable {
        host: String,
        source: tokio_postgres::Error,
    },
    #[error("the database schema is not weir-historian's: {0}")]
    SchemaNotOurs(String),
    #[error("the historian schema is missing or outdated; run `weir-historian migrate`")]
    SchemaMissing,
    #[error("schema version {found} is newer than this weir-historian understands ({supported}); upgrade weir-historian")]
    SchemaTooNew { found: i32, supported: i32 },
    #[error("invalid database URL: {0}")]
    DatabaseUrl(String),
    #[error("invalid MQTT URL {url:?}: {reason}")]
    MqttUrl { url: String, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("metrics listener on {addr}: {source}")]
    MetricsListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Configuration of one historian instance.
#[derive(Clone, Debug)]
pub struct HistorianConfig {
    /// `mqtt://host:port` (or `mqtts://`).
    pub mqtt_url: String,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    /// Stable per instance: the broker keeps this client's session (and the
    /// messages queued for it) across restarts.
    pub client_id: String,
    /// First topic level, `weir` by default.
    pub topic_prefix: String,
    /// Tenant to subscribe to; `+` for all tenants on the broker.
    pub tenant: String,
    /// Shared-subscription group; instances in one group split the load.
    pub share_group: String,
    /// MQTT 5 Receive Maximum: messages the broker may send unacknowledged.
    pub mqtt_inflight: u16,
    /// How long the broker keeps our session while we are disconnected.
    pub session_expiry_secs: u32,
    /// Largest MQTT packet we accept (the broker drops larger ones for us).
    pub max_message_bytes: u32,
    /// `postgres://user[:password]@host:port/database`.
    pub database_url: String,
    /// Rows per batch (a batch is one COPY and one commit).
    pub batch_rows: usize,
    /// Longest time a reading waits for its batch to fill.
    pub linger: Duration,
    /// Parallel PostgreSQL connections writing batches.
    pub writers: usize,
    /// Drop partitions older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// Daily partitions created ahead of time.
    pub partitions_ahead_days: u32,
    /// How often partitions are created ahead and old ones dropped.
    pub maintenance_interval: Duration,
    /// Address for `/metrics` and `/healthz`; `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for HistorianConfig {
    fn default() -> Self {
        HistorianConfig {
            mqtt_url: "mqtt://127.0.0.1:1883".into(),
            mqtt_username: None,
            mqtt_password: None,
            client_id: "weir-historian".into(),
            topic_prefix: "weir".into(),
            tenant: "+".into(),
            share_group: "weir-historian".into(),
            mqtt_inflight: 1000,
            session_expiry_secs: 7 * 24 * 3600,
            max_message_bytes: 8 * 1024 * 1024,
            database_url: "postgres://postgres@127.0.0.1:5432/weir".into(),
            batch_rows: 20_000,
            linger: Duration::from_millis(10),
            writers: 2,
            retention_days: 0,
            partitions_ahead_days: 3,
            maintenance_interval: Duration::from_secs(3600),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9103))),
        }
    }
}

impl HistorianConfig {
    fn validate(&self) -> Result<(), HistorianError> {
        let bad = |m: &str| Err(HistorianError::Config(m.into()));
        if self.batch_rows == 0 {
            return bad("batch rows must be at least 1");
        }
        if self.writers == 0 {
            return bad("writers must be at least 1");
        }
        if self.mqtt_inflight == 0 {
            return bad("MQTT inflight must be at least 1");
        }
        if self.client_id.is_empty() {
            return bad("the MQTT client id must not be empty");
        }
        for (name, v) in [
            ("topic prefix", &self.topic_prefix),
            ("share group", &self.share_group),
        ] {
            if v.is_empty() || v.contains(['/', '+', '#']) {
                return Err(HistorianError::Config(format!(
                    "{name} {v:?} must be one non-empty topic level without wildcards"
                )));
            }
        }
        if self.tenant.is_empty()
            || self.tenant.contains(['/', '#'])
            || (self.tenant.contains('+') && self.tenant != "+")
        {
            return bad("tenant must be a tenant name or `+` for all tenants");
        }
        Ok(())
    }
}

/// The database URL with any password removed, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn pg_config(url: &str) -> Result<tokio_postgres::Config, HistorianError> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| HistorianError::DatabaseUrl(format!("{}: {e}", redact_url(url))))
}

fn pg_host(cfg: &tokio_postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Connect with a clear error for the common first-run problems.
async fn connect_checked(
    pg: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, HistorianError> {
    writer::connect(pg).await.map_err(|e| {
        if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) {
            HistorianError::DatabaseMissing {
                database: pg.get_dbname().unwrap_or("postgres").to_owned(),
                host: pg_host(pg),
            }
        } else {
            HistorianError::DatabaseUnreachable {
                host: pg_host(pg),
                source: e,
            }
        }
    })
}

/// Create the database named in `database_url` (connecting to the server's
/// `postgres` database to do so) if it does not exist. Returns true if created.
pub async fn create_database(database_url: &str) -> Result<bool, HistorianError> {
    let pg = pg_config(database_url)?;
    let name = pg
        .get_dbname()
        .ok_or_else(|| HistorianError::DatabaseUrl("the URL names no database".into()))?
        .to_owned();
    let mut admin = pg.clone();
    admin.dbname("postgres");
    let client = connect_checked(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await?;
    Ok(true)
}

/// Create or upgrade the historian schema in `database_url`.
pub async fn migrate(database_url: &str) -> Result<Layout, HistorianError> {
    let pg = pg_config(database_url)?;
    let mut client = connect_checked(&pg).await?;
    schema::migrate(&mut client).await
}

/// Run the sink until `shutdown` fires, with its own metrics.
pub async fn run(cfg: HistorianConfig, shutdown: CancellationToken) -> Result<(), HistorianError> {
    run_with_metrics(cfg, Arc::new(Metrics::new()), shutdown).await
}

/// Run the sink until `shutdown` fires, recording into `metrics`.
///
/// Startup checks the database (missing database, foreign schema) and
/// migrates before touching MQTT, so configuration errors surface at once.
/// After that, losing PostgreSQL or the broker is not an error: both sides
/// are reconnected with backoff while unacknowledged messages stay with the
/// broker. On shutdown, batches already formed are committed and
/// acknowledged, the rest stays with the broker for the next run.
pub async fn run_with_metrics(
    cfg: HistorianConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), HistorianError> {
    cfg.validate()?;
    let pg = pg_config(&cfg.database_url)?;
    // Fails early on a bad MQTT URL.
    let session = mqtt::session(&cfg)?;
    let acker = session.acker.clone();

    let mut admin = connect_checked(&pg).await?;
    let layout = schema::migrate(&mut admin).await?;
    let partitions: writer::PartitionCache = Arc::new(Mutex::new(Default::default()));
    schema::maintain(
        &admin,
        layout,
        cfg.partitions_ahead_days,
        cfg.retention_days,
    )
    .await?;
    if layout == Layout::Native {
        let existing = schema::existing_partitions(&admin).await?;
        partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(existing);
    }
    tracing::info!(
        database = %redact_url(&cfg.database_url),
        layout = ?layout,
        "historian schema ready"
    );

    let tasks = CancellationToken::new();
    let mut handles = Vec::new();
    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HistorianError::MetricsListen { addr, source })?;
        tracing::info!(%addr, "serving /metrics");
        let (m, stop) = (metrics.clone(), tasks.clone());
        handles.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, m, stop).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        }));
    }
    handles.push(tokio::spawn(maintenance(
        admin,
        layout,
        cfg.clone(),
        partitions.clone(),
        tasks.clone(),
    )));

    let cfg = Arc::new(cfg);
    let (msg_tx, msg_rx) = mpsc::channel(usize::from(cfg.mqtt_inflight));
    let (batch_tx, batch_rx) = mpsc::channel(1);
    let idle = Arc::new(pipeline::IdleWriters::default());
    let (ack_tx, ack_rx) = mpsc::channel(cfg.writers + 2);
    let mqtt_done = CancellationToken::new();
    let consumer = tokio::spawn(mqtt::consume(
        cfg.clone(),
        session,
        msg_tx,
        metrics.clone(),
        shutdown.clone(),
        mqtt_done.clone(),
    ));
    let batcher = tokio::spawn(pipeline::batcher(
        msg_rx,
        batch_tx,
        idle.clone(),
        cfg.batch_rows,
        cfg.linger,
        metrics.clone(),
        shutdown.clone(),
    ));
    let batch_rx = Arc::new(tokio::sync::Mutex::new(batch_rx));
    let mut writers = Vec::new();
    for id in 0..cfg.writers {
        let w = writer::Writer::new(
            id,
            pg.clone(),
            layout,
            partitions.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        writers.push(tokio::spawn(pipeline::writer(
            w,
            batch_rx.clone(),
            idle.clone(),
            ack_tx.clone(),
        )));
    }
    drop(ack_tx);
    let acks = tokio::spawn(pipeline::acker(ack_rx, acker));

    // Shutdown order: the batcher hands over its last batch, writers commit
    // it, the acker acks it, then the MQTT session is closed cleanly.
    let _ = batcher.await;
    for w in writers {
        let _ = w.await;
    }
    let _ = acks.await;
    mqtt_done.cancel();
    let _ = consumer.await;
    tasks.cancel();
    for h in handles {
        let _ = h.await;
    }
    tracing::info!("historian stopped");
    Ok(())
}

/// Create partitions ahead and apply retention, periodically.
async fn maintenance(
    mut client: tokio_postgres::Client,
    layout: Layout,
    cfg: HistorianConfig,
    partitions: writer::PartitionCache,
    stop: CancellationToken,
) {
    let pg = match pg_config(&cfg.database_url) {
        Ok(pg) => pg,
        Err(_) => return,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.maintenance_interval) => {}
        }
        if client.is_closed() {
            match writer::connect(&pg).await {
                Ok(c) => client = c,
                Err(e) => {
                    tracing::warn!(error = %e, "partition maintenance cannot connect; next try in one interval");
                    continue;
                }
            }
        }
        match schema::maintain(
            &client,
            layout,
            cfg.partitions_ahead_days,
            cfg.retention_days,
        )
        .await
        {
            Ok(done) => {
                let mut cache = partitions.lock().unwrap_or_else(|e| e.into_inner());
                cache.extend(done.created);
                for d in done.dropped {
                    cache.remove(&d);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "partition maintenance failed; next try in one interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://weir:s3cret@db:5432/weir"),
            "postgres://weir@db:5432/weir"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/weir"),
            "postgres://postgres@127.0.0.1/weir"
        );
        assert_eq!(redact_url("host=db user=x"), "host=db user=x");
    }

    #[test]
    fn config_is_validated() {
        assert!(HistorianConfig::default().validate().is_ok());
        let bad_tenant = HistorianConfig {
            tenant: "a/b".into(),
            ..Default::default()
        };
        assert!(bad_tenant.validate().is_err());
        let zero = HistorianConfig {
            batch_rows: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
    }
}
