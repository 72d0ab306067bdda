//! Harness for end-to-end scenarios: starts real processes (weir-api,
//! weir-agent, weir-historian, mosquitto) on free ports with throwaway data,
//! and talks to them the way a user or an agent would. Processes, ports,
//! waits and databases come from weir-testkit.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this
//! test binary; run `cargo build --workspace` first when running `-p weir-e2e`
//! alone.

pub mod api;
pub mod broker;
pub mod fleet;
pub mod historian;
pub mod k8s_sim;
pub mod proc_stats;
pub mod uplink_watch;

pub use api::ApiClient;
pub use broker::{broker, broker_in_memory};
