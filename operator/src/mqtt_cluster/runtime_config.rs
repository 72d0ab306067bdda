//! `emqx.conf` for nodes that start, and EMQX's config API for nodes that
//! run: a changed runtime setting is merged into the running cluster, a
//! removed one is reset to EMQX's default (the merged value would otherwise
//! live on in the nodes' `cluster.hocon`). The ConfigMap is written only
//! after the running nodes took the change, so a refused or pending change
//! stays visible as a difference and is tried again.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use weir_crds::MqttCluster;

use super::builders::{self as b, RUNTIME_CONFIG_ANNOTATION, RUNTIME_KEYS_ANNOTATION};
use super::findings::Findings;
use crate::apply::ensure;
use crate::context::Context;
use crate::emqx::{EmqxCluster, EmqxError};
use crate::error::Result;

/// Where the running nodes are: some pod is ready, and EMQX's API answered.
pub(super) struct Nodes<'a> {
    pub emqx: &'a EmqxCluster,
    pub any_ready: bool,
    pub api_answered: bool,
}

pub(super) async fn sync(
    c: &MqttCluster,
    ctx: &Context,
    cm_api: &Api<ConfigMap>,
    nodes: Nodes<'_>,
    per_listener: Option<u32>,
    f: &mut Findings,
) -> Result<()> {
    let jwks = &ctx.config.default_jwks_url;
    let desired = b::config_map(c, jwks, per_listener);
    let live = cm_api.get_opt(&b::config_name(c)).await?;
    let annotation = |m: &ConfigMap, key: &str| m.annotations().get(key).cloned();
    let changed = live.as_ref().is_some_and(|l| {
        annotation(l, RUNTIME_CONFIG_ANNOTATION) != annotation(&desired, RUNTIME_CONFIG_ANNOTATION)
    });
    if changed && nodes.any_ready {
        if !nodes.api_answered {
            f.progressing(
                "ConfigPending",
                "waiting for EMQX's API to apply spec.config at runtime",
            );
            return Ok(());
        }
        let runtime = b::runtime_settings(c, jwks, per_listener);
        let before: BTreeSet<String> = live
            .as_ref()
            .and_then(|l| annotation(l, RUNTIME_KEYS_ANNOTATION))
            .map(|k| {
                k.split(',')
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let removed: Vec<String> = before
            .into_iter()
            .filter(|k| !runtime.contains_key(k))
            .collect();
        match apply(nodes.emqx, &b::hocon_lines(&runtime), &removed).await {
            Ok(()) => {
                let mut what = format!(
                    "applied {} setting(s) at runtime: {}",
                    runtime.len(),
                    runtime.keys().cloned().collect::<Vec<_>>().join(", ")
                );
                if !removed.is_empty() {
                    what.push_str(&format!(
                        "; reset to EMQX's default: {}",
                        removed.join(", ")
                    ));
                }
                ctx.event(c, EventType::Normal, "ConfigApplied", "Configure", what)
                    .await;
            }
            Err(e) => {
                f.degraded("ConfigRejected", format!("EMQX refused spec.config: {e}; fix the setting and the operator applies it again"));
                return Ok(());
            }
        }
    }
    ensure(ctx, cm_api, desired).await?;
    Ok(())
}

async fn apply(emqx: &EmqxCluster, hocon: &str, removed: &[String]) -> Result<(), EmqxError> {
    emqx.call(|cl| async move { cl.merge_config(hocon).await })
        .await?;
    for key in removed {
        match emqx
            .call(|cl| async move { cl.reset_config(key).await })
            .await
        {
            // A setting EMQX does not know (e.g. of a listener that is gone)
            // has nothing to reset.
            Ok(()) | Err(EmqxError::NotAvailable(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
