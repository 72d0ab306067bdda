//! EdgeGateway controller: signed config bundle, enrollment token and the
//! in-cluster agent.

pub mod builders;
mod reconcile;

pub use reconcile::{error_policy, reconcile};
