//! A microbenchmark of the agent LIBRARY's memory, not of the `weir-agent`
//! process (that is `cargo bench -p weir-e2e --bench agent_memory`): VmRSS
//! of THIS bench process, which runs the runtime (pipeline, disk queue,
//! uplink; two tokio workers) with 10 simulated devices × 10 groups × 100
//! tags = 10,000 tags read every 1 s (more than a gateway's config may hold:
//! the config is built here, not validated, signed or fetched), publishing
//! to Mosquitto with NO subscriber (requireSubscriber off, so Mosquitto
//! discards every message). It prints VmRSS at each step (runtime idle,
//! config built, a pipeline compiled, applied) and the largest VmRSS
//! sampled once a second over 15 s, which is not the VmHWM peak. The
//! figures include the bench's own code and Mosquitto is another process.
//!
//! `cargo bench -p weir-agent --bench memory`

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_crds::gateway::GatewayConfig;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn config() -> GatewayConfig {
    // 10 devices × 10 groups × 100 tags = 10,000 tags, each read every second.
    let devices: Vec<serde_json::Value> = (0..10)
        .map(|d| {
            let groups: Vec<serde_json::Value> = (0..10)
                .map(|g| {
                    let tags: Vec<serde_json::Value> = (0..100)
                        .map(|t| serde_json::json!({"name": format!("t{t}"), "address": "x", "dataType": "float32", "signal": {"kind": if t % 2 == 0 {"sine"} else {"randomWalk"}}}))
                        .collect();
                    serde_json::json!({"name": format!("g{g}"), "intervalMs": 1000, "tags": tags})
                })
                .collect();
            serde_json::json!({"name": format!("plc-{d}"), "adapter": "simulator", "groups": groups})
        })
        .collect();
    // No reader is attached: as before issue 20, readings are acknowledged
    // into the void rather than held for a subscriber.
    serde_json::from_value(serde_json::json!({
        "uplink": {"requireSubscriber": false},
        "devices": devices,
        "pipelines": [{"name": "db", "select": {"device": "plc-0"}, "steps": [{"deadband": {"percent": 1.0}}]}]
    }))
    .unwrap()
}

fn main() {
    let before = rss_kb();
    // Two worker threads: what a small gateway PC gives the agent.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker = common::broker();
        let dir = tempfile::tempdir().unwrap();
        let agent = Runtime::start(RuntimeOptions {
            queue_dir: dir.path().join("queue"),
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            tenant: "bench".into(),
            gateway: "gw".into(),
            broker: BrokerCfg { urls: vec![broker.url()], client_id: "mem-bench".into(), username: None, password: None, ca_pem: None },
            inflight: 100,
        })
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_kb();
        let cfg = config();
        let with_cfg = rss_kb();
        let p = weir_agent::pipeline::Pipeline::compile(&cfg, weir_agent::pipeline::TopicBase { prefix: "w".into(), tenant: "t".into(), gateway: "g".into() }, Default::default()).unwrap();
        let with_pipe = rss_kb();
        drop(p);
        println!("RSS: config built {with_cfg} KB, + a compiled pipeline {with_pipe} KB");
        agent.apply(&cfg, 1).await.unwrap();
        let applied = rss_kb();
        let mut peak = 0;
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_kb());
        }
        let acked = agent.queue.stats().acked_readings.load(Ordering::Relaxed);
        println!("RSS: runtime idle {} KB, after apply {} KB", idle, applied);
        println!(
            "library microbench (this bench process, not weir-agent; no subscriber): 10,000 tags at 1 s for 15 s: VmRSS now {} MB, largest 1 s sample {} MB (process before start {} MB); {acked} readings acknowledged",
            rss_kb() / 1024,
            peak / 1024,
            before / 1024
        );
        agent.shutdown().await;
    });
}
