//! `EdgeGateway`: one site's gateway and the config its agent runs.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::gateway::GatewayConfig;
use crate::mqtt_cluster::ReclaimPolicy;

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "EdgeGateway",
    plural = "edgegateways",
    shortname = "egw",
    category = "weir",
    namespaced,
    status = "EdgeGatewayStatus",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Config",
        type_ = "integer",
        json_path = ".status.configVersion"
    ),
    printcolumn(
        name = "Applied",
        type_ = "integer",
        json_path = ".status.appliedVersion"
    ),
    printcolumn(name = "Online", type_ = "boolean", json_path = ".status.online"),
    printcolumn(
        name = "Heartbeat",
        type_ = "date",
        json_path = ".status.lastHeartbeat"
    ),
    printcolumn(
        name = "Queue",
        type_ = "integer",
        priority = 1,
        json_path = ".status.queueDepth"
    ),
    printcolumn(
        name = "Dropped",
        type_ = "integer",
        priority = 1,
        json_path = ".status.droppedReadings"
    ),
    printcolumn(
        name = "Refused",
        type_ = "string",
        priority = 1,
        json_path = ".status.refused.reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.mode != 'inCluster' || has(self.clusterRef)").message("clusterRef: an inCluster gateway needs the MQTT cluster it publishes to"))]
#[x_kube(validation = Rule::new("!has(self.pipelines) || self.pipelines.all(p, has(self.devices) && self.devices.exists(d, d.name == p.select.device))").message("pipelines[].select.device: must name a device of this gateway"))]
#[x_kube(validation = Rule::new("!has(self.pipelines) || self.pipelines.all(p, !has(p.select.group) || self.devices.exists(d, d.name == p.select.device && d.groups.exists(g, g.name == p.select.group)))").message("pipelines[].select.group: must name a group of the selected device"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeGatewaySpec {
    #[serde(default)]
    pub site: Site,
    #[serde(default)]
    pub mode: GatewayMode,
    /// The MqttCluster (same namespace) the gateway publishes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub cluster_ref: Option<String>,
    /// Agent version to run (inCluster) or to offer for update (external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"),
        length(max = 64)
    )]
    pub agent_version: Option<String>,
    /// Volume of the in-cluster agent's store-and-forward queue (inCluster only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_storage: Option<AgentStorage>,
    #[serde(flatten)]
    pub config: GatewayConfig,
}

/// The PersistentVolumeClaim an in-cluster agent keeps its queue on. Its size
/// follows `uplink.buffer.maxBytes` plus a margin.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStorage {
    /// Storage class; cannot change after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("agentStorage.storageClassName: is immutable; delete the gateway's volume to move it"))]
    pub storage_class_name: Option<String>,
    /// What happens to the queue's volume when the gateway is deleted:
    /// `Delete` (the default) or `Retain`.
    #[serde(default = "delete_policy")]
    pub reclaim_policy: ReclaimPolicy,
}

fn delete_policy() -> ReclaimPolicy {
    ReclaimPolicy::Delete
}

impl Default for AgentStorage {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            reclaim_policy: delete_policy(),
        }
    }
}

#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// Site name, e.g. "Raw water pump station 1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub name: Option<String>,
    /// Free text or "lat,lon".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub location: Option<String>,
    /// IANA time zone, e.g. "Europe/Berlin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}$"),
        length(max = 64)
    )]
    pub timezone: Option<String>,
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum GatewayMode {
    /// An industrial PC at the plant that enrolls over HTTPS.
    #[default]
    External,
    /// The operator runs the agent as a Deployment in the tenant namespace.
    InCluster,
}

/// Two writers share the status, each with its own server-side-apply field
/// manager: the operator (phase, configVersion, configHash,
/// observedGeneration, conditions) and weir-api, from the agent's
/// heartbeats (online, appliedVersion, lastHeartbeat, refused, devices,
/// queueDepth, droppedReadings).
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeGatewayStatus {
    /// Pending, Ready, Degraded or Offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Version of the latest signed bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u64>,
    /// Hash of the rendered config, to bump the version only on change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Version the agent reports as applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<u64>,
    /// The agent reported within 3 of its heartbeat intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// RFC 3339 time of a recent heartbeat. When nothing but it and the
    /// queue counters changed, weir-api refreshes it at most once a minute
    /// (or heartbeat interval, if longer); the api's own view is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    /// The last config bundle the agent refused (it keeps running the one
    /// before); gone once it runs the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedStatus>,
    /// Health of each device the agent polls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::gateway::limits::DEVICES))]
    pub devices: Vec<DeviceStatus>,
    /// Readings queued on the gateway, not yet delivered to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// Readings the agent dropped since it started (its queue was full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_readings: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl EdgeGatewayStatus {
    /// The status fields weir-api writes from heartbeats (JSON names); the
    /// operator writes none of them.
    pub const HEARTBEAT_FIELDS: &'static [&'static str] = &[
        "online",
        "appliedVersion",
        "lastHeartbeat",
        "refused",
        "devices",
        "queueDepth",
        "droppedReadings",
    ];
    /// Longest `refused.reason` and `devices[].lastError` kept (longer ones are cut).
    pub const REASON_LENGTH: usize = 1024;
    pub const DEVICE_ERROR_LENGTH: usize = 256;
}

/// A config bundle the agent refused (`AgentStatus.refused`).
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedStatus {
    /// The refused bundle's version, when the agent could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[schemars(length(max = EdgeGatewayStatus::REASON_LENGTH))]
    pub reason: String,
    /// RFC 3339 time the agent refused it.
    pub at: String,
}

/// One device's health as the agent reports it (`AgentStatus.devices`).
#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    #[schemars(length(max = crate::gateway::limits::NAME_LENGTH))]
    pub name: String,
    pub state: crate::agent_api::DeviceState,
    /// The last polling error (cleared when the device answers again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = EdgeGatewayStatus::DEVICE_ERROR_LENGTH))]
    pub last_error: Option<String>,
}
