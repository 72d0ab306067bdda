//! Validation of a gateway config with exactly the rules of the CRD: the
//! schema (types, enums, ranges, patterns), unknown fields, the CEL rules
//! (`x-kubernetes-validations`, evaluated with kube's CEL library) and the
//! checks CEL cannot express (address parsing, references to tags, filter
//! syntax). The api, `weir-agent validate` and the CRD give the same messages.

use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use super::{
    AdapterKind, DataType, Device, GatewayConfig, ModbusAddress, NodeId, Tag, TagAttribute,
};
use crate::edge_gateway::{EdgeGateway, EdgeGatewaySpec};

/// One problem with one field, e.g. `spec.devices[0].groups[0].intervalMs`:
/// `polling interval must be at least 10 ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The `spec` schema of the EdgeGateway CRD, as generated.
pub fn spec_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(crate::crd::<EdgeGateway>()).expect("crd serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    })
}

thread_local! {
    // Registering the CEL functions is not free: once per thread.
    static CEL: kube::core::cel::Validator = kube::core::cel::Validator::new();
}

/// Evaluate every `x-kubernetes-validations` rule of `schema` on `value`.
fn cel_validate(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
) -> Result<(), kube::core::cel::ValidationErrors> {
    CEL.with(|v| v.validate(schema, value, old))
}

/// Validate a raw spec (as a user sent it) and return the typed spec.
pub fn validate_spec_value(value: &Value) -> Result<EdgeGatewaySpec, Vec<FieldError>> {
    let mut errors = check_against_schema(spec_schema(), value, None, "spec");
    // Semantic checks say more precisely what is wrong (e.g. which part of an
    // address), so run them whenever the value has the right shape.
    match serde_json::from_value::<EdgeGatewaySpec>(value.clone()) {
        Ok(spec) => {
            semantic_checks(&spec.config, &mut errors);
            if errors.is_empty() {
                return Ok(spec);
            }
        }
        Err(e) if errors.is_empty() => errors.push(FieldError::new("spec", e.to_string())),
        Err(_) => {}
    }
    Err(errors)
}

/// Validate a typed spec: schema, CEL rules and semantic checks.
pub fn validate_spec(spec: &EdgeGatewaySpec) -> Result<(), Vec<FieldError>> {
    let value = serde_json::to_value(spec).expect("spec serializes");
    validate_spec_json(value, &spec.config)
}

/// [`validate_spec`] of a spec already as JSON (`value`, consumed: the
/// numbers the CEL rules see as doubles are converted in place rather than
/// in a copy, which for the largest configs is megabytes an agent would
/// hold at its memory peak).
fn validate_spec_json(mut value: Value, config: &GatewayConfig) -> Result<(), Vec<FieldError>> {
    let schema = spec_schema();
    let mut errors = schema_errors(schema, &value, "spec");
    numbers_as_doubles_in_place(schema, &mut value);
    cel_errors(schema, &value, None, "spec", &mut errors);
    errors.dedup();
    semantic_checks(config, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Check `value` against a CRD (sub-)schema the way the API server would:
/// unknown fields, types/enums/ranges/patterns, then every CEL rule (with
/// `old` for transition rules). `root` prefixes the field paths (`spec`
/// when `schema` is the spec schema, empty for a whole object).
pub fn check_against_schema(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    root: &str,
) -> Vec<FieldError> {
    let mut errors = schema_errors(schema, value, root);
    // CEL sees a `number` field as a double even when written `0`, as in
    // the API server (`scale: 0` must fail `self.scale != 0.0` here too).
    let value = numbers_as_doubles(schema, value);
    let old = old.map(|o| numbers_as_doubles(schema, o));
    cel_errors(schema, &value, old.as_ref(), root, &mut errors);
    errors.dedup();
    errors
}

/// Unknown fields, duplicate keys and the schema's types, enums, ranges and
/// patterns.
fn schema_errors(schema: &Value, value: &Value, root: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    unknown_fields(schema, value, root, &mut errors);
    duplicate_keys(schema, value, root, &mut errors);
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![FieldError::new(
                root,
                format!("schema does not compile: {e}"),
            )]
        }
    };
    for e in validator.iter_errors(value) {
        let mut field = pointer_to_path(root, &e.instance_path().to_string());
        // A missing field is about that field, as the API server says it.
        if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
            if let Some(p) = property.as_str() {
                field = if field.is_empty() {
                    p.to_string()
                } else {
                    format!("{field}.{p}")
                };
            }
        }
        errors.push(FieldError::new(field, schema_message(&e.to_string())));
    }
    errors
}

/// Every CEL rule of `schema` on `value` (its numbers already doubles where
/// the schema says `number`).
fn cel_errors(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    root: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Err(errs) = cel_validate(schema, value, old) {
        for e in errs.iter() {
            // A rule on the whole object about its name (a Tenant's) is
            // about `metadata.name`, as its message says.
            let field = match e.message.split_once(": ") {
                Some((head, _)) if root.is_empty() && head.starts_with("metadata.") => {
                    head.to_string()
                }
                _ => cel_path(root, &e.field_path),
            };
            errors.push(FieldError::new(field, strip_field_prefix(&e.message)));
        }
    }
}

/// Validate the part of a spec an agent runs.
pub fn validate_config(config: &GatewayConfig) -> Result<(), Vec<FieldError>> {
    // The JSON of `EdgeGatewaySpec { config, ..Default::default() }` (the
    // config is flattened into the spec) without cloning the config.
    let mut value = serde_json::to_value(EdgeGatewaySpec::default()).expect("spec serializes");
    let Value::Object(config_json) = serde_json::to_value(config).expect("config serializes")
    else {
        unreachable!("a config serializes to an object")
    };
    if let Value::Object(spec) = &mut value {
        spec.extend(config_json);
    }
    validate_spec_json(value, config)
}

fn semantic_checks(config: &GatewayConfig, errors: &mut Vec<FieldError>) {
    for (di, d) in config.devices.iter().enumerate() {
        for (gi, g) in d.groups.iter().enumerate() {
            for (ti, t) in g.tags.iter().enumerate() {
                let at = format!("spec.devices[{di}].groups[{gi}].tags[{ti}]");
                if let Err((field, e)) = check_address(d.adapter, &t.address, t.data_type) {
                    errors.push(FieldError::new(
                        format!("{at}.{field}"),
                        format!("tag '{}': {e}", t.name),
                    ));
                }
                if let Some((field, e)) = write_limits_misplaced(t) {
                    errors.push(FieldError::new(format!("{at}.{field}"), e));
                }
            }
        }
    }
    shared_lines_agree(&config.devices, errors);
    for (pi, p) in config.pipelines.iter().enumerate() {
        if let Some(tag) = &p.select.tag {
            let found = config.tags().any(|(d, g, t)| {
                d.name == p.select.device
                    && p.select.group.as_ref().is_none_or(|gn| gn == &g.name)
                    && &t.name == tag
            });
            if !found {
                errors.push(FieldError::new(
                    format!("spec.pipelines[{pi}].select.tag"),
                    format!("no tag '{tag}' in the selected device and group"),
                ));
            }
        }
        for (si, s) in p.steps.iter().enumerate() {
            if let Some(expr) = &s.filter {
                if let Err(e) = kube::core::cel::cel::Program::compile(expr) {
                    errors.push(FieldError::new(
                        format!("spec.pipelines[{pi}].steps[{si}].filter"),
                        format!("expression does not parse: {}", first_line(&e.to_string())),
                    ));
                }
            }
        }
    }
}

/// `writeMin`/`writeMax` on a tag they cannot apply to: one without the
/// `write` attribute, or one whose value is not a number.
fn write_limits_misplaced(t: &Tag) -> Option<(&'static str, String)> {
    let field = match (t.write_min, t.write_max) {
        (Some(_), _) => "writeMin",
        (None, Some(_)) => "writeMax",
        (None, None) => return None,
    };
    if !t.attributes.contains(&TagAttribute::Write) {
        return Some((
            field,
            format!("tag '{}': {field} needs the write attribute", t.name),
        ));
    }
    if matches!(
        t.data_type,
        DataType::Bool | DataType::Bit | DataType::String
    ) {
        return Some((
            field,
            format!("tag '{}': {field} applies to numeric tags only", t.name),
        ));
    }
    None
}

/// A tag's address as its device's adapter reads it: the failing field and why.
fn check_address(
    adapter: AdapterKind,
    address: &str,
    data_type: DataType,
) -> Result<(), (&'static str, String)> {
    if adapter.is_modbus() {
        let a = ModbusAddress::parse(address).map_err(|e| ("address", e.to_string()))?;
        return a
            .check_type(data_type)
            .map_err(|e| ("address", e.to_string()));
    }
    if adapter == AdapterKind::OpcUa {
        NodeId::parse(address).map_err(|e| ("address", e))?;
        if data_type == DataType::Bit {
            return Err((
                "dataType",
                "OPC UA values have no 'bit' type; use bool".to_string(),
            ));
        }
    }
    Ok(())
}

/// Devices on one serial line (the same `serial.port`) share it, so they
/// must agree on how it is driven.
fn shared_lines_agree(devices: &[Device], errors: &mut Vec<FieldError>) {
    let mut first: std::collections::HashMap<&str, (&Device, &super::SerialSettings)> =
        Default::default();
    for (di, d) in devices.iter().enumerate() {
        let (AdapterKind::ModbusRtu, Some(s)) = (d.adapter, d.serial.as_ref()) else {
            continue;
        };
        match first.get(s.port.as_str()) {
            None => {
                first.insert(&s.port, (d, s));
            }
            Some((other, o)) => {
                let line = |x: &super::SerialSettings| {
                    (
                        x.baud_rate,
                        x.parity,
                        x.data_bits,
                        x.stop_bits,
                        x.inter_frame_delay_ms,
                    )
                };
                if line(o) != line(s) {
                    errors.push(FieldError::new(
                        format!("spec.devices[{di}].serial"),
                        format!(
                            "port {} is shared with device '{}', so baudRate, parity, dataBits, stopBits and interFrameDelayMs must be the same as there",
                            s.port, other.name
                        ),
                    ));
                }
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Report fields the schema does not know: a typo must not be silently dropped.
fn unknown_fields(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            for (k, v) in map {
                // The API server always accepts these at the root of an object.
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match props.get(k) {
                    Some(s) => unknown_fields(s, v, &join(k), errors),
                    None => errors.push(FieldError::new(join(k), "unknown field".to_string())),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(item_schema, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// A copy of `value` with the integers written where the schema says
/// `type: number` turned into floats.
fn numbers_as_doubles(schema: &Value, value: &Value) -> Value {
    let mut value = value.clone();
    numbers_as_doubles_in_place(schema, &mut value);
    value
}

/// [`numbers_as_doubles`] without a copy.
fn numbers_as_doubles_in_place(schema: &Value, value: &mut Value) {
    match value {
        Value::Number(n) if schema.get("type").and_then(Value::as_str) == Some("number") => {
            if let Some(f) = n.as_f64() {
                *value = serde_json::json!(f);
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(extra) {
                    numbers_as_doubles_in_place(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for v in items {
                    numbers_as_doubles_in_place(s, v);
                }
            }
        }
        _ => {}
    }
}

/// Items of a `x-kubernetes-list-type: map` list must differ in their keys
/// (`x-kubernetes-list-map-keys`), those of a `set` list in their value; the
/// API server says `Duplicate value` with the keys, and so do we.
fn duplicate_keys(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (k, v) in map {
                if let Some(s) = props.get(k) {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    duplicate_keys(s, v, &child, errors);
                }
            }
        }
        Value::Array(items) => {
            let keys: Option<Vec<&str>> =
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|ks| ks.iter().filter_map(Value::as_str).collect()),
                    Some("set") => Some(Vec::new()),
                    _ => None,
                };
            if let Some(keys) = keys {
                let mut seen = std::collections::HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key = if keys.is_empty() {
                        item.clone()
                    } else {
                        Value::Object(
                            keys.iter()
                                .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                                .collect(),
                        )
                    };
                    if !seen.insert(key.to_string()) {
                        errors.push(FieldError::new(
                            format!("{path}[{i}]"),
                            format!("Duplicate value: {key}"),
                        ));
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    duplicate_keys(item_schema, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// `/devices/0/name` under root `spec` → `spec.devices[0].name`
fn pointer_to_path(root: &str, pointer: &str) -> String {
    let mut out = String::from(root);
    for part in pointer.split('/').skip(1) {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

fn cel_path(root: &str, p: &str) -> String {
    let p = p.trim_start_matches('.');
    if root.is_empty() || p.starts_with(root) {
        if p.is_empty() {
            root.to_string()
        } else {
            p.to_string()
        }
    } else if p.is_empty() {
        root.to_string()
    } else if p.starts_with('[') {
        format!("{root}{p}")
    } else {
        format!("{root}.{p}")
    }
}

/// Rule messages start with the field they are about (`uplink.qos: ...`) so
/// that `kubectl` shows it; our errors carry the full path separately.
fn strip_field_prefix(msg: &str) -> String {
    match msg.split_once(": ") {
        Some((head, tail)) if !head.contains(' ') => tail.to_string(),
        _ => msg.to_string(),
    }
}

fn schema_message(msg: &str) -> String {
    msg.replace('"', "'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn modbus_spec() -> Value {
        json!({
            "devices": [{
                "name": "pump-1",
                "adapter": "modbusTcp",
                "modbus": {"host": "10.0.0.5"},
                "groups": [{"name": "fast", "intervalMs": 1000, "tags": [
                    {"name": "flow", "address": "1!400001#BB", "dataType": "float32"},
                    {"name": "running", "address": "1!000001", "dataType": "bool"}
                ]}]
            }]
        })
    }

    #[test]
    fn good_spec_passes() {
        let spec = validate_spec_value(&modbus_spec()).unwrap();
        assert_eq!(spec.config.devices[0].groups[0].tags.len(), 2);
    }

    #[test]
    fn schema_errors_name_the_field() {
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["tags"][0]["dataType"] = json!("float128");
        let errs = validate_spec_value(&v).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.devices[0].groups[0].tags[0].dataType"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = modbus_spec();
        v["devices"][0]["pollingRate"] = json!(5);
        let errs = validate_spec_value(&v).unwrap_err();
        assert_eq!(errs[0].field, "spec.devices[0].pollingRate");
        assert_eq!(errs[0].message, "unknown field");
    }

    #[test]
    fn cel_rules_give_their_messages() {
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["intervalMs"] = json!(5);
        let errs = validate_spec_value(&v).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message == "polling interval must be at least 10 ms"
                    && e.field.contains("intervalMs")),
            "{errs:?}"
        );
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["tags"][1]["name"] = json!("flow");
        let errs = validate_spec_value(&v).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.devices[0].groups[0].tags[1]"
                    && e.message == r#"Duplicate value: {"name":"flow"}"#),
            "{errs:?}"
        );
        // `cmd` would put readings on the command topics (see `acl`).
        let mut v = modbus_spec();
        v["devices"][0]["name"] = json!("cmd");
        let errs = validate_spec_value(&v).unwrap_err();
        assert!(
            errs.iter().any(|e| e.field.starts_with("spec.devices[0]")
                && e.message.contains("'cmd' is reserved")),
            "{errs:?}"
        );
    }

    #[test]
    fn semantic_errors_explain_addresses() {
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["tags"][0]["address"] = json!("1!400001#BBB");
        let errs = validate_spec_value(&v).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.devices[0].groups[0].tags[0].address"),
            "{errs:?}"
        );
    }

    #[test]
    fn write_limits_are_checked() {
        let at = |v: &Value| validate_spec_value(v).unwrap_err();
        let mut v = modbus_spec();
        let t = &mut v["devices"][0]["groups"][0]["tags"][0];
        t["writeMin"] = json!(5);
        t["writeMax"] = json!(1);
        t["attributes"] = json!(["read", "write"]);
        let errs = at(&v);
        assert!(
            errs.iter().any(|e| e.field.ends_with("tags[0].writeMin")
                && e.message.contains("must not be above writeMax")),
            "{errs:?}"
        );
        let t = &mut v["devices"][0]["groups"][0]["tags"][0];
        t["writeMax"] = json!(10);
        t["attributes"] = json!(["read"]);
        let errs = at(&v);
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.devices[0].groups[0].tags[0].writeMin"
                    && e.message.contains("needs the write attribute")),
            "{errs:?}"
        );
        v["devices"][0]["groups"][0]["tags"][0]["attributes"] = json!(["read", "write"]);
        validate_spec_value(&v).expect("limits on a writable number");
    }

    #[test]
    fn validate_config_agrees_with_validate_spec() {
        // validate_config builds the spec's JSON without a copy of the
        // config and converts numbers in place: the same verdicts.
        let typed = |v: &Value| -> GatewayConfig { serde_json::from_value(v.clone()).unwrap() };
        let mut cases = vec![modbus_spec()];
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["intervalMs"] = json!(5);
        cases.push(v);
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["tags"][0]["scale"] = json!(0);
        cases.push(v);
        let mut v = modbus_spec();
        v["devices"][0]["groups"][0]["tags"][1]["name"] = json!("flow");
        cases.push(v);
        let mut v = modbus_spec();
        v["devices"][0]["name"] = json!("cmd");
        cases.push(v);
        let mut configs: Vec<GatewayConfig> = cases.iter().map(typed).collect();
        configs.push(super::super::largest::largest_config());
        let mut refused = 0;
        for config in configs {
            let spec = EdgeGatewaySpec {
                config: config.clone(),
                ..Default::default()
            };
            let (a, b) = (validate_config(&config), validate_spec(&spec));
            assert_eq!(a, b);
            refused += usize::from(a.is_err());
        }
        assert_eq!(refused, 4, "the four bad configs are refused");
    }
}
