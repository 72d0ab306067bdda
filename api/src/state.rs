//! Shared state handed to every handler.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::oidc::OidcProvider;
use crate::config::Config;
use crate::db::{WriteLock, WriteTx};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::rbac::Rbac;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub rbac: Rbac,
    pub config: Arc<Config>,
    pub writes: WriteLock,
    pub metrics: Arc<Metrics>,
    /// Discovered on first use, so the api starts even when the provider is down.
    pub oidc: Arc<OidcProvider>,
    /// The alerts runtime (rules evaluation, notifications).
    pub alerts: crate::alerts::Alerts,
    /// Fleet runtime: master key, Kubernetes client, enrollment rate limit,
    /// and `fleet.events` (broadcast of gateway_offline/gateway_online).
    pub fleet: std::sync::Arc<crate::fleet::Fleet>,
    /// Sign-in throttle, lockouts and failed-login audit tallies.
    pub login: Arc<crate::auth::throttle::LoginGuard>,
    /// Tokens, roles, orgs and projects of recent requests (`auth::cache`).
    pub auth_cache: Arc<crate::auth::cache::AuthCache>,
}

impl AppState {
    /// Start a change: a transaction that holds the write lock (see `db::WriteLock`).
    pub async fn write(&self) -> Result<WriteTx, ApiError> {
        Ok(self.writes.begin(&self.db).await?)
    }
}
