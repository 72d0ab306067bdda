//! The api's integration tests: one test binary (one link, one process)
//! with a module per area. Run one area with
//! `cargo test -p weir-api --test it <module>::`, e.g. `alerts_replicas::`.
//!
//! Shared harness first: `common` (an api over a fresh database, its
//! `on_both_databases!` macro) and the areas' support modules.

#[macro_use]
mod common;
mod alerts_support;
mod fleet_support;
mod historian_support;

mod account_lifecycle;
mod agent_bodies;
mod alerts_ack;
mod alerts_e2e;
mod alerts_fleet;
mod alerts_mqtt_jwt;
mod alerts_replicas;
mod api;
mod audit_chain;
mod broker_identity;
mod cli;
mod cluster_walls;
mod data_gaps;
mod device_credentials;
mod fleet_clusters;
mod fleet_e2e;
mod kube_sync;
mod latest;
mod oidc_sso;
mod outbound;
mod project_walls;
mod project_walls_routes;
mod rbac_matrix;
mod security_headers;
mod series;
mod series_trends;
mod signin_abuse;
mod tenants;
