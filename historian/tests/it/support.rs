//! What the historian's tests share beyond `weir-testkit` (which starts
//! Mosquitto, creates the PostgreSQL database and waits with deadlines): the
//! broker and database as the historian needs them, a QoS 1 publisher, the
//! sink binary, and the readings we send and expect back.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use weir_crds::message::{Frame, TagValue, UplinkMessage};
use weir_testkit::{free_port, Proc};

pub use weir_testkit::wait::wait_until_every;
pub use weir_testkit::{wait_until, Mosquitto, TestDb};

/// Counting rows opens a connection each time: conditions that count are
/// checked at this pace, not faster.
pub const POLL: Duration = Duration::from_millis(50);

/// A database of the test's own (dropped at the end).
pub async fn test_db() -> TestDb {
    TestDb::create("weir_hist").await
}

/// Rows in `readings`; 0 before the sink created the table.
pub async fn count(db: &TestDb) -> i64 {
    let c = db.client().await;
    match c.query_one("SELECT count(*) FROM readings", &[]).await {
        Ok(r) => r.get(0),
        Err(_) => 0,
    }
}

/// A Mosquitto of our own with persistence, so queued QoS 1 messages of the
/// historian's persistent session survive a restart, and no limit on what it
/// queues for the session while the sink is away.
pub async fn broker() -> Mosquitto {
    Mosquitto::builder()
        .persistent()
        .config("max_queued_messages 0")
        .config("max_queued_bytes 0")
        .start()
        .await
}

/// Publish with QoS 1 and return once the broker acknowledged every message.
pub async fn publish_all(port: u16, id: &str, messages: &[(String, Vec<u8>)]) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    opts.set_inflight(100);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 200);
    let to_send: Vec<_> = messages.to_vec();
    let sender = tokio::spawn(async move {
        for (topic, payload) in to_send {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < messages.len() {
        match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher lost the broker: {e}"),
            Err(_) => panic!("publisher: no progress for 30 s ({acked} acked)"),
        }
    }
    let client = sender.await.unwrap();
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                _ => {}
            }
        }
    })
    .await;
}

/// Readings we send: `gateways` gateways, frames of `tags` readings (one of
/// them a text, one an error), `frames_per_msg` frames per message.
pub struct Plan {
    pub tenant: String,
    pub gateways: usize,
    pub tags: usize,
    pub frames_per_msg: usize,
    pub base_ms: i64,
}

/// What one reading must look like in the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub ts_ms: i64,
    pub value: Option<f64>,
    pub value_text: Option<String>,
    pub quality: i32,
    pub device: String,
}

impl Plan {
    pub fn new(tenant: &str) -> Plan {
        Plan {
            tenant: tenant.into(),
            gateways: 4,
            tags: 50,
            frames_per_msg: 4,
            base_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                - 3_600_000,
        }
    }

    pub fn readings_per_msg(&self) -> usize {
        self.tags * self.frames_per_msg
    }

    /// Message `i` (0-based): gateway `i % gateways`, frames with seqs that
    /// continue that gateway's numbering.
    pub fn message(&self, i: usize) -> (String, Vec<u8>) {
        let gw = i % self.gateways;
        let round = i / self.gateways;
        let device = format!("dev-{}", round % 3);
        let topic = format!("weir/{}/gw-{gw}/{device}/fast", self.tenant);
        let frames = (0..self.frames_per_msg)
            .map(|f| {
                let seq = (round * self.frames_per_msg + f) as u64 + 1;
                let mut frame = Frame {
                    seq,
                    timestamp: self.ts(seq),
                    values: Default::default(),
                    errors: Default::default(),
                };
                for t in 0..self.tags {
                    let tag = format!("tag{t:03}");
                    match t {
                        0 => {
                            frame.errors.insert(tag, 1001);
                        }
                        1 => {
                            frame
                                .values
                                .insert(tag, TagValue::Text(format!("state-{seq}")));
                        }
                        _ => {
                            frame.values.insert(tag, TagValue::Float(value(gw, seq, t)));
                        }
                    }
                }
                frame
            })
            .collect();
        let payload = serde_json::to_vec(&UplinkMessage { frames }).unwrap();
        (topic, payload)
    }

    fn ts(&self, seq: u64) -> i64 {
        self.base_ms + seq as i64 * 7
    }

    pub fn messages(&self, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
        range.map(|i| self.message(i)).collect()
    }

    /// Expected rows of messages `0..n`, keyed by (gateway, seq, tag).
    pub fn expected(&self, n: usize) -> HashMap<(String, i64, String), Expected> {
        let mut out = HashMap::new();
        for i in 0..n {
            let gw = i % self.gateways;
            let round = i / self.gateways;
            let device = format!("dev-{}", round % 3);
            for f in 0..self.frames_per_msg {
                let seq = (round * self.frames_per_msg + f) as u64 + 1;
                for t in 0..self.tags {
                    let (value, value_text, quality) = match t {
                        0 => (None, None, 1001),
                        1 => (None, Some(format!("state-{seq}")), 0),
                        _ => (Some(value(gw, seq, t)), None, 0),
                    };
                    out.insert(
                        (format!("gw-{gw}"), seq as i64, format!("tag{t:03}")),
                        Expected {
                            ts_ms: self.ts(seq),
                            value,
                            value_text,
                            quality,
                            device: device.clone(),
                        },
                    );
                }
            }
        }
        out
    }
}

/// A value with a fraction, so float round trips are really checked.
fn value(gw: usize, seq: u64, tag: usize) -> f64 {
    (gw as f64) * 1e6 + (seq as f64) * 1.25 + (tag as f64) / 3.0
}

/// Compare the whole table with what was sent.
pub async fn assert_table_matches(
    db: &TestDb,
    tenant: &str,
    expected: &HashMap<(String, i64, String), Expected>,
) {
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT gateway, seq, tag, ts, value, value_text, quality, device, tenant FROM readings",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        expected.len(),
        "the table must hold every reading exactly once"
    );
    for r in &rows {
        let key: (String, i64, String) = (r.get(0), r.get(1), r.get(2));
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected row {key:?}"));
        let ts: SystemTime = r.get(3);
        let ts_ms = ts.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let got = Expected {
            ts_ms,
            value: r.get(4),
            value_text: r.get(5),
            quality: r.get(6),
            device: r.get(7),
        };
        assert_eq!(&got, want, "row {key:?} differs from what was sent");
        assert_eq!(r.get::<_, &str>(8), tenant);
    }
}

/// The `weir-historian` binary as a child process, logging to
/// `<log_dir>/<name>.log` (printed when the test fails).
pub struct Sink {
    proc: Proc,
    pub metrics_port: u16,
}

impl Sink {
    pub fn start(
        broker_url: &str,
        db_url: &str,
        tenant: &str,
        client_id: &str,
        log_dir: &Path,
        name: &str,
    ) -> Sink {
        Sink::start_with(broker_url, db_url, tenant, client_id, log_dir, name, &[])
    }

    /// [`Sink::start`] with more command-line flags.
    pub fn start_with(
        broker_url: &str,
        db_url: &str,
        tenant: &str,
        client_id: &str,
        log_dir: &Path,
        name: &str,
        extra: &[&str],
    ) -> Sink {
        let metrics_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-historian"));
        cmd.env("RUST_LOG", "info")
            .args(["--mqtt-url", broker_url])
            .args(["--database-url", db_url])
            .args(["--tenant", tenant])
            .args(["--client-id", client_id])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--batch-rows", "5000", "--linger-ms", "20"])
            .args(extra);
        let proc = Proc::spawn(name, &mut cmd, log_dir).expect("start weir-historian");
        Sink { proc, metrics_port }
    }

    /// A metric's value from `/metrics` (None while the endpoint is not up).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric(self.metrics_port, name).await
    }

    pub async fn wait_subscribed(&self) {
        wait_until(
            Duration::from_secs(30),
            "the sink to subscribe",
            || async move { self.metric("weir_historian_mqtt_connected").await == Some(1.0) },
        )
        .await;
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.proc.terminate()
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Read one unlabelled metric from a Prometheus text endpoint.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
