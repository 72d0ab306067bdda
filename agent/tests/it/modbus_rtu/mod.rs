//! Modbus RTU against real peers: pymodbus serving RTU frames over TCP
//! (`modbusRtuOverTcp`, as a serial device server) and on one end of a
//! socat pty pair with the agent on the other (`modbusRtu`). Every data
//! type and byte order, write-back, and two unit ids on one bus with one
//! of them absent.

mod mqtt;
pub mod peer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peer::{require_peers, Peer, PtyPair};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use weir_agent::adapters::{Adapters, HealthTable};
use weir_agent::sample::Sample;
use weir_crds::agent_api::DeviceState;
use weir_crds::gateway::{validate_config, GatewayConfig};
use weir_crds::message::{ErrorCode, TagValue, WriteRequest};

/// Where the agent finds the bus.
enum Line {
    /// RTU frames over TCP on 127.0.0.1:port.
    Tcp(u16),
    /// A serial port.
    Serial(PathBuf),
}

/// The line, with pymodbus on its far end (and the pty pair, if any).
struct Bus {
    line: Line,
    peer: Peer,
    _pty: Option<PtyPair>,
}

impl Bus {
    fn rtu_over_tcp() -> Bus {
        require_peers();
        let port = weir_testkit::free_port();
        Bus {
            peer: Peer::tcp(port),
            line: Line::Tcp(port),
            _pty: None,
        }
    }

    fn serial() -> Bus {
        require_peers();
        let pty = PtyPair::start();
        Bus {
            peer: Peer::serial(&pty.peer_end, 9600),
            line: Line::Serial(pty.agent_end.clone()),
            _pty: Some(pty),
        }
    }

    /// A device on this bus; `timing` holds timeoutMs, retries, maxBackoffMs.
    fn device(&self, name: &str, interval_ms: u32, timing: Value, tags: Value) -> Value {
        let mut d = json!({
            "name": name,
            "groups": [{"name": "g", "intervalMs": interval_ms, "tags": tags}],
        });
        let mut settings = timing;
        match &self.line {
            Line::Tcp(port) => {
                settings["host"] = json!("127.0.0.1");
                settings["port"] = json!(port);
                d["adapter"] = json!("modbusRtuOverTcp");
                d["modbus"] = settings;
            }
            Line::Serial(path) => {
                settings["port"] = json!(path.display().to_string());
                settings["baudRate"] = json!(9600);
                d["adapter"] = json!("modbusRtu");
                d["serial"] = settings;
            }
        }
        d
    }
}

/// The adapters of one config and every sample they sent.
struct Running {
    adapters: Adapters,
    health: Arc<HealthTable>,
    samples: Arc<Mutex<Vec<(Instant, Sample)>>>,
}

impl Running {
    fn start(devices: Vec<Value>) -> Running {
        let config: GatewayConfig = serde_json::from_value(json!({ "devices": devices })).unwrap();
        if let Err(errors) = validate_config(&config) {
            panic!("the test's config is invalid: {errors:?}");
        }
        let (tx, mut rx) = mpsc::channel(1024);
        let health = Arc::new(HealthTable::default());
        let adapters = Adapters::start(&config, tx, health.clone());
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                sink.lock().unwrap().push((Instant::now(), s));
            }
        });
        Running {
            adapters,
            health,
            samples,
        }
    }

    /// Wait for a sample of `device` that `ok` accepts; return it.
    async fn wait_sample(&self, device: &str, what: &str, ok: impl Fn(&Sample) -> bool) -> Sample {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            {
                let g = self.samples.lock().unwrap();
                if let Some((_, s)) = g
                    .iter()
                    .rev()
                    .find(|(_, s)| s.schema.device == device && ok(s))
                {
                    return s.clone();
                }
            }
            if Instant::now() > deadline {
                let g = self.samples.lock().unwrap();
                let last = g.iter().rev().find(|(_, s)| s.schema.device == device);
                panic!(
                    "{device}: no sample with {what} within 15 s; last: {:?}; health: {:?}",
                    last.map(|(_, s)| (&s.values, &s.errors)),
                    self.health.snapshot()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn state(&self, device: &str) -> (DeviceState, Option<String>) {
        let h = self.health.snapshot();
        let d = h
            .iter()
            .find(|d| d.name == device)
            .expect("device in health");
        (d.state, d.last_error.clone())
    }

    async fn stop(self) {
        self.adapters.stop().await;
    }
}

fn values(s: &Sample) -> BTreeMap<String, TagValue> {
    s.values
        .iter()
        .map(|(i, v)| (s.schema.tags[*i as usize].clone(), v.clone()))
        .collect()
}

fn timing(timeout_ms: u32, retries: u32, max_backoff_ms: u32) -> Value {
    json!({"timeoutMs": timeout_ms, "retries": retries, "maxBackoffMs": max_backoff_ms})
}

/// Compare what the agent read with what pymodbus holds, tag by tag.
fn assert_matches(got: &BTreeMap<String, TagValue>, expected: &serde_json::Map<String, Value>) {
    let mut bad = Vec::new();
    for (name, want) in expected {
        let ok = match (got.get(name), want) {
            // pymodbus gives a float32 register's exact binary value
            // (123.45600128173828); the agent reads it as the f32's
            // shortest decimal (123.456), which is what a user sees.
            (Some(TagValue::Float(g)), Value::Number(w)) if name.starts_with("float32") => w
                .as_f64()
                .is_some_and(|w| (w as f32).to_string() == g.to_string()),
            (Some(TagValue::Float(g)), Value::Number(w)) if w.is_f64() => {
                let w = w.as_f64().unwrap();
                (g - w).abs() <= w.abs() * 1e-9
            }
            (Some(TagValue::Int(g)), Value::Number(w)) => w.as_i64() == Some(*g),
            (Some(TagValue::Bool(g)), Value::Bool(w)) => g == w,
            (Some(TagValue::Text(g)), Value::String(w)) => g == w,
            _ => false,
        };
        if !ok {
            bad.push(format!("{name}: got {:?}, want {want}", got.get(name)));
        }
    }
    assert!(
        bad.is_empty(),
        "values differ from pymodbus:\n  {}",
        bad.join("\n  ")
    );
}

async fn reads_every_type_and_order(bus: Bus) {
    let expected = bus.peer.expected();
    assert!(
        expected.len() >= 30,
        "the table covers every type and order"
    );
    let run = Running::start(vec![bus.device(
        "meter",
        200,
        timing(1000, 1, 1000),
        bus.peer.tags(),
    )]);
    let s = run
        .wait_sample("meter", "every tag read", |s| s.errors.is_empty())
        .await;
    assert_matches(&values(&s), &expected);
    assert_eq!(run.state("meter").0, DeviceState::Ok);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_reads_every_type_and_byte_order() {
    reads_every_type_and_order(Bus::rtu_over_tcp()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rtu_reads_every_type_and_byte_order() {
    reads_every_type_and_order(Bus::serial()).await;
}

/// Writes through `Adapters::write` (what `cmd/write` calls): each is
/// answered ok, reaches pymodbus as the expected registers, and the new
/// value is read back.
async fn write_back(bus: Bus) {
    let tags = json!([
        {"name": "sp_f32", "address": "1!400301#LB", "dataType": "float32", "attributes": ["read", "write"]},
        {"name": "sp_i16", "address": "1!400310", "dataType": "int16", "attributes": ["read", "write"]},
        {"name": "flag", "address": "1!400311.3", "dataType": "bit", "attributes": ["read", "write"]},
        {"name": "pump", "address": "1!000010", "dataType": "bool", "attributes": ["read", "write"]},
        {"name": "scaled", "address": "1!400312", "dataType": "uint16", "scale": 0.1, "attributes": ["read", "write"]},
        {"name": "ro", "address": "1!400313", "dataType": "uint16"}
    ]);
    let run = Running::start(vec![bus.device("vfd", 100, timing(1000, 1, 1000), tags)]);
    run.wait_sample("vfd", "a first reading", |s| s.errors.is_empty())
        .await;
    let write = |tag: &str, value: TagValue| WriteRequest {
        correlation_id: format!("w-{tag}"),
        device: "vfd".into(),
        tag: tag.into(),
        value,
    };
    for (tag, v) in [
        ("sp_f32", TagValue::Float(12.5)),
        ("sp_i16", TagValue::Int(-7)),
        ("flag", TagValue::Bool(true)),
        ("pump", TagValue::Bool(true)),
        ("scaled", TagValue::Float(42.3)),
    ] {
        let r = run.adapters.write(write(tag, v)).await;
        assert!(r.ok, "write {tag}: {:?}", r.error);
        assert_eq!(r.correlation_id, format!("w-{tag}"));
    }
    let refused = run.adapters.write(write("ro", TagValue::Int(1))).await;
    assert!(!refused.ok);
    assert!(refused.error.unwrap().contains("not writable"));

    // What pymodbus received: 12.5f32 is 0x4148_0000, #LB puts the low
    // word first; the bit write keeps the register's other bits (all 0).
    let writes = bus.peer.writes();
    let find = |addr: u64| {
        writes
            .iter()
            .find(|w| w["address"] == addr)
            .unwrap_or_else(|| panic!("no write at {addr} in {writes:?}"))
            .clone()
    };
    assert_eq!(find(300)["registers"], json!([0x0000, 0x4148]));
    assert_eq!(find(309)["registers"], json!([0xFFF9]));
    assert_eq!(find(310)["registers"], json!([0b1000]));
    assert_eq!(find(9)["bits"][0], json!(true));
    assert_eq!(find(311)["registers"], json!([423]));
    assert!(writes.iter().all(|w| w["unit"] == 1));

    let s = run
        .wait_sample("vfd", "the written values", |s| {
            values(s).get("sp_i16") == Some(&TagValue::Int(-7))
        })
        .await;
    let v = values(&s);
    assert_eq!(v["sp_f32"], TagValue::Float(12.5));
    assert_eq!(v["flag"], TagValue::Bool(true));
    assert_eq!(v["pump"], TagValue::Bool(true));
    // Samples carry raw values; the pipeline applies the tag's scale.
    assert_eq!(v["scaled"], TagValue::Int(423));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_write_back_lands_and_is_answered() {
    write_back(Bus::rtu_over_tcp()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rtu_write_back_lands_and_is_answered() {
    write_back(Bus::serial()).await;
}

/// Unit 1 answers, unit 2 is absent; three devices share the bus: one on
/// unit 1, one on unit 2, and one with tags on both. Unit 2's tags carry
/// the timeout code and its device is down; the mixed device is degraded
/// and keeps reading unit 1; unit 1 keeps most of its poll rate: unit 2
/// costs one 200 ms timeout per back-off period (up to 1.6 s), not one per
/// 100 ms poll.
async fn absent_unit_does_not_starve_the_bus(bus: Bus) {
    let present = json!([
        {"name": "flow", "address": "1!400001#B", "dataType": "int16"},
        {"name": "total", "address": "1!400007#BB", "dataType": "int32"}
    ]);
    let absent = json!([{"name": "level", "address": "2!400001", "dataType": "uint16"}]);
    let mixed = json!([
        {"name": "flow", "address": "1!400001#B", "dataType": "int16"},
        {"name": "level", "address": "2!400001", "dataType": "uint16"}
    ]);
    let run = Running::start(vec![
        // Unit 1's own timeout is generous, so a slow moment of a loaded
        // machine is not taken for starvation.
        bus.device("meter", 100, timing(1000, 0, 1600), present),
        bus.device("analyser", 100, timing(200, 0, 1600), absent),
        bus.device("mixed", 100, timing(200, 0, 1600), mixed),
    ]);
    let timeout = ErrorCode::Timeout as i32;
    run.wait_sample("analyser", "the timeout code", |s| {
        s.errors == vec![(0, timeout)]
    })
    .await;
    run.wait_sample("meter", "both tags read", |s| {
        s.errors.is_empty() && s.values.len() == 2
    })
    .await;
    // Let unit 2's back-off grow to its ceiling, then measure unit 1.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = Instant::now();
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    let count = |device: &str, good: bool| {
        let g = run.samples.lock().unwrap();
        g.iter()
            .filter(|(at, s)| *at >= from && s.schema.device == device)
            .filter(|(_, s)| s.errors.is_empty() == good)
            .count()
    };
    let meter_ok = count("meter", true);
    let meter_bad = count("meter", false);
    let analyser_bad = count("analyser", false);
    let analyser_ok = count("analyser", true);
    // The mixed device: unit 1's tag read, unit 2's tag the timeout code.
    let mixed_split = {
        let g = run.samples.lock().unwrap();
        g.iter()
            .filter(|(at, s)| *at >= from && s.schema.device == "mixed")
            .filter(|(_, s)| s.errors == vec![(1, timeout)] && s.values.len() == 1)
            .count()
    };
    // 40 polls in 4 s at 100 ms; at most 3 timeouts of 200 ms delay them.
    assert!(
        meter_ok >= 28,
        "unit 1 read only {meter_ok} times in {window:?} (100 ms interval) beside an absent unit"
    );
    assert_eq!(
        meter_bad, 0,
        "unit 1 must not fail because unit 2 is absent"
    );
    assert!(
        analyser_bad > 0 && analyser_ok == 0,
        "unit 2: {analyser_bad} error samples, {analyser_ok} good"
    );
    assert!(
        mixed_split >= 28,
        "the mixed device read unit 1 only {mixed_split} times in {window:?}"
    );
    assert_eq!(run.state("meter").0, DeviceState::Ok);
    assert_eq!(run.state("mixed").0, DeviceState::Degraded);
    let (state, err) = run.state("analyser");
    assert_eq!(state, DeviceState::Down, "{err:?}");
    assert!(err.is_some_and(|e| e.contains("unit 2")));
    eprintln!("unit 1: {meter_ok} good polls in {window:?} beside absent unit 2 ({analyser_bad} error samples; mixed device {mixed_split} polls)");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_absent_unit_does_not_starve_the_bus() {
    absent_unit_does_not_starve_the_bus(Bus::rtu_over_tcp()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rtu_absent_unit_does_not_starve_the_bus() {
    absent_unit_does_not_starve_the_bus(Bus::serial()).await;
}

/// A serial port that is not there: the device is down with a message
/// naming the port, and its tags carry the disconnected code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_serial_port_is_reported() {
    let d = json!({
        "name": "rs485", "adapter": "modbusRtu",
        "serial": {"port": "/dev/weir-no-such-port", "timeoutMs": 100, "retries": 0, "maxBackoffMs": 200},
        "groups": [{"name": "g", "intervalMs": 100, "tags": [
            {"name": "flow", "address": "1!400001", "dataType": "uint16"}]}]
    });
    let run = Running::start(vec![d]);
    let code = ErrorCode::Disconnected as i32;
    run.wait_sample("rs485", "the disconnected code", |s| {
        s.errors == vec![(0, code)]
    })
    .await;
    let (state, err) = run.state("rs485");
    assert_eq!(state, DeviceState::Down);
    let err = err.unwrap();
    assert!(
        err.contains("opening serial port /dev/weir-no-such-port"),
        "{err}"
    );
    run.stop().await;
}

/// `interFrameDelayMs` keeps the line silent between frames: with 50 ms
/// the bus completes at most one request per 50 ms however fast the group
/// asks (10 ms) and the peer answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rtu_keeps_the_inter_frame_delay() {
    let bus = Bus::serial();
    let mut d = bus.device(
        "meter",
        10,
        timing(1000, 0, 1000),
        json!([{"name": "flow", "address": "1!400001#B", "dataType": "int16"}]),
    );
    d["serial"]["interFrameDelayMs"] = json!(50);
    let run = Running::start(vec![d]);
    run.wait_sample("meter", "a reading", |s| s.errors.is_empty())
        .await;
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = {
        let g = run.samples.lock().unwrap();
        g.iter().filter(|(at, _)| *at >= from).count()
    };
    assert!(
        (10..=41).contains(&polls),
        "{polls} polls in 2 s with a 50 ms inter-frame delay (want at most 40, and the line not stalled)"
    );
    run.stop().await;
}

/// A new config closes the old bus before opening the port again (the
/// port is opened exclusively), so readings go on after a swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rtu_port_is_reopened_after_a_config_swap() {
    let bus = Bus::serial();
    let tags = json!([{"name": "flow", "address": "1!400001#B", "dataType": "int16"}]);
    for round in 0..2 {
        let run = Running::start(vec![bus.device(
            "meter",
            100,
            timing(1000, 0, 1000),
            tags.clone(),
        )]);
        let s = run
            .wait_sample("meter", &format!("a reading in config {round}"), |s| {
                s.errors.is_empty()
            })
            .await;
        assert_eq!(values(&s)["flow"], TagValue::Int(-12345));
        run.stop().await;
    }
}

/// RTU over TCP fails over like Modbus TCP: nothing listens on `host`
/// (127.0.0.2), so the bus switches to `backupHost` (pymodbus on 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_fails_over_to_the_backup_host() {
    let bus = Bus::rtu_over_tcp();
    let mut d = bus.device(
        "meter",
        100,
        timing(500, 1, 400),
        json!([{"name": "flow", "address": "1!400001#B", "dataType": "int16"}]),
    );
    d["modbus"]["host"] = json!("127.0.0.2");
    d["modbus"]["backupHost"] = json!("127.0.0.1");
    let run = Running::start(vec![d]);
    let s = run
        .wait_sample("meter", "a reading from the backup host", |s| {
            s.errors.is_empty()
        })
        .await;
    assert_eq!(values(&s)["flow"], TagValue::Int(-12345));
    run.stop().await;
}
