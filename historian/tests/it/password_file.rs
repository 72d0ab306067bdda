//! A broker password given as a file (`--mqtt-password-file`, in Kubernetes
//! the api's renewed JWT in a mounted Secret) is read again at each
//! reconnect: after the broker stops taking the old password and the file
//! holds the new one, the historian comes back with the new one and
//! readings flow on, without a restart of the historian.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
use weir_testkit::{free_port, Proc};

use crate::support::*;

const USER: &str = "weir-historian-ridge";

/// Mosquitto's password file with USER's password `pw` (hashed in place).
fn broker_password(file: &Path, pw: &str) {
    std::fs::write(file, format!("{USER}:{pw}\n")).unwrap();
    let st = Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(file)
        .status()
        .expect("mosquitto_passwd (comes with mosquitto)");
    assert!(st.success(), "mosquitto_passwd -U failed");
}

/// What the broker answers USER with password `pw`.
async fn connack(port: u16, pw: &str) -> ConnectReturnCode {
    let mut o = MqttOptions::new("password-probe", "127.0.0.1", port);
    o.set_credentials(USER, pw);
    let (_client, mut ev) = AsyncClient::new(o, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll())
            .await
            .expect("an answer from the broker")
        {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return a.code,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("probe connection failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_password_file_is_used_at_the_next_reconnect() {
    let db = test_db().await;
    let dbr = &db;
    let auth = tempfile::tempdir().unwrap();
    let passwd = auth.path().join("passwd");
    broker_password(&passwd, "jwt-1");
    // Anonymous publishers stay allowed; a client giving a username must
    // give its password.
    let mut broker = Mosquitto::builder()
        .persistent()
        .config("allow_anonymous true")
        .config(&format!("password_file {}", passwd.display()))
        .start()
        .await;
    let pw_file = auth.path().join("password");
    std::fs::write(&pw_file, "jwt-1\n").unwrap();

    let logs = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-historian"));
    cmd.env("RUST_LOG", "info")
        .args(["--mqtt-url", &broker.url()])
        .args(["--mqtt-username", USER])
        .arg("--mqtt-password-file")
        .arg(&pw_file)
        .args(["--database-url", &db.url])
        .args(["--tenant", "ridge"])
        .args(["--client-id", "historian-test-password-file"])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]);
    let sink = Proc::spawn("sink", &mut cmd, logs.path()).expect("start weir-historian");
    let subscribed =
        || async move { metric(metrics_port, "weir_historian_mqtt_connected").await == Some(1.0) };
    wait_until(Duration::from_secs(30), "the sink to subscribe", subscribed).await;

    let plan = Plan::new("ridge");
    let per_msg = plan.readings_per_msg() as i64;
    publish_all(broker.port, "pub-1", &plan.messages(0..2)).await;
    wait_until_every(
        Duration::from_secs(30),
        POLL,
        "the first readings",
        || async move { count(dbr).await >= 2 * per_msg },
    )
    .await;

    // The renewal: the broker takes only the new password, the file holds it.
    broker_password(&passwd, "jwt-2");
    std::fs::write(&pw_file, "jwt-2\n").unwrap();
    broker.restart().await;
    assert_eq!(
        connack(broker.port, "jwt-1").await,
        ConnectReturnCode::NotAuthorized,
        "the broker must refuse the old password, or this test shows nothing"
    );

    // Back with the new password: subscribed a second time. (Readings
    // published before that find no subscriber on a restarted broker.)
    let sink_log = &sink;
    wait_until(
        Duration::from_secs(30),
        "the sink to subscribe again with the new password",
        || async move { sink_log.log_text().matches("subscribed").count() >= 2 },
    )
    .await;
    publish_all(broker.port, "pub-2", &plan.messages(2..4)).await;
    wait_until_every(
        Duration::from_secs(30),
        POLL,
        "the readings after the password changed",
        || async move { count(dbr).await >= 4 * per_msg },
    )
    .await;
    assert_table_matches(&db, "ridge", &plan.expected(4)).await;
    let log = sink.log_text();
    assert!(
        !log.contains("jwt-1") && !log.contains("jwt-2"),
        "a password was logged"
    );
}
