//! PostgreSQL connections terminated (`pg_terminate_backend`) again and again
//! while readings stream in: nothing lost, nothing doubled. The sink runs in
//! process through the library entry point.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use tokio_util::sync::CancellationToken;
use weir_historian::{self as historian, Config, Metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_database_connections_lose_and_double_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("weir_historian=debug")
        .with_test_writer()
        .try_init();
    let db = test_db().await;
    let dbr = &db;
    let broker = broker().await;
    let plan = Plan::new("lakeside");
    let total_msgs = 500; // 100,000 readings

    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let cfg = Config {
        mqtt_url: broker.url(),
        database_url: db.url.clone(),
        tenant: "lakeside".into(),
        client_id: "historian-test-terminate".into(),
        metrics_listen: None,
        batch_rows: 2_000,
        linger: Duration::from_millis(20),
        ..Config::default()
    };
    let sink = tokio::spawn(historian::run_with_metrics(
        cfg,
        metrics.clone(),
        stop.clone(),
    ));
    let m = metrics.clone();
    wait_until(Duration::from_secs(30), "the sink to subscribe", || {
        let m = m.clone();
        async move { m.mqtt_connected.get() == 1 }
    })
    .await;

    let port = broker.port;
    let msgs = plan.messages(0..total_msgs);
    let publisher = tokio::spawn(async move { publish_all(port, "pub-t", &msgs).await });

    // Kill the sink's sessions whenever new rows arrived, until all are in.
    let mut terminations_mid_stream = 0;
    let mut last = 0;
    let mut last_progress = std::time::Instant::now();
    loop {
        let n = count(&db).await;
        if n >= 100_000 {
            break;
        }
        assert!(
            last_progress.elapsed() < Duration::from_secs(60),
            "no progress for 60 s at {n} rows; metrics: {metrics:?}"
        );
        if n > last {
            last = n;
            last_progress = std::time::Instant::now();
            if db.terminate_backends().await > 0 {
                terminations_mid_stream += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !sink.is_finished(),
            "the sink must survive lost connections"
        );
    }
    publisher.await.unwrap();
    assert!(
        terminations_mid_stream >= 3,
        "the test must terminate connections mid-stream (did {terminations_mid_stream})"
    );
    assert!(
        metrics.db_errors.get() > 0,
        "the sink must have seen the terminations"
    );
    wait_until_every(
        Duration::from_secs(60),
        POLL,
        "the last rows",
        || async move { count(dbr).await >= 100_000 },
    )
    .await;
    assert_table_matches(&db, "lakeside", &plan.expected(total_msgs)).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), sink)
        .await
        .expect("the sink stops on shutdown")
        .unwrap()
        .expect("the sink ends without error");
    eprintln!(
        "terminations: {terminations_mid_stream}, db errors: {}, duplicates skipped: {}",
        metrics.db_errors.get(),
        metrics.duplicate_rows.get()
    );
}
