//! weir-api: the control-plane HTTP API.
//!
//! Start it in-process with [`start`] (tests, e2e harness, benchmarks) or
//! compose [`router`] yourself. To add a resource, see `api/README.md`
//! ("Adding a resource"): a module with an `OpenApiRouter`, merged in
//! [`api_routes`], permissions in `rbac`, rows in `api/rbac/`, and a
//! migration listed in `db::migrations`.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod fleet;
pub mod fleet_events;
pub mod health;
pub mod members;
pub mod metrics;
pub mod openapi;
pub mod orgs;
pub mod outbound;
pub mod projects;
pub mod rbac;
pub mod scope;
pub mod secrets;
pub mod state;
pub mod tenants_sync;
pub mod users;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use config::Config;
pub use error::ApiError;
pub use state::AppState;

/// Every documented route. A new module adds its router here.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router())
        .merge(auth::local::router())
        .merge(auth::oidc::router())
        .merge(users::routes::router())
        .merge(users::lifecycle::router())
        .merge(auth::account::router())
        .merge(orgs::routes::router())
        .merge(projects::routes::router())
        .merge(members::routes::router())
        .merge(auth::tokens::router())
        .merge(audit::routes::router())
        .merge(fleet::router())
        .merge(alerts::router())
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi_doc() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The whole HTTP app: api routes, OpenAPI document, metrics, console.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api_routes().split_for_parts();
    let doc = Arc::new(serde_json::to_value(&doc).unwrap_or_default());
    let dir = state.config.web_dir.clone();
    let https = state.config.public_url.starts_with("https://");
    let app = routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .fallback(move |req: Request| web::fallback(dir.clone(), req))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(axum::Extension(auth::TrustedProxies(Arc::new(
            state.config.trusted_proxies.clone(),
        ))))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    web::security_headers(app, https)
}

/// Connect the database (running migrations), build the state, and make
/// the bootstrap admin on an empty database.
pub async fn build_state(config: Config) -> Result<AppState, ApiError> {
    let db = db::connect(&config.database_url, config.db_max_connections).await?;
    let config_for_fleet = config.clone();
    let metrics = Arc::new(metrics::Metrics::default());
    let fleet = fleet::Fleet::new(&config_for_fleet).await?;
    // Before anything appends to the audit log (see `audit::keys`).
    audit::keys::install(fleet.master().ok().map(audit::keys::AuditKeys::derive))?;
    let alerts = alerts::Alerts::start(
        db.clone(),
        config.alerts.clone(),
        config.outbound(),
        metrics.alerts.clone(),
        fleet.clone(),
    )
    .await?;
    let login = Arc::new(auth::throttle::LoginGuard::new(&config));
    let state = AppState {
        db,
        rbac: rbac::Rbac::new().await?,
        config: Arc::new(config),
        writes: db::WriteLock::default(),
        metrics,
        oidc: Arc::new(auth::oidc::OidcProvider::default()),
        alerts,
        fleet,
        login,
        auth_cache: Arc::default(),
    };
    users::bootstrap_admin(&state).await?;
    fleet::spawn_background(&state);
    auth::throttle::spawn_flusher(&state);
    auth::sessions::spawn_purge(&state);
    Ok(state)
}

pub async fn build_app(config: Config) -> Result<(Router, AppState), ApiError> {
    let state = build_state(config).await?;
    Ok((router(state.clone()), state))
}

/// A running api (see [`start`]).
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Bind `config.listen` (port 0 picks a free port) and serve in a task.
pub async fn start(config: Config) -> Result<Running, ApiError> {
    let listen = config.listen;
    let (app, state) = build_app(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ApiError::internal(format!("bind {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(ApiError::internal)?;
    let task = tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(Running { addr, state, task })
}
