//! Modbus RTU polls/s: the agent's RTU adapter reading pymodbus over a
//! socat pty pair (and, for comparison, RTU frames over TCP).
//!
//! A pty ignores the baud rate: bytes cross it at memory speed, so the
//! figures measure the agent's own pacing (its inter-frame delay) and how
//! fast pymodbus answers, not a serial line's speed. The time the same
//! frames would take on a real line at the configured baud rate is printed
//! beside them as a computed figure.
//!
//! `cargo bench -p weir-agent --bench rtu` (needs python3 with pymodbus and
//! pyserial, and socat)

#[path = "../tests/it/modbus_rtu/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use peer::{require_peers, Peer, PtyPair};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use weir_agent::adapters::Adapters;
use weir_crds::gateway::GatewayConfig;

/// Tags per poll; `maxRegistersPerRequest: 1` makes each its own request.
const REQUESTS_PER_POLL: usize = 20;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

struct Case {
    name: &'static str,
    /// `serial` or `modbus` settings without timing.
    settings: Value,
    adapter: &'static str,
    /// Silence the agent keeps between frames, for the output.
    gap_ms: f64,
    /// Baud rate the computed line time is for (none over TCP).
    baud: Option<u32>,
}

struct Figures {
    good_polls: usize,
    failed_polls: usize,
    secs: f64,
}

async fn measure(case: &Case) -> Figures {
    let tags: Vec<Value> = (0..REQUESTS_PER_POLL)
        .map(|i| json!({"name": format!("r{i}"), "address": format!("1!4{:05}", 2 * i + 1), "dataType": "int16"}))
        .collect();
    let mut settings = case.settings.clone();
    settings["timeoutMs"] = json!(1000);
    settings["retries"] = json!(0);
    settings["maxRegistersPerRequest"] = json!(1);
    let mut device = json!({
        "name": "meter", "adapter": case.adapter,
        // 10 ms: the group asks for more than the bus can do, so the
        // figure is the bus's pace, not the interval's.
        "groups": [{"name": "g", "intervalMs": 10, "tags": tags}],
    });
    let key = if case.adapter == "modbusRtu" {
        "serial"
    } else {
        "modbus"
    };
    device[key] = settings;
    let config: GatewayConfig = serde_json::from_value(json!({ "devices": [device] })).unwrap();
    let (tx, mut rx) = mpsc::channel(4096);
    let adapters = Adapters::start(&config, tx, Default::default());
    let warm_end = Instant::now() + WARM_UP;
    while Instant::now() < warm_end {
        let _ = tokio::time::timeout_at(warm_end.into(), rx.recv()).await;
    }
    let start = Instant::now();
    let end = start + MEASURE;
    let (mut good, mut failed) = (0, 0);
    while let Ok(Some(s)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
        if s.errors.is_empty() && s.values.len() == REQUESTS_PER_POLL {
            good += 1;
        } else {
            failed += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    adapters.stop().await;
    Figures {
        good_polls: good,
        failed_polls: failed,
        secs,
    }
}

/// Wire time of one read of one register at `baud`, 10 bits a character:
/// request 8 bytes, answer 7, and the agent's silence after each.
fn line_requests_per_s(baud: u32, gap_ms: f64) -> f64 {
    let frame_ms = 15.0 * 10.0 * 1000.0 / f64::from(baud);
    1000.0 / (frame_ms + 2.0 * gap_ms)
}

fn pymodbus_version() -> String {
    std::process::Command::new("python3")
        .args(["-c", "import pymodbus; print(pymodbus.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    require_peers();
    let pty = PtyPair::start();
    let serial_peer = Peer::serial(&pty.peer_end, 9600);
    let port = weir_testkit::free_port();
    let tcp_peer = Peer::tcp(port);
    let path = pty.agent_end.display().to_string();
    let cases = [
        Case {
            name: "serial pty, 9600 baud (3.5 chars = 3.65 ms gap)",
            settings: json!({"port": path, "baudRate": 9600}),
            adapter: "modbusRtu",
            gap_ms: 3.645,
            baud: Some(9600),
        },
        Case {
            name: "serial pty, 115200 baud (1.75 ms gap)",
            settings: json!({"port": path, "baudRate": 115200}),
            adapter: "modbusRtu",
            gap_ms: 1.75,
            baud: Some(115200),
        },
        Case {
            name: "serial pty, interFrameDelayMs 0",
            settings: json!({"port": path, "baudRate": 115200, "interFrameDelayMs": 0}),
            adapter: "modbusRtu",
            gap_ms: 0.0,
            baud: None,
        },
        Case {
            name: "RTU over TCP (loopback, no gap)",
            settings: json!({"host": "127.0.0.1", "port": port}),
            adapter: "modbusRtuOverTcp",
            gap_ms: 0.0,
            baud: None,
        },
    ];
    println!(
        "Modbus RTU reads of 1 register ({REQUESTS_PER_POLL} requests a poll, group interval 10 ms, so the bus is the limit), {} s each after {} s warm-up; pymodbus {} on the far end.",
        MEASURE.as_secs(),
        WARM_UP.as_secs(),
        pymodbus_version(),
    );
    println!("A pty ignores the baud rate: these figures measure the agent's pacing (inter-frame delay) and pymodbus's answer time, not a serial line.");
    let mut measured = true;
    for case in &cases {
        let f = measure(case).await;
        let polls_s = f.good_polls as f64 / f.secs;
        let req_s = polls_s * REQUESTS_PER_POLL as f64;
        let line = match case.baud {
            Some(b) => format!(
                "; a real {b}-baud line would carry at most {:.0} requests/s (computed)",
                line_requests_per_s(b, case.gap_ms)
            ),
            None => String::new(),
        };
        println!(
            "rtu {:<50} {:>8.0} requests/s  ({:.1} polls/s of {REQUESTS_PER_POLL}; {} good, {} failed polls in {:.2} s){line}",
            case.name, req_s, polls_s, f.good_polls, f.failed_polls, f.secs,
        );
        if f.good_polls == 0 || f.failed_polls > 0 {
            measured = false;
        }
    }
    drop(serial_peer);
    drop(tcp_peer);
    if !measured {
        eprintln!("rtu bench: some polls failed or none succeeded; the figures above are not a measurement");
        std::process::exit(1);
    }
}
