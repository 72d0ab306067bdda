//! A malformed message is counted, logged with its topic and acknowledged;
//! the readings around it flow on, and it is not delivered again after a
//! restart of the sink.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_logged_acked_and_skipped() {
    let db = test_db().await;
    let dbr = &db;
    let broker = broker().await;
    let logs = tempfile::tempdir().unwrap();
    let plan = Plan::new("hillside");
    let per_msg = plan.readings_per_msg() as i64;

    let mut sink = Sink::start(
        &broker.url(),
        &db.url,
        "hillside",
        "historian-test-malformed",
        logs.path(),
        "sink-1",
    );
    sink.wait_subscribed().await;

    let bad_payload_topic = "weir/hillside/gw-9/pump/fast".to_string();
    // Within the readings filter (`+/+/+`), but with an empty group.
    let bad_topic = "weir/hillside/gw-9/pump/".to_string();
    let mut msgs = plan.messages(0..2);
    msgs.insert(
        1,
        (bad_payload_topic.clone(), b"{\"frames\": [oops".to_vec()),
    );
    msgs.insert(2, (bad_topic.clone(), plan.message(2).1));
    // A write command has the readings' depth too: skipped, but not
    // counted as malformed.
    msgs.insert(
        3,
        (
            "weir/hillside/gw-9/cmd/write".to_string(),
            b"{\"correlationId\":\"c1\",\"device\":\"pump\",\"tag\":\"sp\",\"value\":1}".to_vec(),
        ),
    );
    msgs.extend(plan.messages(2..4));
    publish_all(broker.port, "pub-m", &msgs).await;

    wait_until_every(
        Duration::from_secs(60),
        POLL,
        "the valid readings",
        || async move { count(dbr).await >= 4 * per_msg },
    )
    .await;
    assert_eq!(
        sink.metric("weir_historian_malformed_messages_total").await,
        Some(2.0)
    );
    assert_table_matches(&db, "hillside", &plan.expected(4)).await;

    // A clean stop sends the pending acks and keeps the session.
    let status = sink.terminate();
    assert!(
        status.success(),
        "SIGTERM must end the sink cleanly: {status}"
    );
    let log = sink.log_text();
    for topic in [&bad_payload_topic, &bad_topic] {
        assert!(
            log.lines()
                .any(|l| l.contains("malformed message") && l.contains(topic.as_str())),
            "the log must name the malformed message's topic {topic}:\n{log}"
        );
    }

    // Same session again: had the malformed messages not been acknowledged,
    // the broker would re-deliver them before this new message.
    let sink = Sink::start(
        &broker.url(),
        &db.url,
        "hillside",
        "historian-test-malformed",
        logs.path(),
        "sink-2",
    );
    sink.wait_subscribed().await;
    publish_all(broker.port, "pub-m2", &plan.messages(4..5)).await;
    wait_until_every(
        Duration::from_secs(60),
        POLL,
        "the next message",
        || async move { count(dbr).await >= 5 * per_msg },
    )
    .await;
    assert_eq!(
        sink.metric("weir_historian_malformed_messages_total").await,
        Some(0.0),
        "malformed messages must not come back:\n{}",
        sink.log_text()
    );
    assert_eq!(
        sink.metric("weir_historian_messages_total").await,
        Some(1.0)
    );
    assert_table_matches(&db, "hillside", &plan.expected(5)).await;
}
