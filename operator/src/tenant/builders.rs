//! Pure functions from a Tenant to the objects it should produce.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use weir_crds::tenant::AdminKind;
use weir_crds::Tenant;

use crate::apply::labels;
use weir_crds::names::labels as label;

/// The ClusterRole the chart installs and tenant admins are bound to.
pub const TENANT_ADMIN_ROLE: &str = "weir-tenant-admin";
pub const ADMIN_BINDING: &str = "weir-tenant-admins";
/// The RoleBinding that lets the operator itself use Secrets in the tenant
/// namespace (and only there: its ClusterRole grants none).
pub const OPERATOR_SECRETS_BINDING: &str = "weir-operator-secrets";
pub const ISOLATION_POLICY: &str = "weir-isolate";
pub const API_TO_BROKERS_POLICY: &str = "weir-allow-api-to-brokers";
/// Label every EMQX pod carries (see the MqttCluster builders).
pub const BROKER_COMPONENT: (&str, &str) = (label::COMPONENT, "mqtt-broker");
/// Ports the api may reach on brokers: MQTT, MQTT/TLS, WS, WSS, HTTP API.
pub const BROKER_PORTS: [i32; 5] = [1883, 8883, 8083, 8084, 18083];

fn meta(tenant: &Tenant, name: &str, namespace: Option<String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace,
        labels: Some(labels(label::TENANT, &tenant.name_any())),
        owner_references: tenant.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// Whether `ns` is this Tenant's: made for it, with the Tenant (this one,
/// not an earlier one of the same name) as its controller.
pub fn owned_by(ns: &Namespace, tenant: &Tenant) -> bool {
    let uid = tenant.metadata.uid.as_deref();
    uid.is_some()
        && ns
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

pub fn namespace(tenant: &Tenant) -> Namespace {
    let mut m = meta(tenant, &tenant.namespace_name(), None);
    let l = m.labels.get_or_insert_with(BTreeMap::new);
    // Tenants run brokers and agents, never privileged workloads.
    l.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "baseline".into(),
    );
    Namespace {
        metadata: m,
        ..Default::default()
    }
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

pub fn resource_quota(tenant: &Tenant) -> ResourceQuota {
    let quota = &tenant.spec.quota;
    let hard: BTreeMap<String, Quantity> = [
        ("limits.cpu", q(&quota.cpu)),
        ("limits.memory", q(&quota.memory)),
        ("requests.cpu", q(&quota.cpu)),
        ("requests.memory", q(&quota.memory)),
        ("requests.storage", q(&quota.storage)),
        (
            "persistentvolumeclaims",
            q(&quota.persistent_volume_claims.to_string()),
        ),
        (
            "count/edgegateways.weir.dev",
            q(&quota.max_gateways.to_string()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ResourceQuota {
        metadata: meta(tenant, "weir-quota", Some(tenant.namespace_name())),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Defaults for containers that set no resources, so the quota (which
/// requires limits) never blocks a pod for lack of them.
pub fn limit_range(tenant: &Tenant) -> LimitRange {
    let m = |cpu: &str, mem: &str| -> BTreeMap<String, Quantity> {
        [("cpu".to_string(), q(cpu)), ("memory".to_string(), q(mem))].into()
    };
    LimitRange {
        metadata: meta(tenant, "weir-limits", Some(tenant.namespace_name())),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(m("500m", "512Mi")),
                default_request: Some(m("100m", "128Mi")),
                ..Default::default()
            }],
        }),
    }
}

/// Ingress only from pods of the same namespace.
pub fn isolation_policy(tenant: &Tenant) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(tenant, ISOLATION_POLICY, Some(tenant.namespace_name())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector::default()),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// The api's namespace may reach the brokers' listener and API ports.
pub fn api_to_brokers_policy(tenant: &Tenant, api_namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(tenant, API_TO_BROKERS_POLICY, Some(tenant.namespace_name())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(
                    [(
                        BROKER_COMPONENT.0.to_string(),
                        BROKER_COMPONENT.1.to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(
                            [(
                                "kubernetes.io/metadata.name".to_string(),
                                api_namespace.to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(
                    BROKER_PORTS
                        .iter()
                        .map(|p| NetworkPolicyPort {
                            port: Some(IntOrString::Int(*p)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }]),
            ..Default::default()
        }),
    }
}

/// `spec.admins` get `weir-tenant-admin` in the tenant namespace.
pub fn admin_binding(tenant: &Tenant) -> RoleBinding {
    let subjects = tenant
        .spec
        .admins
        .iter()
        .map(|a| Subject {
            kind: match a.kind {
                AdminKind::Group => "Group".into(),
                AdminKind::Subject | AdminKind::Email => "User".into(),
            },
            name: a.name.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        })
        .collect();
    RoleBinding {
        metadata: meta(tenant, ADMIN_BINDING, Some(tenant.namespace_name())),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: TENANT_ADMIN_ROLE.into(),
        },
        subjects: Some(subjects),
    }
}

/// The operator's own ServiceAccount gets the Secrets ClusterRole
/// (`secrets_role`) in the tenant namespace: the MqttCluster credentials, the
/// signing key and enrollment tokens live there. The API server lets the
/// operator write this binding only because its ClusterRole grants `bind` on
/// exactly that ClusterRole (RBAC escalation prevention).
pub fn operator_secrets_binding(
    tenant: &Tenant,
    secrets_role: &str,
    sa_namespace: &str,
    sa_name: &str,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(
            tenant,
            OPERATOR_SECRETS_BINDING,
            Some(tenant.namespace_name()),
        ),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: secrets_role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa_name.into(),
            namespace: Some(sa_namespace.into()),
            api_group: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::tenant::{TenantAdmin, TenantQuota};
    use weir_crds::TenantSpec;

    pub fn tenant() -> Tenant {
        let mut t = Tenant::new(
            "riverside-water",
            TenantSpec {
                display_name: "Riverside Water".into(),
                admins: vec![
                    TenantAdmin {
                        kind: AdminKind::Email,
                        name: "ops@riverside.example".into(),
                    },
                    TenantAdmin {
                        kind: AdminKind::Group,
                        name: "riverside-admins".into(),
                    },
                ],
                quota: TenantQuota {
                    cpu: "4".into(),
                    ..Default::default()
                },
                network_isolation: true,
                cascade_delete: false,
            },
        );
        t.metadata.uid = Some("tenant-uid".into());
        t
    }

    #[test]
    fn namespace_is_named_labelled_and_owned() {
        let ns = namespace(&tenant());
        assert_eq!(ns.metadata.name.as_deref(), Some("weir-riverside-water"));
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["weir.dev/tenant"], "riverside-water");
        let owner = &ns.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Tenant", "tenant-uid", Some(true))
        );
    }

    #[test]
    fn quota_follows_spec() {
        let hard = resource_quota(&tenant()).spec.unwrap().hard.unwrap();
        assert_eq!(hard["limits.cpu"].0, "4");
        assert_eq!(hard["limits.memory"].0, "16Gi");
        assert_eq!(hard["requests.storage"].0, "200Gi");
        assert_eq!(hard["persistentvolumeclaims"].0, "20");
        assert_eq!(hard["count/edgegateways.weir.dev"].0, "500");
        let lr = limit_range(&tenant()).spec.unwrap();
        assert!(lr.limits[0]
            .default
            .as_ref()
            .unwrap()
            .contains_key("memory"));
    }

    #[test]
    fn isolation_allows_only_same_namespace() {
        let spec = isolation_policy(&tenant()).spec.unwrap();
        assert_eq!(spec.pod_selector, Some(LabelSelector::default()));
        let from = spec.ingress.unwrap()[0].from.clone().unwrap();
        assert_eq!(from.len(), 1);
        assert!(
            from[0].namespace_selector.is_none(),
            "no other namespace may connect"
        );
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
    }

    #[test]
    fn api_namespace_reaches_broker_ports_only() {
        let spec = api_to_brokers_policy(&tenant(), "weir-system")
            .spec
            .unwrap();
        let rule = &spec.ingress.unwrap()[0];
        let ns_sel = rule.from.as_ref().unwrap()[0]
            .namespace_selector
            .clone()
            .unwrap();
        assert_eq!(
            ns_sel.match_labels.unwrap()["kubernetes.io/metadata.name"],
            "weir-system"
        );
        let ports: Vec<_> = rule
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.port.clone().unwrap())
            .collect();
        assert!(
            ports.contains(&IntOrString::Int(1883)) && ports.contains(&IntOrString::Int(18083))
        );
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap()[BROKER_COMPONENT.0],
            BROKER_COMPONENT.1
        );
    }

    #[test]
    fn operator_gets_secrets_role_in_tenant_namespace_only() {
        let rb = operator_secrets_binding(
            &tenant(),
            "weir-operator-secrets",
            "weir-system",
            "weir-operator",
        );
        assert_eq!(
            rb.metadata.namespace.as_deref(),
            Some("weir-riverside-water")
        );
        assert_eq!(
            (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
            ("ClusterRole", "weir-operator-secrets")
        );
        let s = &rb.subjects.unwrap()[0];
        assert_eq!(
            (
                s.kind.as_str(),
                s.namespace.as_deref(),
                s.name.as_str(),
                s.api_group.as_deref()
            ),
            ("ServiceAccount", Some("weir-system"), "weir-operator", None)
        );
        let owner = &rb.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.uid, "tenant-uid");
        assert_eq!(
            rb.metadata.labels.unwrap()["weir.dev/tenant"],
            "riverside-water"
        );
    }

    #[test]
    fn admins_are_bound_to_tenant_admin_role() {
        let rb = admin_binding(&tenant());
        assert_eq!(rb.role_ref.name, TENANT_ADMIN_ROLE);
        assert_eq!(rb.role_ref.kind, "ClusterRole");
        let subjects = rb.subjects.unwrap();
        assert_eq!(subjects.len(), 2);
        assert_eq!(
            (subjects[0].kind.as_str(), subjects[0].name.as_str()),
            ("User", "ops@riverside.example")
        );
        assert_eq!(
            (subjects[1].kind.as_str(), subjects[1].name.as_str()),
            ("Group", "riverside-admins")
        );
        assert_eq!(
            rb.metadata.namespace.as_deref(),
            Some("weir-riverside-water")
        );
    }
}
