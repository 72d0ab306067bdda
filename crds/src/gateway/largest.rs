//! The largest gateway config the limits allow, to check that it still fits
//! where it is stored: one etcd object for the `EdgeGateway` (1.5 MiB with
//! its managed fields) and one ConfigMap for its signed bundle (1 MiB).
//!
//! "Largest" means every list as long and every string as long as the schema
//! allows, under the per-gateway tag limit: all devices, as many groups as
//! the tag limit leaves room for, all pipelines with all their steps, and
//! every optional field set. It passes the same validation as any spec.
//!
//! Two shapes compete: Modbus and simulated tags carry a signal and an
//! address of at most 24 characters; OPC UA tags carry no signal but a node
//! id of up to `ADDRESS_LENGTH`, their groups a mode and a deadband and
//! their devices OPC UA settings. [`largest_config`] is the bigger one;
//! the tests check that both fit.

use super::{limits, *};
use crate::bundle::{self, BundlePayload, SignedBundle};

/// `len` characters: `prefix`, then `x`s, then the digits of `n` (so names
/// stay unique), all valid in names, tag names and free text.
fn fill(prefix: &str, n: usize, len: usize) -> String {
    let tail = n.to_string();
    let pad = len.saturating_sub(prefix.len() + tail.len());
    format!("{prefix}{}{tail}", "x".repeat(pad))
}

/// The longest Modbus address (15 characters): slave 255, a holding
/// register, a string length and its layout.
const LONGEST_MODBUS_ADDRESS: &str = "255!400001.250H";

/// Which adapter the devices of a largest config use.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Modbus,
    OpcUa,
}

fn tag(shape: Shape, device: usize, group: usize, n: usize) -> Tag {
    let opc_ua = shape == Shape::OpcUa;
    Tag {
        name: fill(&format!("t{device}-{group}-"), n, limits::TAG_NAME_LENGTH),
        address: if opc_ua {
            fill("ns=65535;s=", n, limits::ADDRESS_LENGTH)
        } else {
            LONGEST_MODBUS_ADDRESS.into()
        },
        data_type: DataType::String,
        attributes: vec![TagAttribute::Read, TagAttribute::Write],
        scale: Some(-1.234_567_890_123_456_7e-300),
        offset: Some(-1.234_567_890_123_456_7e-300),
        decimals: Some(15),
        unit: Some(fill("u", 0, limits::UNIT_LENGTH)),
        description: Some(fill("d", n, limits::TAG_DESCRIPTION_LENGTH)),
        // Limits apply to numeric tags; this one is text.
        write_min: None,
        write_max: None,
        signal: (!opc_ua).then_some(Signal {
            kind: SignalKind::RandomWalk,
            min: -1.234_567_890_123_456_7e-300,
            max: 1.234_567_890_123_456_7e300,
            period_s: 1.234_567_890_123_456_7e300,
            step: -1.234_567_890_123_456_7e-300,
            fault_rate: 0.123_456_789_012_345_67,
        }),
    }
}

/// The largest config; `validate_config` accepts it.
pub fn largest_config() -> GatewayConfig {
    largest(Shape::Modbus)
}

/// The largest config of OPC UA devices, smaller than [`largest_config`].
pub fn largest_opc_ua_config() -> GatewayConfig {
    largest(Shape::OpcUa)
}

fn largest(shape: Shape) -> GatewayConfig {
    let opc_ua = shape == Shape::OpcUa;
    let groups_total = limits::TAGS_PER_GATEWAY.min(limits::DEVICES * limits::GROUPS_PER_DEVICE);
    let mut tags_left = limits::TAGS_PER_GATEWAY;
    let mut groups_left = groups_total;
    let devices: Vec<Device> = (0..limits::DEVICES)
        .map(|d| {
            let groups_here = (groups_left / (limits::DEVICES - d)).min(limits::GROUPS_PER_DEVICE);
            groups_left -= groups_here;
            let groups = (0..groups_here)
                .map(|g| {
                    // Spread the tags: every group holds at least one.
                    let groups_after = groups_left + groups_here - g - 1;
                    let n = (tags_left - groups_after).min(limits::TAGS_PER_GROUP);
                    let n = n.min(tags_left.div_ceil(groups_after + 1));
                    tags_left -= n;
                    TagGroup {
                        name: fill("g", g, limits::NAME_LENGTH),
                        interval_ms: 86_400_000,
                        mode: opc_ua.then_some(GroupMode::Subscribe),
                        deadband: opc_ua.then_some(1.234_567_890_123_456_7e300),
                        tags: (0..n).map(|t| tag(shape, d, g, t)).collect(),
                    }
                })
                .collect();
            Device {
                name: fill("d", d, limits::NAME_LENGTH),
                adapter: if opc_ua {
                    AdapterKind::OpcUa
                } else {
                    AdapterKind::ModbusTcp
                },
                description: Some(fill("d", d, limits::DESCRIPTION_LENGTH)),
                modbus: Some(ModbusSettings {
                    host: fill("h", d, limits::HOST_LENGTH),
                    port: 65535,
                    backup_host: Some(fill("b", d, limits::HOST_LENGTH)),
                    timeout_ms: 60_000,
                    retries: 10,
                    max_backoff_ms: 600_000,
                    max_registers_per_request: 125,
                }),
                simulator: Some(SimulatorSettings {
                    seed: i64::MAX as u64,
                }),
                // Serial settings belong to modbusRtu devices only, and are
                // shorter than a Modbus TCP device's two host names.
                serial: None,
                opc_ua: opc_ua.then(|| OpcUaSettings {
                    endpoint: format!(
                        "opc.tcp://{}",
                        fill("e", d, limits::ENDPOINT_LENGTH - "opc.tcp://".len())
                    ),
                    security_policy: SecurityPolicy::Aes128Sha256RsaOaep,
                    security_mode: SecurityMode::SignAndEncrypt,
                    credential: Some(fill("c", d, limits::NAME_LENGTH)),
                    server_certificate_sha256: Some("f".repeat(64)),
                    timeout_ms: 60_000,
                    max_backoff_ms: 600_000,
                }),
                groups,
            }
        })
        .collect();
    let pipelines = (0..limits::PIPELINES)
        .map(|p| Pipeline {
            name: fill("p", p, limits::NAME_LENGTH),
            select: Selector {
                device: devices[p % devices.len()].name.clone(),
                group: Some(devices[p % devices.len()].groups[0].name.clone()),
                tag: Some(devices[p % devices.len()].groups[0].tags[0].name.clone()),
            },
            steps: (0..limits::STEPS_PER_PIPELINE)
                .map(|s| Step {
                    // A valid expression padded to the longest a filter may be.
                    filter: Some(format!(
                        "value >= 0.0 || '{}' == ''",
                        fill("f", s, limits::FILTER_LENGTH - 24)
                    )),
                    scale: None,
                    deadband: None,
                    report_on_change: None,
                    rate_of_change: None,
                    window: None,
                })
                .collect(),
        })
        .collect();
    GatewayConfig {
        devices,
        pipelines,
        uplink: Uplink {
            topic_prefix: fill("w", 0, 32),
            ..Uplink::default()
        },
    }
}

/// The largest `EdgeGateway` object, as a user would apply it.
pub fn largest_gateway(name: &str, namespace: &str) -> serde_json::Value {
    let spec = crate::EdgeGatewaySpec {
        site: crate::Site {
            name: Some(fill("s", 0, 128)),
            location: Some(fill("l", 0, 256)),
            timezone: Some(format!(
                "{}/{}/{}",
                "A".repeat(20),
                "B".repeat(21),
                "C".repeat(21)
            )),
        },
        mode: crate::GatewayMode::External,
        cluster_ref: Some(fill("c", 0, 63)),
        agent_version: Some(format!("1.2.3-{}", fill("r", 0, 58))),
        agent_storage: None,
        config: largest_config(),
    };
    serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "EdgeGateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// The signed bundle of `config` as the operator stores it in the
/// gateway's ConfigMap (`bundle.json`, pretty-printed), carrying as many key
/// rotations as a bundle may.
pub fn stored_bundle(config: &GatewayConfig) -> String {
    let keys: Vec<_> = (0..=bundle::MAX_ROTATIONS)
        .map(|_| bundle::generate_key())
        .collect();
    let mut chain: Vec<_> = keys
        .windows(2)
        .map(|w| bundle::sign_rotation(&w[0], &w[1], chrono::Utc::now()))
        .collect();
    let key = keys.last().expect("keys").clone();
    let payload = BundlePayload::new(
        &fill("t", 0, crate::tenant::MAX_NAME_LENGTH),
        &fill("g", 0, 253),
        i64::MAX as u64,
        config.clone(),
        chrono::Utc::now(),
        chrono::Duration::days(3650),
    );
    let mut signed: SignedBundle = bundle::sign(&payload, &key);
    signed.rotation = chain.pop();
    signed.rotation_chain = chain;
    serde_json::to_string_pretty(&signed).expect("bundle serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_configs_are_valid_and_at_the_limits() {
        for c in [largest_config(), largest_opc_ua_config()] {
            validate_config(&c).unwrap_or_else(|e| panic!("{e:#?}"));
            assert_eq!(c.tags().count(), limits::TAGS_PER_GATEWAY);
            assert_eq!(c.devices.len(), limits::DEVICES);
            assert_eq!(c.pipelines.len(), limits::PIPELINES);
            let (_, _, t) = c.tags().next().unwrap();
            assert_eq!(t.name.len(), limits::TAG_NAME_LENGTH);
            assert_eq!(
                t.description.as_ref().unwrap().len(),
                limits::TAG_DESCRIPTION_LENGTH
            );
        }
        let opc_ua = largest_opc_ua_config();
        assert_eq!(
            opc_ua.tags().next().unwrap().2.address.len(),
            limits::ADDRESS_LENGTH
        );
    }

    /// A ConfigMap holds at most 1 MiB of data; the trust anchor beside the
    /// bundle takes under 200 bytes.
    #[test]
    fn the_largest_bundles_fit_in_a_config_map() {
        let modbus = stored_bundle(&largest_config()).len();
        let opc_ua = stored_bundle(&largest_opc_ua_config()).len();
        assert!(
            opc_ua <= modbus,
            "largest_config must be the larger: {opc_ua} > {modbus}"
        );
        assert!(
            modbus + 200 <= 1024 * 1024,
            "the largest bundle is {modbus} bytes"
        );
    }
}
