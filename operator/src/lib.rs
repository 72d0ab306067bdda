//! weir-operator: controllers for the `weir.dev` kinds.
//!
//! - [`tenant`]: a Tenant becomes an isolated namespace with quota and admins.
//! - [`mqtt_cluster`]: an MqttCluster becomes an EMQX 5 StatefulSet that is
//!   scaled, upgraded and reconfigured one node at a time.
//! - [`edge_gateway`]: an EdgeGateway becomes a signed config bundle, an
//!   enrollment token and (in-cluster mode) an agent Deployment.
//!
//! Every controller follows the same shape: pure builders turn the resource
//! into the objects it should produce, and the reconciler compares them with
//! what the API server holds and writes only what differs ([`apply`]).

pub mod apply;
pub mod context;
pub mod controllers;
pub mod edge_gateway;
pub mod emqx;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod mqtt_cluster;
pub mod report;
pub mod server;
pub mod tenant;
/// The in-memory API server and mock EMQX API; `--features testing`.
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{Context, OperatorConfig};
pub use error::{Error, Result};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "weir-operator";
