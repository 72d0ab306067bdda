//! What the schema accepts and refuses for each adapter's devices, with the
//! field and the reason a user sees.

use serde_json::{json, Value};
use weir_crds::gateway::validate::validate_spec_value;

fn spec(device: Value) -> Value {
    json!({ "devices": [device] })
}

fn opc_ua() -> Value {
    json!({
        "name": "scada",
        "adapter": "opcUa",
        "opcUa": {"endpoint": "opc.tcp://10.0.0.7:4840/plant"},
        "groups": [
            {"name": "fast", "intervalMs": 100, "mode": "subscribe", "deadband": 0.5, "tags": [
                {"name": "flow", "address": "ns=2;s=Pump1.Flow", "dataType": "float64"},
                {"name": "running", "address": "ns=2;i=1001", "dataType": "bool", "attributes": ["read", "write"]}
            ]},
            {"name": "slow", "intervalMs": 1000, "tags": [
                {"name": "id", "address": "ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63", "dataType": "string"},
                {"name": "blob", "address": "ns=1;b=M/RbKBsRVkePCePcx24oRA==", "dataType": "uint32"},
                {"name": "bang", "address": "ns=1;s=Tank!Level", "dataType": "float32"}
            ]}
        ]
    })
}

fn rtu(name: &str, port: &str, baud: u32) -> Value {
    json!({
        "name": name,
        "adapter": "modbusRtu",
        "serial": {"port": port, "baudRate": baud, "parity": "even"},
        "groups": [{"name": "g", "intervalMs": 1000, "tags": [
            {"name": "flow", "address": "1!400001#BB", "dataType": "float32"}
        ]}]
    })
}

/// The errors of a refused spec, as `field: message` lines.
fn refused(v: &Value) -> String {
    let errs = validate_spec_value(v).expect_err("refused");
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_three_new_adapters_are_accepted() {
    let s = validate_spec_value(&spec(opc_ua())).unwrap();
    let d = &s.config.devices[0];
    let o = d.opc_ua.as_ref().unwrap();
    assert_eq!(o.timeout_ms, 5000, "default timeout");
    assert_eq!(
        serde_json::to_value(o.security_policy).unwrap(),
        json!("none")
    );
    validate_spec_value(&spec(rtu("meter", "/dev/ttyUSB0", 19200))).unwrap();
    validate_spec_value(&spec(json!({
        "name": "vfd", "adapter": "modbusRtuOverTcp", "modbus": {"host": "10.0.0.9", "port": 4001},
        "groups": [{"name": "g", "intervalMs": 500, "tags": [
            {"name": "speed", "address": "3!300001", "dataType": "uint16"}
        ]}]
    })))
    .unwrap();
    // Two devices on one line with the same settings.
    validate_spec_value(&json!({"devices": [
        rtu("a", "/dev/ttyUSB0", 19200), rtu("b", "/dev/ttyUSB0", 19200)
    ]}))
    .unwrap();
}

#[test]
fn each_adapter_needs_its_own_settings() {
    let mut d = opc_ua();
    d.as_object_mut().unwrap().remove("opcUa");
    assert!(refused(&spec(d)).contains("an opcUa device needs OPC UA settings"));
    let mut d = rtu("m", "/dev/ttyS0", 9600);
    d.as_object_mut().unwrap().remove("serial");
    assert!(refused(&spec(d)).contains("a modbusRtu device needs serial settings"));
    let mut d = rtu("m", "/dev/ttyS0", 9600);
    d["adapter"] = json!("modbusRtuOverTcp");
    let e = refused(&spec(d));
    assert!(e.contains("needs modbus connection settings"), "{e}");
    assert!(
        e.contains("only a modbusRtu device has serial settings"),
        "{e}"
    );
}

#[test]
fn bad_settings_name_the_field() {
    let mut d = opc_ua();
    d["opcUa"]["endpoint"] = json!("http://10.0.0.7");
    assert!(refused(&spec(d)).contains("spec.devices[0].opcUa.endpoint"));
    let mut d = opc_ua();
    d["opcUa"]["securityPolicy"] = json!("basic256Sha256");
    let e = refused(&spec(d));
    assert!(
        e.contains("spec.devices[0].opcUa: securityMode must be 'none' exactly when securityPolicy is 'none'"),
        "{e}"
    );
    let mut d = opc_ua();
    d["opcUa"]["securityPolicy"] = json!("basic256Sha256");
    d["opcUa"]["securityMode"] = json!("signAndEncrypt");
    d["opcUa"]["serverCertificateSha256"] = json!("ABC");
    assert!(refused(&spec(d)).contains("spec.devices[0].opcUa.serverCertificateSha256"));
    let mut d = rtu("m", "/dev/ttyS0", 9600);
    d["serial"]["parity"] = json!("mark");
    assert!(refused(&spec(d)).contains("spec.devices[0].serial.parity"));
    let mut d = rtu("m", "/dev/ttyS0", 9600);
    d["serial"]["stopBits"] = json!(3);
    assert!(refused(&spec(d)).contains("spec.devices[0].serial.stopBits"));
}

#[test]
fn opc_ua_addresses_are_node_ids() {
    let mut d = opc_ua();
    d["groups"][0]["tags"][0]["address"] = json!("Pump1.Flow");
    let e = refused(&spec(d));
    assert!(
        e.contains("spec.devices[0].groups[0].tags[0].address: tag 'flow': 'Pump1.Flow': an OPC UA node id reads"),
        "{e}"
    );
    let mut d = opc_ua();
    d["groups"][0]["tags"][0]["dataType"] = json!("bit");
    assert!(refused(&spec(d))
        .contains("tags[0].dataType: tag 'flow': OPC UA values have no 'bit' type"));
    // Long node ids are fine for OPC UA, not for Modbus.
    let long = format!("ns=2;s={}", "x".repeat(80));
    let mut d = opc_ua();
    d["groups"][0]["tags"][0]["address"] = json!(long);
    validate_spec_value(&spec(d)).unwrap();
    let mut d = rtu("m", "/dev/ttyS0", 9600);
    d["groups"][0]["tags"][0]["address"] = json!(long);
    assert!(refused(&spec(d)).contains("at most 24 characters"));
}

#[test]
fn subscribing_is_a_group_mode_of_opc_ua_devices() {
    let mut d = opc_ua();
    d["groups"][1]["tags"][0]["attributes"] = json!(["read", "subscribe"]);
    let e = refused(&spec(d));
    assert!(
        e.contains("'subscribe' is no longer a tag attribute; set the group's mode"),
        "{e}"
    );
    let mut d = rtu("m", "/dev/ttyS0", 9600);
    d["groups"][0]["mode"] = json!("subscribe");
    assert!(refused(&spec(d)).contains("only OPC UA devices can subscribe"));
    let mut d = opc_ua();
    d["groups"][1]["deadband"] = json!(1.0);
    assert!(refused(&spec(d)).contains("only a group with mode 'subscribe' has a deadband"));
    let mut d = opc_ua();
    d["groups"][0]["deadband"] = json!(-1.0);
    assert!(refused(&spec(d)).contains("deadband: must not be negative"));
}

#[test]
fn devices_sharing_a_serial_line_must_agree_on_it() {
    let e = refused(&json!({"devices": [
        rtu("a", "/dev/ttyUSB0", 19200), rtu("b", "/dev/ttyUSB0", 9600)
    ]}));
    assert!(
        e.contains("spec.devices[1].serial: port /dev/ttyUSB0 is shared with device 'a'"),
        "{e}"
    );
}
