//! Alerts: rules over live readings and fleet health, evaluated on the
//! stream, with notifications that arrive once (Alertmanager's model:
//! for-duration, labels, grouping, silences, inhibition, receivers).
//!
//! - [`engine`]: pure evaluation (inactive → pending → firing → resolved).
//! - [`notify`]: grouping and timing of notices; webhook and email senders.
//! - [`ingest`]: the MQTT subscription (`$share/weir-alerts/{prefix}/{tenant}/#`);
//!   [`mqtt_auth`]: the api's own subscribe-only JWT for `apiJwt` clusters.
//! - [`store`]: tables and persistence; [`routes`]: the HTTP API.
//! - [`acknowledgements`]: acknowledged (no repeat notices) and shelved
//!   (hidden and silent for a while) alerts.
//!
//! One worker task owns the engine and the notifier, so neither needs a
//! lock: readings, fleet events, reloads and delivery reports reach it
//! through channels. Fleet code reports gateway, device and cluster health
//! with [`Alerts::fleet_event`] (the heartbeat handler, the fleet monitor's
//! offline sweep, the cluster prober); on start and on every reload the
//! worker also reads the fleet tables, so a rule created while a gateway is
//! already offline still fires, and an alert restored after a restart
//! resolves if its gateway came back meanwhile. Channel secrets are sealed
//! under the master key ([`crate::secrets::channel`]).
//!
//! Several replicas on one PostgreSQL database split the tenants between
//! them and tell each other about fleet events and changes ([`replicas`]):
//! each tenant's rules run on exactly one replica.

pub mod acknowledgements;
pub mod clock;
pub mod config;
pub mod engine;
pub mod entities;
pub mod formats;
pub mod handle;
pub mod ingest;
pub mod metrics;
pub mod mqtt_auth;
pub mod notify;
pub mod replicas;
pub mod routes;
pub mod rows;
pub mod rules;
pub mod silences;
pub mod store;
mod worker;

pub use crate::fleet_events::FleetEvent;
pub use clock::Clock;
pub use config::AlertsConfig;
pub use handle::Alerts;
pub use routes::router;
pub use rows::{channel_from_row, load_rule_defs, silence_from_row};
pub use silences::mute_fn;
