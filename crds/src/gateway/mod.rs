//! The gateway config model: devices, tags, pipelines and uplink. One
//! definition, used by the `EdgeGateway` CRD, stored by the api, signed into
//! bundles and run by the agent.

pub mod address;
pub mod largest;
pub mod node_id;
pub mod validate;
pub mod write;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub use address::{Area, ByteOrder, ModbusAddress};
pub use node_id::NodeId;
pub use validate::{validate_config, FieldError};

/// Limits of one gateway's config. The API server estimates the cost of
/// every CEL rule from them (a per-tag rule runs devices × groups × tags
/// times), and the largest config they allow must fit in one etcd object
/// (1.5 MiB, with its managed fields) and its signed bundle in one
/// ConfigMap (1 MiB): `crdgen --largest-gateway` builds that config and the
/// `crds-accepted` scenario stores it on a real API server.
pub mod limits {
    pub const DEVICES: usize = 64;
    pub const GROUPS_PER_DEVICE: usize = 16;
    pub const TAGS_PER_GROUP: usize = 250;
    /// All tags of all devices of one gateway.
    pub const TAGS_PER_GATEWAY: usize = 1000;
    pub const PIPELINES: usize = 16;
    pub const STEPS_PER_PIPELINE: usize = 8;
    pub const NAME_LENGTH: usize = 63;
    pub const TAG_NAME_LENGTH: usize = 64;
    /// OPC UA node ids; other adapters' addresses take at most
    /// `SHORT_ADDRESS_LENGTH` (Modbus ones at most 15 characters).
    pub const ADDRESS_LENGTH: usize = 96;
    pub const SHORT_ADDRESS_LENGTH: usize = 24;
    pub const ENDPOINT_LENGTH: usize = 256;
    pub const SERIAL_PORT_LENGTH: usize = 128;
    pub const UNIT_LENGTH: usize = 16;
    pub const DESCRIPTION_LENGTH: usize = 128;
    pub const TAG_DESCRIPTION_LENGTH: usize = 64;
    pub const HOST_LENGTH: usize = 253;
    pub const FILTER_LENGTH: usize = 256;
}

/// What one agent runs.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Devices the agent polls; each needs its own name.
    #[serde(default)]
    #[schemars(length(max = limits::DEVICES))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new(format!("self.map(d, d.groups.map(g, g.tags.size()).sum()).sum() <= {}", limits::TAGS_PER_GATEWAY)).message(format!("devices: a gateway reads at most {} tags in all; split the devices over more gateways", limits::TAGS_PER_GATEWAY).as_str()))]
    pub devices: Vec<Device>,
    /// Rules applied to readings before they are queued for the uplink; each
    /// needs its own name.
    #[serde(default)]
    #[schemars(length(max = limits::PIPELINES))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub pipelines: Vec<Pipeline>,
    #[serde(default)]
    pub uplink: Uplink,
}

/// A name people and topics use: lower case letters, digits, `-` and `_`.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$";

/// The Modbus address syntax checked in the schema; `address.rs` parses it fully.
pub const MODBUS_ADDRESS_PATTERN: &str =
    r"^[0-9]{1,3}![0134][0-9]{1,5}(\.[0-9]{1,3}[HLDE]?)?(#(B|L|BB|BL|LB|LL))?$";

/// A tag address: free text without `!` (simulated tags and most OPC UA
/// node ids), a Modbus address as [`MODBUS_ADDRESS_PATTERN`], or an OPC UA
/// string node id (`[ns=N;]s=...`, which may hold `!`). A pattern costs
/// nothing in the API server's CEL budget, where a regex per tag would
/// exceed it; a rule on the device then only checks that a Modbus device's
/// addresses contain `!`, and `node_id.rs` parses OPC UA ones.
pub const TAG_ADDRESS_PATTERN: &str = r"^([^!]*|[0-9]{1,3}![0134][0-9]{1,5}(\.[0-9]{1,3}[HLDE]?)?(#(B|L|BB|BL|LB|LL))?|(ns=[0-9]{1,5};)?s=.+)$";

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.name != 'cmd'").message("devices[].name: 'cmd' is reserved for the gateway's command topics"))]
#[x_kube(validation = Rule::new("(self.adapter != 'modbusTcp' && self.adapter != 'modbusRtuOverTcp') || has(self.modbus)").message("devices[].modbus: a modbusTcp or modbusRtuOverTcp device needs modbus connection settings (host, port)"))]
#[x_kube(validation = Rule::new("self.adapter != 'modbusRtu' || has(self.serial)").message("devices[].serial: a modbusRtu device needs serial settings (port, baudRate, parity, dataBits, stopBits)"))]
#[x_kube(validation = Rule::new("!has(self.serial) || self.adapter == 'modbusRtu'").message("devices[].serial: only a modbusRtu device has serial settings"))]
#[x_kube(validation = Rule::new("!has(self.opcUa) || self.adapter == 'opcUa'").message("devices[].opcUa: only an opcUa device has OPC UA settings"))]
#[x_kube(validation = Rule::new("self.adapter != 'opcUa' || has(self.opcUa)").message("devices[].opcUa: an opcUa device needs OPC UA settings (endpoint, securityPolicy, securityMode)"))]
// Only OPC UA tags may have long addresses and only they go without a
// signal, which keeps the largest config within one ConfigMap (largest.rs).
#[x_kube(validation = Rule::new(format!("self.adapter == 'opcUa' || self.groups.all(g, g.tags.all(t, t.address.size() <= {}))", limits::SHORT_ADDRESS_LENGTH)).message(format!("devices[].groups[].tags[].address: at most {} characters (longer addresses are for OPC UA node ids)", limits::SHORT_ADDRESS_LENGTH).as_str()))]
#[x_kube(validation = Rule::new("self.adapter != 'opcUa' || self.groups.all(g, g.tags.all(t, !has(t.signal)))").message("devices[].groups[].tags[].signal: OPC UA tags have no signal (signals are for simulator devices)"))]
#[x_kube(validation = Rule::new("self.adapter == 'opcUa' || self.groups.all(g, !has(g.mode) || g.mode == 'poll')").message("devices[].groups[].mode: only OPC UA devices can subscribe; other adapters poll"))]
#[x_kube(validation = Rule::new("self.adapter != 'simulator' || self.groups.all(g, g.tags.all(t, has(t.signal)))").message("devices[].groups[].tags[].signal: every tag of a simulator device needs a signal"))]
pub struct Device {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$"), length(max = limits::NAME_LENGTH))]
    pub name: String,
    pub adapter: AdapterKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::DESCRIPTION_LENGTH))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modbus: Option<ModbusSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSettings>,
    /// Serial line of a `modbusRtu` device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<SerialSettings>,
    /// Server of an `opcUa` device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opc_ua: Option<OpcUaSettings>,
    /// Each group of a device needs its own name.
    #[schemars(length(min = 1, max = limits::GROUPS_PER_DEVICE))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub groups: Vec<TagGroup>,
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AdapterKind {
    /// Modbus TCP (MBAP frames).
    ModbusTcp,
    /// Modbus RTU on a serial line (RS-485/RS-232), settings in `serial`.
    ModbusRtu,
    /// Modbus RTU frames over a TCP socket, as serial device servers
    /// forward them; settings in `modbus`.
    ModbusRtuOverTcp,
    /// An OPC UA server, settings in `opcUa`.
    OpcUa,
    Simulator,
}

impl AdapterKind {
    /// Devices whose tags use Modbus addresses.
    pub fn is_modbus(self) -> bool {
        matches!(
            self,
            AdapterKind::ModbusTcp | AdapterKind::ModbusRtu | AdapterKind::ModbusRtuOverTcp
        )
    }
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModbusSettings {
    #[schemars(length(min = 1, max = limits::HOST_LENGTH))]
    pub host: String,
    #[serde(default = "default_modbus_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Tried when `host` does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::HOST_LENGTH))]
    pub backup_host: Option<String>,
    #[serde(default = "default_timeout_ms")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 60000").message("devices[].modbus.timeoutMs: must be between 10 and 60000 ms"))]
    pub timeout_ms: u32,
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: u32,
    /// Longest pause between attempts on a failing device.
    #[serde(default = "default_max_backoff_ms")]
    #[schemars(range(min = 100, max = 600000))]
    pub max_backoff_ms: u32,
    /// Largest number of registers coalesced into one request.
    #[serde(default = "default_max_registers")]
    #[schemars(range(min = 1, max = 125))]
    pub max_registers_per_request: u16,
}

/// A serial line shared by the `modbusRtu` devices that name the same
/// `port`: one request at a time on it, so they must agree on its settings.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SerialSettings {
    /// Device path, e.g. `/dev/ttyUSB0` or `/dev/ttyS1`.
    #[schemars(length(min = 1, max = limits::SERIAL_PORT_LENGTH), regex(pattern = r"^/[^\s]*$"))]
    pub port: String,
    #[serde(default = "default_baud_rate")]
    #[schemars(range(min = 300, max = 921600))]
    pub baud_rate: u32,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    #[schemars(range(min = 7, max = 8))]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    #[schemars(range(min = 1, max = 2))]
    pub stop_bits: u8,
    /// Silence kept between frames, in ms; omitted means the Modbus rule of
    /// 3.5 characters at `baudRate` (at least 1.75 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub inter_frame_delay_ms: Option<u32>,
    /// How long to wait for a unit's answer; a unit that does not answer
    /// holds the bus this long, then is skipped while it backs off.
    #[serde(default = "default_serial_timeout_ms")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 60000").message("devices[].serial.timeoutMs: must be between 10 and 60000 ms"))]
    pub timeout_ms: u32,
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: u32,
    /// Longest pause between attempts on a failing unit.
    #[serde(default = "default_max_backoff_ms")]
    #[schemars(range(min = 100, max = 600000))]
    pub max_backoff_ms: u32,
    /// Largest number of registers coalesced into one request.
    #[serde(default = "default_max_registers")]
    #[schemars(range(min = 1, max = 125))]
    pub max_registers_per_request: u16,
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

fn default_baud_rate() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_serial_timeout_ms() -> u32 {
    500
}

/// Timing of a Modbus device, whichever transport it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModbusTiming {
    pub timeout_ms: u32,
    pub retries: u32,
    pub max_backoff_ms: u32,
    pub max_registers_per_request: u16,
}

impl Device {
    /// The Modbus timing of a Modbus device (from `modbus` or `serial`).
    pub fn modbus_timing(&self) -> Option<ModbusTiming> {
        match self.adapter {
            AdapterKind::ModbusTcp | AdapterKind::ModbusRtuOverTcp => {
                self.modbus.as_ref().map(|m| ModbusTiming {
                    timeout_ms: m.timeout_ms,
                    retries: m.retries,
                    max_backoff_ms: m.max_backoff_ms,
                    max_registers_per_request: m.max_registers_per_request,
                })
            }
            AdapterKind::ModbusRtu => self.serial.as_ref().map(|s| ModbusTiming {
                timeout_ms: s.timeout_ms,
                retries: s.retries,
                max_backoff_ms: s.max_backoff_ms,
                max_registers_per_request: s.max_registers_per_request,
            }),
            AdapterKind::OpcUa | AdapterKind::Simulator => None,
        }
    }
}

/// How the agent talks to an OPC UA server. The server's certificate is
/// trusted explicitly: pinned here by its SHA-256, or placed in the agent's
/// `opcua/pki/trusted` directory (`weir-agent opcua browse` prints it).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.securityPolicy == 'none') == (self.securityMode == 'none')").message("devices[].opcUa: securityMode must be 'none' exactly when securityPolicy is 'none'"))]
pub struct OpcUaSettings {
    /// `opc.tcp://host:port[/path]`.
    #[schemars(length(min = 1, max = limits::ENDPOINT_LENGTH), regex(pattern = r"^opc\.tcp://[^\s/]+(/[^\s]*)?$"))]
    pub endpoint: String,
    #[serde(default)]
    pub security_policy: SecurityPolicy,
    #[serde(default)]
    pub security_mode: SecurityMode,
    /// Name of a credential of the gateway's project (a user name and
    /// password, or a client certificate and key). The bundle only names
    /// it: the agent fetches it over its authenticated api channel (or reads
    /// it from its local credentials file when air-gapped). Omitted means an
    /// anonymous session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$"), length(max = limits::NAME_LENGTH))]
    pub credential: Option<String>,
    /// Lower-case hex SHA-256 of the server's certificate (DER): the agent
    /// trusts exactly this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub server_certificate_sha256: Option<String>,
    /// Longest wait for one service call (read, write, connect).
    #[serde(default = "default_opcua_timeout_ms")]
    #[x_kube(validation = Rule::new("self >= 100 && self <= 60000").message("devices[].opcUa.timeoutMs: must be between 100 and 60000 ms"))]
    pub timeout_ms: u32,
    /// Longest pause between reconnect attempts.
    #[serde(default = "default_max_backoff_ms")]
    #[schemars(range(min = 100, max = 600000))]
    pub max_backoff_ms: u32,
}

fn default_opcua_timeout_ms() -> u32 {
    5000
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum SecurityPolicy {
    #[default]
    None,
    Basic256Sha256,
    Aes128Sha256RsaOaep,
    Aes256Sha256RsaPss,
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum SecurityMode {
    #[default]
    None,
    Sign,
    SignAndEncrypt,
}

fn default_modbus_port() -> u16 {
    502
}
fn default_timeout_ms() -> u32 {
    1000
}
fn default_retries() -> u32 {
    2
}
fn default_max_backoff_ms() -> u32 {
    30_000
}
fn default_max_registers() -> u16 {
    125
}

#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulatorSettings {
    /// Seed for the random parts, so a run can be repeated.
    #[serde(default)]
    pub seed: u64,
}

/// Tags read together at one interval.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.deadband) || (has(self.mode) && self.mode == 'subscribe')").message("devices[].groups[].deadband: only a group with mode 'subscribe' has a deadband"))]
pub struct TagGroup {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$"), length(max = limits::NAME_LENGTH))]
    pub name: String,
    /// Polling interval in milliseconds, from 10 ms (1,000 tags every 10 ms
    /// is 100,000 readings/s from one gateway) to one day.
    #[x_kube(validation = Rule::new("self >= 10").message("devices[].groups[].intervalMs: polling interval must be at least 10 ms"))]
    #[x_kube(validation = Rule::new("self <= 86400000").message("devices[].groups[].intervalMs: polling interval must be at most one day"))]
    pub interval_ms: u32,
    /// `poll` (the default) reads every `intervalMs`; `subscribe` (OPC UA
    /// only) has the server report changes, sampled every `intervalMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<GroupMode>,
    /// Subscribed groups only: changes smaller than this (absolute, in the
    /// tag's raw unit) are not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("devices[].groups[].deadband: must not be negative"))]
    pub deadband: Option<f64>,
    /// Each tag of a group needs its own name.
    #[schemars(length(min = 1, max = limits::TAGS_PER_GROUP))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub tags: Vec<Tag>,
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
// Per-tag rules run up to devices × groups × tags times, and a string
// operation costs in proportion to the string's maximum length: with
// 96-character addresses no rule here may read the address. Which areas
// hold which types, and a Modbus device's address syntax, are checked by
// weir itself (`validate.rs`: the api, `weir-agent validate`, and the
// operator, which reports them on the gateway's status).
#[x_kube(validation = Rule::new("!self.attributes.exists(a, a == 'subscribe')").message("devices[].groups[].tags[].attributes: 'subscribe' is no longer a tag attribute; set the group's mode to 'subscribe' (OPC UA devices)"))]
#[x_kube(validation = Rule::new("!has(self.scale) || self.scale != 0.0").message("devices[].groups[].tags[].scale: must not be zero"))]
#[x_kube(validation = Rule::new("!has(self.writeMin) || !has(self.writeMax) || self.writeMin <= self.writeMax").message("devices[].groups[].tags[].writeMin: must not be above writeMax").field_path(".writeMin"))]
pub struct Tag {
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,62}[A-Za-z0-9])?$"), length(max = limits::TAG_NAME_LENGTH))]
    pub name: String,
    /// Neuron-style Modbus address `SLAVE!AREAADDRESS[.BIT][#ORDER]`, e.g.
    /// `1!400001#BB`; an OPC UA node id (`ns=2;s=Pump1.Flow`, `ns=2;i=1001`,
    /// `g=` and `b=` too); free text without `!` for simulated tags.
    #[schemars(length(min = 1, max = limits::ADDRESS_LENGTH), regex(pattern = r"^([^!]*|[0-9]{1,3}![0134][0-9]{1,5}(\.[0-9]{1,3}[HLDE]?)?(#(B|L|BB|BL|LB|LL))?|(ns=[0-9]{1,5};)?s=.+)$"))]
    pub address: String,
    pub data_type: DataType,
    /// read and/or write, each once. (`subscribe` is refused: a group's
    /// `mode` decides whether values are polled or subscribed.)
    #[serde(default = "default_attributes")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub attributes: Vec<TagAttribute>,
    /// value = raw * scale + offset
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<f64>,
    /// Round the scaled value to this many decimals (0 to 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 15))]
    pub decimals: Option<u8>,
    /// Engineering unit, e.g. "m3/h", "bar", "NTU", "mg/L".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::UNIT_LENGTH))]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TAG_DESCRIPTION_LENGTH))]
    pub description: Option<String>,
    /// Lowest value a write may set (in the tag's scaled unit, inclusive);
    /// the api refuses a write below it and so does the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_min: Option<f64>,
    /// Highest value a write may set (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_max: Option<f64>,
    /// What a simulator device produces for this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}

fn default_attributes() -> Vec<TagAttribute> {
    vec![TagAttribute::Read]
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DataType {
    Bool,
    Bit,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
    String,
}

/// How a group's values arrive.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum GroupMode {
    #[default]
    Poll,
    Subscribe,
}

impl TagGroup {
    pub fn mode(&self) -> GroupMode {
        self.mode.unwrap_or_default()
    }
}

impl DataType {
    /// Registers (16-bit words) this type occupies; strings use the address length.
    pub fn registers(self) -> u16 {
        match self {
            DataType::Bool | DataType::Bit | DataType::Int16 | DataType::Uint16 => 1,
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => 2,
            DataType::Int64 | DataType::Uint64 | DataType::Float64 => 4,
            DataType::String => 1,
        }
    }
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TagAttribute {
    Read,
    Write,
    /// Refused by validation; kept so old configs get a message pointing
    /// at the group's `mode` instead of "unknown variant".
    Subscribe,
}

/// A simulated water-plant signal.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.max >= self.min").message("signal.max: must not be below signal.min"))]
pub struct Signal {
    pub kind: SignalKind,
    #[serde(default)]
    pub min: f64,
    #[serde(default = "default_signal_max")]
    pub max: f64,
    /// Period of sine/ramp/step, seconds.
    #[serde(default = "default_period")]
    #[x_kube(validation = Rule::new("self > 0.0").message("signal.periodS: must be greater than zero"))]
    pub period_s: f64,
    /// Largest change per sample of a random walk, as a fraction of max - min.
    #[serde(default = "default_step")]
    pub step: f64,
    /// Chance per sample that a pump trips into fault (pump signals), 0 to 1.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fault_rate: f64,
}

fn default_signal_max() -> f64 {
    100.0
}
fn default_period() -> f64 {
    60.0
}
fn default_step() -> f64 {
    0.01
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignalKind {
    Sine,
    Ramp,
    RandomWalk,
    Step,
    /// Running (1) or stopped (0), tripping into fault at `faultRate`.
    Pump,
    /// 1 while the paired pump is in fault.
    PumpFault,
    Constant,
}

/// A chain of steps applied to the readings a selector picks.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$"), length(max = limits::NAME_LENGTH))]
    pub name: String,
    pub select: Selector,
    #[schemars(length(min = 1, max = limits::STEPS_PER_PIPELINE))]
    pub steps: Vec<Step>,
}

/// Which readings a pipeline applies to: a device, optionally narrowed to a group or a tag.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[schemars(length(min = 1, max = limits::NAME_LENGTH))]
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::NAME_LENGTH))]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::TAG_NAME_LENGTH))]
    pub tag: Option<String>,
}

/// One pipeline step; exactly one of its fields is set.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.filter) ? 1 : 0) + (has(self.scale) ? 1 : 0) + (has(self.deadband) ? 1 : 0) + (has(self.reportOnChange) ? 1 : 0) + (has(self.rateOfChange) ? 1 : 0) + (has(self.window) ? 1 : 0) == 1").message("pipelines[].steps[]: each step sets exactly one of filter, scale, deadband, reportOnChange, rateOfChange, window"))]
pub struct Step {
    /// Keep readings for which this expression is true, e.g. `value >= 0.0 && value < 50.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::FILTER_LENGTH))]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadband: Option<DeadbandStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_on_change: Option<ReportOnChangeStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_of_change: Option<RateOfChangeStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowStep>,
}

impl Step {
    /// The name of the one field that is set, for messages.
    pub fn kind(&self) -> &'static str {
        if self.filter.is_some() {
            "filter"
        } else if self.scale.is_some() {
            "scale"
        } else if self.deadband.is_some() {
            "deadband"
        } else if self.report_on_change.is_some() {
            "reportOnChange"
        } else if self.rate_of_change.is_some() {
            "rateOfChange"
        } else if self.window.is_some() {
            "window"
        } else {
            "empty"
        }
    }
}

#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleStep {
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

/// Drop readings that moved less than the band since the last one sent.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.absolute) != has(self.percent)").message("pipelines[].steps[].deadband: set either absolute or percent"))]
pub struct DeadbandStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
}

/// Send only changed values, and the unchanged value at least every `heartbeatMs`.
#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportOnChangeStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
}

/// Replace the value by its change per `perSeconds`.
#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateOfChangeStep {
    #[serde(default = "one")]
    pub per_seconds: f64,
}

/// Tumbling (hop = size) or hopping window aggregates.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.hopMs) || (self.hopMs > 0 && self.hopMs <= self.sizeMs)").message("pipelines[].steps[].window.hopMs: must be between 1 and sizeMs"))]
pub struct WindowStep {
    #[x_kube(validation = Rule::new("self >= 100 && self <= 86400000").message("pipelines[].steps[].window.sizeMs: must be between 100 ms and one day"))]
    pub size_ms: u64,
    /// Hopping windows start every `hopMs`; omitted means tumbling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop_ms: Option<u64>,
    #[schemars(length(min = 1, max = 5))]
    pub aggregates: Vec<Aggregate>,
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Aggregate {
    Avg,
    Min,
    Max,
    Count,
    Last,
}

/// How readings leave the gateway.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Uplink {
    /// First topic level: `{prefix}/{tenant}/{gateway}/{device}/{group}`.
    #[serde(default = "default_prefix")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,32}$"))]
    pub topic_prefix: String,
    #[serde(default = "default_qos")]
    #[x_kube(validation = Rule::new("self == 0 || self == 1").message("uplink.qos: must be 0 or 1"))]
    pub qos: u8,
    #[serde(default = "default_max_readings")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100000").message("uplink.maxReadingsPerMessage: must be between 1 and 100000"))]
    pub max_readings_per_message: u32,
    #[serde(default = "default_max_bytes")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 268435455").message("uplink.maxBytesPerMessage: must be between 1 KiB and 256 MiB"))]
    pub max_bytes_per_message: u32,
    /// How long to wait for more readings to fill a message, in ms, while
    /// earlier messages still await their PUBACK; with nothing in flight
    /// what is queued is sent at once (Nagle's rule).
    #[serde(default = "default_linger")]
    #[x_kube(validation = Rule::new("self <= 60000").message("uplink.lingerMs: must be at most 60000 ms"))]
    pub linger_ms: u32,
    #[serde(default)]
    pub buffer: BufferSettings,
    /// Count a publish as delivered only when someone subscribes to it: a
    /// PUBACK "no matching subscribers" (reason 16) leaves the frame queued
    /// and the agent retries with back-off. `false` for gateways that really
    /// publish into the void.
    #[serde(default = "default_true")]
    pub require_subscriber: bool,
}

fn default_true() -> bool {
    true
}

fn default_prefix() -> String {
    "weir".into()
}
fn default_qos() -> u8 {
    1
}
fn default_max_readings() -> u32 {
    500
}
fn default_max_bytes() -> u32 {
    256 * 1024
}
fn default_linger() -> u32 {
    20
}

impl Default for Uplink {
    fn default() -> Self {
        Self {
            topic_prefix: default_prefix(),
            qos: default_qos(),
            max_readings_per_message: default_max_readings(),
            max_bytes_per_message: default_max_bytes(),
            linger_ms: default_linger(),
            buffer: BufferSettings::default(),
            require_subscriber: true,
        }
    }
}

/// The disk-backed store-and-forward queue.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BufferSettings {
    /// Largest size of the queue on disk.
    #[serde(default = "default_buffer_bytes")]
    #[x_kube(validation = Rule::new("self >= 1048576").message("uplink.buffer.maxBytes: must be at least 1 MiB"))]
    pub max_bytes: u64,
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// Acknowledged frames kept for replays, within `maxBytes`.
    #[serde(default)]
    pub retain: RetainSettings,
}

fn default_buffer_bytes() -> u64 {
    1024 * 1024 * 1024
}

impl Default for BufferSettings {
    fn default() -> Self {
        Self {
            max_bytes: default_buffer_bytes(),
            overflow: OverflowPolicy::DropOldest,
            retain: RetainSettings::default(),
        }
    }
}

/// How long acknowledged frames stay on the agent's disk so a reader that
/// missed them (a broker restarted without persistence) can ask for them
/// again. Retained frames count in `buffer.maxBytes` and are the first to
/// go when unacknowledged ones need the room.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetainSettings {
    /// Most bytes of acknowledged frames kept; 0 keeps none.
    #[serde(default = "default_retain_bytes")]
    pub max_bytes: u64,
    /// Longest an acknowledged frame is kept, in seconds; 0 keeps none.
    #[serde(default = "default_retain_age")]
    #[x_kube(validation = Rule::new("self <= 604800").message("uplink.buffer.retain.maxAgeSecs: must be at most 604800 (7 days)"))]
    pub max_age_secs: u64,
}

fn default_retain_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_retain_age() -> u64 {
    15 * 60
}

impl Default for RetainSettings {
    fn default() -> Self {
        Self {
            max_bytes: default_retain_bytes(),
            max_age_secs: default_retain_age(),
        }
    }
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum OverflowPolicy {
    /// Make room by dropping the oldest queued readings (each counted).
    #[default]
    DropOldest,
    /// Refuse new readings while full (each counted).
    RefuseNew,
}

impl GatewayConfig {
    /// Every tag in the config, with its device and group.
    pub fn tags(&self) -> impl Iterator<Item = (&Device, &TagGroup, &Tag)> {
        self.devices.iter().flat_map(|d| {
            d.groups
                .iter()
                .flat_map(move |g| g.tags.iter().map(move |t| (d, g, t)))
        })
    }
}
