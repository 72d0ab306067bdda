//! The uplink (the sink): frames from the disk queue to the tenant's MQTT
//! cluster with rumqttc (MQTT 5), QoS 1.
//!
//! - Frames are read from the queue in order and grouped per topic into
//!   messages of at most `maxReadingsPerMessage` readings and
//!   `maxBytesPerMessage` bytes, waiting up to `lingerMs` to fill a message.
//! - A batch of messages is in flight until every message of it has its
//!   PUBACK; only then does the queue cursor move past it (end-to-end
//!   acknowledgement). A PUBACK with an error reason counts as not delivered.
//! - Any connection error drops the session, waits an exponential back-off
//!   with jitter, reconnects (next broker URL if several) and republishes
//!   from the first unacknowledged frame. Duplicates are possible (QoS 1);
//!   the frames' sequence numbers make them detectable.
//! - Write requests arrive on `{prefix}/{tenant}/{gateway}/cmd/write` and
//!   are answered on `.../cmd/write/resp`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, Transport};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_crds::message::{WriteRequest, WriteResponse};

use crate::error::{Error, Result};
use crate::queue::{DiskQueue, QueueReader, Record};

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
}

struct Flight {
    batch: u64,
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
        let mut url_index = 0usize;
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
                    self.session(o, &settings, &mut reader, &cancel, &mut backoff)
                        .await
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
                    tracing::warn!(broker = %url, retry_in_ms = wait.as_millis() as u64, "uplink disconnected: {e}");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
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

    /// One connection. `Ok` only when cancelled.
    async fn session(
        &mut self,
        opts: MqttOptions,
        s: &UplinkSettings,
        reader: &mut QueueReader,
        cancel: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<(), String> {
        let mut s = s.clone();
        let (client, mut el): (AsyncClient, EventLoop) =
            AsyncClient::new(opts, usize::from(s.inflight) * 2 + 64);
        // Everything not acknowledged goes again, in order.
        reader.seek(self.queue.first_unacked());
        let mut connected = false;
        let mut batches: VecDeque<(u64, Batch)> = VecDeque::new();
        let mut next_batch_id = 0u64;
        // Published, waiting for the client to tell us its packet id.
        let mut unassigned: VecDeque<u64> = VecDeque::new();
        let mut flights: HashMap<u16, Flight> = HashMap::new();
        let mut in_flight_msgs = 0usize;
        let mut linger_deadline: Option<Instant> = None;
        let (resp_tx, mut resp_rx) = mpsc::channel::<WriteResponse>(64);
        let mut settings_rx = self.settings.clone();
        loop {
            let room = connected && in_flight_msgs < usize::from(s.inflight);
            let wait_data = async {
                match linger_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => self.queue.wait_for(reader.position()).await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = client.try_disconnect();
                    return Ok(());
                }
                _ = settings_rx.changed() => {
                    let new = settings_rx.borrow().clone();
                    if !same_connection(&new, &s) {
                        return Err("broker or credentials changed; reconnecting".into());
                    }
                    // Batching limits apply from the next batch on.
                    s = new;
                }
                Some(resp) = resp_rx.recv() => {
                    if let Some(t) = &s.response_topic {
                        let body = serde_json::to_vec(&resp).unwrap_or_default();
                        let _ = client.try_publish(t.clone(), QoS::AtLeastOnce, false, body);
                        // Not a queue message: no batch waits for its PUBACK.
                        unassigned.push_back(u64::MAX);
                    }
                }
                ev = el.poll() => {
                    let ev = ev.map_err(|e| e.to_string())?;
                    match ev {
                        Event::Incoming(Packet::ConnAck(_)) => {
                            connected = true;
                            *backoff = Duration::from_millis(100);
                            self.stats.connected.store(true, Ordering::Relaxed);
                            tracing::info!("uplink connected");
                            if let (Some(t), Some(_)) = (&s.command_topic, &self.writes) {
                                let _ = client.try_subscribe(t.clone(), QoS::AtLeastOnce);
                            }
                        }
                        Event::Outgoing(Outgoing::Publish(pkid)) => {
                            if let Some(b) = unassigned.pop_front() {
                                if b != u64::MAX {
                                    flights.insert(pkid, Flight { batch: b, sent: Instant::now() });
                                }
                            }
                        }
                        Event::Incoming(Packet::PubAck(ack)) => {
                            let Some(f) = flights.remove(&ack.pkid) else { continue };
                            in_flight_msgs = in_flight_msgs.saturating_sub(1);
                            if !matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers) {
                                self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                                return Err(format!("broker refused a publish: {:?}", ack.reason));
                            }
                            self.stats.latency.observe(f.sent.elapsed());
                            self.stats.messages_acked.fetch_add(1, Ordering::Relaxed);
                            if let Some((_, b)) = batches.iter_mut().find(|(id, _)| *id == f.batch) {
                                b.outstanding -= 1;
                            }
                            // Move the cursor over every leading batch that is complete.
                            let mut acked_to = None;
                            let mut readings = 0;
                            while batches.front().is_some_and(|(_, b)| b.outstanding == 0) {
                                let (_, b) = batches.pop_front().expect("checked");
                                acked_to = Some(b.end_seq);
                                readings += b.readings;
                            }
                            if let Some(end) = acked_to {
                                self.stats.readings_acked.fetch_add(readings, Ordering::Relaxed);
                                self.queue.ack(end, readings).map_err(|e| e.to_string())?;
                            }
                        }
                        Event::Incoming(Packet::Publish(p)) => {
                            if let Some(w) = &self.writes {
                                handle_write(&p.payload, w.clone(), resp_tx.clone());
                            }
                        }
                        Event::Incoming(Packet::Disconnect(d)) => {
                            return Err(format!("broker disconnected us: {:?}", d.reason_code));
                        }
                        _ => {}
                    }
                }
                _ = wait_data, if room => {
                    let available = self.queue.next_seq().saturating_sub(reader.position());
                    if available == 0 {
                        linger_deadline = None;
                        continue;
                    }
                    let full = available as usize >= s.max_readings_per_message;
                    match linger_deadline {
                        None if !full && !s.linger.is_zero() => {
                            linger_deadline = Some(Instant::now() + s.linger);
                            continue;
                        }
                        Some(d) if !full && Instant::now() < d => continue,
                        _ => {}
                    }
                    linger_deadline = None;
                    let free = usize::from(s.inflight) - in_flight_msgs;
                    // Frames can hold many readings (a group of 500 tags is
                    // a whole message): take what fits the publish window so
                    // the client's request channel never overflows on a backlog.
                    let mut window = Window::new(free, usize::from(s.inflight), s.max_readings_per_message);
                    let max_bytes = window.bytes(s.max_bytes_per_message);
                    let records = reader
                        .read_while(READ_FRAMES_MAX, max_bytes, |r| window.admit(r))
                        .map_err(|e| e.to_string())?;
                    if records.is_empty() {
                        continue;
                    }
                    let end_seq = records.last().expect("non-empty").seq + 1;
                    let readings: u64 = records.iter().map(|r| u64::from(r.readings)).sum();
                    let msgs = build_messages(records, s.max_readings_per_message, s.max_bytes_per_message);
                    let id = next_batch_id;
                    next_batch_id += 1;
                    batches.push_back((id, Batch { end_seq, readings, outstanding: msgs.len() }));
                    for (topic, payload, frames) in msgs {
                        client
                            .try_publish(topic, QoS::AtLeastOnce, false, payload)
                            .map_err(|e| format!("publish: {e}"))?;
                        unassigned.push_back(id);
                        in_flight_msgs += 1;
                        self.stats.frames_published.fetch_add(frames as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Frames for one read of the backlog, bounded so the messages they make fit
/// rumqttc's request channel (2 × inflight + 64) on top of what is already in
/// flight (inflight − free): `cap` = (free + inflight) / 2 full messages of
/// readings over at most `cap` topics (each topic's last message may be
/// partly filled), so at most free + inflight messages. Reads stay large
/// (full messages) even when only one slot just freed up.
struct Window {
    cap: usize,
    budget: usize,
    readings: usize,
    topics: Vec<String>,
}

impl Window {
    fn new(free: usize, inflight: usize, max_readings: usize) -> Self {
        let cap = ((free + inflight) / 2).max(1);
        Self {
            cap,
            budget: cap * max_readings.max(1),
            readings: 0,
            topics: Vec::new(),
        }
    }

    /// Bytes the window's `cap` full messages may hold, bounded so a long
    /// backlog does not pull megabytes into memory at once.
    fn bytes(&self, max_bytes_per_message: usize) -> usize {
        (self.cap * max_bytes_per_message).min(READ_BYTES_MAX)
    }

    /// Take `r` into the window if it fits.
    fn admit(&mut self, r: &Record) -> bool {
        let new_topic = !self.topics.contains(&r.topic);
        if self.readings + r.readings as usize > self.budget
            || (new_topic && self.topics.len() >= self.cap)
        {
            return false;
        }
        self.readings += r.readings as usize;
        if new_topic {
            self.topics.push(r.topic.clone());
        }
        true
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

/// Group records per topic, keeping their order, into messages within the
/// limits. Returns (topic, payload, frames).
pub fn build_messages(
    records: Vec<Record>,
    max_readings: usize,
    max_bytes: usize,
) -> Vec<(String, Vec<u8>, usize)> {
    let mut order: Vec<String> = Vec::new();
    let mut by_topic: HashMap<String, Vec<Record>> = HashMap::new();
    for r in records {
        if !by_topic.contains_key(&r.topic) {
            order.push(r.topic.clone());
        }
        by_topic.entry(r.topic.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for topic in order {
        let recs = by_topic.remove(&topic).unwrap_or_default();
        let mut payload = Vec::with_capacity(max_bytes.min(1 << 20));
        let mut readings = 0usize;
        let mut frames = 0usize;
        for r in recs {
            let would = payload.len() + r.frame.len() + 2;
            if frames > 0
                && (readings + r.readings as usize > max_readings || would + 2 > max_bytes)
            {
                payload.extend_from_slice(b"]}");
                out.push((topic.clone(), std::mem::take(&mut payload), frames));
                readings = 0;
                frames = 0;
            }
            payload.extend_from_slice(if frames == 0 { b"{\"frames\":[" } else { b"," });
            payload.extend_from_slice(&r.frame);
            readings += r.readings as usize;
            frames += 1;
        }
        if frames > 0 {
            payload.extend_from_slice(b"]}");
            out.push((topic, payload, frames));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::message::UplinkMessage;

    fn rec(seq: u64, topic: &str) -> Record {
        Record {
            seq,
            readings: 2,
            topic: topic.into(),
            frame: format!("{{\"seq\":{seq},\"timestamp\":1,\"values\":{{\"a\":1,\"b\":2}}}}")
                .into_bytes(),
        }
    }

    #[test]
    fn a_backlog_of_big_frames_is_cut_to_the_free_window() {
        let big = |seq: u64, topic: &str| Record {
            readings: 500,
            ..rec(seq, topic)
        };
        let taken = |recs: &[Record], free, max| {
            let mut w = Window::new(free, free, max);
            recs.iter().take_while(|r| w.admit(r)).count()
        };
        let recs: Vec<Record> = (0..100).map(|i| big(i, "a")).collect();
        assert_eq!(taken(&recs, 8, 500), 8);
        assert_eq!(build_messages(recs[..8].to_vec(), 500, 1 << 20).len(), 8);
        // Many topics of small frames: bounded by topics too.
        let recs: Vec<Record> = (0..100).map(|i| rec(i, &format!("t{i}"))).collect();
        assert_eq!(taken(&recs, 8, 500), 8);
    }

    #[test]
    fn messages_group_by_topic_in_order_within_limits() {
        let recs = vec![
            rec(1, "a"),
            rec(2, "b"),
            rec(3, "a"),
            rec(4, "a"),
            rec(5, "b"),
        ];
        let msgs = build_messages(recs, 4, 1 << 20);
        let seqs: Vec<(String, Vec<u64>)> = msgs
            .iter()
            .map(|(t, p, _)| {
                let m: UplinkMessage = serde_json::from_slice(p).unwrap();
                (t.clone(), m.frames.iter().map(|f| f.seq).collect())
            })
            .collect();
        assert_eq!(
            seqs,
            vec![
                ("a".into(), vec![1, 3]),
                ("a".into(), vec![4]),
                ("b".into(), vec![2, 5]),
            ]
        );
        // Byte limit: each frame alone.
        let msgs = build_messages(vec![rec(1, "a"), rec(2, "a")], 100, 60);
        assert_eq!(msgs.len(), 2);
    }

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
