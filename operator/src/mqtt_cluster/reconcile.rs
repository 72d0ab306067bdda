//! MqttCluster reconciler: one round observes the pods and EMQX's own view
//! of its nodes, then configures, scales, upgrades and reports. Each step
//! lives in its own module; this one orders them and writes the status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use weir_crds::mqtt_cluster::ReclaimPolicy;
use weir_crds::MqttCluster;

use super::builders::{self as b, TEMPLATE_HASH_ANNOTATION};
use super::findings::Findings;
use super::pods::{ordinal_of, pod_ready, pod_stuck};
use super::rollout::{decide, PodView, Rollout, RolloutInput};
use super::{
    credentials, lifecycle, preconditions, runtime_config, scale, status, PAUSE_ANNOTATION,
    PVC_FINALIZER,
};
use crate::apply::{ensure, ensure_absent, sync_finalizer, sync_status};
use crate::context::Context;
use crate::emqx::{EmqxClient, EmqxCluster, Node};
use crate::error::{backoff, Error, Result};

const CONTROLLER: &str = "mqttcluster";

pub async fn reconcile(c: Arc<MqttCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = c
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let client = ctx.client.clone();
    let api: Api<MqttCluster> = Api::namespaced(client.clone(), &ns);

    if c.metadata.deletion_timestamp.is_some() {
        return lifecycle::cleanup(&c, &api, &ctx).await;
    }
    if c.annotations().get(PAUSE_ANNOTATION).map(String::as_str) == Some("true") {
        return lifecycle::paused(&c, &api).await;
    }
    sync_finalizer(
        &api,
        &c,
        PVC_FINALIZER,
        c.spec.storage.reclaim_policy == ReclaimPolicy::Delete,
    )
    .await?;

    let mut f = Findings::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let api_key = credentials::ensure(&c, &secrets, &mut f).await?;

    preconditions::check(&c, &ctx, &mut f).await?;

    // What runs now.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let live_sts = sts_api.get_opt(&b::name(&c)).await?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = b::selector_labels(&c)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    pods.sort_by_key(|p| ordinal_of(&c, p));
    let ready: Vec<&Pod> = pods.iter().filter(|p| pod_ready(p)).collect();
    if let Some(live) = &live_sts {
        if (pods.len() as i32) < live.spec.replicas.unwrap_or(0) {
            // Pods missing: say why when the StatefulSet controller could not
            // create them (quota exceeded, admission denied, ...).
            let events: Api<CoreEvent> = Api::namespaced(client.clone(), &ns);
            let lp = ListParams::default().fields(&format!(
                "involvedObject.kind=StatefulSet,involvedObject.name={}",
                b::name(&c)
            ));
            let failed = events.list(&lp).await?.items.into_iter().rfind(|e| {
                e.reason.as_deref() == Some("FailedCreate")
                    && e.involved_object.name.as_deref() == Some(b::name(&c).as_str())
            });
            if let Some(e) = failed {
                f.degraded(
                    "PodCreationFailed",
                    format!(
                        "the StatefulSet cannot create EMQX pods: {}",
                        e.message.unwrap_or_default()
                    ),
                );
            }
        }
    }
    let emqx = EmqxCluster {
        nodes: match &api_key {
            Some(key) => ready
                .iter()
                .map(|p| {
                    EmqxClient::new(
                        ctx.http.clone(),
                        ctx.emqx.base_url(&c, &p.name_any()),
                        key.clone(),
                    )
                })
                .collect(),
            None => vec![],
        },
    };
    let nodes: Option<Vec<Node>> = if emqx.nodes.is_empty() {
        None
    } else {
        match emqx.call(|cl| async move { cl.nodes().await }).await {
            Ok(n) => Some(n),
            Err(e) => {
                f.degraded("EmqxApiUnreachable", format!("EMQX's HTTP API did not answer on any ready node: {e}; check the pods' logs and the API key Secret"));
                None
            }
        }
    };

    // The tenant's connection quota, enforced as EMQX listener limits.
    let limit = preconditions::tenant_connection_limit(&c, &ctx, &ns).await?;
    let per_listener = limit.as_ref().map(|l| l.per_listener);

    // Configuration: the file for restarts, the API for running nodes.
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let running_nodes = runtime_config::Nodes {
        emqx: &emqx,
        any_ready: !ready.is_empty(),
        api_answered: nodes.is_some(),
    };
    runtime_config::sync(&c, &ctx, &cm_api, running_nodes, per_listener, &mut f).await?;

    let svc: Api<Service> = Api::namespaced(client.clone(), &ns);
    ensure(&ctx, &svc, b::headless_service(&c)).await?;
    ensure(&ctx, &svc, b::client_service(&c)).await?;
    ensure(&ctx, &svc, b::dashboard_service(&c)).await?;
    ensure(
        &ctx,
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        b::pod_disruption_budget(&c),
    )
    .await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    match b::external_mqtt_policy(&c) {
        Some(p) => {
            ensure(&ctx, &policies, p).await?;
        }
        None => {
            ensure_absent(&policies, &b::external_policy_name(&c)).await?;
        }
    }

    // Scale: down one node at a time, each evacuated first.
    let live_replicas = live_sts.as_ref().and_then(|s| s.spec.replicas);
    let replicas = scale::replicas(&c, &ctx, &emqx, nodes.as_deref(), live_replicas, &mut f).await;

    // Upgrade: the partition gate.
    let desired_template = b::template_hash(&c);
    let live_template = live_sts
        .as_ref()
        .and_then(|s| s.annotations().get(TEMPLATE_HASH_ANNOTATION).cloned());
    let sts_status = live_sts.as_ref().and_then(|s| s.status.clone());
    let running: Option<BTreeSet<i32>> = nodes.as_ref().map(|ns| {
        ns.iter()
            .filter(|n| n.running())
            .filter_map(|n| b::node_ordinal(&c, &n.node))
            .collect()
    });
    let input = RolloutInput {
        replicas,
        exists: live_sts.is_some(),
        template_changed: live_sts.is_some()
            && live_template.as_deref() != Some(desired_template.as_str()),
        live_partition: live_sts
            .as_ref()
            .and_then(|s| {
                s.spec
                    .update_strategy
                    .as_ref()?
                    .rolling_update
                    .as_ref()?
                    .partition
            })
            .unwrap_or(0),
        observed_current: sts_status.as_ref().and_then(|s| s.observed_generation)
            >= live_sts.as_ref().and_then(|s| s.metadata.generation),
        update_revision: sts_status.as_ref().and_then(|s| s.update_revision.clone()),
        current_revision: sts_status.as_ref().and_then(|s| s.current_revision.clone()),
        pods: pods
            .iter()
            .filter_map(|p| {
                Some(PodView {
                    ordinal: ordinal_of(&c, p)?,
                    revision: p.labels().get("controller-revision-hash").cloned(),
                    ready: pod_ready(p),
                    stuck: pod_stuck(p),
                })
            })
            .collect(),
        running_nodes: running.clone(),
    };
    // EMQX 5.9+ without a license: nothing on the StatefulSet moves, so a
    // working 5.8 cluster is never rolled across the licence boundary.
    let hold = preconditions::license_required(&c) && live_sts.is_some();
    let rollout = if hold { Rollout::Idle } else { decide(&input) };
    timeout_check(&c, &ctx, &rollout, &desired_template, &mut f);
    match &rollout {
        Rollout::Idle => {}
        Rollout::Step { waiting_on, .. } => f.progressing("Upgrading", format!("updating node {} to {}; one node at a time", b::pod_name(&c, *waiting_on), c.spec.image_ref())),
        Rollout::Stalled { ordinal, reason, .. } => f.degraded(
            "UpgradeStalled",
            format!("node {} on {} cannot start ({reason}); the rollout stopped there. Fix spec.version or spec.image and the operator replaces the stuck node", b::pod_name(&c, *ordinal), c.spec.image_ref()),
        ),
    }
    let claim = live_sts
        .as_ref()
        .and_then(|s| s.spec.volume_claim_templates.as_ref()?.first().cloned())
        .map(|live| {
            b::data_claim(
                b::claim_size(&live).unwrap_or(&c.spec.storage.size),
                live.spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone()),
            )
        });
    if let Some(cl) = &claim {
        let live_size = b::claim_size(cl);
        if live_size != Some(c.spec.storage.size.as_str()) {
            f.degraded("StorageSizeImmutable", format!("spec.storage.size {} differs from the volumes' {}; StatefulSet volumes cannot be resized here, expand the PVCs directly", c.spec.storage.size, live_size.unwrap_or_default()));
        }
    }
    if !hold {
        ensure(
            &ctx,
            &sts_api,
            b::statefulset(&c, replicas, rollout.partition(), claim),
        )
        .await?;
    }

    // A pod stuck on a bad template is never replaced by the StatefulSet
    // controller on its own (emqx-operator's "upgrade stuck after the image
    // was corrected"): once the template changed, replace it.
    if input.template_changed && !hold {
        for p in &pods {
            if let Some(reason) = pod_stuck(p) {
                pods_api
                    .delete(&p.name_any(), &DeleteParams::default())
                    .await?;
                ctx.event(
                    &*c,
                    EventType::Normal,
                    "ReplacedStuckNode",
                    "Upgrade",
                    format!(
                        "deleted pod {} ({reason}) so it starts with the corrected template",
                        p.name_any()
                    ),
                )
                .await;
            }
        }
    }

    // Nodes that left for good (scale-down) must not linger as stopped members.
    let mut removed: Vec<String> = Vec::new();
    if let Some(ns_list) = &nodes {
        for n in ns_list.iter().filter(|n| !n.running()) {
            let departed = b::node_ordinal(&c, &n.node).is_none_or(|o| o >= replicas);
            if departed {
                let name = n.node.clone();
                match emqx
                    .call(|cl| {
                        let name = name.clone();
                        async move { cl.force_leave(&name).await }
                    })
                    .await
                {
                    Ok(()) => {
                        ctx.event(
                            &*c,
                            EventType::Normal,
                            "NodeRemoved",
                            "Scale",
                            format!("removed departed node {name} from the cluster"),
                        )
                        .await;
                        removed.push(name);
                    }
                    Err(e) => f.degraded(
                        "NodeRemovalFailed",
                        format!("could not remove departed node {name}: {e}"),
                    ),
                }
            }
        }
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    match b::historian(
        &c,
        &format!(
            "{}:{}",
            ctx.config.historian_image, ctx.config.agent_version
        ),
    ) {
        Some(d) => {
            ensure(&ctx, &deployments, d).await?;
        }
        None => {
            ensure_absent(&deployments, &b::historian_name(&c)).await?;
        }
    }

    // Status.
    let ready_count = ready
        .iter()
        .filter(|p| ordinal_of(&c, p).is_some_and(|o| o < replicas))
        .count() as i32;
    let running_count = running.as_ref().map_or(ready_count, |r| {
        r.iter().filter(|o| **o < replicas).count() as i32
    });
    if rollout == Rollout::Idle
        && live_replicas.is_some()
        && ready_count < c.spec.replicas
        && f.progressing.is_empty()
    {
        f.progressing(
            "Provisioning",
            format!("{ready_count} of {} nodes ready", c.spec.replicas),
        );
    }
    if live_sts.is_none() {
        f.progressing("Provisioning", "creating the EMQX nodes");
    }
    let old = c.status.clone().unwrap_or_default();
    let (mut status, phase) = status::build(
        &c,
        &f,
        status::Observed {
            replicas,
            ready: ready_count,
            running: running_count,
            upgrading: matches!(rollout, Rollout::Step { .. }),
            version_current: rollout == Rollout::Idle && live_sts.is_some() && !hold,
            selector: selector.clone(),
            limit,
            nodes: nodes.as_ref().map(|ns| {
                ns.iter()
                    .filter(|n| !removed.contains(&n.node))
                    .cloned()
                    .collect()
            }),
        },
    );
    // Connection counts move all the time. Writing them on every reconcile
    // would make each status write trigger the next (a hot loop); they are
    // refreshed with any other change, or once per refresh interval.
    if let Some(previous) = &c.status {
        let mut counts_kept = status.clone();
        for n in &mut counts_kept.nodes {
            if let Some(o) = previous.nodes.iter().find(|o| o.name == n.name) {
                n.connections = o.connections;
            }
        }
        let refresh = Duration::from_secs(ctx.config.status_refresh_secs);
        if &counts_kept == previous && !ctx.due(&key(&c), refresh) {
            status = counts_kept;
        }
    }
    let wrote = sync_status(&api, &c, c.status.as_ref(), &status).await?;
    if wrote {
        ctx.mark(&key(&c));
    }
    if wrote && old.phase.as_deref() != Some(phase) {
        let (t, msg) = if phase == "Degraded" {
            (EventType::Warning, status::join(&f.degraded))
        } else {
            (EventType::Normal, format!("cluster is {phase}"))
        };
        ctx.event(&*c, t, phase, "Reconcile", msg).await;
    }
    ctx.succeeded(&key(&c));
    Ok(Action::requeue(if !f.progressing.is_empty() {
        Duration::from_secs(5)
    } else if !f.degraded.is_empty() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(60)
    }))
}

/// A rollout step that waits longer than `--rollout-timeout-secs` on one
/// node is reported (Degraded, `RolloutTimedOut`) rather than left to wait
/// in silence; the rollout itself goes on if the node recovers.
fn timeout_check(
    c: &MqttCluster,
    ctx: &Context,
    rollout: &Rollout,
    template: &str,
    f: &mut Findings,
) {
    let Rollout::Step { waiting_on, .. } = rollout else {
        ctx.stop_waiting(&key(c));
        return;
    };
    let waited = ctx.waiting(&key(c), &format!("{template}/{waiting_on}"));
    let limit = Duration::from_secs(ctx.config.rollout_timeout_secs);
    if waited >= limit {
        f.degraded(
            "RolloutTimedOut",
            format!(
                "node {} has not become ready on {} within {} s; the rollout waits there. Check the pod's events and logs, or set spec.version back",
                b::pod_name(c, *waiting_on),
                c.spec.image_ref(),
                limit.as_secs()
            ),
        );
    }
}

fn key(c: &MqttCluster) -> String {
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
