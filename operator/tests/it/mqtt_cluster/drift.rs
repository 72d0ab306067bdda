//! Hand edits of owned objects are reverted; server normalisation is not
//! mistaken for drift.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use weir_operator::testing::FakeApiServer;

use super::*;
use crate::support::*;

#[tokio::test]
async fn hand_edits_of_owned_objects_are_reverted_then_left_alone() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    let before_sts = sts(&fake);
    let before_svc = fake.get::<Service>(Some(NS), "riverside-mqtt").unwrap();
    let before_cm = fake
        .get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap();
    // Someone runs `kubectl scale`/`kubectl edit`: our hash annotation stays.
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec.replicas = Some(1);
        s.spec.template.spec.as_mut().unwrap().containers[0].image =
            Some("emqx/emqx:latest".into());
    });
    fake.edit::<Service, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 11883;
    });
    fake.edit::<ConfigMap, _>(Some(NS), "riverside-mqtt-config", |m| {
        m.data
            .as_mut()
            .unwrap()
            .insert("emqx.conf".into(), "log.console.level = debug\n".into());
    });
    fake.clear_calls();
    reconcile_cluster(&fake, &ctx).await;
    let writes = writes_without_events(&fake);
    let p = "/api/v1/namespaces/weir-riverside-water";
    for w in [
        format!("PATCH {p}/configmaps/riverside-mqtt-config"),
        format!("PATCH {p}/services/riverside-mqtt"),
        "PATCH /apis/apps/v1/namespaces/weir-riverside-water/statefulsets/riverside-mqtt"
            .to_string(),
    ] {
        assert!(writes.contains(&w), "{w} missing from {writes:?}");
    }
    assert!(
        !writes.iter().any(|w| w.contains("riverside-mqtt-dashboard")
            || w.contains("headless")
            || w.contains("poddisruptionbudgets")),
        "only drifted objects are written: {writes:?}"
    );
    let s = sts(&fake);
    assert_eq!(s.spec.replicas, Some(3));
    assert_eq!(image(&s), "emqx/emqx:5.8.6");
    assert_eq!(s.spec.template, before_sts.spec.template);
    assert_eq!(
        fake.get::<Service>(Some(NS), "riverside-mqtt")
            .unwrap()
            .spec
            .unwrap()
            .ports,
        before_svc.spec.unwrap().ports
    );
    assert_eq!(
        fake.get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
            .unwrap()
            .data,
        before_cm.data
    );
    assert!(ctx
        .metrics
        .render()
        .contains("weir_operator_drift_corrections_total{resource=\"statefulsets\"} 1"));
    // The StatefulSet controller catches up with the restored spec.
    settle(&fake, 3, "rev1");
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
    // Fields others add (an annotation from `kubectl rollout restart`, a
    // label) are theirs: not drift, no writes.
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec
            .template
            .metadata
            .as_mut()
            .unwrap()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "kubectl.kubernetes.io/restartedAt".into(),
                "2026-11-25T10:00:00Z".into(),
            );
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "water".into());
    });
    assert_steady(&fake, async {
        for _ in 0..2 {
            reconcile_cluster(&fake, &ctx).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_server_normalisation_is_not_mistaken_for_drift() {
    // An API server (or webhook) that stores a port number as a string:
    // the live object never looks like our rendering. Applied once, it is
    // remembered and not fought on every reconcile.
    let fake = FakeApiServer::new();
    fake.on_apply("services", |svc| {
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for p in ports {
                if let Some(n) = p["targetPort"].as_i64() {
                    p["targetPort"] = serde_json::json!(n.to_string());
                }
            }
        }
    });
    let (fake, ctx, _emqx, _) = steady_cluster_in(fake, 3).await;
    assert_steady(&fake, async {
        for _ in 0..3 {
            reconcile_cluster(&fake, &ctx).await;
        }
    })
    .await;
    // A real edit of the same object is still drift.
    fake.edit::<Service, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 11883;
    });
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        writes_without_events(&fake),
        vec!["PATCH /api/v1/namespaces/weir-riverside-water/services/riverside-mqtt"]
    );
    let svc = fake.get::<Service>(Some(NS), "riverside-mqtt").unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 1883);
}
