//! A throw-away historian database for the api's tests: a fresh PostgreSQL
//! database (a `common::TestDb`) holding the historian's `readings` table,
//! so `/series` reads real rows.
//!
//! The DDL is the historian's native layout from `weir_crds::historian`
//! (same columns, collation and unique index; one DEFAULT partition instead
//! of daily ones, which the series query does not notice, or daily ones
//! with [`HistorianDb::daily`]).
#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sqlx::postgres::PgPool;
use sea_orm::sqlx::{self, Executor};

use crate::common::{Backend, TestDb};

fn schema() -> String {
    schema_with("CREATE TABLE readings_default PARTITION OF readings DEFAULT;".into())
}

fn schema_with(partitions: String) -> String {
    use weir_crds::historian::{READINGS_COLUMNS, SERIES_INDEX};
    format!(
        "CREATE TABLE weir_historian_meta (key text PRIMARY KEY, value text NOT NULL);
         INSERT INTO weir_historian_meta (key, value) VALUES ('owner', 'weir-historian'), ('version', '1'), ('layout', 'native');
         CREATE TABLE readings ({READINGS_COLUMNS}) PARTITION BY RANGE (ts);
         {partitions}
         {SERIES_INDEX};"
    )
}

/// The historian's own layout: one partition per UTC day (named as
/// `weir-historian` names them) and no DEFAULT one, so PostgreSQL plans
/// reads over the days as it does in production.
fn daily_schema(first: NaiveDate, days: u32) -> String {
    let parts: String = (0..days)
        .map(|i| {
            let d = first + chrono::Days::new(i.into());
            let next = d + chrono::Days::new(1);
            format!(
                "CREATE TABLE readings_p{} PARTITION OF readings FOR VALUES FROM ('{d} 00:00:00+00') TO ('{next} 00:00:00+00');\n",
                d.format("%Y%m%d")
            )
        })
        .collect();
    schema_with(parts)
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

    /// A fresh database with the historian schema partitioned by day:
    /// `days` partitions from `first` on, nothing outside them.
    pub async fn daily(first: NaiveDate, days: u32) -> HistorianDb {
        let db = Self::empty().await;
        db.pool
            .execute(daily_schema(first, days).as_str())
            .await
            .expect("historian schema by day");
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

    /// `n` good readings of one tag, one every `every_secs` from `from`,
    /// reading `k` (0-based) valued `k % modulo`, in one statement (for
    /// ranges too long to insert row by row). `seq` counts from `seq0`.
    pub async fn insert_every(
        &self,
        (tenant, gateway, device, tag): (&str, &str, &str, &str),
        from: DateTime<Utc>,
        every_secs: f64,
        n: i64,
        modulo: i64,
        seq0: i64,
    ) {
        sqlx::query(
            "INSERT INTO readings (tenant, gateway, device, tag, ts, value, quality, seq) \
             SELECT $1, $2, $3, $4, $5 + make_interval(secs => k * $6), (k % $8)::float8, 0, $9 + k \
               FROM generate_series(0::bigint, $7 - 1) AS k",
        )
        .bind(tenant)
        .bind(gateway)
        .bind(device)
        .bind(tag)
        .bind(from)
        .bind(every_secs)
        .bind(n)
        .bind(modulo)
        .bind(seq0)
        .execute(&self.pool)
        .await
        .expect("insert readings");
    }

    pub async fn drop_db(self) {
        self.pool.close().await;
        self.db.drop_db().await;
    }
}
