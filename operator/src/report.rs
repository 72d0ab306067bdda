//! A failed reconcile shows on the object itself, not only in the
//! operator's log: a Warning Event and the `Degraded` condition with reason
//! `ReconcileFailed` and the error (e.g. the API server refusing what the
//! spec made). The next successful reconcile writes the conditions anew.

use std::sync::Arc;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use weir_crds::condition::{find_condition, set_condition};
use weir_crds::{Condition, ConditionStatus};

use crate::context::Context;

pub const REASON: &str = "ReconcileFailed";

/// Publish the failure on `obj` in the background (error policies are
/// synchronous). Nothing is written when the same error is already shown.
pub fn reconcile_failed<K>(ctx: Arc<Context>, obj: Arc<K>, error: String)
where
    K: Resource<DynamicType = ()> + Serialize + Send + Sync + 'static,
{
    tokio::spawn(async move {
        match mark_degraded(&ctx, &*obj, &error).await {
            Ok(false) => {}
            Ok(true) => {
                ctx.event(&*obj, EventType::Warning, REASON, "Reconcile", error)
                    .await
            }
            Err(e) => {
                tracing::warn!(object = %obj.name_any(), error = %e, "could not show the reconcile failure on the object");
                ctx.event(&*obj, EventType::Warning, REASON, "Reconcile", error)
                    .await
            }
        }
    });
}

/// Set `Degraded=True, ReconcileFailed` in the status; false when it
/// already said so.
async fn mark_degraded<K>(ctx: &Context, obj: &K, error: &str) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let value = serde_json::to_value(obj).unwrap_or_default();
    let mut conditions: Vec<Condition> = value
        .pointer("/status/conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    if find_condition(&conditions, "Degraded").is_some_and(|d| {
        d.status == ConditionStatus::True && d.reason == REASON && d.message == error
    }) {
        return Ok(false);
    }
    set_condition(
        &mut conditions,
        Condition::new(
            "Degraded",
            ConditionStatus::True,
            REASON,
            error,
            obj.meta().generation,
        ),
    );
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match obj.namespace() {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), &ns, &ar),
        None => Api::all_with(ctx.client.clone(), &ar),
    };
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    api.patch_status(
        &obj.name_any(),
        &PatchParams {
            field_manager: Some(crate::FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}
