//! The real binary, killed with SIGKILL mid-stream and restarted: every frame
//! it queued arrives (the sequence numbers show no gap).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Subscriber;
use weir_crds::bundle::{generate_key, sign, BundlePayload, TrustAnchor};
use weir_crds::gateway::GatewayConfig;

fn config() -> GatewayConfig {
    let tags: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"name": format!("t{i}"), "address": format!("t{i}"), "dataType": "float64", "signal": {"kind": "randomWalk", "min": 0.0, "max": 10.0}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "devices": (0..4).map(|d| serde_json::json!({
            "name": format!("sim-{d}"),
            "adapter": "simulator",
            "groups": [{"name": "fast", "intervalMs": 100, "tags": tags}]
        })).collect::<Vec<_>>(),
        "uplink": {"lingerMs": 5}
    }))
    .unwrap()
}

fn spawn(
    bin: &str,
    dir: &std::path::Path,
    bundle: &std::path::Path,
    trust: &std::path::Path,
    url: &str,
) -> Child {
    Command::new(bin)
        .args(["run", "--data-dir"])
        .arg(dir)
        .arg("--bundle")
        .arg(bundle)
        .arg("--trust")
        .arg(trust)
        .args([
            "--mqtt-url",
            url,
            "--metrics-listen",
            "127.0.0.1:0",
            "--fsync",
            "never",
        ])
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start weir-agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "weir/#").await;
    let work = tempfile::tempdir().unwrap();
    let key = generate_key();
    let trust = work.path().join("trust.json");
    std::fs::write(
        &trust,
        serde_json::to_string(&TrustAnchor::from_key(&key.verifying_key())).unwrap(),
    )
    .unwrap();
    let payload = BundlePayload::new(
        "riverside",
        "ps-1",
        1,
        config(),
        chrono::Utc::now(),
        chrono::Duration::days(1),
    );
    let bundle = work.path().join("bundle.json");
    std::fs::write(
        &bundle,
        serde_json::to_string(&sign(&payload, &key)).unwrap(),
    )
    .unwrap();
    let data = work.path().join("data");
    let bin = env!("CARGO_BIN_EXE_weir-agent");

    let mut agent = spawn(bin, &data, &bundle, &trust, &broker.url());
    sub.wait_until(Duration::from_secs(30), "first readings", |s| {
        s.readings >= 20_000
    })
    .await;
    // kill -9: no chance to flush or say goodbye.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let before = sub.readings();
    let mut agent = spawn(bin, &data, &bundle, &trust, &broker.url());
    sub.wait_until(Duration::from_secs(30), "readings after the restart", |s| {
        s.readings >= before + 20_000
    })
    .await;
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agent = spawn(bin, &data, &bundle, &trust, &broker.url());
    let before = sub.readings();
    sub.wait_until(
        Duration::from_secs(30),
        "readings after the second restart",
        |s| s.readings >= before + 10_000,
    )
    .await;
    weir_testkit::bins::sigterm(agent.id());
    weir_testkit::bins::wait_exit(&mut agent, "weir-agent");

    // All frames share one per-gateway sequence; across devices, every number
    // from the first to the last seen must have arrived.
    let seen = sub.seen.lock().unwrap();
    let mut all: Vec<u64> = seen
        .frames
        .values()
        .flat_map(|m| m.keys().copied())
        .collect();
    all.sort_unstable();
    let (first, last) = (all[0], *all.last().unwrap());
    let missing: Vec<u64> = (first..=last)
        .filter(|s| all.binary_search(s).is_err())
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "frames lost across SIGKILL: {missing:?} (of {first}..={last})"
    );
    assert_eq!(all.len() as u64, last - first + 1);
    for (device, seqs) in &seen.arrival {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{device}: first arrivals in order"
        );
        let frames = &seen.frames[device];
        let ts: Vec<i64> = seqs.iter().map(|s| frames[s].0).collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "{device}: timestamps in order"
        );
    }
    eprintln!("{} frames, {} duplicates", all.len(), seen.duplicates);
}
