//! The gateway config model: devices, tags, pipelines and uplink. One
//! definition, used by the `EdgeGateway` CRD, stored by the api, signed into
//! bundles and run by the agent.

pub mod address;
pub mod largest;
pub mod validate;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub use address::{Area, ByteOrder, ModbusAddress};
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
    pub const ADDRESS_LENGTH: usize = 24;
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

/// A tag address: free text without `!` (simulated tags), or a Modbus
/// address as [`MODBUS_ADDRESS_PATTERN`]. A pattern costs nothing in the API
/// server's CEL budget, where a regex per tag would exceed it; a rule on the
/// device then only checks that a Modbus device's addresses contain `!`.
pub const TAG_ADDRESS_PATTERN: &str =
    r"^([^!]*|[0-9]{1,3}![0134][0-9]{1,5}(\.[0-9]{1,3}[HLDE]?)?(#(B|L|BB|BL|LB|LL))?)$";

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.name != 'cmd'").message("devices[].name: 'cmd' is reserved for the gateway's command topics"))]
#[x_kube(validation = Rule::new("self.adapter != 'modbusTcp' || has(self.modbus)").message("devices[].modbus: a modbusTcp device needs modbus connection settings (host, port)"))]
#[x_kube(validation = Rule::new("self.adapter != 'modbusTcp' || self.groups.all(g, g.tags.all(t, t.address.contains('!')))").message("devices[].groups[].tags[].address: a Modbus address reads SLAVE!AREAADDRESS[.BIT][#ORDER], e.g. 1!400001#BB"))]
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
    /// Each group of a device needs its own name.
    #[schemars(length(min = 1, max = limits::GROUPS_PER_DEVICE))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub groups: Vec<TagGroup>,
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AdapterKind {
    ModbusTcp,
    Simulator,
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
pub struct TagGroup {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$"), length(max = limits::NAME_LENGTH))]
    pub name: String,
    /// Polling interval in milliseconds, from 10 ms (1,000 tags every 10 ms
    /// is 100,000 readings/s from one gateway) to one day.
    #[x_kube(validation = Rule::new("self >= 10").message("devices[].groups[].intervalMs: polling interval must be at least 10 ms"))]
    #[x_kube(validation = Rule::new("self <= 86400000").message("devices[].groups[].intervalMs: polling interval must be at most one day"))]
    pub interval_ms: u32,
    /// Each tag of a group needs its own name.
    #[schemars(length(min = 1, max = limits::TAGS_PER_GROUP))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub tags: Vec<Tag>,
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
// Per-tag rules run up to devices × groups × tags times: only cheap string
// operations here (no regex), and ranges in the schema where they fit.
#[x_kube(validation = Rule::new("!(self.address.contains('!0') || self.address.contains('!1')) || self.dataType == 'bool' || self.dataType == 'bit'").message("devices[].groups[].tags[].dataType: coils (area 0) and discrete inputs (area 1) hold bool or bit values"))]
#[x_kube(validation = Rule::new("!has(self.scale) || self.scale != 0.0").message("devices[].groups[].tags[].scale: must not be zero"))]
pub struct Tag {
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,62}[A-Za-z0-9])?$"), length(max = limits::TAG_NAME_LENGTH))]
    pub name: String,
    /// Neuron-style Modbus address `SLAVE!AREAADDRESS[.BIT][#ORDER]`, e.g.
    /// `1!400001#BB`; free text without `!` for simulated tags.
    #[schemars(length(min = 1, max = limits::ADDRESS_LENGTH), regex(pattern = r"^([^!]*|[0-9]{1,3}![0134][0-9]{1,5}(\.[0-9]{1,3}[HLDE]?)?(#(B|L|BB|BL|LB|LL))?)$"))]
    pub address: String,
    pub data_type: DataType,
    /// read, write and/or subscribe (report on change only), each once.
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
