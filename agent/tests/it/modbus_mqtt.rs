//! Writes requested over MQTT (`.../cmd/write`) reach the Modbus device and
//! are answered on `.../cmd/write/resp`; readings of the same device flow out.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Subscriber;
use weir_agent::adapters::modbus::server::{serve, MemoryDevice};
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::{TagValue, WriteRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_over_mqtt_is_applied_and_answered() {
    let broker = common::broker();
    let plc = MemoryDevice::default();
    plc.set_holding(0, &[100]);
    let addr = serve(plc.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: dir.path().join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: BrokerCfg {
            urls: vec![broker.url()],
            client_id: "agent-cmd".into(),
            username: None,
            password: None,
            ca_pem: None,
        },
        inflight: 10,
    })
    .unwrap();
    let config: GatewayConfig = serde_json::from_value(serde_json::json!({
        "devices": [{"name": "plc-1", "adapter": "modbusTcp",
            "modbus": {"host": "127.0.0.1", "port": addr.port()},
            "groups": [{"name": "fast", "intervalMs": 100, "tags": [
                {"name": "setpoint", "address": "1!400001", "dataType": "int16", "attributes": ["read", "write"]}
            ]}]}]
    }))
    .unwrap();
    rt.apply(&config, 1).await.unwrap();
    let responses = Subscriber::start(broker.port, "weir/riverside/ps-1/cmd/write/resp").await;
    let readings = Subscriber::start(broker.port, "weir/riverside/ps-1/plc-1/fast").await;

    let request = |id: &str, tag: &str, v: i64| WriteRequest {
        correlation_id: id.into(),
        device: "plc-1".into(),
        tag: tag.into(),
        value: TagValue::Int(v),
    };
    let topic = "weir/riverside/ps-1/cmd/write";
    let ok = responses
        .write_until_answered(topic, &request("w-1", "setpoint", 321))
        .await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(plc.holding(0), 321);
    // The new value shows up in the readings.
    readings
        .wait_until(
            Duration::from_secs(10),
            "the written value in a reading",
            |s| {
                s.frames.get("plc-1").is_some_and(|f| {
                    f.values()
                        .any(|(_, v)| v.get("setpoint") == Some(&TagValue::Int(321)))
                })
            },
        )
        .await;

    let bad = responses
        .write_until_answered(topic, &request("w-2", "nope", 1))
        .await;
    assert!(!bad.ok);
    assert!(bad.error.unwrap().contains("no tag 'nope'"));
    assert!(rt.uplink_stats.connected.load(Ordering::Relaxed));
    rt.shutdown().await;
}
