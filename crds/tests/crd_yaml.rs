//! The committed CRD YAML must be exactly what the code generates.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    let mut stale = Vec::new();
    for (file, crd) in weir_crds::all_crds() {
        let want = weir_crds::crd_yaml(&crd);
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if have != want {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "crds/yaml/{stale:?} differ from the Rust types; refresh them with:\n    cargo run -p weir-crds --bin crdgen"
    );
}

#[test]
fn crds_have_status_printer_columns_and_rules() {
    for (file, crd) in weir_crds::all_crds() {
        let v = &crd.spec.versions[0];
        assert_eq!(crd.spec.group, "weir.dev", "{file}");
        assert_eq!(v.name, "v1alpha1", "{file}");
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some(), "{file} has a status subresource");
        let cols: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            cols.contains(&"Age") && cols.contains(&"Phase"),
            "{file}: {cols:?}"
        );
        let yaml = weir_crds::crd_yaml(&crd);
        assert!(
            yaml.contains("x-kubernetes-validations"),
            "{file} has CEL rules"
        );
    }
    let mqc = &weir_crds::all_crds()[1].1;
    let scale = mqc.spec.versions[0]
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .as_ref()
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
}

/// The drift check itself fails when a file is stale, and says how to fix it.
#[test]
fn drift_check_catches_a_stale_file() {
    let dir = std::env::temp_dir().join(format!("weir-crdgen-{}", std::process::id()));
    let crdgen = env!("CARGO_BIN_EXE_crdgen");
    let out = std::process::Command::new(crdgen)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let ok = std::process::Command::new(crdgen)
        .arg(&dir)
        .arg("--check")
        .output()
        .unwrap();
    assert!(ok.status.success(), "fresh files pass the check");

    let file = dir.join("mqttclusters.weir.dev.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replace("mqc", "mq");
    std::fs::write(&file, text).unwrap();
    let stale = std::process::Command::new(crdgen)
        .arg(&dir)
        .arg("--check")
        .output()
        .unwrap();
    assert!(!stale.status.success());
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(
        stderr.contains("mqttclusters.weir.dev.yaml is out of date"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cargo run -p weir-crds --bin crdgen"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What weir-api writes from heartbeats is named once: each name in
/// HEARTBEAT_FIELDS is a property of the served status schema, the ones the
/// operator writes are not among them, and an agent's device health and
/// refused bundle fit the schema's types.
#[test]
fn heartbeat_status_fields_are_in_the_schema() {
    use weir_crds::{EdgeGateway, EdgeGatewayStatus};
    let crd = weir_crds::crd::<EdgeGateway>();
    let v = serde_json::to_value(&crd.spec.versions[0]).unwrap();
    let props = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for f in EdgeGatewayStatus::HEARTBEAT_FIELDS {
        assert!(props.get(f).is_some(), "status.{f} is not in the schema");
    }
    for f in [
        "phase",
        "conditions",
        "configVersion",
        "configHash",
        "observedGeneration",
    ] {
        assert!(props.get(f).is_some(), "status.{f}");
        assert!(!EdgeGatewayStatus::HEARTBEAT_FIELDS.contains(&f), "{f}");
    }
    assert_eq!(
        props["devices"]["items"]["properties"]["state"]["enum"],
        serde_json::json!(["ok", "degraded", "down"])
    );
    let s: EdgeGatewayStatus = serde_json::from_value(serde_json::json!({
        "online": true, "appliedVersion": 3, "lastHeartbeat": "2026-12-07T01:00:00Z",
        "refused": {"version": 4, "reason": "bad signature", "at": "2026-12-07T01:00:00Z"},
        "devices": [{"name": "pump-1", "state": "down", "lastError": "timeout"}],
        "queueDepth": 12, "droppedReadings": 0,
    }))
    .unwrap();
    assert_eq!(s.devices[0].state, weir_crds::agent_api::DeviceState::Down);
    assert_eq!(s.refused.unwrap().version, Some(4));
}
