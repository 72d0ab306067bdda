//! MqttCluster controller: EMQX 5 as one StatefulSet, scaled down by
//! evacuating nodes, upgraded one node at a time, reconfigured at runtime.

pub mod builders;
mod credentials;
mod findings;
mod lifecycle;
mod pods;
mod preconditions;
mod reconcile;
pub mod rollout;
mod runtime_config;
mod scale;
mod status;

pub use reconcile::{error_policy, reconcile};

/// Held when `spec.storage.reclaimPolicy: Delete`, to delete the volumes.
pub const PVC_FINALIZER: &str = "weir.dev/pvc-cleanup";
/// `weir.dev/paused: "true"` stops reconciliation of one cluster.
pub const PAUSE_ANNOTATION: &str = "weir.dev/paused";
