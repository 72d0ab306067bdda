//! MqttCluster controller: EMQX 5 as one StatefulSet, scaled down by
//! evacuating nodes, upgraded one node at a time, reconfigured at runtime.
//!
//! A round (see `reconcile`) goes observe → plan → act: `observe`
//! gathers the facts, `plan` decides over them without I/O (with
//! `rollout` for the upgrade gate), `act` carries the decision out and
//! `publish` writes the status that `status` builds.

mod act;
pub mod builders;
mod credentials;
mod findings;
mod lifecycle;
mod observe;
mod plan;
mod pods;
mod preconditions;
mod publish;
mod reconcile;
pub mod rollout;
mod runtime_config;
mod scale;
mod status;

pub use reconcile::{error_policy, reconcile};

/// Held when `spec.storage.reclaimPolicy: Delete`, to delete the volumes.
pub const PVC_FINALIZER: &str = "weir.dev/pvc-cleanup";
/// `weir.dev/paused: "true"` stops reconciliation of one cluster.
pub const PAUSE_ANNOTATION: &str = weir_crds::names::annotations::PAUSED;
