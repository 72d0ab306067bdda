//! Doing what a round decided: the configuration and the objects around
//! the StatefulSet first, then the [`Plan`] (StatefulSet, stuck pods,
//! departed nodes) and the historian. Writes go through [`crate::apply`],
//! so an object that already matches is not written.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DeleteParams;
use kube::runtime::events::EventType;
use kube::Api;
use weir_crds::MqttCluster;

use super::builders as b;
use super::findings::Findings;
use super::observe::Facts;
use super::plan::Plan;
use super::reconcile::key;
use super::rollout::Rollout;
use super::runtime_config;
use crate::apply::{ensure, ensure_absent};
use crate::context::Context;
use crate::emqx::EmqxCluster;
use crate::error::Result;

/// The configuration (the file for restarts, the API for running nodes),
/// the Services, the disruption budget and the external MQTT policy.
pub(super) async fn converge(
    c: &MqttCluster,
    ctx: &Context,
    ns: &str,
    facts: &Facts,
    emqx: &EmqxCluster,
    f: &mut Findings,
) -> Result<()> {
    let client = ctx.client.clone();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let running_nodes = runtime_config::Nodes {
        emqx,
        any_ready: facts.ready_pods().next().is_some(),
        api_answered: facts.nodes.is_some(),
    };
    // The tenant's connection quota, enforced as EMQX listener limits.
    let per_listener = facts.limit.as_ref().map(|l| l.per_listener);
    runtime_config::sync(c, ctx, &cm_api, running_nodes, per_listener, f).await?;

    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    ensure(ctx, &svc, b::headless_service(c)).await?;
    ensure(ctx, &svc, b::client_service(c)).await?;
    ensure(ctx, &svc, b::dashboard_service(c)).await?;
    ensure(
        ctx,
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        b::pod_disruption_budget(c),
    )
    .await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(client, ns);
    match b::external_mqtt_policy(c) {
        Some(p) => ensure(ctx, &policies, p).await.map(drop),
        None => ensure_absent(&policies, &b::external_policy_name(c))
            .await
            .map(drop),
    }
}

/// Apply the plan; the departed nodes EMQX let go of, for the status.
pub(super) async fn carry_out(
    c: &MqttCluster,
    ctx: &Context,
    ns: &str,
    plan: &Plan,
    emqx: &EmqxCluster,
    f: &mut Findings,
) -> Result<Vec<String>> {
    timeout_check(c, ctx, plan, f);
    f.extend(plan.findings.clone());
    if let Some(sts) = &plan.statefulset {
        let api = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns);
        ensure(ctx, &api, sts.clone()).await?;
    }
    replace_stuck(c, ctx, ns, &plan.replace).await?;
    let removed = remove_departed(c, ctx, emqx, &plan.departed, f).await;
    historian(c, ctx, ns).await?;
    Ok(removed)
}

/// A rollout step that waits longer than `--rollout-timeout-secs` on one
/// node is reported (Degraded, `RolloutTimedOut`) rather than left to wait
/// in silence; the rollout itself goes on if the node recovers.
fn timeout_check(c: &MqttCluster, ctx: &Context, plan: &Plan, f: &mut Findings) {
    let Rollout::Step { waiting_on, .. } = plan.rollout else {
        ctx.stop_waiting(&key(c));
        return;
    };
    let waited = ctx.waiting(&key(c), &format!("{}/{waiting_on}", plan.template));
    let limit = std::time::Duration::from_secs(ctx.config.rollout_timeout_secs);
    if waited >= limit {
        f.degraded(
            "RolloutTimedOut",
            format!(
                "node {} has not become ready on {} within {} s; the rollout waits there. Check the pod's events and logs, or set spec.version back",
                b::pod_name(c, waiting_on),
                c.spec.image_ref(),
                limit.as_secs()
            ),
        );
    }
}

/// Delete pods stuck on the old template so they start with the new one.
async fn replace_stuck(
    c: &MqttCluster,
    ctx: &Context,
    ns: &str,
    stuck: &[(String, String)],
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for (name, reason) in stuck {
        pods.delete(name, &DeleteParams::default()).await?;
        ctx.event(
            c,
            EventType::Normal,
            "ReplacedStuckNode",
            "Upgrade",
            format!("deleted pod {name} ({reason}) so it starts with the corrected template"),
        )
        .await;
    }
    Ok(())
}

/// Ask EMQX to forget departed members; the ones it let go of.
async fn remove_departed(
    c: &MqttCluster,
    ctx: &Context,
    emqx: &EmqxCluster,
    departed: &[String],
    f: &mut Findings,
) -> Vec<String> {
    let mut removed = Vec::new();
    for name in departed {
        match emqx
            .call(|cl| async move { cl.force_leave(name).await })
            .await
        {
            Ok(()) => {
                ctx.event(
                    c,
                    EventType::Normal,
                    "NodeRemoved",
                    "Scale",
                    format!("removed departed node {name} from the cluster"),
                )
                .await;
                removed.push(name.clone());
            }
            Err(e) => f.degraded(
                "NodeRemovalFailed",
                format!("could not remove departed node {name}: {e}"),
            ),
        }
    }
    removed
}

/// The historian Deployment while `spec.historian` asks for one.
async fn historian(c: &MqttCluster, ctx: &Context, ns: &str) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let image = format!(
        "{}:{}",
        ctx.config.historian_image, ctx.config.agent_version
    );
    match b::historian(c, &image) {
        Some(d) => ensure(ctx, &deployments, d).await.map(drop),
        None => ensure_absent(&deployments, &b::historian_name(c))
            .await
            .map(drop),
    }
}
