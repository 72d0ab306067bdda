//! Scaling: down one node at a time, each evacuated first; cancelled
//! scale-downs and departed nodes.

use k8s_openapi::api::core::v1::Pod;
use weir_crds::MqttCluster;
use weir_operator::mqtt_cluster::builders as mb;
use weir_operator::testing::emqx::node;

use super::*;
use crate::support::*;

#[tokio::test]
async fn scale_down_evacuates_the_highest_node_before_shrinking() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    emqx.with(|s| {
        s.rebalance_available = true;
        s.drain_after_polls = 2;
    });
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 2);
    let leaving = mb::node_name(&cluster(3), 2);

    // 1: evacuation starts; the StatefulSet keeps 3 nodes.
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    assert!(emqx.calls().contains(&format!(
        "POST /api/v5/load_rebalance/{leaving}/evacuation/start"
    )));
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Scaling")
    );
    // 2: sessions still draining; still 3.
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    assert!(condition(&stored_cluster(&fake), "Progressing")
        .message
        .contains("evacuating node riverside-mqtt-2"));
    // Polling the drain does not rewrite the status each time.
    emqx.with(|s| s.drain_after_polls = 100);
    assert_steady(&fake, reconcile_cluster(&fake, &ctx)).await;
    emqx.with(|s| s.drain_after_polls = 0);
    // 3: drained: now, and only now, the StatefulSet shrinks.
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(sts(&fake).spec.replicas, Some(2));
    let evac_started = emqx
        .calls()
        .iter()
        .filter(|c| c.ends_with("/evacuation/start"))
        .count();
    assert_eq!(evac_started, 1, "evacuation is started once");
    // The pod goes; EMQX lists its node as stopped: it is removed from the cluster.
    fake.remove::<Pod>(Some(NS), "riverside-mqtt-2");
    settle(&fake, 2, "rev1");
    emqx.with(|s| s.nodes[2].node_status = "stopped".into());
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx
        .calls()
        .contains(&format!("DELETE /api/v5/cluster/{leaving}/force_leave")));
    assert_eq!(emqx.with(|s| s.nodes.len()), 2);
    let c = stored_cluster(&fake);
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(
        c.status.as_ref().unwrap().ready_text.as_deref(),
        Some("2/2")
    );
    assert_steady(&fake, reconcile_cluster(&fake, &ctx)).await;
}

#[tokio::test]
async fn a_cancelled_scale_down_stops_the_evacuation() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    emqx.with(|s| {
        s.rebalance_available = true;
        s.drain_after_polls = 100;
    });
    let leaving = mb::node_name(&cluster(3), 2);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 2);
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(emqx.with(|s| s.evacuations.len()), 1);
    // Back to 3 before node 2 drained: it must take connections again.
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 3);
    reconcile_cluster(&fake, &ctx).await;
    assert!(
        emqx.calls().contains(&format!(
            "POST /api/v5/load_rebalance/{leaving}/evacuation/stop"
        )),
        "{:?}",
        emqx.calls()
    );
    assert_eq!(emqx.with(|s| s.evacuations.len()), 0);
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    let st = stored_cluster(&fake).status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Ready"), "{st:?}");
    // Steady again: EMQX is not asked about evacuations on every round.
    let before = emqx.calls().len();
    reconcile_cluster(&fake, &ctx).await;
    assert!(!emqx.calls()[before..]
        .iter()
        .any(|c| c.contains("load_rebalance")));
}

#[tokio::test]
async fn scale_down_without_evacuation_api_shrinks_with_a_warning() {
    // Open-source EMQX 5.8 answers 404 to the rebalance API.
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 2);
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(sts(&fake).spec.replicas, Some(2));
    assert!(emqx
        .calls()
        .contains(&"GET /api/v5/load_rebalance/global_status".to_string()));
    assert!(fake.writes().iter().any(|w| w.contains("/events")));
}

/// Play the StatefulSet controller after a template change up to `partition`.

#[tokio::test]
async fn ghost_nodes_are_removed_from_the_cluster() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    let ghost =
        "emqx@riverside-mqtt-5.riverside-mqtt-headless.weir-riverside-water.svc.cluster.local";
    emqx.with(|s| {
        let mut n = node(ghost, "5.8.5", 0);
        n.node_status = "stopped".into();
        s.nodes.push(n);
    });
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx
        .calls()
        .contains(&format!("DELETE /api/v5/cluster/{ghost}/force_leave")));
    assert_eq!(emqx.with(|s| s.nodes.len()), 3);
}
