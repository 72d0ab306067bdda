//! OPC UA subscription readings/s into the pipeline: the agent's `opcUa`
//! adapter subscribed to N changing Double nodes of a real OPC UA server
//! (PyPI asyncua, `agent/tests/opcua_server.py`), its samples rendered by
//! the pipeline (pass-through) on the receiving side of the adapter's
//! channel, as in the agent.
//!
//! The Python server is the likely bottleneck: the bench prints the server's
//! own update rate and CPU next to the agent's readings/s and CPU, so the
//! figure reads as "at least this much", not the adapter's ceiling.
//!
//! `cargo bench -p weir-agent --bench opcua`

#[path = "../tests/it/opcua/peer.rs"]
mod peer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peer::{OpcServer, ServerOpts};
use tokio::sync::mpsc;
use weir_agent::adapters::opcua::OpcUaContext;
use weir_agent::adapters::{Adapters, HealthTable};
use weir_agent::pipeline::{Pipeline, TopicBase};
use weir_agent::sample::Sample;
use weir_crds::gateway::GatewayConfig;

const NODES: u32 = 1000;
const TICK_MS: u32 = 20;
const GROUP_TAGS: u32 = 250;
const WARMUP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(10);

fn config(endpoint: &str) -> GatewayConfig {
    let groups: Vec<serde_json::Value> = (0..NODES / GROUP_TAGS)
        .map(|g| {
            let tags: Vec<serde_json::Value> = (g * GROUP_TAGS..(g + 1) * GROUP_TAGS)
                .map(|i| serde_json::json!({"name": format!("b{i}"), "address": format!("ns=2;s=Plant.B{i}"), "dataType": "float64"}))
                .collect();
            serde_json::json!({"name": format!("g{g}"), "intervalMs": 10, "mode": "subscribe", "tags": tags})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "devices": [{"name": "scada", "adapter": "opcUa", "opcUa": {"endpoint": endpoint}, "groups": groups}]
    }))
    .unwrap()
}

fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = OpcServer::start(ServerOpts {
        tick_ms: TICK_MS,
        bench_nodes: NODES,
        ..Default::default()
    });
    let cfg = config(&server.endpoint());
    let mut pipeline = Pipeline::compile(
        &cfg,
        TopicBase {
            prefix: "weir".into(),
            tenant: "t".into(),
            gateway: "g".into(),
        },
        Arc::default(),
    )
    .unwrap();
    let readings = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel::<Sample>(4096);
    let r = readings.clone();
    tokio::spawn(async move {
        let mut out = Vec::with_capacity(64);
        while let Some(s) = rx.recv().await {
            r.fetch_add(s.values.len() as u64, Ordering::Relaxed);
            pipeline.process(s, &mut out);
            out.clear();
        }
    });
    let data = tempfile::tempdir().unwrap();
    let health = Arc::new(HealthTable::default());
    let adapters = Adapters::start_with(
        &cfg,
        tx,
        health.clone(),
        &OpcUaContext {
            data_dir: Some(data.path().to_path_buf()),
            credentials: None,
        },
    );
    tokio::time::sleep(WARMUP).await;
    let (r0, u0, s0, c0, t0) = (
        readings.load(Ordering::Relaxed),
        server.updates(),
        server.cpu_seconds().unwrap_or(0.0),
        own_cpu_seconds(),
        Instant::now(),
    );
    tokio::time::sleep(MEASURE).await;
    let secs = t0.elapsed().as_secs_f64();
    let (r1, u1, s1, c1) = (
        readings.load(Ordering::Relaxed),
        server.updates(),
        server.cpu_seconds().unwrap_or(0.0),
        own_cpu_seconds(),
    );
    adapters.stop().await;
    let got = r1 - r0;
    let state = health.snapshot();
    println!(
        "opcua subscribe {NODES} Double nodes in {} groups (intervalMs 10), server ticking every {TICK_MS} ms, measured {secs:.1} s after {} s warm-up:",
        NODES / GROUP_TAGS,
        WARMUP.as_secs()
    );
    println!(
        "  agent: {:>9.0} readings/s into the pipeline (data changes received by the adapter, rendered pass-through), {:.2} cores (bench process: adapter + pipeline + async-opcua)",
        got as f64 / secs,
        (c1 - c0) / secs
    );
    println!(
        "  server (asyncua, Python): {:>9.0} node updates/s made, {:.2} cores; readings/updates = {:.2}",
        (u1 - u0) as f64 / secs,
        (s1 - s0) / secs,
        got as f64 / ((u1 - u0).max(1)) as f64
    );
    println!("  the Python server is the bottleneck when its cores are near 1.0: the figure is a floor for the adapter, not its ceiling");
    if got == 0 {
        eprintln!("no readings arrived: could not measure (device health: {state:?})");
        std::process::exit(1);
    }
}
