//! Harness for end-to-end scenarios: starts real processes (weir-api,
//! weir-agent, weir-historian, mosquitto) on free ports with throwaway data,
//! and talks to them the way a user or an agent would.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this
//! test binary; run `cargo build --workspace` first when running `-p weir-e2e`
//! alone.

pub mod api;
pub mod fleet;
pub mod k8s_sim;
pub mod procs;

pub use api::ApiClient;
pub use procs::{bin, free_port, wait_for, Child, Mosquitto, Postgres};
