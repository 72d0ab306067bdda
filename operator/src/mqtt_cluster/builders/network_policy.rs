//! The NetworkPolicy that lets clients outside the cluster reach brokers
//! exposed by a NodePort or LoadBalancer Service.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::mqtt_cluster::ServiceType;
use weir_crds::MqttCluster;

use super::*;

/// Brokers exposed outside the cluster accept MQTT on their listener ports
/// from anywhere (the tenant's default-deny policy would block gateways).
pub fn external_mqtt_policy(c: &MqttCluster) -> Option<NetworkPolicy> {
    if c.spec.service_type == ServiceType::ClusterIP {
        return None;
    }
    Some(NetworkPolicy {
        metadata: meta(c, external_policy_name(c)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(c)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: "0.0.0.0/0".into(),
                        except: None,
                    }),
                    ..Default::default()
                }]),
                ports: Some(
                    c.spec
                        .listeners
                        .iter()
                        .map(|l| NetworkPolicyPort {
                            port: Some(IntOrString::Int(l.port)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }]),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;

    #[test]
    fn external_services_get_an_mqtt_ingress_policy() {
        let mut c = cluster(3);
        assert!(external_mqtt_policy(&c).is_none());
        c.spec.service_type = ServiceType::LoadBalancer;
        let p = external_mqtt_policy(&c).unwrap().spec.unwrap();
        let ports = p.ingress.unwrap()[0].ports.clone().unwrap();
        assert_eq!(ports[0].port, Some(IntOrString::Int(1883)));
    }
}
