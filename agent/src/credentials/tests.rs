use std::os::unix::fs::PermissionsExt;

use super::*;

fn config(names: &[&str]) -> GatewayConfig {
    let devices: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_json::json!({"name": format!("d{i}"), "adapter": "opcUa",
                "opcUa": {"endpoint": "opc.tcp://127.0.0.1:4840", "credential": n},
                "groups": [{"name": "g", "intervalMs": 1000, "tags": [
                    {"name": "t", "address": "ns=2;i=1", "dataType": "float64"}]}]})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "devices": devices })).unwrap()
}

fn up(user: &str, pw: &str) -> DeviceCredential {
    DeviceCredential::UserPassword {
        username: user.into(),
        password: pw.into(),
    }
}

#[test]
fn names_are_device_style() {
    assert!(is_name("scada-login_2"));
    for bad in ["", "-a", "a-", "A", "a/b", "../x", "a.b", &"a".repeat(64)] {
        assert!(!is_name(bad), "{bad}");
    }
}

#[tokio::test]
async fn air_gapped_reads_the_local_file_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("creds.yaml");
    std::fs::write(
        &file,
        "scada: {kind: userPassword, username: op, password: pw-1}\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let data = DataDir::open(dir.path().join("data")).unwrap();
    let store = CredentialStore::new(&data, None, Some(file.clone())).unwrap();
    let from = store.refresh(&config(&["scada", "absent"])).await;
    assert_eq!(from["scada"], Origin::LocalFile);
    assert_eq!(store.get("scada"), Some(up("op", "pw-1")));
    assert_eq!(store.get("absent"), None);
    let why = store.why_missing("absent").unwrap();
    assert!(why.contains("has no entry 'absent'"), "{why}");
    assert!(store.why_missing("scada").is_none());
    // Air-gapped credentials are not copied into the data dir.
    assert!(!store.path_of("scada").exists());

    // An edit of the file is picked up at the next config.
    std::fs::write(
        &file,
        "scada: {kind: userPassword, username: op, password: pw-2}\n",
    )
    .unwrap();
    store.refresh(&config(&["scada"])).await;
    assert_eq!(store.get("scada"), Some(up("op", "pw-2")));
    // A config that names nothing forgets it.
    store.refresh(&config(&[])).await;
    assert_eq!(store.get("scada"), None);
}

#[tokio::test]
async fn a_broken_local_file_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("creds.json");
    std::fs::write(
        &file,
        r#"{"scada": {"kind": "userPassword", "username": "op"}}"#,
    )
    .unwrap();
    let data = DataDir::open(dir.path().join("data")).unwrap();
    let e = CredentialStore::new(&data, None, Some(file))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("credential 'scada'") && e.contains("missing field `password`"),
        "{e}"
    );
}

#[tokio::test]
async fn stored_copies_serve_offline_and_unnamed_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let store = CredentialStore::new(&data, None, None).unwrap();
    store.keep("kept", &up("op", "pw")).unwrap();
    store.keep("stale", &up("old", "pw")).unwrap();
    let mode = std::fs::metadata(store.path_of("kept"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let from = store.refresh(&config(&["kept"])).await;
    assert_eq!(from["kept"], Origin::Stored);
    assert_eq!(store.get("kept"), Some(up("op", "pw")));
    assert!(
        !store.path_of("stale").exists(),
        "a copy no config names is deleted"
    );
}
