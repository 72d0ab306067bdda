//! The uplink (the sink): frames from the disk queue to the tenant's MQTT
//! cluster with rumqttc (MQTT 5), QoS 1.
//!
//! - Frames are read from the queue in order and grouped per topic into
//!   messages of at most `maxReadingsPerMessage` readings and
//!   `maxBytesPerMessage` bytes. While earlier messages await their PUBACK,
//!   up to `lingerMs` is waited for more readings to fill messages; with
//!   nothing in flight (or a message's worth waiting) they go at once
//!   (Nagle's rule: no reading waits on an idle connection).
//! - A batch of messages is in flight until every message of it has its
//!   PUBACK; only then does the queue cursor move past it (end-to-end
//!   acknowledgement). A PUBACK with an error reason counts as not delivered.
//! - Any connection error drops the session, waits an exponential back-off
//!   with jitter, reconnects (next broker URL if several) and republishes
//!   from the first unacknowledged frame. Duplicates are possible (QoS 1);
//!   the frames' sequence numbers make them detectable.
//! - With `uplink.requireSubscriber` a PUBACK "no matching subscribers"
//!   does not count as delivered either, but keeps the connection: see
//!   [`subscriber`].
//! - Write requests arrive on `{prefix}/{tenant}/{gateway}/cmd/write` and
//!   are answered on `.../cmd/write/resp`; replay requests on `.../cmd/replay`
//!   (see [`replay`]); the uplink's state goes out on `.../cmd/uplink/state`
//!   (see [`state`]).

mod batch;
pub mod replay;
mod session;
pub mod state;
pub mod subscriber;

pub use batch::build_messages;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use rumqttc::v5::MqttOptions;
use rumqttc::Transport;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_crds::message::{WriteRequest, WriteResponse};

use crate::error::{Error, Result};
use crate::queue::DiskQueue;
use batch::Window;
use replay::Replays;
use subscriber::SubscriberWait;

/// The longest wait between reconnects. A broker back after an outage is
/// found within this: every second the backlog waits is a second of the
/// catch-up lost (5 s cost the `replay_outage` bench a quarter of its rate).
/// A retry is one TCP (and TLS) connect; with the jitter a fleet of a
/// thousand gateways makes about 1,300 of them a second against a broker
/// that is down, which EMQX or Mosquitto refuse cheaply.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// While the broker stays away, the same failure is logged at most this
/// often (each retry is still counted in `weir_agent_uplink_reconnects`).
const RECONNECT_LOG_EVERY: Duration = Duration::from_secs(30);

/// How to reach the broker and how to batch.
#[derive(Clone, Debug, PartialEq)]
pub struct UplinkSettings {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub urls: Vec<String>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates to trust for `mqtts://` instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub max_readings_per_message: usize,
    pub max_bytes_per_message: usize,
    pub linger: Duration,
    /// Messages awaiting PUBACK at most.
    pub inflight: u16,
    /// Topic for write requests (subscribed when set).
    pub command_topic: Option<String>,
    pub response_topic: Option<String>,
    /// Replay requests (subscribed when set) and their answers.
    pub replay_topic: Option<String>,
    pub replay_response_topic: Option<String>,
    /// Where the uplink state goes (published when set).
    pub state_topic: Option<String>,
    /// A PUBACK "no matching subscribers" is not a delivery.
    pub require_subscriber: bool,
}

/// Counters for metrics and status.
#[derive(Debug, Default)]
pub struct UplinkStats {
    pub connected: AtomicBool,
    pub messages_acked: AtomicU64,
    pub readings_acked: AtomicU64,
    pub frames_published: AtomicU64,
    pub reconnects: AtomicU64,
    pub publish_errors: AtomicU64,
    /// PUBACKs "no matching subscribers" of live data (with requireSubscriber).
    pub no_subscriber_acks: AtomicU64,
    /// True while readings are held because nobody subscribes.
    pub waiting_for_subscriber: AtomicBool,
    /// Replay requests answered (replayed, partly or refused).
    pub replays: AtomicU64,
    /// Frames republished by replays.
    pub replayed_frames: AtomicU64,
    /// Publish → PUBACK latency, microseconds, in buckets of [`LATENCY_BUCKETS_US`].
    pub latency: LatencyHistogram,
}

/// Most bytes of frames read from the queue for one batch.
const READ_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most frames one read of the backlog takes.
const READ_FRAMES_MAX: usize = 20_000;

/// Bucket upper bounds in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000,
];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    pub buckets: [AtomicU64; 13],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Answers write requests (the running adapters).
pub type WriteSender = mpsc::Sender<(WriteRequest, tokio::sync::oneshot::Sender<WriteResponse>)>;

struct Batch {
    /// One past the last frame of the batch.
    end_seq: u64,
    readings: u64,
    outstanding: usize,
    /// A message of it was answered "no matching subscribers": it never
    /// completes; the uplink rewinds to it.
    failed: bool,
}

/// What a published message belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Live(u64),
    Replay,
    /// An answer or the state: nothing waits for its PUBACK.
    Other,
}

struct Flight {
    tag: Tag,
    sent: Instant,
}

/// Split a broker URL into (tls, host, port).
pub fn parse_broker_url(url: &str) -> Result<(bool, String, u16)> {
    let (tls, rest) = if let Some(r) = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("ssl://"))
    {
        (true, r)
    } else if let Some(r) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (false, r)
    } else {
        return Err(Error::Config(format!(
            "broker URL '{url}' must start with mqtt:// or mqtts://"
        )));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse()
                .map_err(|_| Error::Config(format!("broker URL '{url}': bad port '{p}'")))?,
        ),
        None => (rest.to_string(), if tls { 8883 } else { 1883 }),
    };
    Ok((tls, host, port))
}

fn options(s: &UplinkSettings, url: &str) -> Result<MqttOptions> {
    let (tls, host, port) = parse_broker_url(url)?;
    let mut o = MqttOptions::new(s.client_id.clone(), host, port);
    o.set_keep_alive(Duration::from_secs(30));
    // A fresh session each time: we republish from the queue ourselves, in
    // order, instead of relying on the client's in-memory retransmission.
    o.set_clean_start(true);
    o.set_outgoing_inflight_upper_limit(s.inflight.max(1));
    o.set_request_channel_capacity(usize::from(s.inflight) * 2 + 64);
    o.set_connection_timeout(10);
    if let (Some(u), Some(p)) = (&s.username, &s.password) {
        o.set_credentials(u.clone(), p.clone());
    } else if let Some(u) = &s.username {
        o.set_credentials(u.clone(), String::new());
    }
    if tls {
        o.set_transport(match &s.ca_pem {
            Some(ca) => Transport::tls(ca.clone(), None, None),
            None => Transport::tls_with_default_config(),
        });
    }
    Ok(o)
}

/// Runs until `cancel`; reconnects forever.
pub struct Uplink {
    pub queue: Arc<DiskQueue>,
    pub settings: watch::Receiver<UplinkSettings>,
    pub stats: Arc<UplinkStats>,
    pub writes: Option<WriteSender>,
}

impl Uplink {
    pub async fn run(mut self, cancel: CancellationToken) {
        // reqwest and rumqttc between them compile in two rustls crypto
        // providers; rustls then needs one chosen for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut reader = self.queue.reader(self.queue.first_unacked());
        let mut backoff = Duration::from_millis(100);
        // Both outlive a connection: the back-off of "no subscribers" and
        // the replays asked for.
        let mut wait = SubscriberWait::new();
        let mut replays = Replays::new(self.queue.clone());
        let mut url_index = 0usize;
        let mut last_logged: Option<(String, Instant)> = None;
        loop {
            let settings = self.settings.borrow_and_update().clone();
            if settings.urls.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.settings.changed() => continue,
                }
            }
            let url = settings.urls[url_index % settings.urls.len()].clone();
            let outcome = match options(&settings, &url) {
                Ok(o) => {
                    let ctx = session::Context {
                        reader: &mut reader,
                        cancel: &cancel,
                        backoff: &mut backoff,
                        wait: &mut wait,
                        replays: &mut replays,
                    };
                    self.session(o, &settings, ctx).await
                }
                Err(e) => Err(e.to_string()),
            };
            self.stats.connected.store(false, Ordering::Relaxed);
            match outcome {
                Ok(()) => return, // cancelled
                Err(e) => {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    url_index += 1;
                    // Full jitter in [b/2, b], so a fleet does not reconnect in step.
                    let wait = {
                        let b = backoff.as_millis().max(2) as u64;
                        Duration::from_millis(rand::thread_rng().gen_range(b / 2..=b))
                    };
                    let repeat = last_logged
                        .as_ref()
                        .is_some_and(|(prev, at)| *prev == e && at.elapsed() < RECONNECT_LOG_EVERY);
                    if repeat {
                        tracing::debug!(broker = %url, retry_in_ms = wait.as_millis() as u64, "uplink disconnected: {e}");
                    } else {
                        let reconnects = self.stats.reconnects.load(Ordering::Relaxed);
                        tracing::warn!(broker = %url, retry_in_ms = wait.as_millis() as u64, reconnects, "uplink disconnected: {e}");
                        last_logged = Some((e, Instant::now()));
                    }
                    backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                        // New credentials or brokers: try at once.
                        _ = self.settings.changed() => {}
                    }
                }
            }
        }
    }
}

/// Whether two settings need the same connection (only batching differs).
fn same_connection(a: &UplinkSettings, b: &UplinkSettings) -> bool {
    a.urls == b.urls
        && a.client_id == b.client_id
        && a.username == b.username
        && a.password == b.password
        && a.ca_pem == b.ca_pem
        && a.inflight == b.inflight
        && a.command_topic == b.command_topic
        && a.response_topic == b.response_topic
        && a.replay_topic == b.replay_topic
        && a.replay_response_topic == b.replay_response_topic
        && a.state_topic == b.state_topic
}

fn handle_write(payload: &[u8], writes: WriteSender, resp: mpsc::Sender<WriteResponse>) {
    let req: WriteRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            // Answer even a malformed request if it names a correlation id.
            let id = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| {
                    v.get("correlationId")
                        .and_then(|c| c.as_str())
                        .map(String::from)
                })
                .unwrap_or_default();
            let _ = resp.try_send(WriteResponse {
                correlation_id: id,
                ok: false,
                error: Some(format!("malformed write request: {e}")),
            });
            return;
        }
    };
    tokio::spawn(async move {
        let id = req.correlation_id.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let answer = if writes.send((req, tx)).await.is_ok() {
            rx.await.unwrap_or_else(|_| WriteResponse {
                correlation_id: id,
                ok: false,
                error: Some("agent is reconfiguring; try again".into()),
            })
        } else {
            WriteResponse {
                correlation_id: id,
                ok: false,
                error: Some("agent is stopping".into()),
            }
        };
        let _ = resp.send(answer).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            parse_broker_url("mqtt://localhost:1884").unwrap(),
            (false, "localhost".into(), 1884)
        );
        assert_eq!(
            parse_broker_url("mqtts://b.example").unwrap(),
            (true, "b.example".into(), 8883)
        );
        assert!(parse_broker_url("http://x").is_err());
    }
}
