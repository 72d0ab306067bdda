//! What the reconciler reads off the cluster's pods.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use weir_crds::MqttCluster;

use super::builders as b;
use super::rollout::STUCK_REASONS;

/// The label selector of the cluster's pods, as `k=v,k=v`.
pub(super) fn label_selector(c: &MqttCluster) -> String {
    b::selector_labels(c)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn ordinal_of(c: &MqttCluster, pod: &Pod) -> Option<i32> {
    pod.name_any()
        .strip_prefix(&format!("{}-", c.name_any()))?
        .parse()
        .ok()
}

pub(super) fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub(super) fn pod_stuck(p: &Pod) -> Option<String> {
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|cs| {
        let w = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.clone()?;
        STUCK_REASONS
            .contains(&reason.as_str())
            .then(|| match &w.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason,
            })
    })
}
