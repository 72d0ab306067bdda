//! The agent's runtime with an `opcUa` device: subscribed readings reach
//! MQTT, and a write requested on `cmd/write` lands on the OPC UA server and
//! is answered on `cmd/write/resp`.

use std::time::Duration;

use weir_agent::adapters::opcua::OpcUaContext;
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker as BrokerCfg, Runtime, RuntimeOptions};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::{TagValue, WriteRequest};

use super::peer::{OpcServer, ServerOpts};
use crate::common::{self, Subscriber};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_writes_over_mqtt() {
    let server = OpcServer::start(ServerOpts {
        tick_ms: 100,
        ..Default::default()
    });
    let broker = common::broker();
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: dir.path().join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: BrokerCfg {
            urls: vec![broker.url()],
            client_id: "agent-opcua".into(),
            username: None,
            password: None,
            ca_pem: None,
        },
        inflight: 10,
    })
    .unwrap();
    rt.set_opcua_context(OpcUaContext {
        data_dir: Some(dir.path().to_path_buf()),
        credentials: None,
    });
    let config: GatewayConfig = serde_json::from_value(serde_json::json!({
        "devices": [{"name": "scada", "adapter": "opcUa",
            "opcUa": {"endpoint": server.endpoint()},
            "groups": [
                {"name": "live", "intervalMs": 100, "mode": "subscribe", "tags": [
                    {"name": "counter", "address": "ns=2;s=Plant.Counter", "dataType": "uint32"}]},
                {"name": "sp", "intervalMs": 200, "tags": [
                    {"name": "setpoint", "address": "ns=2;s=Plant.Setpoint", "dataType": "float64",
                     "attributes": ["read", "write"]}]}
            ]}]
    }))
    .unwrap();
    rt.apply(&config, 1).await.unwrap();
    let readings = Subscriber::start(broker.port, "weir/riverside/ps-1/scada/+").await;
    let responses = Subscriber::start(broker.port, "weir/riverside/ps-1/cmd/write/resp").await;
    readings
        .wait_until(
            Duration::from_secs(20),
            "5 subscribed counters over MQTT",
            |s| {
                s.frames.get("scada").is_some_and(|f| {
                    f.values()
                        .filter(|(_, v)| v.contains_key("counter"))
                        .count()
                        >= 5
                })
            },
        )
        .await;

    let request = WriteRequest {
        correlation_id: "w-1".into(),
        device: "scada".into(),
        tag: "setpoint".into(),
        value: TagValue::Float(55.5),
    };
    let answer = responses
        .write_until_answered("weir/riverside/ps-1/cmd/write", &request)
        .await;
    assert!(answer.ok, "{answer:?}");
    weir_testkit::wait_until(
        Duration::from_secs(10),
        "the server to see the write",
        || async { server.writes().contains(&"Setpoint 55.5".to_string()) },
    )
    .await;
    readings
        .wait_until(
            Duration::from_secs(10),
            "the written value read back",
            |s| {
                s.frames.get("scada").is_some_and(|f| {
                    f.values()
                        .any(|(_, v)| v.get("setpoint") == Some(&TagValue::Float(55.5)))
                })
            },
        )
        .await;
    rt.shutdown().await;
}
