//! MqttCluster reconciler.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ListParams, ObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use rand::distributions::Alphanumeric;
use rand::Rng;
use weir_crds::condition::set_condition;
use weir_crds::mqtt_cluster::{ConnectionLimit, NodeStatus, ReclaimPolicy};
use weir_crds::{Condition, ConditionStatus, MqttCluster, MqttClusterStatus, Tenant};

use super::builders::{self as b, RUNTIME_CONFIG_ANNOTATION, TEMPLATE_HASH_ANNOTATION};
use super::rollout::{decide, PodView, Rollout, RolloutInput, STUCK_REASONS};
use crate::apply::{
    create_once, ensure, ensure_absent, labels, standard_conditions, sync_finalizer, sync_status,
};
use crate::context::Context;
use crate::emqx::{ApiKey, EmqxClient, EmqxCluster, EmqxError, EvacuationRequest, Node};
use crate::error::{backoff, Error, Result};

/// Held when `spec.storage.reclaimPolicy: Delete`, to delete the volumes.
pub const PVC_FINALIZER: &str = "weir.dev/pvc-cleanup";
/// `weir.dev/paused: "true"` stops reconciliation of one cluster.
pub const PAUSE_ANNOTATION: &str = "weir.dev/paused";
const CONTROLLER: &str = "mqttcluster";

fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn secret(c: &MqttCluster, name: String, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: c.namespace(),
            labels: Some(labels("mqttcluster", &c.name_any())),
            owner_references: c.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

fn ordinal_of(c: &MqttCluster, pod: &Pod) -> Option<i32> {
    pod.name_any()
        .strip_prefix(&format!("{}-", c.name_any()))?
        .parse()
        .ok()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_stuck(p: &Pod) -> Option<String> {
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|cs| {
        let w = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.clone()?;
        STUCK_REASONS
            .contains(&reason.as_str())
            .then(|| match &w.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason,
            })
    })
}

/// Problems (Degraded) and work in flight (Progressing) found this round.
#[derive(Default)]
struct Findings {
    degraded: Vec<(String, String)>,
    progressing: Vec<(String, String)>,
}

impl Findings {
    fn degraded(&mut self, reason: &str, message: impl Into<String>) {
        self.degraded.push((reason.into(), message.into()));
    }
    fn progressing(&mut self, reason: &str, message: impl Into<String>) {
        self.progressing.push((reason.into(), message.into()));
    }
}

pub async fn reconcile(c: Arc<MqttCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = c
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let client = ctx.client.clone();
    let api: Api<MqttCluster> = Api::namespaced(client.clone(), &ns);

    if c.metadata.deletion_timestamp.is_some() {
        return cleanup(&c, &api, &ctx).await;
    }
    if c.annotations().get(PAUSE_ANNOTATION).map(String::as_str) == Some("true") {
        return paused(&c, &api).await;
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
    create_once(&secrets, || {
        secret(
            &c,
            b::cookie_secret_name(&c),
            [("cookie".to_string(), random(64))].into(),
        )
    })
    .await?;
    let (api_secret, _) = create_once(&secrets, || {
        let (key, sec) = (format!("weir-{}", random(12)), random(40));
        secret(
            &c,
            b::api_secret_name(&c),
            [
                ("username".to_string(), "admin".to_string()),
                ("password".to_string(), random(24)),
                ("api-key".to_string(), key.clone()),
                ("api-secret".to_string(), sec.clone()),
                ("bootstrap".to_string(), format!("{key}:{sec}\n")),
            ]
            .into(),
        )
    })
    .await?;
    let api_key = match (
        secret_value(&api_secret, "api-key"),
        secret_value(&api_secret, "api-secret"),
    ) {
        (Some(key), Some(secret)) => Some(ApiKey { key, secret }),
        _ => {
            f.degraded("CredentialsInvalid", format!("Secret {} lacks api-key/api-secret; delete it and the operator generates a new one", b::api_secret_name(&c)));
            None
        }
    };

    check_preconditions(&c, &ctx, &mut f).await?;

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
    let limit = tenant_connection_limit(&c, &ctx, &ns).await?;
    let per_listener = limit.as_ref().map(|l| l.per_listener);

    // Configuration: the file for restarts, the API for running nodes.
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let desired_cm = b::config_map(&c, &ctx.config.default_jwks_url, per_listener);
    let live_cm = cm_api.get_opt(&b::config_name(&c)).await?;
    let want_runtime = desired_cm
        .annotations()
        .get(RUNTIME_CONFIG_ANNOTATION)
        .cloned();
    let have_runtime = live_cm
        .as_ref()
        .and_then(|m| m.annotations().get(RUNTIME_CONFIG_ANNOTATION).cloned());
    let runtime = b::runtime_settings(&c, per_listener);
    let mut write_cm = true;
    if live_cm.is_some() && want_runtime != have_runtime && !runtime.is_empty() && !ready.is_empty()
    {
        if nodes.is_some() {
            let hocon = b::hocon_lines(&runtime);
            match emqx
                .call(|cl| {
                    let h = hocon.clone();
                    async move { cl.merge_config(&h).await }
                })
                .await
            {
                Ok(()) => {
                    ctx.event(
                        &*c,
                        EventType::Normal,
                        "ConfigApplied",
                        "Configure",
                        format!(
                            "applied {} setting(s) at runtime: {}",
                            runtime.len(),
                            runtime.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .await;
                }
                Err(e) => {
                    write_cm = false;
                    f.degraded("ConfigRejected", format!("EMQX refused spec.config: {e}; fix the setting and the operator applies it again"));
                }
            }
        } else {
            // Running nodes must get the change through the API; keep the
            // old file so the difference stays visible and is retried.
            write_cm = false;
            f.progressing(
                "ConfigPending",
                "waiting for EMQX's API to apply spec.config at runtime",
            );
        }
    }
    if write_cm {
        ensure(&ctx, &cm_api, desired_cm).await?;
    }

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
    let mut replicas = c.spec.replicas;
    if let Some(live) = live_replicas.filter(|l| *l > c.spec.replicas) {
        replicas = live;
        let leaving = live - 1;
        match evacuate(&c, &emqx, nodes.as_deref(), leaving).await {
            Ok(Evacuation::Drained) => {
                replicas = leaving;
                ctx.event(
                    &*c,
                    EventType::Normal,
                    "ScaledDown",
                    "Scale",
                    format!("node {} evacuated; removing it", b::pod_name(&c, leaving)),
                )
                .await;
            }
            Ok(Evacuation::Unavailable) => {
                replicas = leaving;
                ctx.event(&*c, EventType::Warning, "EvacuationUnavailable", "Scale", format!("this EMQX edition offers no node evacuation; clients of {} reconnect to the other nodes", b::pod_name(&c, leaving))).await;
            }
            Ok(Evacuation::Started) => {
                f.progressing(
                    "Evacuating",
                    format!(
                        "evacuating node {} before removing it",
                        b::pod_name(&c, leaving)
                    ),
                );
                ctx.event(
                    &*c,
                    EventType::Normal,
                    "EvacuationStarted",
                    "Scale",
                    format!("evacuating node {}", b::pod_name(&c, leaving)),
                )
                .await;
            }
            Ok(Evacuation::InProgress(msg)) => f.progressing("Evacuating", msg),
            Err(e) => f.degraded(
                "EvacuationFailed",
                format!("could not evacuate node {}: {e}", b::pod_name(&c, leaving)),
            ),
        }
    }

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
    let rollout = decide(&input);
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
    ensure(
        &ctx,
        &sts_api,
        b::statefulset(&c, replicas, rollout.partition(), claim),
    )
    .await?;

    // A pod stuck on a bad template is never replaced by the StatefulSet
    // controller on its own (emqx-operator's "upgrade stuck after the image
    // was corrected"): once the template changed, replace it.
    if input.template_changed {
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
    let generation = c.metadata.generation;
    let phase = if !f.degraded.is_empty() {
        "Degraded"
    } else if f.progressing.iter().any(|p| p.0 == "Evacuating") || replicas != c.spec.replicas {
        "Scaling"
    } else if matches!(rollout, Rollout::Step { .. }) {
        "Upgrading"
    } else if !f.progressing.is_empty() {
        "Provisioning"
    } else {
        "Ready"
    };
    let all_ready = phase == "Ready";
    let join =
        |v: &[(String, String)]| v.iter().map(|x| x.1.clone()).collect::<Vec<_>>().join("; ");
    let mut conditions = standard_conditions(
        &old.conditions,
        generation,
        if all_ready {
            (
                true,
                "ClusterReady",
                format!("{running_count} of {} nodes running", c.spec.replicas),
            )
        } else {
            (
                false,
                f.degraded
                    .first()
                    .or(f.progressing.first())
                    .map_or("NotReady", |x| x.0.as_str()),
                format!("{running_count} of {} nodes running", c.spec.replicas),
            )
        },
        match f.progressing.first() {
            Some((r, _)) => (true, r.as_str(), join(&f.progressing)),
            None => (false, "Reconciled", "nothing in progress".into()),
        },
        match f.degraded.first() {
            Some((r, _)) => (true, r.as_str(), join(&f.degraded)),
            None => (false, "Healthy", "no problems".into()),
        },
    );
    set_condition(
        &mut conditions,
        Condition::new(
            "Paused",
            ConditionStatus::False,
            "Reconciling",
            "the operator manages this cluster",
            generation,
        ),
    );
    let mut node_status: Vec<NodeStatus> = nodes
        .as_ref()
        .map(|ns| {
            ns.iter()
                .filter(|n| !removed.contains(&n.node))
                .map(|n| NodeStatus {
                    name: n.node.clone(),
                    status: n.node_status.clone(),
                    version: n.version.clone(),
                    connections: n.connections,
                })
                .collect()
        })
        .unwrap_or_else(|| old.nodes.clone());
    node_status.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status = MqttClusterStatus {
        phase: Some(phase.into()),
        replicas: running_count,
        ready_replicas: ready_count,
        ready_text: Some(format!("{ready_count}/{}", c.spec.replicas)),
        current_version: if rollout == Rollout::Idle && live_sts.is_some() {
            Some(c.spec.version.clone())
        } else {
            old.current_version.clone()
        },
        selector: Some(selector.clone()),
        endpoints: b::endpoints(&c),
        nodes: node_status,
        connection_limit: limit,
        observed_generation: generation,
        conditions,
    };
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
            (EventType::Warning, join(&f.degraded))
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

/// The tenant's `quota.maxMqttConnections` share of this cluster, when its
/// namespace belongs to a Tenant (`weir-<tenant>`). The quota is shared by
/// every node of the tenant's clusters.
async fn tenant_connection_limit(
    c: &MqttCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Option<ConnectionLimit>> {
    let Some(name) = ns.strip_prefix("weir-") else {
        return Ok(None);
    };
    let Some(tenant) = Api::<Tenant>::all(ctx.client.clone()).get_opt(name).await? else {
        return Ok(None);
    };
    if tenant.namespace_name() != ns {
        return Ok(None);
    }
    let others: u32 = Api::<MqttCluster>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|o| o.name_any() != c.name_any() && o.metadata.deletion_timestamp.is_none())
        .map(|o| o.spec.replicas.max(0) as u32)
        .sum();
    Ok(Some(b::connection_limit(
        c,
        tenant.spec.quota.max_mqtt_connections,
        others + c.spec.replicas.max(0) as u32,
    )))
}

/// Things the API server accepted but that cannot work.
async fn check_preconditions(c: &MqttCluster, ctx: &Context, f: &mut Findings) -> Result<()> {
    if c.spec.needs_license() && c.spec.replicas > 1 && c.spec.license.is_none() {
        f.degraded("LicenseRequired", format!("EMQX {} needs a license to cluster more than one node; set spec.license.secretRef or use the 5.8 line (e.g. 5.8.6)", c.spec.version));
    }
    let ns = c.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut cert_manager: Option<bool> = None;
    for l in &c.spec.listeners {
        if let Some(name) = &l.tls_secret_ref {
            if secrets.get_opt(name).await?.is_some() {
                continue;
            }
            // Asked once per reconcile, only when a TLS Secret is missing.
            if cert_manager.is_none() {
                let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
                cert_manager = Some(
                    crds.get_opt("certificates.cert-manager.io")
                        .await?
                        .is_some(),
                );
            }
            if cert_manager == Some(true) {
                let certs: Api<DynamicObject> =
                    Api::namespaced_with(ctx.client.clone(), &ns, &b::certificate_resource());
                ensure(
                    ctx,
                    &certs,
                    b::certificate(c, name, &ctx.config.cert_issuer),
                )
                .await?;
                f.progressing("CertificatePending", format!("waiting for cert-manager (ClusterIssuer {}) to issue TLS Secret {name} for listener {}", ctx.config.cert_issuer, l.name));
            } else {
                f.degraded("TlsSecretMissing", format!("listener {} needs TLS Secret {name} in namespace {ns}; create it (type kubernetes.io/tls) or install cert-manager and the operator requests it", l.name));
            }
        }
    }
    if let Some(lic) = &c.spec.license {
        if secrets.get_opt(&lic.secret_ref).await?.is_none() {
            f.degraded(
                "LicenseSecretMissing",
                format!(
                    "license Secret {} (key `license`) does not exist in namespace {ns}",
                    lic.secret_ref
                ),
            );
        }
    }
    if let Some(h) = &c.spec.historian {
        if secrets.get_opt(&h.database_secret_ref).await?.is_none() {
            f.degraded(
                "HistorianSecretMissing",
                format!(
                    "historian database Secret {} (key `url`) does not exist in namespace {ns}",
                    h.database_secret_ref
                ),
            );
        }
    }
    if let Some(sc) = &c.spec.storage.storage_class_name {
        if Api::<StorageClass>::all(ctx.client.clone())
            .get_opt(sc)
            .await?
            .is_none()
        {
            f.degraded("StorageClassMissing", format!("storage class {sc} does not exist; volumes cannot be provisioned. Create it or pick an existing class in a new cluster"));
        }
    }
    Ok(())
}

enum Evacuation {
    Started,
    InProgress(String),
    Drained,
    /// This EMQX edition has no evacuation API.
    Unavailable,
}

async fn evacuate(
    c: &MqttCluster,
    emqx: &EmqxCluster,
    nodes: Option<&[Node]>,
    ordinal: i32,
) -> Result<Evacuation, EmqxError> {
    let node = b::node_name(c, ordinal);
    let Some(nodes) = nodes else {
        return Err(EmqxError::NoNodeAnswered {
            tried: emqx.nodes.len(),
        });
    };
    if !nodes.iter().any(|n| n.node == node && n.running()) {
        // Already gone from the cluster: nothing left to drain.
        return Ok(Evacuation::Drained);
    }
    let status = match emqx
        .call(|cl| async move { cl.rebalance_status().await })
        .await
    {
        Err(EmqxError::NotAvailable(_)) => return Ok(Evacuation::Unavailable),
        other => other?,
    };
    if let Some(e) = status.evacuations.iter().find(|e| e.node == node) {
        return Ok(if e.drained() {
            Evacuation::Drained
        } else {
            // Live counts go to the log, not the status: a status that
            // changes on every poll would trigger the next reconcile at once.
            tracing::info!(
                node = %node,
                connections = e.stats.current_connected,
                sessions = e.stats.current_sessions,
                "evacuation in progress"
            );
            Evacuation::InProgress(format!(
                "evacuating node {}: waiting for its connections and sessions to move to the other nodes",
                b::pod_name(c, ordinal)
            ))
        });
    }
    let req = EvacuationRequest {
        conn_evict_rate: 500,
        sess_evict_rate: 500,
        wait_takeover: 30,
        migrate_to: nodes
            .iter()
            .filter(|n| {
                n.running() && b::node_ordinal(c, &n.node).is_some_and(|o| o < c.spec.replicas)
            })
            .map(|n| n.node.clone())
            .collect(),
    };
    match emqx
        .call(|cl| {
            let (node, req) = (node.clone(), req.clone());
            async move { cl.start_evacuation(&node, &req).await }
        })
        .await
    {
        Ok(()) => Ok(Evacuation::Started),
        Err(EmqxError::NotAvailable(_)) => Ok(Evacuation::Unavailable),
        Err(e) => Err(e),
    }
}

async fn paused(c: &MqttCluster, api: &Api<MqttCluster>) -> Result<Action> {
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
async fn cleanup(c: &MqttCluster, api: &Api<MqttCluster>, ctx: &Context) -> Result<Action> {
    if !c.finalizers().iter().any(|f| f == PVC_FINALIZER) {
        return Ok(Action::await_change());
    }
    if c.spec.storage.reclaim_policy == ReclaimPolicy::Delete {
        let pvcs: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default());
        let selector = b::selector_labels(c)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        pvcs.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
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
    Action::requeue(backoff(n))
}
