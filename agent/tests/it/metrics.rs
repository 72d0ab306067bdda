//! The Prometheus exposition names every figure the issue asks for.

use std::time::Duration;

use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker, Runtime, RuntimeOptions};
use weir_crds::gateway::GatewayConfig;

#[tokio::test]
async fn metrics_cover_readings_queue_drops_latency_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: dir.path().join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: Broker::default(),
        inflight: 10,
    })
    .unwrap();
    let config: GatewayConfig = serde_json::from_value(serde_json::json!({
        "devices": [{"name": "sim-1", "adapter": "simulator", "groups": [{"name": "fast", "intervalMs": 100, "tags": [
            {"name": "flow", "address": "flow", "dataType": "float64", "signal": {"kind": "sine"}}
        ]}]}]
    }))
    .unwrap();
    rt.apply(&config, 7).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = weir_agent::metrics::render(&rt);
        let queued: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("weir_agent_readings_queued_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if queued >= 3 {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no readings queued:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for name in [
        "weir_agent_readings_in_total",
        "weir_agent_readings_out_total",
        "weir_agent_dropped_readings_total",
        "weir_agent_queue_depth_readings",
        "weir_agent_queue_bytes",
        "weir_agent_publish_latency_seconds_bucket",
        "weir_agent_uplink_connected 0",
        "weir_agent_config_version 7",
        "weir_agent_device_up{device=\"sim-1\"} 2",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    rt.shutdown().await;
}
