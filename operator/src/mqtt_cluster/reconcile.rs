//! MqttCluster reconciler: one round observes (the StatefulSet, the pods,
//! EMQX's own view of its nodes), converges the configuration and the
//! objects around the StatefulSet, settles the replica count (evacuating a
//! node before it goes), plans the rest as a pure decision, carries the
//! plan out and writes the status. Each step lives in its own module; this
//! one orders them.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use weir_crds::mqtt_cluster::ReclaimPolicy;
use weir_crds::MqttCluster;

use super::findings::Findings;
use super::{
    act, credentials, lifecycle, observe, plan, preconditions, publish, scale, status,
    PAUSE_ANNOTATION, PVC_FINALIZER,
};
use crate::apply::sync_finalizer;
use crate::context::Context;
use crate::error::{backoff, Error, Result};

const CONTROLLER: &str = "mqttcluster";

pub async fn reconcile(c: Arc<MqttCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = c
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<MqttCluster> = Api::namespaced(ctx.client.clone(), &ns);

    if c.metadata.deletion_timestamp.is_some() {
        return lifecycle::cleanup(&c, &api, &ctx).await;
    }
    if c.annotations().get(PAUSE_ANNOTATION).map(String::as_str) == Some("true") {
        return lifecycle::paused(&c, &api).await;
    }
    let delete_volumes = c.spec.storage.reclaim_policy == ReclaimPolicy::Delete;
    sync_finalizer(&api, &c, PVC_FINALIZER, delete_volumes).await?;

    let mut f = Findings::default();
    let secrets = Api::namespaced(ctx.client.clone(), &ns);
    let api_key = credentials::ensure(&c, &secrets, &mut f).await?;
    preconditions::check(&c, &ctx, &mut f).await?;

    let (facts, emqx) = observe::observe(&c, &ctx, &ns, api_key.as_ref(), &mut f).await?;
    act::converge(&c, &ctx, &ns, &facts, &emqx, &mut f).await?;
    // Scale: down one node at a time, each evacuated first.
    let replicas = scale::replicas(
        &c,
        &ctx,
        &emqx,
        facts.nodes.as_deref(),
        facts.live_replicas(),
        &mut f,
    )
    .await;
    let plan = plan::plan(&c, &facts, replicas);
    let removed = act::carry_out(&c, &ctx, &ns, &plan, &emqx, &mut f).await?;

    let observed = status::observed(&c, &facts, &plan, replicas, &removed, &mut f);
    publish::publish(&c, &ctx, &api, &f, observed).await?;
    ctx.succeeded(&key(&c));
    Ok(Action::requeue(f.requeue_after()))
}

/// The key of a cluster's entries in the context's bookkeeping.
pub(super) fn key(c: &MqttCluster) -> String {
    format!(
        "mqttcluster/{}/{}",
        c.namespace().unwrap_or_default(),
        c.name_any()
    )
}

pub fn error_policy(c: Arc<MqttCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error);
    let n = ctx.failed(&key(&c));
    tracing::warn!(cluster = %c.name_any(), namespace = ?c.namespace(), error = %error, failures = n, "MqttCluster reconcile failed");
    crate::report::reconcile_failed(ctx, c, error.to_string());
    Action::requeue(backoff(n))
}
