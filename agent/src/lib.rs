//! weir-agent: the edge agent.
//!
//! Data path (after Vector's sources → transforms → sinks, with bounded
//! buffers and end-to-end acknowledgements): adapters ([`adapters`]) read
//! devices into [`sample::Sample`]s, the [`pipeline`] applies the configured
//! rules, the disk [`queue`] stores frames until the [`uplink`] has the
//! broker's PUBACK for them. [`runtime`] wires them and swaps configs;
//! [`config_loop`] verifies signed bundles; [`enroll`] talks to the api.

pub mod adapters;
pub mod config_loop;
pub mod credentials;
pub mod enroll;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod runtime;
pub mod sample;
pub mod server_url;
pub mod state;
pub mod status;
pub mod uplink;

pub use error::{Error, Result};
