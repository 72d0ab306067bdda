//! Pure mapping from a watched object to what the api's database should
//! hold: the organization (from the tenant namespace), the project (label
//! `weir.dev/project`, else `default`) and the spec; and whether the spec
//! was last written by the api itself (then the database is already ahead).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::ObjectMeta;
use weir_crds::names::labels;
use weir_crds::{EdgeGateway, EdgeGatewaySpec, MqttCluster, MqttClusterSpec, MqttClusterStatus};

use crate::fleet::kube_backend::FIELD_MANAGER;

/// The project of an object without the `weir.dev/project` label.
pub const DEFAULT_PROJECT: &str = "default";

/// Where an object lives in the api.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Organization slug (the tenant of the namespace).
    pub org: String,
    /// Project slug.
    pub project: String,
    /// The object's name: the gateway's or cluster's slug.
    pub name: String,
}

/// What an object asks of the api.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired<S> {
    pub target: Target,
    pub spec: S,
    /// The api's own server-side apply was the last write of the spec: the
    /// database holds that spec or a newer one, so it is not imported back.
    pub spec_from_api: bool,
}

/// The organization of tenant namespace `weir-<org>`; `None` for other
/// namespaces (and the operator's own `weir-system`).
pub fn org_of_namespace(ns: &str) -> Option<&str> {
    let org = ns.strip_prefix("weir-")?;
    (!org.is_empty() && org != "system").then_some(org)
}

fn is_slug(s: &str) -> bool {
    let mut e = Vec::new();
    crate::extract::check::slug(&mut e, "name", s);
    e.is_empty()
}

/// Organization, project and name of an object, or why it cannot be mirrored.
pub fn target(kind: &str, meta: &ObjectMeta) -> Result<Target, String> {
    let name = meta.name.clone().unwrap_or_default();
    let ns = meta.namespace.as_deref().unwrap_or_default();
    let org = org_of_namespace(ns)
        .ok_or_else(|| format!("{kind} {ns}/{name}: not in a tenant namespace (weir-<tenant>)"))?;
    let project = meta
        .labels
        .as_ref()
        .and_then(|l: &BTreeMap<String, String>| l.get(labels::PROJECT))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PROJECT.to_string());
    if !is_slug(&project) {
        return Err(format!(
            "{kind} {ns}/{name}: label {} must be a project slug (lowercase letters, digits and '-'), not {project:?}",
            labels::PROJECT
        ));
    }
    if !is_slug(&name) {
        return Err(format!("{kind} {ns}/{name}: the name is not a valid slug"));
    }
    Ok(Target {
        org: org.to_string(),
        project,
        name,
    })
}

/// The manager of the newest write that touched `spec` (status writes are
/// a subresource and never count). On a tie another manager wins over the
/// api, so a `kubectl` change in the same second is never lost.
pub fn spec_last_written_by(fields: &[ManagedFieldsEntry]) -> Option<&str> {
    fields
        .iter()
        .filter(|f| f.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|f| {
            f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.get("f:spec").is_some())
        })
        .max_by_key(|f| (f.time.clone(), f.manager.as_deref() != Some(FIELD_MANAGER)))
        .and_then(|f| f.manager.as_deref())
}

fn spec_from_api(meta: &ObjectMeta) -> bool {
    spec_last_written_by(meta.managed_fields.as_deref().unwrap_or_default()) == Some(FIELD_MANAGER)
}

/// An EdgeGateway → the gateway row it asks for.
pub fn desired_gateway(gw: &EdgeGateway) -> Result<Desired<EdgeGatewaySpec>, String> {
    Ok(Desired {
        target: target("EdgeGateway", &gw.metadata)?,
        spec: gw.spec.clone(),
        spec_from_api: spec_from_api(&gw.metadata),
    })
}

/// An MqttCluster → the cluster row it asks for, with its status.
pub fn desired_cluster(
    c: &MqttCluster,
) -> Result<(Desired<MqttClusterSpec>, Option<MqttClusterStatus>), String> {
    Ok((
        Desired {
            target: target("MqttCluster", &c.metadata)?,
            spec: c.spec.clone(),
            spec_from_api: spec_from_api(&c.metadata),
        },
        c.status.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
    use serde_json::json;

    fn gateway(ns: &str, name: &str, project: Option<&str>) -> EdgeGateway {
        let mut gw: EdgeGateway = serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "EdgeGateway",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterRef": "main"},
        }))
        .unwrap();
        if let Some(p) = project {
            gw.metadata.labels = Some([(labels::PROJECT.to_string(), p.to_string())].into());
        }
        gw
    }

    fn entry(
        manager: &str,
        secs: i64,
        fields: serde_json::Value,
        sub: Option<&str>,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
            )),
            fields_v1: Some(FieldsV1(fields)),
            subresource: sub.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn gateway_maps_to_org_project_and_spec() {
        let d = desired_gateway(&gateway("weir-riverside", "pump-1", Some("north"))).unwrap();
        assert_eq!(
            d.target,
            Target {
                org: "riverside".into(),
                project: "north".into(),
                name: "pump-1".into()
            }
        );
        assert_eq!(d.spec.cluster_ref.as_deref(), Some("main"));
        assert!(!d.spec_from_api, "no managed fields: someone else wrote it");
    }

    #[test]
    fn no_label_means_the_default_project() {
        let d = desired_gateway(&gateway("weir-riverside", "pump-1", None)).unwrap();
        assert_eq!(d.target.project, DEFAULT_PROJECT);
        let d = desired_gateway(&gateway("weir-riverside", "pump-1", Some("  "))).unwrap();
        assert_eq!(d.target.project, DEFAULT_PROJECT);
    }

    #[test]
    fn objects_outside_tenant_namespaces_or_with_bad_labels_are_refused() {
        for ns in ["default", "weir-system", "weir-"] {
            let e = desired_gateway(&gateway(ns, "pump-1", None)).unwrap_err();
            assert!(e.contains("not in a tenant namespace"), "{e}");
        }
        let e =
            desired_gateway(&gateway("weir-riverside", "pump-1", Some("North_Side"))).unwrap_err();
        assert!(
            e.contains("weir.dev/project") && e.contains("North_Side"),
            "{e}"
        );
    }

    #[test]
    fn the_newest_spec_writer_decides_whether_the_spec_is_imported() {
        let spec = json!({"f:spec": {"f:clusterRef": {}}});
        let kubectl = entry("kubectl-client-side-apply", 10, spec.clone(), None);
        let api = entry(FIELD_MANAGER, 20, spec.clone(), None);
        let status = entry("weir-operator", 30, json!({"f:status": {}}), Some("status"));
        let meta_only = entry("kubectl-annotate", 40, json!({"f:metadata": {}}), None);
        let all = vec![kubectl.clone(), api.clone(), status, meta_only];
        assert_eq!(spec_last_written_by(&all), Some(FIELD_MANAGER));
        let newer_kubectl = entry("kubectl-edit", 25, spec.clone(), None);
        assert_eq!(
            spec_last_written_by(&[all.clone(), vec![newer_kubectl]].concat()),
            Some("kubectl-edit")
        );
        // The same second: kubectl's change wins.
        let tie = entry("kubectl", 20, spec, None);
        assert_eq!(spec_last_written_by(&[api, tie]), Some("kubectl"));
        assert_eq!(spec_last_written_by(&[]), None);
    }

    #[test]
    fn cluster_maps_with_its_status() {
        let c: MqttCluster = serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
            "metadata": {"name": "main", "namespace": "weir-riverside",
                         "labels": {"weir.dev/project": "north"}},
            "spec": {"replicas": 3},
            "status": {"phase": "Ready", "endpoints": ["mqtt://main-mqtt.weir-riverside.svc:1883"]},
        }))
        .unwrap();
        let (d, status) = desired_cluster(&c).unwrap();
        assert_eq!(d.target.project, "north");
        assert_eq!(d.spec.replicas, 3);
        assert_eq!(status.unwrap().endpoints.len(), 1);
    }
}
