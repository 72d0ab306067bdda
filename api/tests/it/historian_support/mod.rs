//! A throw-away historian database for the api's tests: a fresh PostgreSQL
//! database (a `common::TestDb`) holding the historian's `readings` table,
//! so `/series` reads real rows.
//!
//! The DDL is the historian's native layout from `weir_crds::historian`
//! (same columns, collation and unique index; one DEFAULT partition instead
//! of daily ones, which the series query does not notice).
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use sea_orm::sqlx::postgres::PgPool;
use sea_orm::sqlx::{self, Executor};

use crate::common::{Backend, TestDb};

fn schema() -> String {
    use weir_crds::historian::{READINGS_COLUMNS, SERIES_INDEX};
    format!(
        "CREATE TABLE weir_historian_meta (key text PRIMARY KEY, value text NOT NULL);
         INSERT INTO weir_historian_meta (key, value) VALUES ('owner', 'weir-historian'), ('version', '1'), ('layout', 'native');
         CREATE TABLE readings ({READINGS_COLUMNS}) PARTITION BY RANGE (ts);
         CREATE TABLE readings_default PARTITION OF readings DEFAULT;
         {SERIES_INDEX};"
    )
}

/// One row of `readings`.
#[derive(Clone, Debug)]
pub struct Reading {
    pub tenant: String,
    pub gateway: String,
    pub device: String,
    pub tag: String,
    pub ts: DateTime<Utc>,
    pub value: Option<f64>,
    pub value_text: Option<String>,
    pub quality: i32,
    pub seq: i64,
}

impl Reading {
    pub fn new(
        tenant: &str,
        gateway: &str,
        device: &str,
        tag: &str,
        ts: DateTime<Utc>,
        value: f64,
        seq: i64,
    ) -> Self {
        Reading {
            tenant: tenant.into(),
            gateway: gateway.into(),
            device: device.into(),
            tag: tag.into(),
            ts,
            value: Some(value),
            value_text: None,
            quality: 0,
            seq,
        }
    }
}

pub struct HistorianDb {
    pub url: String,
    pub pool: PgPool,
    db: TestDb,
}

impl HistorianDb {
    /// A fresh database with the historian schema.
    pub async fn new() -> HistorianDb {
        let db = Self::empty().await;
        db.pool
            .execute(schema().as_str())
            .await
            .expect("historian schema");
        db
    }

    /// A fresh database without any table (not the historian's yet).
    pub async fn empty() -> HistorianDb {
        let db = TestDb::new(Backend::Postgres).await;
        let pool = PgPool::connect(&db.url)
            .await
            .expect("connect historian db");
        HistorianDb {
            url: db.url.clone(),
            pool,
            db,
        }
    }

    pub async fn insert(&self, rows: &[Reading]) {
        for r in rows {
            sqlx::query(
                "INSERT INTO readings (tenant, gateway, device, tag, ts, value, value_text, quality, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&r.tenant)
            .bind(&r.gateway)
            .bind(&r.device)
            .bind(&r.tag)
            .bind(r.ts)
            .bind(r.value)
            .bind(&r.value_text)
            .bind(r.quality)
            .bind(r.seq)
            .execute(&self.pool)
            .await
            .expect("insert reading");
        }
    }

    pub async fn drop_db(self) {
        self.pool.close().await;
        self.db.drop_db().await;
    }
}
