//! The end-to-end scenarios: one test binary (one link, one process) with a
//! module per scenario. Run one with `cargo test -p weir-e2e --test it
//! <module>::`, e.g. `broker_outage::`. They start the workspace's binaries:
//! `cargo build --workspace` first when running `-p weir-e2e` alone.

mod broker_outage;
mod bundle_refusals;
mod config_rollout;
mod device_credentials;
mod org_isolation;
mod replay;
mod setpoint_writes;
