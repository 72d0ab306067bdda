//! Tenant controller: namespace, quota, isolation and admin bindings.

pub mod builders;
mod reconcile;

pub use reconcile::{error_policy, reconcile, FINALIZER};
