//! Database access: connection, migrations, and the write transaction that
//! every change goes through (so the audit chain has one writer at a time).

pub mod entities;
pub mod migrations;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use migrations::Migrator;

/// Connect and bring the schema up to date.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(max_connections.max(1))
        // An in-memory SQLite database vanishes with its last connection.
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Sqlite && !url.contains(":memory:") {
        // WAL lets readers run while the single writer commits.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// Serializes writers inside this process; on PostgreSQL an advisory lock
/// extends that to every api replica sharing the database. It also counts
/// the changes committed in this process (the generation), which is what
/// tells `auth::cache` that what it holds may be out of date.
#[derive(Clone, Default)]
pub struct WriteLock {
    lock: Arc<Mutex<()>>,
    generation: Arc<AtomicU64>,
}

/// Key of the PostgreSQL advisory lock held by writers ("weir" in ASCII).
const PG_WRITE_LOCK_KEY: i64 = 0x7765_6972;

/// A transaction holding the write lock until commit or drop.
pub struct WriteTx {
    txn: DatabaseTransaction,
    generation: Arc<AtomicU64>,
    _guard: OwnedMutexGuard<()>,
}

impl WriteLock {
    /// Changes committed through this lock so far. Read it before reading
    /// what you keep: a change committed after that moves it on.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub async fn begin(&self, db: &DatabaseConnection) -> Result<WriteTx, DbErr> {
        let guard = self.lock.clone().lock_owned().await;
        let txn = db.begin().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            txn.execute(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_advisory_xact_lock({PG_WRITE_LOCK_KEY})"),
            ))
            .await?;
        } else if txn.get_database_backend() == DbBackend::Sqlite {
            // Take SQLite's write lock now (like BEGIN IMMEDIATE): a deferred
            // transaction that reads first and writes later fails at once with
            // "database is locked" when another connection (heartbeats, the
            // alerts store) committed in between; a write that touches no row
            // waits on busy_timeout instead.
            txn.execute_unprepared("UPDATE seaql_migrations SET version = version WHERE 0")
                .await?;
        }
        Ok(WriteTx {
            txn,
            generation: self.generation.clone(),
            _guard: guard,
        })
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        // After the commit: a reader that saw the old rows kept them under
        // the old generation, which no longer counts.
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// True when the error is a unique-constraint violation (a duplicate slug, email...).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that reads first must not fail with "database is locked" when
    /// another connection writes between its read and its write (the demo's
    /// agents enrolled while others sent heartbeats and got HTTP 500).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_write_tx_survives_a_concurrent_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let db = connect(&url, 4).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (v INTEGER)")
            .await
            .unwrap();
        let lock = WriteLock::default();
        let tx = lock.begin(&db).await.unwrap();
        tx.execute_unprepared("SELECT count(*) FROM t")
            .await
            .unwrap();
        // An unlocked writer on another pooled connection (like a heartbeat).
        let other = db.clone();
        let concurrent =
            tokio::spawn(async move { other.execute_unprepared("INSERT INTO t VALUES (1)").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.execute_unprepared("INSERT INTO t VALUES (2)")
            .await
            .expect("the locked writer writes after its read");
        tx.commit().await.unwrap();
        concurrent
            .await
            .unwrap()
            .expect("the other writer waits for the lock, then writes");
        let n = db
            .query_one(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM t",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(n, 2);
    }
}
