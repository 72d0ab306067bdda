//! weir-historian: readings from the tenant's MQTT cluster into PostgreSQL,
//! each exactly once.
//!
//! The sink subscribes to `$share/{share_group}/{prefix}/{tenant}/+/+/+` (several
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
//!
//! The way a message takes: `mqtt` receives it and `rows` parses it,
//! `ingest` batches it and orders the acknowledgements, `writer` copies the
//! batch into the tables [`schema`] keeps. Its own crate, apart from the
//! agent: the two share only the message contract in `weir-crds`.
//!
//! Nothing lost unseen (issue 20): the sink also subscribes to the agents'
//! uplink states and replay answers, tracks which `seq`s it committed in
//! the batches' own transactions, and `gaps` asks agents to replay holes
//! and records what cannot be filled in `reading_gaps`.

mod config;
mod database;
mod error;
mod gaps;
mod ingest;
mod metrics;
mod mqtt;
pub mod query;
mod rows;
pub mod schema;
mod writer;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use database::{create_database, migrate, redact_url};
pub use error::Error;
pub use metrics::Metrics;
pub use rows::{parse_message, Malformed, MessageRows, Reading};
pub use schema::Layout;

/// Run the sink until `shutdown` fires, with its own metrics.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
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
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    cfg.validate()?;
    let pg = database::pg_config(&cfg.database_url)?;
    // Fails early on a bad MQTT URL.
    let session = mqtt::session(&cfg)?;
    let acker = session.acker.clone();
    let publisher = session.client.clone();

    let mut admin = database::connect_checked(&pg).await?;
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
            .map_err(|source| Error::MetricsListen { addr, source })?;
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
    handles.push(tokio::spawn(gaps::replay::run(
        cfg.clone(),
        pg.clone(),
        publisher,
        metrics.clone(),
        tasks.clone(),
    )));
    let (msg_tx, msg_rx) = mpsc::channel(usize::from(cfg.mqtt_inflight));
    let (batch_tx, batch_rx) = mpsc::channel(1);
    let idle = Arc::new(ingest::IdleWriters::default());
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
    let batcher = tokio::spawn(ingest::batcher(
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
        writers.push(tokio::spawn(ingest::writer(
            w,
            batch_rx.clone(),
            idle.clone(),
            ack_tx.clone(),
        )));
    }
    drop(ack_tx);
    let acks = tokio::spawn(ingest::acker(ack_rx, acker));

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
    cfg: Config,
    partitions: writer::PartitionCache,
    stop: CancellationToken,
) {
    let pg = match database::pg_config(&cfg.database_url) {
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
