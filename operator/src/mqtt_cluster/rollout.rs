//! The one-node-at-a-time upgrade, as a pure decision over what is observed.
//!
//! The StatefulSet's `RollingUpdate` partition is the gate: only ordinals at
//! or above it run the new template. We start at the highest ordinal and
//! lower the partition by one only after every node above it runs the new
//! revision, is Ready and is `running` in EMQX's own view of the cluster.

use std::collections::BTreeSet;

/// What the upgrade logic sees of one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub ordinal: i32,
    /// The pod's `controller-revision-hash` label.
    pub revision: Option<String>,
    pub ready: bool,
    /// Why the container cannot start (ImagePullBackOff, CrashLoopBackOff, ...).
    pub stuck: Option<String>,
}

/// Reasons a container will not get better by waiting.
pub const STUCK_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

#[derive(Clone, Debug, PartialEq)]
pub struct RolloutInput {
    pub replicas: i32,
    /// The StatefulSet exists.
    pub exists: bool,
    /// The pod template we render now differs from the one the live StatefulSet has.
    pub template_changed: bool,
    pub live_partition: i32,
    /// The StatefulSet controller has seen the latest spec.
    pub observed_current: bool,
    pub update_revision: Option<String>,
    pub current_revision: Option<String>,
    pub pods: Vec<PodView>,
    /// Ordinals EMQX reports as running members; None when its API did not answer.
    pub running_nodes: Option<BTreeSet<i32>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rollout {
    /// Nothing to roll.
    Idle,
    /// Rolling; `waiting_on` is the ordinal being updated or checked.
    Step { partition: i32, waiting_on: i32 },
    /// The node at `ordinal` runs the new revision and cannot start.
    Stalled {
        partition: i32,
        ordinal: i32,
        reason: String,
    },
}

impl Rollout {
    pub fn partition(&self) -> i32 {
        match self {
            Rollout::Idle => 0,
            Rollout::Step { partition, .. } | Rollout::Stalled { partition, .. } => *partition,
        }
    }
}

pub fn decide(i: &RolloutInput) -> Rollout {
    let top = (i.replicas - 1).max(0);
    if !i.exists {
        return Rollout::Idle;
    }
    if i.template_changed {
        return Rollout::Step {
            partition: top,
            waiting_on: top,
        };
    }
    if !i.observed_current {
        return Rollout::Step {
            partition: i.live_partition.min(top),
            waiting_on: i.live_partition.min(top),
        };
    }
    let Some(update) = i.update_revision.as_deref() else {
        return Rollout::Idle;
    };
    let updated = |ord: i32| -> bool {
        i.pods.iter().any(|p| {
            p.ordinal == ord
                && p.revision.as_deref() == Some(update)
                && p.ready
                && i.running_nodes.as_ref().is_some_and(|r| r.contains(&ord))
        })
    };
    let all_updated = (0..i.replicas).all(updated);
    let rolled = i.current_revision.as_deref() == Some(update);
    if all_updated
        || (rolled
            && i.live_partition == 0
            && i.pods.iter().all(|p| p.revision.as_deref() == Some(update)))
    {
        return Rollout::Idle;
    }
    let p = i.live_partition.min(top);
    match (p..i.replicas).find(|o| !updated(*o)) {
        None => {
            let next = (p - 1).max(0);
            Rollout::Step {
                partition: next,
                waiting_on: next,
            }
        }
        Some(o) => {
            let pod = i.pods.iter().find(|x| x.ordinal == o);
            match pod {
                Some(x) if x.revision.as_deref() == Some(update) && x.stuck.is_some() => {
                    Rollout::Stalled {
                        partition: p,
                        ordinal: o,
                        reason: x.stuck.clone().unwrap_or_default(),
                    }
                }
                _ => Rollout::Step {
                    partition: p,
                    waiting_on: o,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: i32, rev: &str, ready: bool) -> PodView {
        PodView {
            ordinal,
            revision: Some(rev.into()),
            ready,
            stuck: None,
        }
    }

    fn input(pods: Vec<PodView>, partition: i32) -> RolloutInput {
        RolloutInput {
            replicas: 3,
            exists: true,
            template_changed: false,
            live_partition: partition,
            observed_current: true,
            update_revision: Some("new".into()),
            current_revision: Some("old".into()),
            pods,
            running_nodes: Some([0, 1, 2].into()),
        }
    }

    #[test]
    fn template_change_starts_at_highest_ordinal() {
        let mut i = input(
            vec![
                pod(0, "old", true),
                pod(1, "old", true),
                pod(2, "old", true),
            ],
            0,
        );
        i.template_changed = true;
        assert_eq!(
            decide(&i),
            Rollout::Step {
                partition: 2,
                waiting_on: 2
            }
        );
    }

    #[test]
    fn partition_moves_down_only_after_node_rejoined() {
        let pods = vec![
            pod(0, "old", true),
            pod(1, "old", true),
            pod(2, "new", true),
        ];
        let mut i = input(pods, 2);
        // Pod ready but EMQX does not list it as running yet: hold.
        i.running_nodes = Some([0, 1].into());
        assert_eq!(
            decide(&i),
            Rollout::Step {
                partition: 2,
                waiting_on: 2
            }
        );
        // EMQX unreachable: hold too.
        i.running_nodes = None;
        assert_eq!(decide(&i).partition(), 2);
        i.running_nodes = Some([0, 1, 2].into());
        assert_eq!(
            decide(&i),
            Rollout::Step {
                partition: 1,
                waiting_on: 1
            }
        );
    }

    #[test]
    fn rollout_finishes_idle() {
        let i = input(
            vec![
                pod(0, "new", true),
                pod(1, "new", true),
                pod(2, "new", true),
            ],
            0,
        );
        assert_eq!(decide(&i), Rollout::Idle);
    }

    #[test]
    fn stuck_new_pod_stalls_the_rollout() {
        let mut pods = vec![
            pod(0, "old", true),
            pod(1, "old", true),
            pod(2, "new", false),
        ];
        pods[2].stuck = Some("ImagePullBackOff".into());
        let i = input(pods, 2);
        assert_eq!(
            decide(&i),
            Rollout::Stalled {
                partition: 2,
                ordinal: 2,
                reason: "ImagePullBackOff".into()
            }
        );
    }
}
