//! What one round does to the StatefulSet and the EMQX cluster, as a pure
//! decision over the observed [`Facts`] and the replica count the scale
//! step settled on: the rollout step, whether the licence boundary holds
//! the StatefulSet, the StatefulSet to apply, the stuck pods to replace and
//! the departed nodes to remove. No I/O, so each decision is tested here.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use weir_crds::MqttCluster;

use super::builders::{self as b, TEMPLATE_HASH_ANNOTATION};
use super::findings::Findings;
use super::observe::Facts;
use super::pods::{ordinal_of, pod_ready, pod_stuck};
use super::preconditions;
use super::rollout::{decide, PodView, Rollout, RolloutInput};

#[derive(Debug)]
pub(super) struct Plan {
    /// The upgrade step; Idle while held.
    pub rollout: Rollout,
    /// EMQX 5.9+ without a license: nothing on the StatefulSet moves, so a
    /// working 5.8 cluster is never rolled across the licence boundary.
    pub hold: bool,
    /// Hash of the pod template rendered now.
    pub template: String,
    /// The StatefulSet to apply; None while held.
    pub statefulset: Option<StatefulSet>,
    /// Pods stuck on the old template, `(name, reason)`: the StatefulSet
    /// controller never replaces them on its own (emqx-operator's "upgrade
    /// stuck after the image was corrected"), so they are deleted.
    pub replace: Vec<(String, String)>,
    /// Stopped EMQX members that left for good (scale-down): they must not
    /// linger in the cluster.
    pub departed: Vec<String>,
    /// The upgrade's progress or stall, and a storage size that cannot apply.
    pub findings: Findings,
}

impl Plan {
    /// Every node runs the spec's version (as far as this round knows).
    pub fn version_current(&self, facts: &Facts) -> bool {
        self.rollout == Rollout::Idle && facts.live_sts.is_some() && !self.hold
    }
}

pub(super) fn plan(c: &MqttCluster, facts: &Facts, replicas: i32) -> Plan {
    let template = b::template_hash(c);
    let input = rollout_input(c, facts, replicas, &template);
    let hold = preconditions::license_required(c) && facts.live_sts.is_some();
    let rollout = if hold { Rollout::Idle } else { decide(&input) };
    let mut findings = Findings::default();
    match &rollout {
        Rollout::Idle => {}
        Rollout::Step { waiting_on, .. } => findings.progressing("Upgrading", format!("updating node {} to {}; one node at a time", b::pod_name(c, *waiting_on), c.spec.image_ref())),
        Rollout::Stalled { ordinal, reason, .. } => findings.degraded(
            "UpgradeStalled",
            format!("node {} on {} cannot start ({reason}); the rollout stopped there. Fix spec.version or spec.image and the operator replaces the stuck node", b::pod_name(c, *ordinal), c.spec.image_ref()),
        ),
    }
    let claim = live_claim(c, facts);
    if let Some(cl) = &claim {
        let live_size = b::claim_size(cl);
        if live_size != Some(c.spec.storage.size.as_str()) {
            findings.degraded("StorageSizeImmutable", format!("spec.storage.size {} differs from the volumes' {}; StatefulSet volumes cannot be resized here, expand the PVCs directly", c.spec.storage.size, live_size.unwrap_or_default()));
        }
    }
    let replace = if input.template_changed && !hold {
        facts
            .pods
            .iter()
            .filter_map(|p| Some((p.name_any(), pod_stuck(p)?)))
            .collect()
    } else {
        vec![]
    };
    Plan {
        statefulset: (!hold).then(|| b::statefulset(c, replicas, rollout.partition(), claim)),
        rollout,
        hold,
        template,
        replace,
        departed: departed(c, facts, replicas),
        findings,
    }
}

/// Ordinals EMQX reports as running members; None when its API did not answer.
pub(super) fn running_ordinals(c: &MqttCluster, facts: &Facts) -> Option<BTreeSet<i32>> {
    facts.nodes.as_ref().map(|ns| {
        ns.iter()
            .filter(|n| n.running())
            .filter_map(|n| b::node_ordinal(c, &n.node))
            .collect()
    })
}

fn rollout_input(c: &MqttCluster, facts: &Facts, replicas: i32, template: &str) -> RolloutInput {
    let live = facts.live_sts.as_ref();
    let live_template = live.and_then(|s| s.annotations().get(TEMPLATE_HASH_ANNOTATION));
    let status = live.and_then(|s| s.status.as_ref());
    RolloutInput {
        replicas,
        exists: live.is_some(),
        template_changed: live.is_some() && live_template.map(String::as_str) != Some(template),
        live_partition: live
            .and_then(|s| {
                s.spec
                    .update_strategy
                    .as_ref()?
                    .rolling_update
                    .as_ref()?
                    .partition
            })
            .unwrap_or(0),
        observed_current: status.and_then(|s| s.observed_generation)
            >= live.and_then(|s| s.metadata.generation),
        update_revision: status.and_then(|s| s.update_revision.clone()),
        current_revision: status.and_then(|s| s.current_revision.clone()),
        pods: facts
            .pods
            .iter()
            .filter_map(|p| {
                Some(PodView {
                    ordinal: ordinal_of(c, p)?,
                    revision: p.labels().get("controller-revision-hash").cloned(),
                    ready: pod_ready(p),
                    stuck: pod_stuck(p),
                })
            })
            .collect(),
        running_nodes: running_ordinals(c, facts),
    }
}

/// The live StatefulSet's claim template (it cannot change once created),
/// rebuilt so a storage class the server filled in is kept.
fn live_claim(c: &MqttCluster, facts: &Facts) -> Option<PersistentVolumeClaim> {
    facts
        .live_sts
        .as_ref()
        .and_then(|s| s.spec.volume_claim_templates.as_ref()?.first().cloned())
        .map(|live| {
            b::data_claim(
                b::claim_size(&live).unwrap_or(&c.spec.storage.size),
                live.spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone()),
            )
        })
}

/// Stopped members whose ordinal is gone (or that are not this cluster's).
fn departed(c: &MqttCluster, facts: &Facts, replicas: i32) -> Vec<String> {
    facts
        .nodes
        .iter()
        .flatten()
        .filter(|n| !n.running())
        .filter(|n| b::node_ordinal(c, &n.node).is_none_or(|o| o >= replicas))
        .map(|n| n.node.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus,
    };
    use kube::api::ObjectMeta;

    use super::*;
    use crate::emqx::Node;
    use crate::mqtt_cluster::builders::tests::cluster;

    fn pod(c: &MqttCluster, ordinal: i32, revision: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(b::pod_name(c, ordinal)),
                labels: Some([("controller-revision-hash".into(), revision.into())].into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn stuck(mut p: Pod, reason: &str) -> Pod {
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        p
    }

    fn node(c: &MqttCluster, ordinal: i32, status: &str) -> Node {
        Node {
            node: b::node_name(c, ordinal),
            node_status: status.into(),
            version: None,
            connections: 0,
            live_connections: 0,
            role: None,
        }
    }

    /// The StatefulSet the operator applied for `c` with `replicas` and
    /// `partition`, as the StatefulSet controller reports it settled on
    /// `revision`.
    fn live(c: &MqttCluster, replicas: i32, partition: i32, revision: &str) -> StatefulSet {
        let mut s = b::statefulset(c, replicas, partition, None);
        s.metadata.generation = Some(1);
        s.status = Some(StatefulSetStatus {
            observed_generation: Some(1),
            current_revision: Some(revision.into()),
            update_revision: Some(revision.into()),
            ..Default::default()
        });
        s
    }

    /// `n` ready pods on `revision`, all running in EMQX.
    fn steady(c: &MqttCluster, n: i32, revision: &str) -> Facts {
        Facts {
            live_sts: Some(live(c, n, 0, revision)),
            pods: (0..n).map(|i| pod(c, i, revision, true)).collect(),
            nodes: Some((0..n).map(|i| node(c, i, "running")).collect()),
            limit: None,
        }
    }

    fn replicas_of(p: &Plan) -> Option<i32> {
        p.statefulset.as_ref().and_then(|s| s.spec.replicas)
    }

    #[test]
    fn a_new_cluster_gets_its_statefulset_at_partition_zero() {
        let c = cluster(3);
        let p = plan(&c, &Facts::default(), 3);
        assert_eq!(p.rollout, Rollout::Idle);
        assert_eq!(replicas_of(&p), Some(3));
        assert!(!p.version_current(&Facts::default()), "no node runs yet");
        assert!(p.findings.degraded.is_empty() && p.findings.progressing.is_empty());
    }

    #[test]
    fn a_steady_cluster_is_idle_and_current() {
        let c = cluster(3);
        let facts = steady(&c, 3, "r1");
        let p = plan(&c, &facts, 3);
        assert_eq!(p.rollout, Rollout::Idle);
        assert!(p.version_current(&facts));
        assert!(p.replace.is_empty() && p.departed.is_empty());
        assert_eq!(p.statefulset, Some(b::statefulset(&c, 3, 0, None)));
    }

    #[test]
    fn a_version_change_starts_at_the_highest_node() {
        let old = cluster(3);
        let facts = steady(&old, 3, "r1");
        let mut c = cluster(3);
        c.spec.version = "5.8.7".into();
        let p = plan(&c, &facts, 3);
        assert_eq!(
            p.rollout,
            Rollout::Step {
                partition: 2,
                waiting_on: 2
            }
        );
        assert_eq!(p.statefulset, Some(b::statefulset(&c, 3, 2, None)));
        assert_eq!(p.findings.progressing[0].0, "Upgrading");
        assert!(p.findings.progressing[0].1.contains("riverside-mqtt-2"));
        assert!(!p.version_current(&facts));
    }

    #[test]
    fn the_licence_boundary_holds_the_statefulset() {
        let old = cluster(3);
        let facts = steady(&old, 3, "r1");
        let mut c = cluster(3);
        c.spec.version = "5.9.0".into();
        let p = plan(&c, &facts, 3);
        assert!(p.hold);
        assert_eq!(p.rollout, Rollout::Idle);
        assert_eq!(p.statefulset, None, "the 5.8 nodes are left as they are");
        assert!(!p.version_current(&facts), "the nodes still run 5.8");
        // A single node needs no license, and a new cluster is not held.
        assert!(!plan(&cluster(1), &steady(&cluster(1), 1, "r1"), 1).hold);
        let p = plan(&c, &Facts::default(), 3);
        assert!(!p.hold && p.statefulset.is_some());
    }

    #[test]
    fn a_scale_down_keeps_the_statefulset_at_the_replicas_the_scale_step_chose() {
        // The scale step keeps the live count until the top node drained.
        let c = cluster(2);
        let p = plan(&c, &steady(&c, 3, "r1"), 3);
        assert_eq!(replicas_of(&p), Some(3));
        let p = plan(&c, &steady(&c, 3, "r1"), 2);
        assert_eq!(replicas_of(&p), Some(2));
    }

    #[test]
    fn stopped_nodes_above_the_replicas_are_removed_from_the_cluster() {
        let c = cluster(2);
        let mut facts = steady(&c, 2, "r1");
        let nodes = facts.nodes.as_mut().unwrap();
        nodes.push(node(&c, 2, "stopped"));
        nodes.push(node(&c, 1, "stopped"));
        let mut ghost = node(&c, 0, "stopped");
        ghost.node = "emqx@somewhere.else".into();
        nodes.push(ghost);
        let p = plan(&c, &facts, 2);
        assert_eq!(
            p.departed,
            vec![b::node_name(&c, 2), "emqx@somewhere.else".to_string()],
            "a stopped member the spec still wants is kept"
        );
    }

    #[test]
    fn a_stuck_pod_is_replaced_only_once_the_template_changed() {
        let c = cluster(3);
        let mut facts = steady(&c, 3, "r1");
        facts.pods[2] = stuck(pod(&c, 2, "r2", false), "ImagePullBackOff");
        facts.live_sts = Some(live(&c, 3, 2, "r1"));
        facts
            .live_sts
            .as_mut()
            .unwrap()
            .status
            .as_mut()
            .unwrap()
            .update_revision = Some("r2".into());
        let p = plan(&c, &facts, 3);
        assert_eq!(
            p.rollout,
            Rollout::Stalled {
                partition: 2,
                ordinal: 2,
                reason: "ImagePullBackOff".into()
            }
        );
        assert_eq!(p.findings.degraded[0].0, "UpgradeStalled");
        assert!(p.replace.is_empty(), "waiting for a corrected spec");

        let mut fixed = c.clone();
        fixed.spec.version = "5.8.7".into();
        let p = plan(&fixed, &facts, 3);
        assert_eq!(
            p.replace,
            vec![(
                "riverside-mqtt-2".to_string(),
                "ImagePullBackOff".to_string()
            )]
        );
    }

    #[test]
    fn a_storage_size_change_is_reported_and_the_volumes_kept() {
        let c = cluster(3);
        let facts = steady(&c, 3, "r1");
        let mut bigger = c.clone();
        bigger.spec.storage.size = "20Gi".into();
        let p = plan(&bigger, &facts, 3);
        assert_eq!(p.findings.degraded[0].0, "StorageSizeImmutable");
        let sts = p.statefulset.unwrap();
        let claim = &sts.spec.volume_claim_templates.unwrap()[0];
        assert_eq!(b::claim_size(claim), Some(c.spec.storage.size.as_str()));
    }
}
