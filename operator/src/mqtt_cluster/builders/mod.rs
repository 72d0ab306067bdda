//! Pure functions from an MqttCluster to the objects it should produce,
//! one module per object family. Everything is re-exported here, so callers
//! name `builders::statefulset`, `builders::node_name`, ... without knowing
//! the family.

mod certificate;
mod config;
mod disruption_budget;
mod historian;
mod names;
mod network_policy;
mod services;
mod statefulset;

pub use certificate::*;
pub use config::*;
pub use disruption_budget::*;
pub use historian::*;
pub use names::*;
pub use network_policy::*;
pub use services::*;
pub use statefulset::*;

#[cfg(test)]
pub(crate) mod tests {
    use weir_crds::{MqttCluster, MqttClusterSpec};

    /// A cluster of `replicas` nodes with every default, as stored.
    pub fn cluster(replicas: i32) -> MqttCluster {
        let spec: MqttClusterSpec =
            serde_json::from_value(serde_json::json!({"replicas": replicas})).unwrap();
        let mut c = MqttCluster::new("riverside-mqtt", spec);
        c.metadata.namespace = Some("weir-riverside-water".into());
        c.metadata.uid = Some("mqc-uid".into());
        c.metadata.generation = Some(1);
        c
    }
}
