//! `MqttCluster`: an EMQX cluster in a tenant namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// The EMQX 5.8 line: the last Apache-2.0 release that clusters without a license.
pub const DEFAULT_EMQX_VERSION: &str = "5.8.6";
pub const DEFAULT_EMQX_IMAGE: &str = "emqx/emqx";

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "MqttCluster",
    plural = "mqttclusters",
    shortname = "mqc",
    category = "weir",
    namespaced,
    status = "MqttClusterStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.readyText"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.currentVersion"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MqttClusterSpec {
    /// EMQX version, e.g. "5.8.6". Changing it upgrades the cluster one node at a time.
    #[serde(default = "default_version")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^5\\\\.[0-9]+\\\\.[0-9]+(-[0-9A-Za-z.]+)?$')").message("version: must be an EMQX 5 version such as 5.8.6"))]
    pub version: String,
    /// Image repository; the tag is `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub image: Option<String>,
    /// Number of EMQX nodes.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 15").message("replicas: must be between 1 and 15"))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub storage: ClusterStorage,
    /// MQTT listeners, each with its own name and port; defaults to plain
    /// TCP on 1883.
    #[serde(default = "default_listeners")]
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(m, m.port == l.port))").message("listeners: each listener needs its own port"))]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub authentication: ClusterAuthentication,
    /// `emqx.conf` overrides as HOCON path → value, e.g. `mqtt.max_packet_size: "1MB"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub service_type: ServiceType,
    #[serde(default)]
    pub placement: Placement,
    /// License for EMQX 5.9 and later (clustering needs one there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseRef>,
    /// Run a historian that writes this cluster's readings to PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub historian: Option<HistorianSpec>,
}

fn default_version() -> String {
    DEFAULT_EMQX_VERSION.into()
}
fn default_replicas() -> i32 {
    3
}
fn default_listeners() -> Vec<Listener> {
    vec![Listener {
        name: "mqtt".into(),
        protocol: ListenerProtocol::Tcp,
        port: 1883,
        tls_secret_ref: None,
    }]
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStorage {
    /// Volume size per node, e.g. "10Gi".
    #[serde(default = "default_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)$"))]
    pub size: String,
    /// Storage class; cannot change after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.storageClassName: is immutable; create a new cluster to move storage"))]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the cluster is deleted.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

fn default_size() -> String {
    "10Gi".into()
}

impl Default for ClusterStorage {
    fn default() -> Self {
        Self {
            size: default_size(),
            storage_class_name: None,
            reclaim_policy: ReclaimPolicy::Retain,
        }
    }
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum ReclaimPolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.protocol == 'tcp' || self.protocol == 'ws') || has(self.tlsSecretRef)").message("listeners[].tlsSecretRef: tls and wss listeners need a TLS secret"))]
pub struct Listener {
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,30}$"), length(max = 31))]
    pub name: String,
    pub protocol: ListenerProtocol,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Secret of type kubernetes.io/tls, or a cert-manager Certificate name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_ref: Option<String>,
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    Tcp,
    Tls,
    Ws,
    Wss,
}

#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAuthentication {
    #[serde(default)]
    pub mode: AuthMode,
    /// JWKS URL of the api; defaults to the in-cluster weir-api service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub jwks_url: Option<String>,
}

impl Default for ClusterAuthentication {
    fn default() -> Self {
        Self {
            mode: AuthMode::ApiJwt,
            jwks_url: None,
        }
    }
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    /// JWTs issued by weir-api, verified against its JWKS, with topic ACLs
    /// in the claims (`weir_crds::acl`). The only mode: a password mode let
    /// every authenticated client use every topic, so one gateway's login
    /// could read and forge all the others'.
    #[default]
    ApiJwt,
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// Spread nodes over zones (`topology.kubernetes.io/zone`).
    #[serde(default)]
    pub spread_over_zones: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,
}

#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum AntiAffinity {
    /// Prefer one EMQX node per Kubernetes node.
    #[default]
    Preferred,
    /// Require one EMQX node per Kubernetes node.
    Required,
    None,
}

#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseRef {
    /// Secret holding the license under key `license`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_ref: String,
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistorianSpec {
    /// Secret with key `url`: a PostgreSQL connection string.
    #[schemars(length(min = 1, max = 253))]
    pub database_secret_ref: String,
    /// Days of readings to keep; older partitions are dropped.
    #[serde(default = "default_retention")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3650").message("historian.retentionDays: must be between 1 and 3650"))]
    pub retention_days: u32,
    #[serde(default = "default_historian_replicas")]
    #[schemars(range(min = 1, max = 16))]
    pub replicas: i32,
}

fn default_retention() -> u32 {
    90
}
fn default_historian_replicas() -> i32 {
    1
}

#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttClusterStatus {
    /// Pending, Provisioning, Ready, Scaling, Upgrading, Degraded or Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Nodes that are running and joined (scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the EMQX pods, in `kubectl get -l` form; the scale
    /// subresource exposes it so a HorizontalPodAutoscaler finds the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// "ready/desired", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Client endpoints, e.g. `mqtt://riverside-mqtt.weir-riverside-water.svc:1883`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    /// The tenant's `quota.maxMqttConnections` as enforced on this cluster
    /// (EMQX listener limits); absent when the namespace has no Tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<ConnectionLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// How the tenant's MQTT connection quota is enforced on one cluster.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionLimit {
    /// The Tenant's `spec.quota.maxMqttConnections`, shared by all its clusters.
    pub tenant_quota: u32,
    /// EMQX nodes of all the tenant's clusters that share the quota.
    pub tenant_nodes: u32,
    /// `max_connections` of each listener on each node of this cluster.
    pub per_listener: u32,
    /// Connections this cluster accepts at most (per listener × listeners × nodes).
    pub cluster_max: u32,
}

#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    /// running or stopped, as EMQX reports it.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub connections: u64,
}

impl MqttClusterSpec {
    /// `image:version` to run.
    pub fn image_ref(&self) -> String {
        format!(
            "{}:{}",
            self.image.as_deref().unwrap_or(DEFAULT_EMQX_IMAGE),
            self.version
        )
    }

    /// EMQX 5.9 and later need a license to form a cluster of more than one node.
    pub fn needs_license(&self) -> bool {
        let mut parts = self.version.split('.');
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(5);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(8);
        (major, minor) >= (5, 9)
    }
}
