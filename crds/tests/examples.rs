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
    let errors = check_against_schema(schema, obj, old, "");
    if !errors.is_empty() || kind != "EdgeGateway" {
        return errors;
    }
    // What the API server cannot afford to check, weir does (the api,
    // `weir-agent validate`, the operator).
    weir_crds::gateway::validate::validate_spec_value(&obj["spec"])
        .err()
        .unwrap_or_default()
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

/// One case of `e2e/k8s/bad-specs.yaml` (the file says what each key means).
#[derive(serde::Deserialize)]
struct BadSpec {
    name: String,
    base: String,
    #[serde(default)]
    before: Vec<Value>,
    change: Vec<Value>,
    #[serde(default)]
    update: bool,
    field: String,
    message: String,
    weir: Option<String>,
    /// `accepts`: the API server cannot afford the check; only weir refuses.
    server: Option<String>,
}

fn bad_specs() -> Vec<BadSpec> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/k8s/bad-specs.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `/a/0/b` → the parent of the pointed-at value and the last token.
fn locate<'a>(doc: &'a mut Value, pointer: &str) -> (&'a mut Value, String) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let node = if parent.is_empty() {
        doc
    } else {
        doc.pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent}"))
    };
    (node, last.replace("~1", "/").replace("~0", "~"))
}

fn put(node: &mut Value, last: &str, value: Value) {
    match node {
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => items[last.parse::<usize>().unwrap()] = value,
        Value::Object(map) => {
            map.insert(last.to_string(), value);
        }
        other => panic!("cannot set {last} in {other}"),
    }
}

/// The operations of bad-specs.yaml, as e2e/k8s/bad_specs.py does them.
fn apply_ops(mut doc: Value, ops: &[Value]) -> Value {
    for op in ops {
        if let Some(p) = op["set"].as_str() {
            let (node, last) = locate(&mut doc, p);
            put(node, &last, op["value"].clone());
        } else if let Some(p) = op["remove"].as_str() {
            let (node, last) = locate(&mut doc, p);
            match node {
                Value::Array(items) => drop(items.remove(last.parse::<usize>().unwrap())),
                Value::Object(map) => drop(map.remove(&last)),
                other => panic!("cannot remove {last} from {other}"),
            }
        } else if let Some(p) = op["copy"].as_str() {
            let value = doc.pointer(p).unwrap().clone();
            let (node, last) = locate(&mut doc, op["to"].as_str().unwrap());
            put(node, &last, value);
        } else if let Some(p) = op["grow"].as_str() {
            let to = op["to"].as_u64().unwrap() as usize;
            let items = doc.pointer_mut(p).unwrap().as_array_mut().unwrap();
            let first = items[0].clone();
            while items.len() < to {
                let mut item = first.clone();
                item["name"] = json!(format!(
                    "{}-{}",
                    first["name"].as_str().unwrap(),
                    items.len()
                ));
                items.push(item);
            }
        } else {
            panic!("unknown operation {op}");
        }
    }
    doc
}

/// The table the real API server is tested with (scenario `bad-specs-refused`)
/// gets the same refusals from weir-crds: same field, and the same words for
/// the CEL rules.
#[test]
fn every_bad_spec_of_the_table_is_refused_with_its_field() {
    let cases = bad_specs();
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());
    for case in &cases {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/manifests");
        let text = std::fs::read_to_string(dir.join(&case.base)).unwrap();
        let base: Value =
            serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap())
                .unwrap();
        let before = apply_ops(base, &case.before);
        let changed = apply_ops(before.clone(), &case.change);
        if case.server.as_deref() == Some("accepts") {
            // The schema and its CEL rules (what the API server runs) pass it.
            let kind = changed["kind"].as_str().unwrap();
            let old = case.update.then_some(&before);
            let server = check_against_schema(&schemas()[kind], &changed, old, "");
            assert!(
                server.is_empty(),
                "{}: the API server would refuse it: {server:?}",
                case.name
            );
        }
        let errors = check(&changed, case.update.then_some(&before));
        let words = case.weir.as_deref().unwrap_or(&case.message);
        assert!(
            errors
                .iter()
                .any(|e| e.field.starts_with(&case.field) && e.message.contains(words)),
            "{}: expected `{}: {words}`, got {errors:#?}",
            case.name,
            case.field
        );
    }
}

/// "One case per CEL rule": every rule's message is some case's message.
#[test]
fn every_cel_rule_has_a_bad_spec() {
    fn messages(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(rules) = map
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                {
                    for r in rules {
                        let m = r["message"].as_str().unwrap();
                        out.push(m.split_once(": ").map_or(m, |(_, t)| t).to_string());
                    }
                }
                map.values().for_each(|c| messages(c, out));
            }
            Value::Array(items) => items.iter().for_each(|c| messages(c, out)),
            _ => {}
        }
    }
    let mut rules = Vec::new();
    for schema in schemas().values() {
        messages(schema, &mut rules);
    }
    let cases = bad_specs();
    let missing: Vec<_> = rules
        .iter()
        .filter(|m| !cases.iter().any(|c| m.starts_with(&c.message)))
        .collect();
    assert!(rules.len() >= 30, "found {} rules", rules.len());
    assert!(
        missing.is_empty(),
        "CEL rules without a case in e2e/k8s/bad-specs.yaml: {missing:#?}"
    );
}
