//! `Tenant`: one water plant or utility. Cluster-scoped; the operator gives it
//! a namespace `weir-<name>` with quota, isolation and admin bindings.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "tn",
    category = "weir",
    status = "TenantStatus",
    printcolumn(
        name = "Display Name",
        type_ = "string",
        json_path = ".spec.displayName"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // The same rules as `check_name`, for `kubectl apply`.
    validation = Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}")).message(format!("metadata.name: a tenant name has at most {MAX_NAME_LENGTH} characters, since its namespace is weir-<name>").as_str()),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name: a tenant name is lowercase letters, digits and '-', starting and ending with a letter or digit (it names the namespace weir-<name>)"),
    validation = Rule::new(format!("!(self.metadata.name in {RESERVED_NAMES:?})")).message(format!("metadata.name: {} is reserved (weir-system is the operator's own namespace)", RESERVED_NAMES.join(", ")).as_str())
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Name shown to people, e.g. "Riverside Water".
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// Who administers this tenant: OIDC subjects, emails or groups, each
    /// listed once.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into(), "name".into()]))]
    pub admins: Vec<TenantAdmin>,
    #[serde(default)]
    pub quota: TenantQuota,
    /// Default-deny network isolation for the tenant namespace.
    #[serde(default = "default_true")]
    pub network_isolation: bool,
    /// Delete the tenant even when its namespace still holds MQTT clusters.
    #[serde(default)]
    pub cascade_delete: bool,
}

fn default_true() -> bool {
    true
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantAdmin {
    pub kind: AdminKind,
    /// The subject, email address or group name.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.trim() != ''").message("admins[].name: must not be blank"))]
    pub name: String,
}

#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AdminKind {
    /// OIDC `sub` claim.
    Subject,
    Email,
    Group,
}

/// Limits for everything that runs in the tenant namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuota {
    /// CPU limit for the namespace, Kubernetes quantity, e.g. "8".
    #[serde(default = "default_cpu")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: String,
    /// Memory limit, e.g. "16Gi".
    #[serde(default = "default_memory")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"))]
    pub memory: String,
    /// Total persistent storage, e.g. "200Gi".
    #[serde(default = "default_storage")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"))]
    pub storage: String,
    #[serde(default = "default_pvcs")]
    #[schemars(range(min = 0, max = 1000))]
    pub persistent_volume_claims: u32,
    #[serde(default = "default_connections")]
    #[schemars(range(min = 1, max = 10000000))]
    pub max_mqtt_connections: u32,
    #[serde(default = "default_gateways")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_gateways: u32,
}

fn default_cpu() -> String {
    "8".into()
}
fn default_memory() -> String {
    "16Gi".into()
}
fn default_storage() -> String {
    "200Gi".into()
}
fn default_pvcs() -> u32 {
    20
}
fn default_connections() -> u32 {
    10_000
}
fn default_gateways() -> u32 {
    500
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self {
            cpu: default_cpu(),
            memory: default_memory(),
            storage: default_storage(),
            persistent_volume_claims: default_pvcs(),
            max_mqtt_connections: default_connections(),
            max_gateways: default_gateways(),
        }
    }
}

#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Pending, Ready, Terminating or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The namespace made for this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Longest tenant name: its namespace `weir-<name>` is a DNS label (63).
pub const MAX_NAME_LENGTH: usize = 58;

/// Names no tenant may take: `weir-system` is the operator's namespace.
pub const RESERVED_NAMES: [&str; 1] = ["system"];

/// Why `name` cannot name a tenant, if it cannot: the rules the CRD checks
/// at `kubectl apply`, for the api and the operator.
pub fn check_name(name: &str) -> Result<(), String> {
    let label = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if name.len() > MAX_NAME_LENGTH {
        Err(format!(
            "a tenant name has at most {MAX_NAME_LENGTH} characters, since its namespace is weir-<name>"
        ))
    } else if !label {
        Err("a tenant name is lowercase letters, digits and '-', starting and ending with a letter or digit (it names the namespace weir-<name>)".into())
    } else if RESERVED_NAMES.contains(&name) {
        Err(format!(
            "{} is reserved (weir-system is the operator's own namespace)",
            RESERVED_NAMES.join(", ")
        ))
    } else {
        Ok(())
    }
}

impl Tenant {
    /// The namespace the operator makes for this tenant.
    pub fn namespace_name(&self) -> String {
        crate::names::tenant_namespace(&kube::ResourceExt::name_any(self))
    }
}
