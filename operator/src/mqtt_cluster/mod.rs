//! MqttCluster controller: EMQX 5 as one StatefulSet, scaled down by
//! evacuating nodes, upgraded one node at a time, reconfigured at runtime.

pub mod builders;
mod reconcile;
pub mod rollout;

pub use reconcile::{error_policy, reconcile, PAUSE_ANNOTATION, PVC_FINALIZER};
