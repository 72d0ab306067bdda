//! Reaching the historian's PostgreSQL database: parsing its URL, connecting
//! with clear errors for the first-run problems (no such database, server not
//! reachable), creating the database and migrating its schema. URLs are
//! redacted before they reach a log or an error.

use std::str::FromStr;

use tokio_postgres::error::SqlState;

use crate::schema::Layout;
use crate::Error;

/// The database URL with any password removed, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn pg_config(url: &str) -> Result<tokio_postgres::Config, Error> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| Error::DatabaseUrl(format!("{}: {e}", redact_url(url))))
}

fn pg_host(cfg: &tokio_postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Connect with a clear error for the common first-run problems.
pub(crate) async fn connect_checked(
    pg: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, Error> {
    crate::writer::connect(pg).await.map_err(|e| {
        if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) {
            Error::DatabaseMissing {
                database: pg.get_dbname().unwrap_or("postgres").to_owned(),
                host: pg_host(pg),
            }
        } else {
            Error::DatabaseUnreachable {
                host: pg_host(pg),
                source: e,
            }
        }
    })
}

/// Create the database named in `database_url` (connecting to the server's
/// `postgres` database to do so) if it does not exist. Returns true if created.
pub async fn create_database(database_url: &str) -> Result<bool, Error> {
    let pg = pg_config(database_url)?;
    let name = pg
        .get_dbname()
        .ok_or_else(|| Error::DatabaseUrl("the URL names no database".into()))?
        .to_owned();
    let mut admin = pg.clone();
    admin.dbname("postgres");
    let client = connect_checked(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await?;
    Ok(true)
}

/// Create or upgrade the historian schema in `database_url`.
pub async fn migrate(database_url: &str) -> Result<Layout, Error> {
    let pg = pg_config(database_url)?;
    let mut client = connect_checked(&pg).await?;
    crate::schema::migrate(&mut client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://weir:s3cret@db:5432/weir"),
            "postgres://weir@db:5432/weir"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/weir"),
            "postgres://postgres@127.0.0.1/weir"
        );
        assert_eq!(redact_url("host=db user=x"), "host=db user=x");
    }
}
