//! Wiring of the three controllers onto watches.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use weir_crds::{EdgeGateway, MqttCluster, Tenant};

use crate::apply::MANAGED_BY;
use crate::context::Context;
use crate::tenant::builders::BROKER_COMPONENT;
use crate::{edge_gateway, mqtt_cluster, tenant};

/// The label naming the Tenant of the namespaced objects it owns.
const TENANT_LABEL: &str = weir_crds::names::labels::TENANT;

/// The Tenant a namespaced object of a tenant belongs to, by its label.
fn tenant_of<K: kube::Resource>(o: &K) -> Option<ObjectRef<Tenant>> {
    o.meta()
        .labels
        .as_ref()?
        .get(TENANT_LABEL)
        .map(|t| ObjectRef::new(t))
}

/// What of an object of its own kind wakes a controller: its spec (through
/// `metadata.generation`, which status writes leave alone), labels,
/// annotations (the pause and key-rotation annotations), finalizers and
/// deletion. Not its status: each controller writes its objects' status, and
/// reacting to that (or to status someone else writes) would cost a
/// reconcile per write and, with status that is not ours, a write back.
/// Progress that depends on the world (pods, EMQX) comes from the owned and
/// Pod watches and from the requeue each reconcile asks for.
pub fn spec_or_metadata<K: Resource>(o: &K) -> Option<u64> {
    let m = o.meta();
    let mut h = DefaultHasher::new();
    m.generation.hash(&mut h);
    m.labels.hash(&mut h);
    m.annotations.hash(&mut h);
    m.finalizers.hash(&mut h);
    m.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// A controller's own kind, watched as `Controller::new` watches it (every
/// object in the store) but passed on only when [`spec_or_metadata`]
/// changed: the trigger stream and the store for `Controller::for_stream`.
fn primary<K>(
    api: Api<K>,
) -> (
    impl Stream<Item = Result<K, watcher::Error>> + Send,
    Store<K>,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let trigger = watcher(api, watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_metadata, Default::default());
    (trigger, reader)
}

/// Run every controller until shutdown (SIGTERM/SIGINT) or until the
/// future is dropped (leadership lost).
pub async fn run(ctx: Arc<Context>, concurrency: u16) {
    let client = ctx.client.clone();
    // Watch only what we made: owned objects carry the managed-by label.
    let owned = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let brokers = watcher::Config::default()
        .labels(&format!("{}={}", BROKER_COMPONENT.0, BROKER_COMPONENT.1));
    let cfg = Config::default().concurrency(concurrency);
    // A hand edit of an owned object wakes its owner, which applies it
    // again (see `apply::ensure` on drift). The Tenant is cluster-scoped and
    // owns namespaced objects: those are mapped by their label.
    let tenant_owned = watcher::Config::default()
        .labels(&format!("{}={},{TENANT_LABEL}", MANAGED_BY.0, MANAGED_BY.1));

    let (trigger, store) = primary(Api::<Tenant>::all(client.clone()));
    let tenants = Controller::for_stream(trigger, store)
        .with_config(cfg.clone())
        .owns(Api::<Namespace>::all(client.clone()), owned.clone())
        .watches(
            Api::<ResourceQuota>::all(client.clone()),
            tenant_owned.clone(),
            |o| tenant_of(&o),
        )
        .watches(
            Api::<LimitRange>::all(client.clone()),
            tenant_owned.clone(),
            |o| tenant_of(&o),
        )
        .watches(
            Api::<NetworkPolicy>::all(client.clone()),
            tenant_owned.clone(),
            |o| tenant_of(&o),
        )
        .watches(
            Api::<RoleBinding>::all(client.clone()),
            tenant_owned.clone(),
            |o| tenant_of(&o),
        )
        .shutdown_on_signal()
        .run(tenant::reconcile, tenant::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tenant controller");
            }
        });

    let (trigger, store) = primary(Api::<MqttCluster>::all(client.clone()));
    let clusters = Controller::for_stream(trigger, store);
    // A Tenant's quota is shared by its clusters: a change of its spec wakes
    // them all (not its status, which the tenant controller writes).
    let cluster_store = clusters.store();
    let clusters = clusters
        .with_config(cfg.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            owned.clone(),
        )
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned.clone())
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .watches_stream(
            watcher(
                Api::<Tenant>::all(client.clone()),
                watcher::Config::default(),
            )
            .touched_objects()
            .predicate_filter(spec_or_metadata, Default::default()),
            move |t: Tenant| {
                let ns = t.namespace_name();
                cluster_store
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        // Pods belong to the StatefulSet; map them to their cluster by label
        // so readiness changes drive the rollout without waiting for a requeue.
        .watches(Api::<Pod>::all(client.clone()), brokers, |pod: Pod| {
            let name = pod
                .labels()
                .get(weir_crds::names::labels::MQTT_CLUSTER)?
                .clone();
            Some(ObjectRef::<MqttCluster>::new(&name).within(&pod.namespace()?))
        })
        .shutdown_on_signal()
        .run(
            mqtt_cluster::reconcile,
            mqtt_cluster::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "mqttcluster controller");
            }
        });

    let (trigger, store) = primary(Api::<EdgeGateway>::all(client.clone()));
    let gateways = Controller::for_stream(trigger, store)
        .with_config(cfg)
        // A gateway that rotates its tenant's key wakes every gateway, so that
        // the tenant's other bundles are signed again with the new key (the
        // key Secret is not watched, see below). Rotations are rare and asked
        // for by hand; other tenants' gateways find nothing to do.
        .reconcile_all_on(ctx.key_rotations())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        // No watch on Secrets: that needs list/watch on Secrets in every
        // namespace, and the operator may use Secrets only in tenant namespaces
        // (a RoleBinding per tenant, see tenant::builders::operator_secrets_binding).
        // The reconcilers read their Secrets by name; one deleted by hand is
        // made again at the object's next requeue (at most an hour for an
        // EdgeGateway), not at once.
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        // The agent's volume has no owner when it is retained: map it by label.
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            owned,
            |pvc: PersistentVolumeClaim| {
                let name = pvc
                    .labels()
                    .get(weir_crds::names::labels::EDGE_GATEWAY)?
                    .clone();
                Some(ObjectRef::<EdgeGateway>::new(&name).within(&pvc.namespace()?))
            },
        )
        .shutdown_on_signal()
        .run(edge_gateway::reconcile, edge_gateway::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "edgegateway controller");
            }
        });

    futures::join!(tenants, clusters, gateways);
}

#[cfg(test)]
mod tests {
    use futures::{stream, StreamExt};
    use kube::runtime::WatchStreamExt;
    use serde_json::{json, Value};
    use weir_crds::MqttCluster;

    use super::spec_or_metadata;

    fn cluster(version: u32, generation: i64, edit: impl FnOnce(&mut Value)) -> MqttCluster {
        let mut v = json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
            "metadata": {
                "name": "plant", "namespace": "weir-t", "uid": "u1",
                "resourceVersion": version.to_string(), "generation": generation,
            },
            "spec": {"replicas": 3},
            "status": {"phase": "Progressing", "readyReplicas": 1},
        });
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    /// Which watch events of its own kind reach a controller: not the ones
    /// that change only status (the operator's own writes, or anyone's).
    #[tokio::test]
    async fn only_spec_and_metadata_changes_wake_a_controller() {
        let events = vec![
            ("created", cluster(1, 1, |_| {})),
            (
                "status only",
                cluster(2, 1, |v| v["status"]["phase"] = json!("Ready")),
            ),
            (
                "status by someone else",
                cluster(3, 1, |v| v["status"]["readyReplicas"] = json!(3)),
            ),
            ("spec", cluster(4, 2, |v| v["spec"]["replicas"] = json!(5))),
            (
                "pause annotation",
                cluster(5, 2, |v| {
                    v["metadata"]["annotations"] = json!({"weir.dev/paused": "true"})
                }),
            ),
            (
                "status again",
                cluster(6, 2, |v| {
                    v["metadata"]["annotations"] = json!({"weir.dev/paused": "true"});
                    v["status"]["phase"] = json!("Paused");
                }),
            ),
            (
                "label",
                cluster(7, 2, |v| {
                    v["metadata"]["annotations"] = json!({"weir.dev/paused": "true"});
                    v["metadata"]["labels"] = json!({"site": "north"});
                }),
            ),
            (
                "finalizer",
                cluster(8, 2, |v| {
                    v["metadata"]["annotations"] = json!({"weir.dev/paused": "true"});
                    v["metadata"]["labels"] = json!({"site": "north"});
                    v["metadata"]["finalizers"] = json!(["weir.dev/pvc-cleanup"]);
                }),
            ),
            (
                "deletion",
                cluster(9, 2, |v| {
                    v["metadata"]["annotations"] = json!({"weir.dev/paused": "true"});
                    v["metadata"]["labels"] = json!({"site": "north"});
                    v["metadata"]["finalizers"] = json!(["weir.dev/pvc-cleanup"]);
                    v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                }),
            ),
        ];
        let names: Vec<_> = events.iter().map(|(n, _)| *n).collect();
        let passed: Vec<String> = stream::iter(events.into_iter().map(|(_, c)| Ok(c)))
            .predicate_filter(spec_or_metadata, Default::default())
            .map(|c| c.unwrap().metadata.resource_version.unwrap())
            .collect()
            .await;
        let passed: Vec<&str> = passed
            .iter()
            .map(|rv| names[rv.parse::<usize>().unwrap() - 1])
            .collect();
        assert_eq!(
            passed,
            [
                "created",
                "spec",
                "pause annotation",
                "label",
                "finalizer",
                "deletion"
            ]
        );
    }
}
