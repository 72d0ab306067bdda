//! The PodDisruptionBudget: voluntary disruptions take one node at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::MqttCluster;

use super::*;

/// At most one node down by voluntary disruption.
pub fn pod_disruption_budget(c: &MqttCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(c, name(c)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(c)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;

    #[test]
    fn pdb_allows_one_node_down() {
        let p = pod_disruption_budget(&cluster(3)).spec.unwrap();
        assert_eq!(p.max_unavailable, Some(IntOrString::Int(1)));
    }
}
