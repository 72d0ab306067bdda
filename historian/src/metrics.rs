//! Prometheus metrics of the historian, served as text at `/metrics`.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `weir_historian_rows_written_total` | counter | rows committed to `readings` (rate = rows/s) |
//! | `weir_historian_duplicate_rows_total` | counter | redelivered rows skipped by the dedupe key |
//! | `weir_historian_messages_total` | counter | MQTT messages received |
//! | `weir_historian_malformed_messages_total` | counter | messages that could not be parsed (acked, logged with topic) |
//! | `weir_historian_rejected_messages_total` | counter | parsed messages PostgreSQL refused as data (acked, logged) |
//! | `weir_historian_batch_rows` | histogram | rows per committed batch |
//! | `weir_historian_commit_seconds` | histogram | COPY + commit time per batch |
//! | `weir_historian_lag_seconds` | histogram | commit time minus reading timestamp, per row |
//! | `weir_historian_db_errors_total` | counter | failed database attempts (each retried) |
//! | `weir_historian_mqtt_connected` | gauge | 1 while subscribed to the broker |
//! | `weir_historian_gaps_open` | gauge | holes in a gateway's `seq` open longer than the grace period (set by the replica that checks; 0 on the others) |
//! | `weir_historian_gap_frames_open` | gauge | frames missing in those holes |
//! | `weir_historian_replay_requests_total` | counter | replay requests published to agents |
//! | `weir_historian_gaps_recorded_total{reason}` | counter | gaps written to `reading_gaps`, by reason (`not-retained`, `agent-unreachable`) |
//! | `weir_historian_frames_recovered_total` | counter | frames committed inside holes after they were asked for again |
//!
//! Exact lags for benchmarks: with `--lag-samples FILE` (env
//! `WEIR_LAG_SAMPLES`, off by default) every commit also appends one line per
//! run of rows of one message with the same read timestamp (one frame, in
//! practice) to FILE: `read_ms received_us commit_us rows` — the reading's
//! timestamp (ms since the Unix epoch, stamped by the agent at device read),
//! the wall clock when the historian received the message from the broker
//! and when the commit returned (µs since the epoch), and the row count. A
//! thread of its own writes the file (see [`LagLog`]), so a commit only
//! pushes to a channel.

use std::io::Write as _;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// All metrics plus their registry. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub rows_written: Counter,
    pub duplicate_rows: Counter,
    pub messages: Counter,
    pub malformed_messages: Counter,
    pub rejected_messages: Counter,
    pub db_errors: Counter,
    pub batch_rows: Histogram,
    pub commit_seconds: Histogram,
    pub lag_seconds: Histogram,
    pub mqtt_connected: Gauge,
    pub gaps_open: Gauge,
    pub gap_frames_open: Gauge,
    pub replay_requests: Counter,
    pub gaps_recorded: Family<Vec<(String, String)>, Counter>,
    pub frames_recovered: Counter,
    /// Exact per-row lags in seconds, recorded only when enabled with
    /// [`Metrics::record_lag_samples`]; the benchmark uses it to compute a
    /// true p99 instead of a bucket bound.
    lag_samples: Option<Mutex<Vec<f32>>>,
    /// Exact per-frame lags written to a file (`--lag-samples`).
    lag_log: Option<LagLog>,
}

/// `(read_ms, received_us, commit_us, rows)` per run of rows of one message
/// with one read timestamp.
type LagRecord = (i64, i64, i64, u32);

/// Appends lag records to a file from a thread of its own: a commit sends
/// its records over a channel and goes on; the thread writes them buffered
/// and flushes whenever the channel is empty, so the file is current within
/// a commit or two while it is being read.
pub struct LagLog {
    tx: Mutex<mpsc::Sender<Vec<LagRecord>>>,
}

fn write_records(out: &mut impl std::io::Write, recs: Vec<LagRecord>) -> std::io::Result<()> {
    for (read_ms, received_us, commit_us, rows) in recs {
        writeln!(out, "{read_ms} {received_us} {commit_us} {rows}")?;
    }
    Ok(())
}

impl LagLog {
    /// Create (truncate) `path` and start the writer thread.
    pub fn create(path: &Path) -> std::io::Result<LagLog> {
        let file = std::fs::File::create(path)?;
        let (tx, rx) = mpsc::channel::<Vec<LagRecord>>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("lag-samples".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
                // Ends when the Metrics (the sender) is dropped.
                while let Ok(recs) = rx.recv() {
                    let mut result = write_records(&mut out, recs);
                    while let (Ok(()), Ok(more)) = (&result, rx.try_recv()) {
                        result = write_records(&mut out, more);
                    }
                    if let Err(e) = result.and_then(|()| out.flush()) {
                        tracing::error!(file = %shown, error = %e, "writing lag samples failed; no more are written");
                        return;
                    }
                }
            })?;
        Ok(LagLog { tx: Mutex::new(tx) })
    }

    fn send(&self, recs: Vec<LagRecord>) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(recs);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("rows_written", &self.rows_written.get())
            .field("malformed_messages", &self.malformed_messages.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let latency = || {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ])
        };
        let mut m = Metrics {
            registry: Registry::default(),
            rows_written: Counter::default(),
            duplicate_rows: Counter::default(),
            messages: Counter::default(),
            malformed_messages: Counter::default(),
            rejected_messages: Counter::default(),
            db_errors: Counter::default(),
            batch_rows: Histogram::new([
                1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0, 100_000.0,
            ]),
            commit_seconds: latency(),
            lag_seconds: latency(),
            mqtt_connected: Gauge::default(),
            gaps_open: Gauge::default(),
            gap_frames_open: Gauge::default(),
            replay_requests: Counter::default(),
            gaps_recorded: Family::default(),
            frames_recovered: Counter::default(),
            lag_samples: None,
            lag_log: None,
        };
        let r = &mut m.registry;
        r.register(
            "weir_historian_rows_written",
            "Rows committed to readings",
            m.rows_written.clone(),
        );
        r.register(
            "weir_historian_duplicate_rows",
            "Redelivered rows skipped by the dedupe key",
            m.duplicate_rows.clone(),
        );
        r.register(
            "weir_historian_messages",
            "MQTT messages received",
            m.messages.clone(),
        );
        r.register(
            "weir_historian_malformed_messages",
            "MQTT messages that could not be parsed; acknowledged and logged with their topic",
            m.malformed_messages.clone(),
        );
        r.register(
            "weir_historian_rejected_messages",
            "Messages PostgreSQL refused as data; acknowledged and logged with their topic",
            m.rejected_messages.clone(),
        );
        r.register(
            "weir_historian_db_errors",
            "Failed database attempts, each retried",
            m.db_errors.clone(),
        );
        r.register(
            "weir_historian_batch_rows",
            "Rows per committed batch",
            m.batch_rows.clone(),
        );
        r.register(
            "weir_historian_commit_seconds",
            "Time to COPY and commit one batch",
            m.commit_seconds.clone(),
        );
        r.register(
            "weir_historian_lag_seconds",
            "Commit time minus the reading's timestamp, per row",
            m.lag_seconds.clone(),
        );
        r.register(
            "weir_historian_mqtt_connected",
            "1 while connected and subscribed to the broker",
            m.mqtt_connected.clone(),
        );
        r.register(
            "weir_historian_gaps_open",
            "Holes in a gateway's seq open longer than the grace period",
            m.gaps_open.clone(),
        );
        r.register(
            "weir_historian_gap_frames_open",
            "Frames missing in the open gaps",
            m.gap_frames_open.clone(),
        );
        r.register(
            "weir_historian_replay_requests",
            "Replay requests published to agents",
            m.replay_requests.clone(),
        );
        r.register(
            "weir_historian_gaps_recorded",
            "Gaps written to reading_gaps, by reason",
            m.gaps_recorded.clone(),
        );
        r.register(
            "weir_historian_frames_recovered",
            "Frames committed inside holes after a replay request",
            m.frames_recovered.clone(),
        );
        m
    }

    /// Keep every row's lag in memory (benchmarks only: it grows without bound).
    pub fn record_lag_samples(mut self) -> Self {
        self.lag_samples = Some(Mutex::new(Vec::new()));
        self
    }

    /// Also write every commit's exact per-frame lags to `path` (see the
    /// module doc); for benchmarks, the file grows without bound.
    pub fn write_lag_samples(mut self, path: &Path) -> std::io::Result<Self> {
        self.lag_log = Some(LagLog::create(path)?);
        Ok(self)
    }

    /// Take the recorded lag samples (seconds).
    pub fn take_lag_samples(&self) -> Vec<f32> {
        self.lag_samples
            .as_ref()
            .map(|s| std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default()
    }

    /// Record the lag of committed rows, given each row's read timestamp in
    /// ms and when its message was received (µs since the epoch; only for
    /// `--lag-samples`), and the time the commit returned.
    pub(crate) fn observe_lags(
        &self,
        rows: impl Iterator<Item = (i64, i64)>,
        committed: SystemTime,
    ) {
        let committed_us = unix_us(committed);
        let committed_ms = committed_us / 1000;
        let mut samples = self
            .lag_samples
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        let mut log: Option<Vec<LagRecord>> = self.lag_log.as_ref().map(|_| Vec::new());
        for (ts, received_us) in rows {
            let lag = (committed_ms - ts) as f64 / 1000.0;
            self.lag_seconds.observe(lag);
            if let Some(s) = samples.as_mut() {
                s.push(lag as f32);
            }
            if let Some(recs) = log.as_mut() {
                match recs.last_mut() {
                    Some((read_ms, recv, _, rows)) if *read_ms == ts && *recv == received_us => {
                        *rows += 1
                    }
                    _ => recs.push((ts, received_us, committed_us, 1)),
                }
            }
        }
        if let (Some(l), Some(recs)) = (&self.lag_log, log) {
            l.send(recs);
        }
    }

    /// Whether `--lag-samples` is on (receive times are then worth taking).
    pub fn logs_lags(&self) -> bool {
        self.lag_log.is_some()
    }

    /// Count a gap recorded in `reading_gaps`.
    pub(crate) fn gap_recorded(&self, reason: &str) {
        self.gaps_recorded
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as i64
}

/// Serve `/metrics` and `/healthz` until `shutdown` fires.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
