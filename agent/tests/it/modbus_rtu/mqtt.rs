//! The whole agent on a serial RTU line: readings of every type reach the
//! broker, and a write sent on `cmd/write` lands on pymodbus and is
//! answered on `cmd/write/resp`.

use std::time::Duration;

use serde_json::json;
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::{TagValue, WriteRequest};

use super::{assert_matches, timing, Bus};
use crate::common::{self, Subscriber};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_rtu_readings_and_writes_travel_over_mqtt() {
    let bus = Bus::serial();
    let broker = common::broker();
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: dir.path().join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: BrokerCfg {
            urls: vec![broker.url()],
            client_id: "agent-rtu".into(),
            username: None,
            password: None,
            ca_pem: None,
        },
        inflight: 10,
    })
    .unwrap();
    let mut tags = bus.peer.tags();
    tags.as_array_mut().unwrap().push(json!(
        {"name": "setpoint", "address": "1!400301", "dataType": "uint16", "scale": 0.1, "attributes": ["read", "write"]}
    ));
    let device = bus.device("meter", 200, timing(1000, 1, 1000), tags);
    let config: GatewayConfig = serde_json::from_value(json!({"devices": [device]})).unwrap();
    let readings = Subscriber::start(broker.port, "weir/riverside/ps-1/meter/g").await;
    let responses = Subscriber::start(broker.port, "weir/riverside/ps-1/cmd/write/resp").await;
    rt.apply(&config, 1).await.unwrap();

    let expected = bus.peer.expected();
    readings
        .wait_until(Duration::from_secs(20), "a frame with every tag", |s| {
            s.frames.get("meter").is_some_and(|f| {
                f.values()
                    .any(|(_, v)| expected.keys().all(|k| v.contains_key(k)))
            })
        })
        .await;
    let frame = {
        let g = readings.seen.lock().unwrap();
        let f = g.frames["meter"]
            .values()
            .find(|(_, v)| expected.keys().all(|k| v.contains_key(k)))
            .unwrap()
            .1
            .clone();
        f
    };
    assert_matches(&frame, &expected);

    let request = WriteRequest {
        correlation_id: "w-1".into(),
        device: "meter".into(),
        tag: "setpoint".into(),
        value: TagValue::Float(12.3),
    };
    let response = responses
        .write_until_answered("weir/riverside/ps-1/cmd/write", &request)
        .await;
    assert!(response.ok, "{response:?}");
    // 12.3 with scale 0.1 is raw 123 on the device.
    let writes = bus.peer.writes();
    assert!(
        writes
            .iter()
            .any(|w| w["address"] == 300 && w["registers"] == json!([123])),
        "pymodbus received {writes:?}"
    );
    // Read back through the pipeline, scaled again.
    readings
        .wait_until(Duration::from_secs(10), "the written setpoint", |s| {
            s.frames.get("meter").is_some_and(|f| {
                f.values().any(|(_, v)| {
                    v.get("setpoint")
                        .and_then(TagValue::as_f64)
                        .is_some_and(|x| (x - 12.3).abs() < 1e-9)
                })
            })
        })
        .await;
    rt.shutdown().await;
}
