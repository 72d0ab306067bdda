//! Upgrades one node at a time through the StatefulSet partition, the
//! licence boundary, timeouts and stuck nodes.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, Pod};
use weir_crds::MqttCluster;
use weir_operator::OperatorConfig;

use super::*;
use crate::support::*;

#[tokio::test]
async fn no_upgrade_across_the_licence_boundary_without_a_license() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    let before = sts(&fake);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.9.1".into()
    });
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        sts(&fake).spec,
        before.spec,
        "the 5.8 nodes are left as they are"
    );
    let c = stored_cluster(&fake);
    let d = condition(&c, "Degraded");
    assert_eq!(d.reason, "LicenseRequired");
    assert!(d.message.contains("kept as they are"), "{}", d.message);
    assert_eq!(
        c.status.as_ref().unwrap().current_version.as_deref(),
        Some("5.8.6")
    );
}

#[tokio::test]
async fn a_rollout_step_that_waits_too_long_is_reported() {
    let (fake, _ctx, _emqx, locator) = steady_cluster(3).await;
    let config = OperatorConfig {
        rollout_timeout_secs: 0,
        ..Default::default()
    };
    let ctx = context_with(&fake, config, locator);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.7".into()
    });
    reconcile_cluster(&fake, &ctx).await;
    let c = stored_cluster(&fake);
    let d = condition(&c, "Degraded");
    assert_eq!(d.reason, "RolloutTimedOut");
    assert!(d.message.contains("riverside-mqtt-2"), "{}", d.message);
    assert_eq!(
        partition(&sts(&fake)),
        2,
        "the rollout itself goes on waiting"
    );
}

#[tokio::test]
async fn upgrade_goes_one_node_at_a_time_via_partition() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.7".into()
    });

    reconcile_cluster(&fake, &ctx).await;
    let s = sts(&fake);
    assert_eq!(
        (image(&s), partition(&s)),
        ("emqx/emqx:5.8.7".to_string(), 2),
        "only the highest node first"
    );
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Upgrading")
    );

    // Node 2 restarted on the new image but has not rejoined EMQX yet: hold.
    roll(&fake, &emqx, &[2], "5.8.7");
    emqx.with(|s| s.nodes[2].node_status = "stopped".into());
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        partition(&sts(&fake)),
        2,
        "next node waits until the upgraded one rejoined"
    );
    emqx.with(|s| s.nodes[2].node_status = "running".into());
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(partition(&sts(&fake)), 1);
    roll(&fake, &emqx, &[1], "5.8.7");
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(partition(&sts(&fake)), 0);
    roll(&fake, &emqx, &[0], "5.8.7");
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.status.as_mut().unwrap().current_revision = Some("rev2".into())
    });
    reconcile_cluster(&fake, &ctx).await;
    let c = stored_cluster(&fake);
    let st = c.status.as_ref().unwrap();
    assert_eq!(
        (st.phase.as_deref(), st.current_version.as_deref()),
        (Some("Ready"), Some("5.8.7"))
    );
    assert!(st
        .nodes
        .iter()
        .all(|n| n.version.as_deref() == Some("5.8.7")));
    // No old nodes left and no further writes.
    assert!(!emqx.calls().iter().any(|c| c.contains("force_leave")));
    assert_steady(&fake, reconcile_cluster(&fake, &ctx)).await;
}

#[tokio::test]
async fn upgrade_stuck_on_bad_image_recovers_when_image_is_corrected() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.99".into()
    });
    reconcile_cluster(&fake, &ctx).await;
    // The StatefulSet controller starts node 2 on the bad image; it cannot pull.
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        let st = s.status.as_mut().unwrap();
        st.update_revision = Some("rev-bad".into());
        st.observed_generation = s.metadata.generation;
    });
    let mut bad = pod(2, "rev-bad", false);
    bad.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "emqx".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("manifest for emqx/emqx:5.8.99 not found".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    fake.put(&bad);
    reconcile_cluster(&fake, &ctx).await;
    let c = stored_cluster(&fake);
    let degraded = condition(&c, "Degraded");
    assert_eq!(degraded.reason, "UpgradeStalled");
    assert!(
        degraded.message.contains("riverside-mqtt-2")
            && degraded.message.contains("ImagePullBackOff"),
        "{}",
        degraded.message
    );
    assert_eq!(partition(&sts(&fake)), 2, "a failed node stops the rollout");

    // The user corrects the version: the template changes and the stuck pod
    // is replaced (the StatefulSet controller alone would wait forever).
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.7".into()
    });
    fake.clear_calls();
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(image(&sts(&fake)), "emqx/emqx:5.8.7");
    assert!(fake.calls().contains(
        &"DELETE /api/v1/namespaces/weir-riverside-water/pods/riverside-mqtt-2".to_string()
    ));
    assert!(fake.get::<Pod>(Some(NS), "riverside-mqtt-2").is_none());
    assert!(
        fake.get::<Pod>(Some(NS), "riverside-mqtt-1").is_some(),
        "healthy nodes are left alone"
    );
}
