//! A cluster's life: created in order, left alone when nothing changed,
//! paused, deleted (volumes only when told), failures and the status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use weir_crds::MqttCluster;
use weir_operator::mqtt_cluster::builders as mb;
use weir_operator::testing::FakeApiServer;
use weir_operator::OperatorConfig;

use super::*;
use crate::support::*;

#[tokio::test]
async fn cluster_create_path_writes_in_order() {
    let fake = FakeApiServer::new();
    fake.put(&cluster(3));
    let ctx = context(&fake, Arc::default());
    let action = reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "a new cluster is watched closely"
    );
    let p = "/api/v1/namespaces/weir-riverside-water";
    let a = "/apis/apps/v1/namespaces/weir-riverside-water";
    assert_eq!(
        writes_without_events(&fake),
        vec![
            format!("POST {p}/secrets"),
            format!("POST {p}/secrets"),
            format!("PATCH {p}/configmaps/riverside-mqtt-config"),
            format!("PATCH {p}/services/riverside-mqtt-headless"),
            format!("PATCH {p}/services/riverside-mqtt"),
            format!("PATCH {p}/services/riverside-mqtt-dashboard"),
            "PATCH /apis/policy/v1/namespaces/weir-riverside-water/poddisruptionbudgets/riverside-mqtt".to_string(),
            format!("PATCH {a}/statefulsets/riverside-mqtt"),
            "PATCH /apis/weir.dev/v1alpha1/namespaces/weir-riverside-water/mqttclusters/riverside-mqtt/status".to_string(),
        ]
    );
    let s = sts(&fake);
    assert_eq!(s.spec.replicas, Some(3));
    assert_eq!(partition(&s), 0);
    assert_eq!(image(&s), "emqx/emqx:5.8.6");
    let c = stored_cluster(&fake);
    assert_eq!(
        c.status.as_ref().unwrap().phase.as_deref(),
        Some("Provisioning")
    );
    assert!(c.metadata.finalizers.is_none(), "Retain needs no finalizer");
    assert_eq!(
        c.status.as_ref().unwrap().endpoints,
        vec!["mqtt://riverside-mqtt.weir-riverside-water.svc:1883"]
    );
}

#[tokio::test]
async fn cluster_no_change_path_makes_zero_writes_despite_server_defaults() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    // Not the Services, the pods nor the status.
    assert_steady(&fake, async {
        for _ in 0..3 {
            let action = reconcile_cluster(&fake, &ctx).await;
            assert_eq!(action, Action::requeue(Duration::from_secs(60)));
        }
    })
    .await;
    // Health comes from EMQX's API, every time.
    assert!(
        emqx.calls()
            .iter()
            .filter(|c| *c == "GET /api/v5/nodes")
            .count()
            >= 3
    );
    let c = stored_cluster(&fake);
    let st = c.status.as_ref().unwrap();
    assert_eq!(
        (st.replicas, st.ready_replicas, st.ready_text.as_deref()),
        (3, 3, Some("3/3"))
    );
    assert_eq!(st.current_version.as_deref(), Some("5.8.6"));
    assert_eq!(st.nodes.len(), 3);
    assert_eq!(
        condition(&c, "Ready").status,
        weir_crds::ConditionStatus::True
    );
}

#[tokio::test]
async fn moving_connection_counts_do_not_cause_a_status_write_loop() {
    let (fake, ctx, emqx, locator) = steady_cluster(3).await;
    // Clients come and go between every reconcile; counts alone are
    // refreshed at most once per interval.
    assert_steady(&fake, async {
        for i in 0..5u64 {
            emqx.with(|s| s.nodes[0].connections = 100 + i);
            reconcile_cluster(&fake, &ctx).await;
        }
    })
    .await;
    // Once the interval has passed they are written.
    let config = OperatorConfig {
        status_refresh_secs: 0,
        ..Default::default()
    };
    let ctx = context_with(&fake, config, locator);
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(fake.writes().len(), 1);
    assert_eq!(
        stored_cluster(&fake).status.as_ref().unwrap().nodes[0].connections,
        104
    );
}

#[tokio::test]
async fn emqx_is_reached_through_any_ready_node() {
    let (fake, ctx, emqx, locator) = steady_cluster(3).await;
    // Node 0's API is down (closed port); the others answer.
    locator
        .0
        .lock()
        .unwrap()
        .insert("riverside-mqtt-0".into(), "http://127.0.0.1:9".into());
    let before = emqx.calls().len();
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx.calls().len() > before);
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
    // All down: Degraded with a reason that says what is wrong.
    for i in 0..3 {
        locator
            .0
            .lock()
            .unwrap()
            .insert(format!("riverside-mqtt-{i}"), "http://127.0.0.1:9".into());
    }
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        condition(&stored_cluster(&fake), "Degraded").reason,
        "EmqxApiUnreachable"
    );
}

#[tokio::test]
async fn deletion_removes_volumes_only_when_told() {
    for (policy, expect_deleted) in [("Delete", true), ("Retain", false)] {
        let fake = FakeApiServer::new();
        let mut c = cluster(3);
        c.spec.storage.reclaim_policy = serde_json::from_value(serde_json::json!(policy)).unwrap();
        fake.put(&c);
        let ctx = context(&fake, Arc::default());
        reconcile_cluster(&fake, &ctx).await;
        let has_finalizer = stored_cluster(&fake)
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .contains(&"weir.dev/pvc-cleanup".to_string());
        assert_eq!(has_finalizer, expect_deleted, "{policy}");
        fake.put(&PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-riverside-mqtt-0".into()),
                namespace: Some(NS.into()),
                labels: Some(mb::selector_labels(&c)),
                ..Default::default()
            },
            ..Default::default()
        });
        fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
            c.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-01-01T00:00:00Z".parse().unwrap(),
                ));
        });
        fake.clear_calls();
        reconcile_cluster(&fake, &ctx).await;
        let pvc_left = fake
            .get::<PersistentVolumeClaim>(Some(NS), "data-riverside-mqtt-0")
            .is_some();
        assert_eq!(pvc_left, !expect_deleted, "{policy}: volumes");
        if expect_deleted {
            assert!(
                fake.get::<MqttCluster>(Some(NS), "riverside-mqtt")
                    .is_none(),
                "finalizer released"
            );
        } else {
            assert_eq!(
                writes_without_events(&fake),
                Vec::<String>::new(),
                "Retain: the operator touches nothing"
            );
        }
    }
}

#[tokio::test]
async fn paused_cluster_is_left_alone() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.metadata.annotations = Some([("weir.dev/paused".to_string(), "true".to_string())].into());
        c.spec.replicas = 5;
    });
    fake.clear_calls();
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        fake.calls(),
        vec!["PATCH /apis/weir.dev/v1alpha1/namespaces/weir-riverside-water/mqttclusters/riverside-mqtt/status"]
    );
    let c = stored_cluster(&fake);
    assert_eq!(
        condition(&c, "Paused").status,
        weir_crds::ConditionStatus::True
    );
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    fake.clear_calls();
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(fake.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn cluster_errors_requeue_and_are_counted() {
    let fake = FakeApiServer::new();
    fake.put(&cluster(3));
    let ctx = context(&fake, Arc::default());
    fake.fail("PATCH", "statefulsets", 500, 1);
    let c = stored_cluster(&fake);
    let err = weir_operator::mqtt_cluster::reconcile(c.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(
        weir_operator::mqtt_cluster::error_policy(c, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    // The next attempt completes, reusing the Secrets made the first time.
    let secret_before = api_key(&fake);
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        api_key(&fake),
        secret_before,
        "generated credentials are never regenerated"
    );
    assert!(fake
        .get::<StatefulSet>(Some(NS), "riverside-mqtt")
        .is_some());
}

#[tokio::test]
async fn status_selector_lets_an_hpa_find_the_pods() {
    let (fake, _ctx, _emqx, _) = steady_cluster(3).await;
    let c = stored_cluster(&fake);
    let selector = c
        .status
        .as_ref()
        .unwrap()
        .selector
        .clone()
        .expect("status.selector");
    assert_eq!(
        selector,
        "app.kubernetes.io/component=mqtt-broker,weir.dev/mqttcluster=riverside-mqtt"
    );
    // The selector picks exactly the cluster's pods, as an HPA would.
    let pods: kube::Api<Pod> = kube::Api::namespaced(fake.client(), NS);
    let found = pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 3);
    assert_eq!(c.status.as_ref().unwrap().replicas, 3);
}
