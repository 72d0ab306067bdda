//! The uplink over TLS (mqtts://) to a Mosquitto with a private CA given by
//! `ca_pem` (the `--mqtt-ca` flag).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, Subscriber, MOSQUITTO};
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker, Runtime, RuntimeOptions};
use weir_agent::sample::{GroupSchema, Sample};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::TagValue;

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for the TLS test")
        .success();
    assert!(ok, "openssl {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_go_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=weir-test-ca",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let (plain, tls) = (free_port(), free_port());
    std::fs::write(
        d.join("m.conf"),
        format!(
            "user root\nallow_anonymous true\nlistener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
            d.display()
        ),
    )
    .unwrap();
    let mut broker = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(d.join("m.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto TLS listener did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sub = Subscriber::start(plain, "weir/#").await;
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: d.join("queue"),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: Broker {
            urls: vec![format!("mqtts://127.0.0.1:{tls}")],
            client_id: "agent-tls".into(),
            username: None,
            password: None,
            ca_pem: Some(std::fs::read(d.join("ca.pem")).unwrap()),
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
    let _ = broker.kill();
    let _ = broker.wait();
}
