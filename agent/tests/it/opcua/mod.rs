//! The `opcUa` adapter against a real OPC UA server (PyPI asyncua, started
//! by each test): polled values of every data type, subscribed values that
//! change, writes that land on the server, recovery from a server restart,
//! Basic256Sha256/SignAndEncrypt with a pinned certificate and a user name,
//! and a wrong pin refused.

mod mqtt;
pub mod peer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use peer::{MapCredentials, OpcServer, Rig, ServerOpts};
use serde_json::json;
use weir_agent::adapters::opcua::CredentialSource;
use weir_crds::agent_api::{DeviceCredential, DeviceState};
use weir_crds::message::{ErrorCode, TagValue, WriteRequest};
use weir_testkit::wait_until;

const WAIT: Duration = Duration::from_secs(20);

fn tag(name: &str, node: &str, dt: &str) -> serde_json::Value {
    json!({"name": name, "address": format!("ns=2;s=Plant.{node}"), "dataType": dt})
}

fn device(opc_ua: serde_json::Value) -> serde_json::Value {
    json!({"devices": [{"name": "scada", "adapter": "opcUa", "opcUa": opc_ua,
    "groups": [
        {"name": "fixed", "intervalMs": 200, "tags": [
            tag("bool", "Bool", "bool"), tag("i16", "Int16", "int16"),
            tag("u16", "UInt16", "uint16"), tag("i32", "Int32", "int32"),
            tag("u32", "UInt32", "uint32"), tag("i64", "Int64", "int64"),
            tag("u64", "UInt64", "uint64"), tag("f32", "Float", "float32"),
            tag("f64", "Double", "float64"), tag("text", "String", "string"),
            {"name": "ro", "address": "ns=2;s=Plant.Int32", "dataType": "int32",
             "attributes": ["read", "write"]},
            tag("missing", "NoSuchNode", "int32")
        ]},
        {"name": "live", "intervalMs": 100, "mode": "subscribe", "tags": [
            tag("counter", "Counter", "uint32"), tag("level", "Level", "float64")
        ]},
        {"name": "setpoints", "intervalMs": 500, "tags": [
            {"name": "sp", "address": "ns=2;s=Plant.Setpoint", "dataType": "float64",
             "attributes": ["read", "write"]},
            {"name": "spi", "address": "ns=2;s=Plant.SetpointInt", "dataType": "int32",
             "attributes": ["read", "write"], "scale": 0.1}
        ]}
    ]}]})
}

fn value(s: &weir_agent::sample::Sample, tag: &str) -> Option<TagValue> {
    let i = s.schema.tags.iter().position(|t| t == tag)? as u16;
    s.values
        .iter()
        .find(|(j, _)| *j == i)
        .map(|(_, v)| v.clone())
}

fn error(s: &weir_agent::sample::Sample, tag: &str) -> Option<i32> {
    let i = s.schema.tags.iter().position(|t| t == tag)? as u16;
    s.errors.iter().find(|(j, _)| *j == i).map(|(_, c)| *c)
}

fn counters(rig: &Rig) -> Vec<i64> {
    rig.of("live")
        .iter()
        .filter_map(|s| match value(s, "counter") {
            Some(TagValue::Int(i)) => Some(i),
            _ => None,
        })
        .collect()
}

async fn write(rig: &Rig, tag: &str, v: TagValue) -> weir_crds::message::WriteResponse {
    rig.adapters
        .as_ref()
        .unwrap()
        .write(WriteRequest {
            correlation_id: format!("w-{tag}"),
            device: "scada".into(),
            tag: tag.into(),
            value: v,
        })
        .await
}

/// Polls, subscriptions and writes over an unsecured endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_subscribe_and_write_with_security_none() {
    let server = OpcServer::start(ServerOpts {
        tick_ms: 100,
        ..Default::default()
    });
    let mut rig = Rig::start(device(json!({"endpoint": server.endpoint()})), None);

    // Polled: every data type arrives with the server's value.
    wait_until(WAIT, "a polled sample of the fixed group", || async {
        !rig.of("fixed").is_empty()
    })
    .await;
    let s = rig.of("fixed").pop().unwrap();
    let want = [
        ("bool", TagValue::Bool(true)),
        ("i16", TagValue::Int(-12345)),
        ("u16", TagValue::Int(54321)),
        ("i32", TagValue::Int(-123456789)),
        ("u32", TagValue::Int(3000000000)),
        ("i64", TagValue::Int(-9000000000000)),
        ("u64", TagValue::Int(9000000000000000000)),
        ("f32", TagValue::Float(1.5)),
        ("f64", TagValue::Float(-2.25)),
        ("text", TagValue::Text("pump running".into())),
    ];
    for (t, v) in want {
        assert_eq!(value(&s, t), Some(v), "tag {t} in {s:?}");
    }
    // A node the server does not have: a documented error code, and the
    // device's health names the node's status.
    assert_eq!(error(&s, "missing"), Some(ErrorCode::NodeUnknown as i32));
    wait_until(WAIT, "the device to be degraded", || async {
        rig.device("scada")
            .is_some_and(|d| d.state == DeviceState::Degraded)
    })
    .await;
    let h = rig.device("scada").unwrap();
    assert!(
        h.last_error
            .as_deref()
            .unwrap_or("")
            .contains("BadNodeIdUnknown"),
        "{h:?}"
    );

    // Subscribed: the counter the server increments arrives, rising.
    wait_until(WAIT, "10 counter changes by subscription", || async {
        counters(&rig).len() >= 10
    })
    .await;
    let c = counters(&rig);
    assert!(
        c.windows(2).all(|w| w[1] > w[0]),
        "counter not rising: {c:?}"
    );

    // Writes land on the server, typed as the node's type.
    let r = write(&rig, "sp", TagValue::Float(42.5)).await;
    assert!(r.ok, "{r:?}");
    // Scaled: 12.3 at scale 0.1 is 123 raw.
    let r = write(&rig, "spi", TagValue::Float(12.3)).await;
    assert!(r.ok, "{r:?}");
    wait_until(WAIT, "the server to see both writes", || async {
        let w = server.writes();
        w.contains(&"Setpoint 42.5".to_string()) && w.contains(&"SetpointInt 123".to_string())
    })
    .await;
    wait_until(WAIT, "the written value to be read back", || async {
        rig.of("setpoints")
            .last()
            .is_some_and(|s| value(s, "sp") == Some(TagValue::Float(42.5)))
    })
    .await;
    // Refusals name the reason: the server's status, or our own check.
    let r = write(&rig, "ro", TagValue::Int(1)).await;
    assert!(!r.ok);
    let e = r.error.unwrap();
    assert!(e.contains("the server refused the write: Bad"), "{e}");
    let r = write(&rig, "i16", TagValue::Int(1)).await;
    assert!(r.error.unwrap().contains("not writable"));
    let r = write(&rig, "spi", TagValue::Text("x".into())).await;
    assert!(!r.ok);
    rig.stop().await;
}

/// The server dies and comes back: the device goes down with the reason,
/// its tags are published as disconnected, and values flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_run_recovers() {
    let mut server = OpcServer::start(ServerOpts {
        tick_ms: 50,
        ..Default::default()
    });
    let mut rig = Rig::start(
        device(json!({"endpoint": server.endpoint(), "maxBackoffMs": 500})),
        None,
    );
    wait_until(WAIT, "counter changes", || async {
        counters(&rig).len() >= 5
    })
    .await;
    server.kill();
    wait_until(WAIT, "the device to be down", || async {
        rig.device("scada")
            .is_some_and(|d| d.state == DeviceState::Down)
    })
    .await;
    let down = rig.device("scada").unwrap();
    assert!(down.last_error.is_some(), "{down:?}");
    wait_until(WAIT, "the outage published as code 1003", || async {
        rig.of("live")
            .iter()
            .any(|s| error(s, "counter") == Some(ErrorCode::Disconnected as i32))
    })
    .await;
    let before = rig.of("live").len();
    server.restart();
    wait_until(WAIT, "values to flow after the restart", || async {
        rig.of("live")[before..]
            .iter()
            .filter(|s| value(s, "counter").is_some())
            .count()
            >= 5
    })
    .await;
    wait_until(WAIT, "the device to be ok again", || async {
        rig.device("scada")
            .is_some_and(|d| d.state != DeviceState::Down)
    })
    .await;
    rig.stop().await;
}

fn creds() -> Arc<dyn CredentialSource> {
    let mut m = HashMap::new();
    m.insert(
        "scada-op".to_string(),
        DeviceCredential::UserPassword {
            username: "operator".into(),
            password: "s3cret-pw".into(),
        },
    );
    Arc::new(MapCredentials(m))
}

/// Basic256Sha256/SignAndEncrypt, the server's certificate pinned, a user
/// name and password from the credential store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_and_encrypt_with_pinned_certificate_and_user() {
    let server = OpcServer::start(ServerOpts {
        secure: true,
        user: Some(("operator".into(), "s3cret-pw".into())),
        tick_ms: 100,
        ..Default::default()
    });
    let sha = server.sha256.clone().unwrap();
    let mut rig = Rig::start(
        device(json!({"endpoint": server.endpoint(),
            "securityPolicy": "basic256Sha256", "securityMode": "signAndEncrypt",
            "credential": "scada-op", "serverCertificateSha256": sha})),
        Some(creds()),
    );
    wait_until(
        WAIT,
        "subscribed values over the secure channel",
        || async { counters(&rig).len() >= 5 },
    )
    .await;
    let s = rig.of("fixed").pop().expect("a polled sample");
    assert_eq!(
        value(&s, "text"),
        Some(TagValue::Text("pump running".into()))
    );
    let r = write(&rig, "sp", TagValue::Float(7.25)).await;
    assert!(r.ok, "{r:?}");
    wait_until(WAIT, "the server to see the write", || async {
        server.writes().contains(&"Setpoint 7.25".to_string())
    })
    .await;
    // The agent's own key is private to it.
    let key = rig.data_dir.path().join("opcua/pki/own/private.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "{}", key.display());
    rig.stop().await;
}

/// An X.509 user identity (certificate and key from the credential store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_user_identity() {
    let server = OpcServer::start(ServerOpts {
        secure: true,
        x509_user: true,
        tick_ms: 100,
        ..Default::default()
    });
    let read = |f: &str| std::fs::read_to_string(server.pki().join(f)).unwrap();
    let mut m = HashMap::new();
    m.insert(
        "scada-cert".to_string(),
        DeviceCredential::Certificate {
            certificate_pem: read("user-cert.pem"),
            private_key_pem: read("user-key.pem"),
        },
    );
    let creds: Arc<dyn CredentialSource> = Arc::new(MapCredentials(m));
    let mut rig = Rig::start(
        device(json!({"endpoint": server.endpoint(),
            "securityPolicy": "basic256Sha256", "securityMode": "signAndEncrypt",
            "credential": "scada-cert", "serverCertificateSha256": server.sha256})),
        Some(creds),
    );
    wait_until(WAIT, "values with the X.509 user", || async {
        counters(&rig).len() >= 3
    })
    .await;
    rig.stop().await;

    // A credential the agent does not hold keeps the device down, named.
    let mut rig = Rig::start(
        device(json!({"endpoint": server.endpoint(),
            "securityPolicy": "basic256Sha256", "securityMode": "signAndEncrypt",
            "credential": "nobody", "serverCertificateSha256": server.sha256})),
        Some(Arc::new(MapCredentials::default())),
    );
    wait_until(WAIT, "the device to be down", || async {
        rig.device("scada")
            .is_some_and(|d| d.state == DeviceState::Down)
    })
    .await;
    let e = rig.device("scada").unwrap().last_error.unwrap();
    assert!(e.contains("credential 'nobody'"), "{e}");
    rig.stop().await;
}

/// A certificate that is not the pinned one is refused, and the device's
/// health says why; an unpinned, untrusted one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_or_untrusted_certificate_is_refused() {
    let server = OpcServer::start(ServerOpts {
        secure: true,
        tick_ms: 100,
        ..Default::default()
    });
    let secure = |pin: Option<&str>| {
        let mut o = json!({"endpoint": server.endpoint(),
            "securityPolicy": "basic256Sha256", "securityMode": "signAndEncrypt"});
        if let Some(p) = pin {
            o["serverCertificateSha256"] = json!(p);
        }
        device(o)
    };
    let mut rig = Rig::start(secure(Some(&"0".repeat(64))), None);
    wait_until(WAIT, "the device to be down", || async {
        rig.device("scada")
            .is_some_and(|d| d.state == DeviceState::Down)
    })
    .await;
    let e = rig.device("scada").unwrap().last_error.unwrap();
    assert!(e.contains("not the pinned serverCertificateSha256"), "{e}");
    assert!(e.contains(server.sha256.as_deref().unwrap()), "{e}");
    assert!(counters(&rig).is_empty());
    rig.stop().await;

    let mut rig = Rig::start(secure(None), None);
    wait_until(WAIT, "the device to be down", || async {
        rig.device("scada")
            .is_some_and(|d| d.state == DeviceState::Down)
    })
    .await;
    let e = rig.device("scada").unwrap().last_error.unwrap();
    assert!(e.contains("is not trusted"), "{e}");
    rig.stop().await;
}

/// `weir-agent opcua browse` prints the server's certificate SHA-256 and
/// its nodes with their data types; an untrusted certificate is refused
/// with the SHA-256 to pin.
#[test]
fn browse_prints_the_certificate_and_the_address_space() {
    let server = OpcServer::start(ServerOpts {
        secure: true,
        user: Some(("operator".into(), "s3cret-pw".into())),
        tick_ms: 100,
        ..Default::default()
    });
    let sha = server.sha256.clone().unwrap();
    let data = tempfile::tempdir().unwrap();
    let run = |accept: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weir-agent"));
        c.args([
            "opcua",
            "browse",
            &server.endpoint(),
            "--node",
            "ns=2;s=Plant",
        ])
        .args(["--security-policy", "basic256Sha256"])
        .args([
            "--security-mode",
            "signAndEncrypt",
            "--username",
            "operator",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("WEIR_OPCUA_PASSWORD", "s3cret-pw")
        .env("RUST_LOG", "error");
        if accept {
            c.arg("--accept-server-certificate");
        }
        c.output().unwrap()
    };
    let (refused, ok) = (run(false), run(true));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("is not trusted") && err.contains(&sha),
        "{err}"
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        text.contains(&format!("server certificate SHA-256: {sha}")),
        "{text}"
    );
    for line in [
        "ns=2;s=Plant.Int16\tInt16\tVariable\tInt16 (dataType int16)",
        "ns=2;s=Plant.Double\tDouble\tVariable\tDouble (dataType float64)",
        "ns=2;s=Plant.Setpoint\tSetpoint\tVariable\tDouble (dataType float64)",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// A subscribed group's absolute deadband: the server drops changes
/// smaller than it (Level moves 0.1 per tick and wraps from 9.9 to 0.0).
/// asyncua compares with the previous value, not the last reported one,
/// so there only the wraps pass; a server doing the latter would report
/// every ~1.1: both show no small step and far fewer changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadband_drops_small_changes() {
    let server = OpcServer::start(ServerOpts {
        tick_ms: 20,
        ..Default::default()
    });
    let mut rig = Rig::start(
        json!({"devices": [{"name": "scada", "adapter": "opcUa",
        "opcUa": {"endpoint": server.endpoint()},
        "groups": [
            {"name": "all", "intervalMs": 10, "mode": "subscribe",
             "tags": [tag("level", "Level", "float64")]},
            {"name": "banded", "intervalMs": 10, "mode": "subscribe", "deadband": 1.0,
             "tags": [tag("level", "Level", "float64")]}
        ]}]}),
        None,
    );
    let levels = |group: &str| -> Vec<f64> {
        rig.of(group)
            .iter()
            .filter_map(|s| value(s, "level").and_then(|v| v.as_f64()))
            .collect()
    };
    // Two wraps of Level (2 s each at 20 ms per tick).
    wait_until(WAIT, "3 banded changes", || async {
        levels("banded").len() >= 3
    })
    .await;
    let (banded, all) = (levels("banded"), levels("all"));
    // The first value is the monitored item's initial report, sent
    // whatever the deadband; the steps after it are the filtered changes.
    for w in banded[1..].windows(2) {
        let d = (w[1] - w[0]).abs();
        assert!(
            !(1e-9..=1.0).contains(&d),
            "a small step passed: {w:?} in {banded:?}"
        );
    }
    assert!(
        all.windows(2).any(|w| (w[1] - w[0]).abs() < 0.5),
        "without a deadband small steps arrive: {all:?}"
    );
    assert!(
        banded.len() * 5 < all.len(),
        "banded {} vs all {}",
        banded.len(),
        all.len()
    );
    rig.stop().await;
}
