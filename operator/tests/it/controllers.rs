//! The running operator: only the lease holder reconciles, health and
//! metrics are served, and each controller watches what it owns.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use weir_crds::Tenant;
use weir_operator::metrics::Metrics;
use weir_operator::testing::FakeApiServer;

use crate::mqtt_cluster::cluster;
use crate::support::*;
use crate::tenant::tenant;

#[tokio::test]
async fn only_the_lease_holder_runs_controllers() {
    use k8s_openapi::api::coordination::v1::Lease;
    use weir_operator::leader::{run_as_leader, LeaseSettings};
    let fake = FakeApiServer::new();
    let metrics = Metrics::default();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let settings = LeaseSettings {
        namespace: "weir-system".into(),
        name: "weir-operator".into(),
        identity: "replica-a".into(),
        duration: 15,
        grace: 5,
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        run_as_leader(fake.client(), settings, &metrics, || async move {
            r.store(true, std::sync::atomic::Ordering::SeqCst);
        }),
    )
    .await
    .expect("leadership acquired in time")
    .unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    let lease = fake
        .get::<Lease>(Some("weir-system"), "weir-operator")
        .expect("lease written");
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.starts_with(
            "PATCH /apis/coordination.k8s.io/v1/namespaces/weir-system/leases/weir-operator"
        )),
        "{calls:?}"
    );
    // Released on the way out so the next replica takes over at once.
    assert_ne!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-a")
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use weir_operator::server::{router, Health};
    let metrics = Arc::new(Metrics::default());
    drop(metrics.reconcile("mqttcluster"));
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    ready.store(true, Ordering::Relaxed);
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("weir_operator_reconciles_total{controller=\"mqttcluster\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weir_operator_reconcile_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn controllers_reconcile_what_they_watch() {
    use k8s_openapi::api::core::v1::Namespace;
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    fake.put(&cluster(3));
    let ctx = context(&fake, Arc::default());
    let run = tokio::spawn(weir_operator::controllers::run(ctx.clone(), 2));
    let mut done = false;
    for _ in 0..200 {
        let tenant_ready = fake
            .get::<Tenant>(None, "riverside-water")
            .and_then(|t| t.status)
            .and_then(|s| s.phase)
            .is_some();
        if tenant_ready
            && fake
                .get::<StatefulSet>(Some(NS), "riverside-mqtt")
                .is_some()
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        done,
        "controllers did not reconcile; calls: {:?}",
        fake.calls()
    );
    assert!(fake.get::<Namespace>(None, NS).is_some());
    // Owned objects are watched, so a hand edit wakes their owner at once.
    let wanted = [
        "/apis/weir.dev/v1alpha1/tenants",
        "/apis/weir.dev/v1alpha1/mqttclusters",
        "/apis/weir.dev/v1alpha1/edgegateways",
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/api/v1/resourcequotas",
        "/api/v1/limitranges",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "/apis/apps/v1/statefulsets",
        "/apis/apps/v1/deployments",
        "/api/v1/services",
        "/api/v1/configmaps",
        "/apis/policy/v1/poddisruptionbudgets",
        "/api/v1/persistentvolumeclaims",
    ];
    let mut missing: Vec<&str> = wanted.to_vec();
    for _ in 0..100 {
        let watches: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("WATCH "))
            .collect();
        missing.retain(|p| !watches.iter().any(|w| w.ends_with(p)));
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    assert!(missing.is_empty(), "no watch on {missing:?}");
    // Secrets are read by name in tenant namespaces only (the operator may
    // not list or watch them cluster-wide).
    let cluster_wide_secrets: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.contains(" /api/v1/secrets"))
        .collect();
    assert!(
        cluster_wide_secrets.is_empty(),
        "Secrets listed or watched cluster-wide: {cluster_wide_secrets:?}"
    );
    assert!(ctx
        .metrics
        .render()
        .contains("weir_operator_reconciles_total{controller=\"tenant\"}"));
}
