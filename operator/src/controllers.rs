//! Wiring of the three controllers onto watches.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use weir_crds::{EdgeGateway, MqttCluster, Tenant};

use crate::apply::MANAGED_BY;
use crate::context::Context;
use crate::tenant::builders::BROKER_COMPONENT;
use crate::{edge_gateway, mqtt_cluster, tenant};

/// The label naming the Tenant of the namespaced objects it owns.
const TENANT_LABEL: &str = "weir.dev/tenant";

/// The Tenant a namespaced object of a tenant belongs to, by its label.
fn tenant_of<K: kube::Resource>(o: &K) -> Option<ObjectRef<Tenant>> {
    o.meta()
        .labels
        .as_ref()?
        .get(TENANT_LABEL)
        .map(|t| ObjectRef::new(t))
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

    let tenants = Controller::new(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default(),
    )
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

    let clusters = Controller::new(
        Api::<MqttCluster>::all(client.clone()),
        watcher::Config::default(),
    );
    // A Tenant's quota is shared by its clusters: a change wakes them all.
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
        .watches(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default(),
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
            let name = pod.labels().get("weir.dev/mqttcluster")?.clone();
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

    let gateways = Controller::new(
        Api::<EdgeGateway>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(cfg)
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
            let name = pvc.labels().get("weir.dev/edgegateway")?.clone();
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
