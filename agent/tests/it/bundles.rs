//! Tampered, replayed-older, expired and other-gateway bundles are refused
//! and the running config keeps running; rotations need both keys.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use weir_agent::config_loop::Gate;
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker, Runtime, RuntimeOptions};
use weir_agent::state::DataDir;
use weir_crds::bundle::{
    generate_key, sign, sign_rotation, BundlePayload, SignedBundle, TrustAnchor,
};
use weir_crds::gateway::GatewayConfig;

fn config(device: &str) -> GatewayConfig {
    serde_json::from_value(serde_json::json!({
        "devices": [{
            "name": device,
            "adapter": "simulator",
            "groups": [{"name": "fast", "intervalMs": 100, "tags": [
                {"name": "flow", "address": "flow", "dataType": "float64", "signal": {"kind": "sine"}}
            ]}]
        }]
    }))
    .unwrap()
}

fn payload(version: u64, device: &str) -> BundlePayload {
    BundlePayload::new(
        "riverside",
        "ps-1",
        version,
        config(device),
        chrono::Utc::now(),
        chrono::Duration::days(1),
    )
}

fn devices(rt: &Runtime) -> Vec<String> {
    rt.health.snapshot().into_iter().map(|d| d.name).collect()
}

async fn wait_readings(rt: &Runtime, device: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = rt
            .health
            .snapshot()
            .iter()
            .find(|d| d.name == device)
            .map(|d| d.readings)
            .unwrap_or(0);
        if n > 2 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{device} produced no readings"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_bundles_are_refused_and_the_last_good_config_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let key = generate_key();
    let anchor = TrustAnchor::from_key(&key.verifying_key());
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: data.queue_dir(),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: Broker::default(),
        inflight: 10,
    })
    .unwrap();
    let mut gate = Gate::new(data.clone(), anchor.clone(), "riverside", "ps-1").unwrap();
    assert!(gate.offer(&sign(&payload(5, "good"), &key), &rt).await);
    wait_readings(&rt, "good").await;

    let reason = |gate: &Gate| {
        gate.refused
            .lock()
            .unwrap()
            .clone()
            .expect("a refusal is recorded")
            .reason
    };

    // Tampered: the payload changed after signing.
    let mut tampered = sign(&payload(6, "evil"), &key);
    let text = String::from_utf8(B64.decode(&tampered.payload).unwrap())
        .unwrap()
        .replace("evil", "evl2");
    tampered.payload = B64.encode(text);
    assert!(!gate.offer(&tampered, &rt).await);
    assert!(reason(&gate).contains("signature"), "{}", reason(&gate));

    // Replayed older (and equal) versions.
    assert!(!gate.offer(&sign(&payload(4, "old"), &key), &rt).await);
    assert!(
        reason(&gate).contains("not newer") || reason(&gate).contains("version"),
        "{}",
        reason(&gate)
    );
    assert!(!gate.offer(&sign(&payload(5, "old"), &key), &rt).await);

    // Expired.
    let mut p = payload(7, "late");
    p.issued_at = chrono::Utc::now() - chrono::Duration::days(3);
    p.expires = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert!(!gate.offer(&sign(&p, &key), &rt).await);
    assert!(reason(&gate).contains("expired"), "{}", reason(&gate));

    // Another gateway's bundle.
    let mut p = payload(8, "other");
    p.gateway = "ps-2".into();
    assert!(!gate.offer(&sign(&p, &key), &rt).await);
    assert!(reason(&gate).contains("ps-2"), "{}", reason(&gate));

    // Signed by a stranger.
    assert!(
        !gate
            .offer(&sign(&payload(9, "stranger"), &generate_key()), &rt)
            .await
    );

    // A config that does not validate.
    let mut p = payload(10, "bad");
    p.config.devices[0].groups[0].interval_ms = 5;
    assert!(!gate.offer(&sign(&p, &key), &rt).await);
    assert!(reason(&gate).contains("validate"), "{}", reason(&gate));

    // Through all that, the good config ran on.
    assert_eq!(rt.applied_version.load(Ordering::Relaxed), 5);
    assert_eq!(devices(&rt), vec!["good".to_string()]);
    assert_eq!(data.config_state().unwrap().highest_version, Some(5));
    let before = rt.health.snapshot()[0].readings;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rt.health.snapshot()[0].readings > before,
        "the old config keeps producing readings"
    );

    // A newer good bundle is applied, and persisted as the last good one.
    assert!(gate.offer(&sign(&payload(11, "next"), &key), &rt).await);
    wait_readings(&rt, "next").await;
    assert_eq!(devices(&rt), vec!["next".to_string()]);
    let stored: SignedBundle = data.bundle().unwrap().unwrap();
    assert_eq!(
        weir_agent::config_loop::peek_payload(&stored)
            .unwrap()
            .version,
        11
    );

    // Key rotation: endorsed by old and new key → new key pinned.
    let new_key = generate_key();
    let mut rotated = sign(&payload(12, "rotated"), &new_key);
    rotated.rotation = Some(sign_rotation(&key, &new_key, chrono::Utc::now()));
    assert!(
        gate.offer(&rotated, &rt).await,
        "{:?}",
        gate.refused.lock().unwrap()
    );
    assert_eq!(
        data.trust().unwrap().unwrap().key_id,
        TrustAnchor::from_key(&new_key.verifying_key()).key_id
    );
    assert!(
        gate.refused.lock().unwrap().is_none(),
        "running a newer good bundle ends the earlier refusal"
    );
    // The old key alone no longer works.
    assert!(!gate.offer(&sign(&payload(13, "oldkey"), &key), &rt).await);
    // A rotation not signed by the pinned key is refused.
    let evil = generate_key();
    let mut forged = sign(&payload(14, "evil"), &evil);
    forged.rotation = Some(sign_rotation(&key, &evil, chrono::Utc::now()));
    assert!(!gate.offer(&forged, &rt).await);
    assert_eq!(rt.applied_version.load(Ordering::Relaxed), 12);
    rt.shutdown().await;

    // Restart without a server: the last good bundle runs from disk.
    let rt = Runtime::start(RuntimeOptions {
        queue_dir: data.queue_dir(),
        fsync: FsyncPolicy::Never,
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        broker: Broker::default(),
        inflight: 10,
    })
    .unwrap();
    let anchor = data.trust().unwrap().unwrap();
    let mut gate = Gate::new(data.clone(), anchor, "riverside", "ps-1").unwrap();
    assert!(gate.start_from_disk(&rt).await.unwrap());
    assert_eq!(rt.applied_version.load(Ordering::Relaxed), 12);
    wait_readings(&rt, "rotated").await;
    // And the replay protection survived the restart.
    assert!(
        !gate
            .offer(&sign(&payload(12, "again"), &new_key), &rt)
            .await
    );
    rt.shutdown().await;
}

/// Two rotations since the key the agent pinned (two gateways of the tenant
/// asked at once, or the agent was away): the bundle carries both, and the
/// agent follows them link by link, also when it starts from disk.
#[tokio::test]
async fn a_chain_of_rotations_is_followed_from_the_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let (k0, k1, k2) = (generate_key(), generate_key(), generate_key());
    let start = || {
        Runtime::start(RuntimeOptions {
            queue_dir: data.queue_dir(),
            fsync: FsyncPolicy::Never,
            tenant: "riverside".into(),
            gateway: "ps-1".into(),
            broker: Broker::default(),
            inflight: 10,
        })
        .unwrap()
    };
    let rt = start();
    let anchor = TrustAnchor::from_key(&k0.verifying_key());
    let mut gate = Gate::new(data.clone(), anchor, "riverside", "ps-1").unwrap();
    assert!(gate.offer(&sign(&payload(1, "first"), &k0), &rt).await);

    // Only the last rotation (k1 -> k2): the agent pinned to k0 cannot follow.
    let mut short = sign(&payload(2, "short"), &k2);
    short.rotation = Some(sign_rotation(&k1, &k2, chrono::Utc::now()));
    assert!(!gate.offer(&short, &rt).await);

    let mut chained = sign(&payload(3, "chained"), &k2);
    chained.rotation_chain = vec![sign_rotation(&k0, &k1, chrono::Utc::now())];
    chained.rotation = Some(sign_rotation(&k1, &k2, chrono::Utc::now()));
    assert!(
        gate.offer(&chained, &rt).await,
        "{:?}",
        gate.refused.lock().unwrap()
    );
    assert_eq!(
        data.trust().unwrap().unwrap().key_id,
        TrustAnchor::from_key(&k2.verifying_key()).key_id
    );
    // Neither older key signs for it any more.
    assert!(!gate.offer(&sign(&payload(4, "k1"), &k1), &rt).await);
    assert!(!gate.offer(&sign(&payload(4, "k0"), &k0), &rt).await);
    // The next bundle still carries the chain; now pinned to k2, it is read as is.
    let mut next = chained.clone();
    let fresh = sign(&payload(5, "next"), &k2);
    (next.payload, next.signature) = (fresh.payload, fresh.signature);
    assert!(gate.offer(&next, &rt).await);
    rt.shutdown().await;

    let rt = start();
    let mut gate = Gate::new(
        data.clone(),
        data.trust().unwrap().unwrap(),
        "riverside",
        "ps-1",
    )
    .unwrap();
    assert!(gate.start_from_disk(&rt).await.unwrap());
    assert_eq!(rt.applied_version.load(Ordering::Relaxed), 5);
    rt.shutdown().await;
}
