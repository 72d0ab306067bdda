//! Object names, labels and metadata shared by every object of a cluster,
//! and the mapping between pods, ordinals and Erlang node names.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use weir_crds::MqttCluster;

use crate::apply::labels;
use crate::tenant::builders::BROKER_COMPONENT;
use weir_crds::names::labels as label;

pub fn name(c: &MqttCluster) -> String {
    c.name_any()
}
pub fn headless_name(c: &MqttCluster) -> String {
    format!("{}-headless", c.name_any())
}
pub fn dashboard_name(c: &MqttCluster) -> String {
    format!("{}-dashboard", c.name_any())
}
pub fn config_name(c: &MqttCluster) -> String {
    format!("{}-config", c.name_any())
}
pub fn cookie_secret_name(c: &MqttCluster) -> String {
    format!("{}-erlang-cookie", c.name_any())
}
pub fn api_secret_name(c: &MqttCluster) -> String {
    format!("{}-api-credentials", c.name_any())
}
pub fn historian_name(c: &MqttCluster) -> String {
    format!("{}-historian", c.name_any())
}
pub fn external_policy_name(c: &MqttCluster) -> String {
    format!("{}-allow-external-mqtt", c.name_any())
}
pub(super) fn ns(c: &MqttCluster) -> String {
    c.namespace().unwrap_or_default()
}
/// Pod name of ordinal `i`.
pub fn pod_name(c: &MqttCluster, i: i32) -> String {
    format!("{}-{i}", c.name_any())
}
/// The Erlang node name of ordinal `i` (its pod's FQDN through the headless Service).
pub fn node_name(c: &MqttCluster, i: i32) -> String {
    format!(
        "emqx@{}.{}.{}.svc.cluster.local",
        pod_name(c, i),
        headless_name(c),
        ns(c)
    )
}
/// Ordinal of an Erlang node name of this cluster, if it is one.
pub fn node_ordinal(c: &MqttCluster, node: &str) -> Option<i32> {
    let host = node.strip_prefix("emqx@")?;
    let pod = host.split('.').next()?;
    pod.strip_prefix(&format!("{}-", c.name_any()))?
        .parse()
        .ok()
}

pub fn selector_labels(c: &MqttCluster) -> BTreeMap<String, String> {
    [
        (label::MQTT_CLUSTER.to_string(), c.name_any()),
        (
            BROKER_COMPONENT.0.to_string(),
            BROKER_COMPONENT.1.to_string(),
        ),
    ]
    .into()
}

pub(super) fn pod_labels(c: &MqttCluster) -> BTreeMap<String, String> {
    let mut l = labels(label::MQTT_CLUSTER, &c.name_any());
    l.extend(selector_labels(c));
    l.insert(label::NAME.into(), "emqx".into());
    l.insert(label::INSTANCE.into(), c.name_any());
    l
}

pub(super) fn meta(c: &MqttCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: c.namespace(),
        labels: Some(labels(label::MQTT_CLUSTER, &c.name_any())),
        owner_references: c.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;

    #[test]
    fn node_names_map_to_ordinals() {
        let c = cluster(3);
        let n = node_name(&c, 2);
        assert_eq!(
            n,
            "emqx@riverside-mqtt-2.riverside-mqtt-headless.weir-riverside-water.svc.cluster.local"
        );
        assert_eq!(node_ordinal(&c, &n), Some(2));
        assert_eq!(node_ordinal(&c, "emqx@other-2.x"), None);
    }
}
