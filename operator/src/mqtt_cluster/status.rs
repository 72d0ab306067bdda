//! The status a round's findings and observations add up to: phase, the
//! three standard conditions, nodes. Pure, so the wording is tested here.

use weir_crds::condition::set_condition;
use weir_crds::mqtt_cluster::{ConnectionLimit, NodeStatus};
use weir_crds::{Condition, ConditionStatus, MqttCluster, MqttClusterStatus};

use super::builders as b;
use super::findings::Findings;
use super::observe::Facts;
use super::plan::{running_ordinals, Plan};
use super::pods::{label_selector, ordinal_of};
use super::rollout::Rollout;
use crate::apply::standard_conditions;
use crate::emqx::Node;

/// What the round saw, besides its findings.
pub(super) struct Observed {
    /// Replicas the StatefulSet gets this round.
    pub replicas: i32,
    /// Ready pods below `replicas`.
    pub ready: i32,
    /// Nodes EMQX reports running below `replicas` (`ready` when it did not answer).
    pub running: i32,
    pub upgrading: bool,
    /// Every node runs `spec.version`.
    pub version_current: bool,
    pub selector: String,
    pub limit: Option<ConnectionLimit>,
    /// EMQX's node list (departed nodes already removed); None: not asked.
    pub nodes: Option<Vec<Node>>,
}

/// What the round saw and did, counted for the status; a cluster whose
/// nodes are not all ready yet (and nothing else in flight) is Provisioning.
pub(super) fn observed(
    c: &MqttCluster,
    facts: &Facts,
    plan: &Plan,
    replicas: i32,
    removed: &[String],
    f: &mut Findings,
) -> Observed {
    let ready = facts
        .ready_pods()
        .filter(|p| ordinal_of(c, p).is_some_and(|o| o < replicas))
        .count() as i32;
    let running = running_ordinals(c, facts).map_or(ready, |r| {
        r.iter().filter(|o| **o < replicas).count() as i32
    });
    if plan.rollout == Rollout::Idle
        && facts.live_replicas().is_some()
        && ready < c.spec.replicas
        && f.progressing.is_empty()
    {
        f.progressing(
            "Provisioning",
            format!("{ready} of {} nodes ready", c.spec.replicas),
        );
    }
    if facts.live_sts.is_none() {
        f.progressing("Provisioning", "creating the EMQX nodes");
    }
    Observed {
        replicas,
        ready,
        running,
        upgrading: matches!(plan.rollout, Rollout::Step { .. }),
        version_current: plan.version_current(facts),
        selector: label_selector(c),
        limit: facts.limit.clone(),
        nodes: facts.nodes.as_ref().map(|ns| {
            ns.iter()
                .filter(|n| !removed.contains(&n.node))
                .cloned()
                .collect()
        }),
    }
}

pub(super) fn join(v: &[(String, String)]) -> String {
    v.iter().map(|x| x.1.clone()).collect::<Vec<_>>().join("; ")
}

/// The phase a user sees first: problems, then scaling, upgrading and
/// other work in flight, else Ready.
fn phase(c: &MqttCluster, f: &Findings, o: &Observed) -> &'static str {
    if !f.degraded.is_empty() {
        "Degraded"
    } else if f.progressing.iter().any(|p| p.0 == "Evacuating") || o.replicas != c.spec.replicas {
        "Scaling"
    } else if o.upgrading {
        "Upgrading"
    } else if !f.progressing.is_empty() {
        "Provisioning"
    } else {
        "Ready"
    }
}

pub(super) fn build(
    c: &MqttCluster,
    f: &Findings,
    o: Observed,
) -> (MqttClusterStatus, &'static str) {
    let old = c.status.clone().unwrap_or_default();
    let generation = c.metadata.generation;
    let phase = phase(c, f, &o);
    let nodes_running = format!("{} of {} nodes running", o.running, c.spec.replicas);
    let mut conditions = standard_conditions(
        &old.conditions,
        generation,
        if phase == "Ready" {
            (true, "ClusterReady", nodes_running)
        } else {
            (
                false,
                f.degraded
                    .first()
                    .or(f.progressing.first())
                    .map_or("NotReady", |x| x.0.as_str()),
                nodes_running,
            )
        },
        match f.progressing.first() {
            Some((r, _)) => (true, r.as_str(), join(&f.progressing)),
            None => (false, "Reconciled", "nothing in progress".into()),
        },
        match f.degraded.first() {
            Some((r, _)) => (true, r.as_str(), join(&f.degraded)),
            None => (false, "Healthy", "no problems".into()),
        },
    );
    set_condition(
        &mut conditions,
        Condition::new(
            "Paused",
            ConditionStatus::False,
            "Reconciling",
            "the operator manages this cluster",
            generation,
        ),
    );
    let mut nodes: Vec<NodeStatus> = match &o.nodes {
        Some(ns) => ns
            .iter()
            .map(|n| NodeStatus {
                name: n.node.clone(),
                status: n.node_status.clone(),
                version: n.version.clone(),
                connections: n.connections,
            })
            .collect(),
        None => old.nodes.clone(),
    };
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let status = MqttClusterStatus {
        phase: Some(phase.into()),
        replicas: o.running,
        ready_replicas: o.ready,
        ready_text: Some(format!("{}/{}", o.ready, c.spec.replicas)),
        current_version: if o.version_current {
            Some(c.spec.version.clone())
        } else {
            old.current_version.clone()
        },
        selector: Some(o.selector),
        endpoints: b::endpoints(c),
        nodes,
        connection_limit: o.limit,
        observed_generation: generation,
        conditions,
    };
    (status, phase)
}
