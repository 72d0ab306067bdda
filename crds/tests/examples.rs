//! Every example manifest passes the generated schema and every CEL rule;
//! deliberately broken copies fail with the message a user would see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use weir_crds::gateway::validate::{check_against_schema, FieldError};

fn schemas() -> BTreeMap<String, Value> {
    weir_crds::all_crds()
        .into_iter()
        .map(|(_, crd)| {
            let kind = crd.spec.names.kind.clone();
            let v = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            (kind, v["openAPIV3Schema"].clone())
        })
        .collect()
}

fn examples() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/manifests");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("e2e/manifests exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        out.push((path, serde_json::to_value(yaml).unwrap()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 4,
        "expected the example manifests, found {}",
        out.len()
    );
    out
}

fn check(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let kind = obj["kind"].as_str().expect("kind");
    let schemas = schemas();
    let schema = schemas
        .get(kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    check_against_schema(schema, obj, old, "")
}

fn example(kind: &str, name: &str) -> Value {
    examples()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("example {kind}/{name}"))
}

#[test]
fn every_example_is_valid() {
    for (path, obj) in examples() {
        let errors = check(&obj, None);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        // And it deserializes into the Rust type the components use.
        match obj["kind"].as_str().unwrap() {
            "Tenant" => drop(serde_json::from_value::<weir_crds::Tenant>(obj).unwrap()),
            "MqttCluster" => drop(serde_json::from_value::<weir_crds::MqttCluster>(obj).unwrap()),
            "EdgeGateway" => {
                let gw: weir_crds::EdgeGateway = serde_json::from_value(obj).unwrap();
                weir_crds::gateway::validate::validate_spec(&gw.spec)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
            other => panic!("unexpected kind {other}"),
        }
    }
}

/// Every rule of every CRD compiles: a typo in a rule fails the build here,
/// not at `kubectl apply`.
#[test]
fn every_cel_rule_compiles() {
    fn walk(s: &kube::core::cel::CompiledSchema, path: &str, bad: &mut Vec<String>) {
        for e in s.compilation_errors() {
            bad.push(format!("{path}: {e:?}"));
        }
        for (k, child) in &s.properties {
            walk(child, &format!("{path}.{k}"), bad);
        }
        if let Some(items) = &s.items {
            walk(items, &format!("{path}[]"), bad);
        }
        if let Some(extra) = &s.additional_properties {
            walk(extra, &format!("{path}{{}}"), bad);
        }
    }
    let mut bad = Vec::new();
    let mut rules = 0;
    for (kind, schema) in schemas() {
        rules += serde_json::to_string(&schema)
            .unwrap()
            .matches("\"rule\"")
            .count();
        walk(&kube::core::cel::compile_schema(&schema), &kind, &mut bad);
    }
    assert!(
        rules >= 25,
        "expected the CEL rules to be in the schema, found {rules}"
    );
    assert!(bad.is_empty(), "rules that do not compile: {bad:#?}");
}

fn expect_error(obj: &Value, old: Option<&Value>, field: &str, message: &str) {
    let errors = check(obj, old);
    assert!(
        errors
            .iter()
            .any(|e| e.field.starts_with(field) && e.message.contains(message)),
        "expected `{field}: {message}`, got {errors:#?}"
    );
}

#[test]
fn broken_gateway_copies_are_rejected_with_clear_messages() {
    let good = example("EdgeGateway", "raw-water-ps1");
    let dev = "/spec/devices/0";

    let mut v = good.clone();
    *v.pointer_mut(&format!("{dev}/groups/0/intervalMs"))
        .unwrap() = json!(50);
    expect_error(
        &v,
        None,
        "spec.devices[0].groups[0].intervalMs",
        "at least 100 ms",
    );

    let mut v = good.clone();
    let t0 = v
        .pointer(&format!("{dev}/groups/0/tags/0/name"))
        .unwrap()
        .clone();
    *v.pointer_mut(&format!("{dev}/groups/0/tags/1/name"))
        .unwrap() = t0;
    expect_error(
        &v,
        None,
        "spec.devices[0].groups[0].tags",
        "each tag of a group needs its own name",
    );

    let mut v = good.clone();
    let d = v.pointer(dev).unwrap().clone();
    v["spec"]["devices"].as_array_mut().unwrap().push(d);
    v["spec"]["pipelines"] = json!([]);
    expect_error(&v, None, "spec.devices", "each device needs its own name");

    let mut v = good.clone();
    *v.pointer_mut(&format!("{dev}/groups/0/tags/0/address"))
        .unwrap() = json!("1!2000001");
    expect_error(
        &v,
        None,
        "spec.devices[0]",
        "a Modbus address reads SLAVE!AREAADDRESS",
    );

    let mut v = good.clone();
    *v.pointer_mut(&format!("{dev}/groups/1/tags/0/dataType"))
        .unwrap() = json!("float32");
    expect_error(
        &v,
        None,
        "spec.devices[0].groups[1].tags[0]",
        "coils (area 0) and discrete inputs",
    );

    let mut v = good.clone();
    v["spec"]["pipelines"][0]["select"]["device"] = json!("no-such-plc");
    expect_error(&v, None, "spec", "must name a device of this gateway");

    let mut v = good.clone();
    v["spec"]["pipelines"][1]["steps"][0]["filter"] = json!("value > 1.0");
    expect_error(
        &v,
        None,
        "spec.pipelines[1].steps[0]",
        "exactly one of filter",
    );

    let mut v = good.clone();
    v["spec"]["uplink"]["qos"] = json!(2);
    expect_error(&v, None, "spec.uplink.qos", "must be 0 or 1");

    let mut v = good.clone();
    v["spec"]["mode"] = json!("sideways");
    expect_error(&v, None, "spec.mode", "sideways");

    let mut v = good.clone();
    v["spec"]["mode"] = json!("inCluster");
    v["spec"].as_object_mut().unwrap().remove("clusterRef");
    expect_error(
        &v,
        None,
        "spec",
        "an inCluster gateway needs the MQTT cluster",
    );

    let mut v = good.clone();
    v["spec"]["devices"][0]["pollEvery"] = json!(5);
    expect_error(&v, None, "spec.devices[0].pollEvery", "unknown field");

    let mut v = example("EdgeGateway", "filtration-sim");
    v["spec"]["devices"][0]["groups"][0]["tags"][0]
        .as_object_mut()
        .unwrap()
        .remove("signal");
    expect_error(
        &v,
        None,
        "spec.devices[0]",
        "every tag of a simulator device needs a signal",
    );
}

#[test]
fn broken_cluster_copies_are_rejected_with_clear_messages() {
    let good = example("MqttCluster", "riverside-mqtt");

    let mut v = good.clone();
    v["spec"]["replicas"] = json!(20);
    expect_error(&v, None, "spec.replicas", "between 1 and 15");

    let mut v = good.clone();
    v["spec"]["listeners"][1]["port"] = json!(1883);
    expect_error(
        &v,
        None,
        "spec.listeners",
        "each listener needs its own port",
    );

    let mut v = good.clone();
    v["spec"]["listeners"][1]
        .as_object_mut()
        .unwrap()
        .remove("tlsSecretRef");
    expect_error(
        &v,
        None,
        "spec.listeners[1]",
        "tls and wss listeners need a TLS secret",
    );

    let mut v = good.clone();
    v["spec"]["version"] = json!("4.4.19");
    expect_error(&v, None, "spec.version", "EMQX 5 version");

    // Transition rule: the storage class cannot change on update...
    let mut v = good.clone();
    v["spec"]["storage"]["storageClassName"] = json!("fast-ssd");
    expect_error(
        &v,
        Some(&good),
        "spec.storage.storageClassName",
        "is immutable",
    );
    // ...but an update that keeps it is fine.
    let mut v = good.clone();
    v["spec"]["replicas"] = json!(5);
    let errors = check(&v, Some(&good));
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn broken_tenant_copies_are_rejected_with_clear_messages() {
    let good = example("Tenant", "riverside-water");
    let mut v = good.clone();
    let a = v["spec"]["admins"][0].clone();
    v["spec"]["admins"].as_array_mut().unwrap().push(a);
    expect_error(
        &v,
        None,
        "spec.admins",
        "each admin may be listed only once",
    );

    let mut v = good.clone();
    v["spec"]["quota"]["memory"] = json!("lots");
    expect_error(&v, None, "spec.quota.memory", "lots");
}
