//! The uplink over TLS (mqtts://) to a Mosquitto with a private CA given by
//! `ca_pem` (the `--mqtt-ca` flag); testkit makes the CA and the broker's
//! certificate with openssl.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Mosquitto, Subscriber};
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker, Runtime, RuntimeOptions};
use weir_agent::sample::{GroupSchema, Sample};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::TagValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_go_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = Mosquitto::builder().tls().start().await;
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: d.join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: Broker {
            urls: vec![broker.tls_url()],
            client_id: "agent-tls".into(),
            username: None,
            password: None,
            ca_pem: Some(broker.ca_pem()),
        },
        inflight: 10,
    })
    .unwrap();
    rt.apply(&GatewayConfig::default(), 1).await.unwrap();
    let schema = Arc::new(GroupSchema {
        device: "pump".into(),
        group: "g".into(),
        tags: vec!["flow".into()],
    });
    for i in 0..100 {
        rt.sample_sender()
            .send(Sample {
                schema: schema.clone(),
                ts_ms: i,
                values: vec![(0, TagValue::Int(i))],
                errors: vec![],
            })
            .await
            .unwrap();
    }
    sub.wait_until(Duration::from_secs(20), "readings over TLS", |s| {
        s.readings >= 100
    })
    .await;
    rt.shutdown().await;
}
