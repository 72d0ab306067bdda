//! Test helpers: a private Mosquitto per test (weir-testkit's, configured to
//! lose nothing) and a subscriber that checks what arrives.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use weir_crds::message::{parse_topic, TagValue, UplinkMessage, WriteRequest, WriteResponse};
pub use weir_testkit::{free_port, Mosquitto};

/// A Mosquitto of our own on a free port that keeps the test subscriber's
/// persistent session and everything queued for it across a restart
/// (`stop`, then `restart_blocking`), with no limit on queued or in-flight
/// messages: the delivery tests count every reading.
pub fn broker() -> Mosquitto {
    Mosquitto::builder()
        .persistent()
        .config("autosave_interval 0")
        .config("max_queued_messages 0")
        .config("max_queued_bytes 0")
        .config("max_inflight_messages 0")
        .start_blocking()
}

/// A device's frames by seq: (timestamp, values).
pub type DeviceFrames = BTreeMap<u64, (i64, BTreeMap<String, TagValue>)>;

/// Everything a subscriber saw, per device.
#[derive(Default, Debug)]
pub struct Seen {
    /// device → (seq → (timestamp, values)) of first arrivals.
    pub frames: HashMap<String, DeviceFrames>,
    /// device → seqs in first-arrival order.
    pub arrival: HashMap<String, Vec<u64>>,
    pub duplicates: u64,
    pub readings: u64,
    pub messages: u64,
    pub other: Vec<(String, Vec<u8>)>,
}

/// A persistent-session QoS 1 subscriber to `weir/#` that keeps going across
/// broker restarts.
pub struct Subscriber {
    pub seen: Arc<Mutex<Seen>>,
    pub client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn start(port: u16, filter: &str) -> Self {
        let mut o = MqttOptions::new(format!("weir-test-sub-{}", free_port()), "127.0.0.1", port);
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(256 * 1024 * 1024, 256 * 1024 * 1024);
        o.set_inflight(1000);
        let (client, mut el) = AsyncClient::new(o, 1000);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let c = client.clone();
        let filter = filter.to_string();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = ready_tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut g = s.lock().unwrap();
                        g.messages += 1;
                        let topic = p.topic.clone();
                        let Some(parts) = parse_topic(&topic) else {
                            g.other.push((topic, p.payload.to_vec()));
                            continue;
                        };
                        let device = parts.device.to_string();
                        let m: UplinkMessage = serde_json::from_slice(&p.payload)
                            .expect("payload is an UplinkMessage");
                        for f in m.frames {
                            let n = (f.values.len() + f.errors.len()) as u64;
                            let entry = g.frames.entry(device.clone()).or_default();
                            if entry.contains_key(&f.seq) {
                                g.duplicates += n;
                                continue;
                            }
                            entry.insert(f.seq, (f.timestamp, f.values));
                            g.arrival.entry(device.clone()).or_default().push(f.seq);
                            g.readings += n;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("subscriber subscribed")
            .unwrap();
        Subscriber { seen, client, task }
    }

    /// Publish a write command on `topic` until the agent's answer with the
    /// request's correlation id arrives (the agent subscribes only once it
    /// is connected), for at most 20 s. Subscribe to the answers first.
    pub async fn write_until_answered(&self, topic: &str, request: &WriteRequest) -> WriteResponse {
        let body = serde_json::to_vec(request).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, body.clone())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let found = self
                .seen
                .lock()
                .unwrap()
                .other
                .iter()
                .filter_map(|(_, p)| serde_json::from_slice::<WriteResponse>(p).ok())
                .find(|r| r.correlation_id == request.correlation_id);
            if let Some(r) = found {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no answer to the write {request:?}"
            );
        }
    }

    pub fn readings(&self) -> u64 {
        self.seen.lock().unwrap().readings
    }

    /// Wait until `pred` holds, or fail after `timeout` with `what`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Seen) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.seen.lock().unwrap()) {
                return;
            }
            if Instant::now() > deadline {
                let g = self.seen.lock().unwrap();
                panic!(
                    "timed out waiting for {what}: {} readings, {} duplicates, {} messages",
                    g.readings, g.duplicates, g.messages
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
