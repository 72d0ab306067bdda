//! The operator's integration tests, one binary: the reconcilers against the
//! in-memory API server (kube's tower-test mock service) and a mock EMQX
//! API, asserting the calls they make and what a user sees; the EMQX
//! client; the running operator's wiring; and the Helm chart.
//!
//! One binary, so the test code links once (`cargo test -p weir-operator
//! --test it`); the modules split it by concern.

mod chart;
mod controllers;
mod edge_gateway;
mod emqx_client;
mod mqtt_cluster;
mod support;
mod tenant;
