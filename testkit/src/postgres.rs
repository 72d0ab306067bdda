//! A fresh PostgreSQL database per test, on the server at 127.0.0.1:5432
//! (or `WEIR_TEST_PG_URL`), dropped with its connections when the test ends,
//! so tests never see each other's rows and leave nothing behind.

use std::time::Duration;

/// The database tests create their own databases from.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where tests find PostgreSQL: `WEIR_TEST_PG_URL`, else
/// [`DEFAULT_ADMIN_URL`] (user postgres, trust authentication).
pub fn admin_url() -> String {
    std::env::var("WEIR_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// A client for `url`, its connection driven on the current runtime; panics
/// saying how to get PostgreSQL when the server is not reachable.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let attempt = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await;
    let (client, conn) = match attempt {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => unreachable_server(url, &e.to_string()),
        Err(_) => unreachable_server(url, &format!("no answer in {CONNECT_TIMEOUT:?}")),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn unreachable_server(url: &str, why: &str) -> ! {
    panic!(
        "PostgreSQL is not reachable at {url} ({why}); these tests need it: start it \
         (bash scripts/setup.sh, or sudo pg_ctlcluster <version> main start) or set \
         WEIR_TEST_PG_URL to a database whose user may create databases"
    )
}

/// A database of the test's own; see the module doc.
pub struct TestDb {
    pub name: String,
    /// Connection URL of this database (same server and user as the admin URL).
    pub url: String,
}

impl TestDb {
    /// Create `<prefix>_<random>` (prefix: lower case letters, digits, `_`).
    pub async fn create(prefix: &str) -> TestDb {
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let admin = admin_url();
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
        let root = admin.rsplit_once('/').map(|(a, _)| a).unwrap_or(&admin);
        TestDb {
            url: format!("{root}/{name}"),
            name,
        }
    }

    /// A new client of this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Terminate every other session on this database (a server-side
    /// connection loss, as a failover would cause); returns how many.
    pub async fn terminate_backends(&self) -> i64 {
        connect(&admin_url())
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .expect("terminate backends")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop is not async and the test's runtime may be shutting down: a
        // runtime of our own on a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime to drop a test database");
            rt.block_on(async move {
                let admin = admin_url();
                let Ok(Ok((client, conn))) = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls),
                )
                .await
                else {
                    return;
                };
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        connect(&admin_url())
            .await
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn each_test_gets_an_empty_database_that_is_gone_after_the_drop() {
        let db = TestDb::create("weir_testkit").await;
        let c = db.client().await;
        c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let other = TestDb::create("weir_testkit").await;
        assert_ne!(db.name, other.name);
        assert!(
            other
                .client()
                .await
                .query("SELECT * FROM t", &[])
                .await
                .is_err(),
            "another test's database does not have this one's tables"
        );
        let name = db.name.clone();
        drop(c);
        drop(db);
        assert!(!exists(&name).await, "{name} was dropped");
    }
}
