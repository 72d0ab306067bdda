//! What the api benchmarks share: a throw-away PostgreSQL database.

use sea_orm::{ConnectionTrait, DatabaseConnection};

/// A database made for one benchmark run, dropped by [`TempPg::drop_db`].
pub struct TempPg {
    pub url: String,
    admin: DatabaseConnection,
    name: String,
}

/// A fresh database next to `WEIR_TEST_PG_URL` (default: the local `test`
/// database), or why there is none.
pub async fn temp_pg() -> Result<TempPg, String> {
    let admin_url = std::env::var("WEIR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let admin = sea_orm::Database::connect(&admin_url)
        .await
        .map_err(|e| format!("not reachable at {admin_url} ({e})"))?;
    let name = format!("weir_bench_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("CREATE DATABASE failed: {e}"))?;
    let root = admin_url
        .rsplit_once('/')
        .map(|(a, _)| a)
        .unwrap_or(&admin_url)
        .to_string();
    Ok(TempPg {
        url: format!("{root}/{name}"),
        admin,
        name,
    })
}

impl TempPg {
    pub async fn drop_db(self) {
        let _ = self
            .admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}
