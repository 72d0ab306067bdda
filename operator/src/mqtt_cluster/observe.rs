//! The facts one reconcile round decides on: the live StatefulSet, the
//! cluster's pods, EMQX's own view of its nodes and the tenant's quota.
//! Only reads happen here; what to do about the facts is [`super::plan`]'s.
//!
//! Two facts are also problems a user must see (pods the StatefulSet cannot
//! create, an EMQX API that does not answer); they are recorded as findings
//! as soon as they are seen, ahead of what later steps find.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use weir_crds::mqtt_cluster::ConnectionLimit;
use weir_crds::MqttCluster;

use super::builders as b;
use super::findings::Findings;
use super::pods::{label_selector, ordinal_of, pod_ready};
use super::preconditions;
use crate::context::Context;
use crate::emqx::{ApiKey, EmqxClient, EmqxCluster, Node};
use crate::error::Result;

/// What the round saw. Plain data, so [`super::plan`] is tested without I/O.
#[derive(Clone, Debug, Default)]
pub(super) struct Facts {
    /// The StatefulSet as the API server holds it; None before the first round.
    pub live_sts: Option<StatefulSet>,
    /// The cluster's pods, by ordinal.
    pub pods: Vec<Pod>,
    /// EMQX's node list; None when no node was ready or none answered.
    pub nodes: Option<Vec<Node>>,
    /// The tenant's connection quota share, when the namespace has a Tenant.
    pub limit: Option<ConnectionLimit>,
}

impl Facts {
    pub fn ready_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| pod_ready(p))
    }

    /// `spec.replicas` of the live StatefulSet.
    pub fn live_replicas(&self) -> Option<i32> {
        self.live_sts.as_ref().and_then(|s| s.spec.replicas)
    }
}

/// Read the facts, with one EMQX client per ready pod (empty without an
/// API key) for the steps that talk to EMQX.
pub(super) async fn observe(
    c: &MqttCluster,
    ctx: &Context,
    ns: &str,
    api_key: Option<&ApiKey>,
    f: &mut Findings,
) -> Result<(Facts, EmqxCluster)> {
    let client = ctx.client.clone();
    let live_sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(&b::name(c))
        .await?;
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&label_selector(c)))
        .await?
        .items;
    pods.sort_by_key(|p| ordinal_of(c, p));
    let missing = live_sts
        .as_ref()
        .is_some_and(|live| (pods.len() as i32) < live.spec.replicas.unwrap_or(0));
    if missing {
        if let Some(why) = pod_creation_failure(c, ctx, ns).await? {
            f.degraded(
                "PodCreationFailed",
                format!("the StatefulSet cannot create EMQX pods: {why}"),
            );
        }
    }
    let mut facts = Facts {
        live_sts,
        pods,
        nodes: None,
        limit: None,
    };
    let emqx = EmqxCluster {
        nodes: match api_key {
            Some(key) => facts
                .ready_pods()
                .map(|p| {
                    EmqxClient::new(
                        ctx.http.clone(),
                        ctx.emqx.base_url(c, &p.name_any()),
                        key.clone(),
                    )
                })
                .collect(),
            None => vec![],
        },
    };
    facts.nodes = emqx_nodes(&emqx, f).await;
    facts.limit = preconditions::tenant_connection_limit(c, ctx, ns).await?;
    Ok((facts, emqx))
}

/// Why the StatefulSet controller could not create pods (quota exceeded,
/// admission denied, ...), from its latest `FailedCreate` event.
async fn pod_creation_failure(c: &MqttCluster, ctx: &Context, ns: &str) -> Result<Option<String>> {
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=StatefulSet,involvedObject.name={}",
        b::name(c)
    ));
    let failed = events.list(&lp).await?.items.into_iter().rfind(|e| {
        e.reason.as_deref() == Some("FailedCreate")
            && e.involved_object.name.as_deref() == Some(b::name(c).as_str())
    });
    Ok(failed.map(|e| e.message.unwrap_or_default()))
}

/// EMQX's node list, asked of any ready node; None when there is none to
/// ask or none answered (a finding then).
async fn emqx_nodes(emqx: &EmqxCluster, f: &mut Findings) -> Option<Vec<Node>> {
    if emqx.nodes.is_empty() {
        return None;
    }
    match emqx.call(|cl| async move { cl.nodes().await }).await {
        Ok(n) => Some(n),
        Err(e) => {
            f.degraded("EmqxApiUnreachable", format!("EMQX's HTTP API did not answer on any ready node: {e}; check the pods' logs and the API key Secret"));
            None
        }
    }
}
