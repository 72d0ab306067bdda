//! What the EMQX fake remembers: the calls it received, the nodes that
//! joined each cluster, and the evacuations in progress.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// One request to the EMQX fake, as `GET /_sim/calls` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Call {
    /// Position in the log, from 0: a scenario remembers where it was.
    pub seq: usize,
    pub namespace: String,
    pub pod: String,
    pub method: String,
    /// As EMQX sees it, with the query: `/api/v5/configs?mode=merge`.
    pub path: String,
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// One node being evacuated.
#[derive(Clone, Debug)]
pub struct Evacuation {
    /// `global_status` polls since it started.
    pub polls: u32,
    pub connections: u64,
    pub migrate_to: Vec<String>,
}

/// One EMQX cluster (namespace, MqttCluster name).
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Nodes that joined (their pod was ready once) and have not been
    /// force_left, with the version they last ran. A node whose pod is gone
    /// or not ready stays a member, `stopped`, as in EMQX.
    pub members: BTreeMap<String, String>,
    pub evacuations: BTreeMap<String, Evacuation>,
}

#[derive(Debug)]
pub struct SimState {
    pub calls: Vec<Call>,
    pub drain_after_polls: u32,
    pub clusters: HashMap<(String, String), ClusterState>,
}

impl SimState {
    pub fn new(drain_after_polls: u32) -> Self {
        Self {
            calls: Vec::new(),
            drain_after_polls,
            clusters: HashMap::new(),
        }
    }

    pub fn cluster(&mut self, namespace: &str, name: &str) -> &mut ClusterState {
        self.clusters
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
    }
}
