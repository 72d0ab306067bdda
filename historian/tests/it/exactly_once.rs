//! 200,000 readings through a real Mosquitto into a real PostgreSQL while the
//! sink is SIGKILLed mid-stream and the broker is restarted: every reading
//! must end up in the table exactly once, with the values and timestamps
//! that were sent.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_and_broker_restarted_keeps_every_reading_exactly_once() {
    let db = test_db().await;
    let dbr = &db;
    let mut broker = broker().await;
    let logs = tempfile::tempdir().unwrap();
    let plan = Plan::new("riverside");
    // 200 readings per message, 1,000 messages = 200,000 readings.
    let total_msgs = 1000;
    assert_eq!(plan.readings_per_msg() * total_msgs, 200_000);
    let client_id = "historian-test-1";

    let mut sink = Sink::start(
        &broker.url(),
        &db.url,
        "riverside",
        client_id,
        logs.path(),
        "sink-1",
    );
    sink.wait_subscribed().await;

    // Phase 1: publish 600 messages; SIGKILL the sink once it has committed
    // some of them but not all.
    let port = broker.port;
    let first = plan.messages(0..600);
    let publisher = tokio::spawn(async move { publish_all(port, "pub-1", &first).await });
    wait_until_every(
        Duration::from_secs(60),
        POLL,
        "the first rows",
        || async move { count(dbr).await >= 10_000 },
    )
    .await;
    sink.kill();
    publisher.await.unwrap();
    let after_kill = count(&db).await;
    assert!(
        after_kill < 120_000,
        "the sink must be killed mid-stream (it had stored {after_kill} of 120,000)"
    );

    // Phase 2: restart the sink on the same session; it gets the backlog.
    let sink = Sink::start(
        &broker.url(),
        &db.url,
        "riverside",
        client_id,
        logs.path(),
        "sink-2",
    );
    wait_until_every(
        Duration::from_secs(60),
        POLL,
        "the sink to resume",
        || async move { count(dbr).await > after_kill },
    )
    .await;

    // Phase 3: restart the broker while the sink is connected (possibly with
    // messages in flight), then publish the rest.
    broker.restart().await;
    sink.wait_subscribed().await;
    let rest = plan.messages(600..total_msgs);
    publish_all(broker.port, "pub-2", &rest).await;

    let start = std::time::Instant::now();
    loop {
        let n = count(&db).await;
        if n >= 200_000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {n} of 200,000 rows after 120 s\n--- sink log ---\n{}\n--- broker log ---\n{}",
            sink.log_text(),
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_table_matches(&db, "riverside", &plan.expected(total_msgs)).await;
    let dupes = sink.metric("weir_historian_duplicate_rows_total").await;
    eprintln!(
        "killed at {after_kill} rows; duplicates skipped after restart: {dupes:?}\n--- sink 2 log ---\n{}",
        sink.log_text()
    );
}
