//! The historian's one error type: what stops the sink or a migration,
//! worded so an operator knows what to do next (create the database, run
//! `migrate`, fix a URL). Losing PostgreSQL or the broker *after* startup is
//! not an error: the sink reconnects instead.

use std::net::SocketAddr;

/// Everything that can stop the historian.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database {database:?} does not exist on {host}; create it (`createdb {database}` or `weir-historian migrate --create-database`)")]
    DatabaseMissing { database: String, host: String },
    #[error("cannot reach PostgreSQL at {host}: {source}")]
    DatabaseUnreachable {
        host: String,
        source: tokio_postgres::Error,
    },
    #[error("the database schema is not weir-historian's: {0}")]
    SchemaNotOurs(String),
    #[error("the historian schema is missing or outdated; run `weir-historian migrate`")]
    SchemaMissing,
    #[error("schema version {found} is newer than this weir-historian understands ({supported}); upgrade weir-historian")]
    SchemaTooNew { found: i32, supported: i32 },
    #[error("invalid database URL: {0}")]
    DatabaseUrl(String),
    #[error("invalid MQTT URL {url:?}: {reason}")]
    MqttUrl { url: String, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("metrics listener on {addr}: {source}")]
    MetricsListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}
