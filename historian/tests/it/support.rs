//! What the historian's tests share: a throw-away PostgreSQL database,
//! a Mosquitto broker of our own, a QoS 1 publisher, the sink binary, and the
//! readings we send and expect back.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use weir_crds::message::{Frame, TagValue, UplinkMessage};

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `cond` every 50 ms until it holds; panic with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL must run at 127.0.0.1:5432 (trust auth, user postgres): {e}")
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A database of its own, dropped (with its connections) at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("weir_hist_{:016x}", rand::random::<u64>());
        pg(PG_ADMIN_URL)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        pg(&self.url).await
    }

    pub async fn count(&self) -> i64 {
        let c = self.client().await;
        // Before the sink migrated there is no table yet.
        match c.query_one("SELECT count(*) FROM readings", &[]).await {
            Ok(r) => r.get(0),
            Err(_) => 0,
        }
    }

    /// Terminate every other session on this database; returns how many.
    pub async fn terminate_backends(&self) -> i64 {
        let c = pg(PG_ADMIN_URL).await;
        c.query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&self.name],
        )
        .await
        .unwrap()
        .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside of async; use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) =
                    tokio_postgres::connect(PG_ADMIN_URL, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A Mosquitto of our own with persistence, so queued QoS 1 messages of the
/// historian's persistent session survive a restart.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    pub async fn start() -> Broker {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "Mosquitto must be installed at {MOSQUITTO} for the historian tests"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 # as root Mosquitto would switch to user `mosquitto`, which\n\
                 # cannot write its persistence file into our temp dir\n\
                 user root\n\
                 log_dest stderr\n\
                 persistence true\n\
                 persistence_location {}/\n\
                 # the historian's session must queue everything while it is away\n\
                 max_queued_messages 0\n\
                 max_queued_bytes 0\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut b = Broker {
            port,
            dir,
            child: None,
        };
        b.spawn().await;
        b
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            "mosquitto to listen",
            Duration::from_secs(10),
            || async move { TcpStream::connect(("127.0.0.1", port)).is_ok() },
        )
        .await;
    }

    /// Stop gracefully (Mosquitto writes its persistence file) and start again.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

/// The `weir-historian` binary as a child process, logging to a file.
pub struct Sink {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Sink {
    pub fn start(
        broker_url: &str,
        db_url: &str,
        tenant: &str,
        client_id: &str,
        log: PathBuf,
    ) -> Sink {
        let metrics_port = free_port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir-historian"))
            .env("RUST_LOG", "info")
            .args(["--mqtt-url", broker_url])
            .args(["--database-url", db_url])
            .args(["--tenant", tenant])
            .args(["--client-id", client_id])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--batch-rows", "5000", "--linger-ms", "20"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start weir-historian");
        Sink {
            child,
            metrics_port,
            log,
        }
    }

    /// A metric's value from `/metrics` (None while the endpoint is not up).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric(self.metrics_port, name).await
    }

    pub async fn wait_subscribed(&self) {
        wait_for(
            "the sink to subscribe",
            Duration::from_secs(30),
            || async move { self.metric("weir_historian_mqtt_connected").await == Some(1.0) },
        )
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
