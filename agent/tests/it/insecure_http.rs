//! A plain-http api server off this machine is refused before the agent
//! sends anything (tokens, keys and broker passwords would travel in
//! clear), unless `--insecure-http` says the network is trusted.
//! 192.0.2.1 is TEST-NET-1: nothing answers there, so an agent that tried
//! to connect would hang in its retries instead of exiting at once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir_agent::state::{DataDir, Identity};
use weir_crds::agent_api::MqttCredentials;

const OFF_MACHINE: &str = "http://192.0.2.1:1";

fn agent(args: &[&str], data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-agent"));
    cmd.arg("run")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("WEIR_LOG", "info")
        .env_remove("WEIR_INSECURE_HTTP")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Run to the end; panics if the agent is still running after 30 s (it
/// would be, had it tried to reach TEST-NET).
fn run_briefly(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the agent did not refuse at once; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn plain_http_server_off_this_machine_is_refused_before_any_request() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let out = run_briefly(agent(
        &["--server", OFF_MACHINE, "--token", "boot-token"],
        &data,
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains(
            "--server http://192.0.2.1:1 is plain HTTP: enrollment tokens and agent keys \
             would travel in clear; use https:// or pass --insecure-http"
        ),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("enrolling"),
        "it tried to enroll: {stderr}"
    );
    assert!(!data.exists(), "refused before making a data dir or key");
}

#[test]
fn insecure_http_lets_the_agent_try_a_plain_http_server() {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = agent(
        &["--server", OFF_MACHINE, "--token", "boot-token"],
        &work.path().join("data"),
    );
    cmd.env("WEIR_INSECURE_HTTP", "true");
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let enrolling = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("enrolling") => break true,
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() > deadline => break false,
            Err(_) if child.try_wait().unwrap().is_some() => break false,
            Err(_) => {}
        }
    };
    child.kill().ok();
    child.wait().ok();
    assert!(
        enrolling,
        "no enrollment attempt with WEIR_INSECURE_HTTP: {seen:?}"
    );
}

#[test]
fn an_agent_enrolled_over_plain_http_needs_the_flag_to_start_again() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let dir = DataDir::open(&data).unwrap();
    dir.load_or_create_key().unwrap();
    dir.save_identity(&Identity {
        agent_id: "agent-1".into(),
        tenant: "riverside".into(),
        gateway: "ps-1".into(),
        server: OFF_MACHINE.into(),
        mqtt: MqttCredentials {
            urls: vec![],
            client_id: "agent-1".into(),
            username: "agent-1".into(),
            password: "secret".into(),
            expires: chrono::Utc::now(),
        },
    })
    .unwrap();
    let out = run_briefly(agent(&[], &data));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("the enrolled server http://192.0.2.1:1 is plain HTTP")
            && stderr.contains("--insecure-http"),
        "stderr: {stderr}"
    );
}
