//! The agent's integration tests: one test binary (one link, one process)
//! with a module per area. Run one area with
//! `cargo test -p weir-agent --test it <module>::`, e.g. `delivery::`.
//!
//! `common` holds the shared harness (a broker of the test's own and a
//! subscriber that checks what arrives); the benches include it too.

mod common;

mod bundles;
mod delivery;
mod enroll;
mod insecure_http;
mod metrics;
mod modbus_mqtt;
mod modbus_rtu;
mod opcua;
mod replay;
mod sigkill;
mod tls;
