//! Scaling down one node at a time, each evacuated first (its clients and
//! sessions handed to the nodes that stay), and an evacuation stopped when
//! the scale-down it served is cancelled: a node left evacuating takes no
//! new connections while still counted as a member.

use kube::runtime::events::EventType;
use weir_crds::MqttCluster;

use super::builders as b;
use super::findings::Findings;
use crate::context::Context;
use crate::emqx::{EmqxCluster, EmqxError, EvacuationRequest, Node};

/// The replica count the StatefulSet gets this round. With `live` above
/// `spec.replicas` it stays at `live` until the top node has drained.
pub(super) async fn replicas(
    c: &MqttCluster,
    ctx: &Context,
    emqx: &EmqxCluster,
    nodes: Option<&[Node]>,
    live: Option<i32>,
    f: &mut Findings,
) -> i32 {
    let Some(live) = live.filter(|l| *l > c.spec.replicas) else {
        if was_scaling(c) && nodes.is_some() {
            stop_cancelled(c, ctx, emqx, f).await;
        }
        return c.spec.replicas;
    };
    let leaving = live - 1;
    let pod = b::pod_name(c, leaving);
    match evacuate(c, emqx, nodes, leaving).await {
        Ok(Evacuation::Drained) => {
            ctx.event(
                c,
                EventType::Normal,
                "ScaledDown",
                "Scale",
                format!("node {pod} evacuated; removing it"),
            )
            .await;
            leaving
        }
        Ok(Evacuation::Unavailable) => {
            ctx.event(c, EventType::Warning, "EvacuationUnavailable", "Scale", format!("this EMQX edition offers no node evacuation; clients of {pod} reconnect to the other nodes")).await;
            leaving
        }
        Ok(Evacuation::Started) => {
            f.progressing(
                "Evacuating",
                format!("evacuating node {pod} before removing it"),
            );
            ctx.event(
                c,
                EventType::Normal,
                "EvacuationStarted",
                "Scale",
                format!("evacuating node {pod}"),
            )
            .await;
            live
        }
        Ok(Evacuation::InProgress(msg)) => {
            f.progressing("Evacuating", msg);
            live
        }
        Err(e) => {
            f.degraded(
                "EvacuationFailed",
                format!("could not evacuate node {pod}: {e}"),
            );
            live
        }
    }
}

/// The last status said a scale-down was under way: only then is EMQX
/// asked for evacuations to stop (not on every steady reconcile).
fn was_scaling(c: &MqttCluster) -> bool {
    c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Scaling")
}

/// Stop every evacuation of a node the spec wants again.
async fn stop_cancelled(c: &MqttCluster, ctx: &Context, emqx: &EmqxCluster, f: &mut Findings) {
    let status = match emqx
        .call(|cl| async move { cl.rebalance_status().await })
        .await
    {
        Ok(s) => s,
        Err(EmqxError::NotAvailable(_)) => return,
        Err(e) => {
            f.degraded(
                "EvacuationStopFailed",
                format!("could not ask EMQX which nodes are evacuating: {e}"),
            );
            return;
        }
    };
    for e in &status.evacuations {
        if b::node_ordinal(c, &e.node).is_none_or(|o| o >= c.spec.replicas) {
            continue;
        }
        let node = e.node.clone();
        match emqx
            .call(|cl| {
                let node = node.clone();
                async move { cl.stop_evacuation(&node).await }
            })
            .await
        {
            Ok(()) => {
                ctx.event(
                    c,
                    EventType::Normal,
                    "EvacuationStopped",
                    "Scale",
                    format!("the scale-down was cancelled: node {node} takes connections again"),
                )
                .await;
            }
            Err(err) => f.degraded(
                "EvacuationStopFailed",
                format!("the scale-down was cancelled but node {node} is still evacuating: {err}"),
            ),
        }
    }
}

enum Evacuation {
    Started,
    InProgress(String),
    Drained,
    /// This EMQX edition has no evacuation API.
    Unavailable,
}

async fn evacuate(
    c: &MqttCluster,
    emqx: &EmqxCluster,
    nodes: Option<&[Node]>,
    ordinal: i32,
) -> Result<Evacuation, EmqxError> {
    let node = b::node_name(c, ordinal);
    let Some(nodes) = nodes else {
        return Err(EmqxError::NoNodeAnswered {
            tried: emqx.nodes.len(),
        });
    };
    if !nodes.iter().any(|n| n.node == node && n.running()) {
        // Already gone from the cluster: nothing left to drain.
        return Ok(Evacuation::Drained);
    }
    let status = match emqx
        .call(|cl| async move { cl.rebalance_status().await })
        .await
    {
        Err(EmqxError::NotAvailable(_)) => return Ok(Evacuation::Unavailable),
        other => other?,
    };
    if let Some(e) = status.evacuations.iter().find(|e| e.node == node) {
        return Ok(if e.drained() {
            Evacuation::Drained
        } else {
            // Live counts go to the log, not the status: a status that
            // changes on every poll would trigger the next reconcile at once.
            tracing::info!(
                node = %node,
                connections = e.stats.current_connected,
                sessions = e.stats.current_sessions,
                "evacuation in progress"
            );
            Evacuation::InProgress(format!(
                "evacuating node {}: waiting for its connections and sessions to move to the other nodes",
                b::pod_name(c, ordinal)
            ))
        });
    }
    let req = EvacuationRequest {
        conn_evict_rate: 500,
        sess_evict_rate: 500,
        wait_takeover: 30,
        migrate_to: nodes
            .iter()
            .filter(|n| {
                n.running() && b::node_ordinal(c, &n.node).is_some_and(|o| o < c.spec.replicas)
            })
            .map(|n| n.node.clone())
            .collect(),
    };
    match emqx
        .call(|cl| {
            let (node, req) = (node.clone(), req.clone());
            async move { cl.start_evacuation(&node, &req).await }
        })
        .await
    {
        Ok(()) => Ok(Evacuation::Started),
        Err(EmqxError::NotAvailable(_)) => Ok(Evacuation::Unavailable),
        Err(e) => Err(e),
    }
}
