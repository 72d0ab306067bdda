//! A paused cluster, and a deleted one's volumes.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use weir_crds::condition::set_condition;
use weir_crds::mqtt_cluster::ReclaimPolicy;
use weir_crds::{Condition, ConditionStatus, MqttCluster};

use super::pods::label_selector;
use super::{PAUSE_ANNOTATION, PVC_FINALIZER};
use crate::apply::{sync_finalizer, sync_status};
use crate::context::Context;
use crate::error::Result;

pub(super) async fn paused(c: &MqttCluster, api: &Api<MqttCluster>) -> Result<Action> {
    let old = c.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.phase = Some("Paused".into());
    set_condition(
        &mut status.conditions,
        Condition::new("Paused", ConditionStatus::True, "PauseAnnotation", format!("reconciliation is paused by the annotation {PAUSE_ANNOTATION}=true; remove it to resume"), c.metadata.generation),
    );
    sync_status(api, c, c.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}

/// Delete the volumes when the spec says so, then let garbage collection
/// take the rest. Never deletes data under `Retain`.
pub(super) async fn cleanup(
    c: &MqttCluster,
    api: &Api<MqttCluster>,
    ctx: &Context,
) -> Result<Action> {
    if !c.finalizers().iter().any(|f| f == PVC_FINALIZER) {
        return Ok(Action::await_change());
    }
    if c.spec.storage.reclaim_policy == ReclaimPolicy::Delete {
        let pvcs: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default());
        pvcs.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&label_selector(c)),
        )
        .await?;
        ctx.event(
            c,
            EventType::Normal,
            "VolumesDeleted",
            "Delete",
            "deleted the cluster's volumes as spec.storage.reclaimPolicy: Delete says".into(),
        )
        .await;
    }
    sync_finalizer(api, c, PVC_FINALIZER, false).await?;
    Ok(Action::await_change())
}
