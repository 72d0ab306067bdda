//! Schema ownership, clear errors, partitions and retention, and the series
//! query — against a real PostgreSQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

use crate::support::*;
use weir_historian::{self as historian, query, schema, Error, Layout};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn migrate_is_idempotent_and_refuses_foreign_or_missing_databases() {
    let db = test_db().await;
    assert_eq!(historian::migrate(&db.url).await.unwrap(), Layout::Native);
    assert_eq!(historian::migrate(&db.url).await.unwrap(), Layout::Native);

    // A database whose `readings` table is someone else's.
    let foreign = test_db().await;
    foreign
        .client()
        .await
        .batch_execute("CREATE TABLE readings (id int)")
        .await
        .unwrap();
    let err = historian::migrate(&foreign.url).await.unwrap_err();
    assert!(matches!(err, Error::SchemaNotOurs(_)), "{err}");

    // The binary says so in words, and so it does for a missing database.
    let out = Command::new(env!("CARGO_BIN_EXE_weir-historian"))
        .args(["migrate", "--database-url", &foreign.url])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not weir-historian's"), "{stderr}");

    let missing = format!(
        "postgres://postgres:pw@127.0.0.1:5432/weir_hist_missing_{}",
        rand::random::<u32>()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_weir-historian"))
        .args(["migrate", "--database-url", &missing])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        !stderr.contains(":pw@"),
        "the password must not be printed: {stderr}"
    );
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_after_retention() {
    let db = test_db().await;
    historian::migrate(&db.url).await.unwrap();
    let c = db.client().await;
    let today = schema::day_of(now_ms());

    let done = schema::maintain(&c, Layout::Native, 2, 0).await.unwrap();
    assert_eq!(done.created, (today - 1..=today + 2).collect::<Vec<_>>());
    // An old day, e.g. written by an agent replaying its queue.
    schema::ensure_partitions(&c, [today - 40]).await.unwrap();
    c.execute(
        "INSERT INTO readings (tenant, gateway, device, tag, ts, value, seq) VALUES ('t','g','d','x', now() - interval '40 days', 1, 1), ('t','g','d','x', now(), 2, 2)",
        &[],
    )
    .await
    .unwrap();

    let done = schema::maintain(&c, Layout::Native, 2, 30).await.unwrap();
    assert_eq!(done.dropped, vec![today - 40]);
    let parts = schema::existing_partitions(&c).await.unwrap();
    assert_eq!(parts, (today - 1..=today + 2).collect());
    let left: i64 = c
        .query_one("SELECT count(*) FROM readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, 1,
        "only the reading inside the retention period stays"
    );
}

#[tokio::test]
async fn series_are_downsampled_in_sql() {
    let db = test_db().await;
    historian::migrate(&db.url).await.unwrap();
    let c = db.client().await;
    let today = schema::day_of(now_ms());
    schema::ensure_partitions(&c, [today - 1, today])
        .await
        .unwrap();
    // 120 readings one second apart: values 0..119, plus one error and one
    // reading of another device.
    let start_ms = (now_ms() / 60_000) * 60_000 - 5 * 60_000;
    let start = UNIX_EPOCH + Duration::from_millis(start_ms as u64);
    c.execute(
        "INSERT INTO readings (tenant, gateway, device, tag, ts, value, quality, seq)
         SELECT 't', 'gw', 'pump', 'flow', $1::timestamptz + i * interval '1 second', i, 0, i FROM generate_series(0, 119) i
         UNION ALL SELECT 't', 'gw', 'pump', 'flow', $1::timestamptz + interval '500 ms', NULL, 1001, 1000
         UNION ALL SELECT 't', 'gw', 'valve', 'flow', $1::timestamptz, 1000, 0, 2000",
        &[&start],
    )
    .await
    .unwrap();
    let q = query::SeriesQuery {
        tenant: "t",
        gateway: "gw",
        device: Some("pump"),
        tag: "flow",
        from: start,
        to: start + Duration::from_secs(120),
        step: Duration::from_secs(60),
    };
    let buckets = query::series(&c, &q).await.unwrap();
    assert_eq!(buckets.len(), 2);
    assert_eq!(buckets[0].start, start);
    assert_eq!(
        (
            buckets[0].avg,
            buckets[0].min,
            buckets[0].max,
            buckets[0].count
        ),
        (Some(29.5), Some(0.0), Some(59.0), 60)
    );
    assert_eq!(
        (buckets[1].min, buckets[1].max, buckets[1].count),
        (Some(60.0), Some(119.0), 60)
    );
    // Without a device every device with that tag counts.
    let all = query::series(&c, &query::SeriesQuery { device: None, ..q })
        .await
        .unwrap();
    assert_eq!((all[0].max, all[0].count), (Some(1000.0), 61));
}
