//! EdgeGateway reconciler.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use weir_crds::bundle::{self, TrustAnchor};
use weir_crds::gateway::validate::validate_spec;
use weir_crds::mqtt_cluster::{ListenerProtocol, ReclaimPolicy};
use weir_crds::{EdgeGateway, EdgeGatewayStatus, GatewayMode, MqttCluster};

use super::builders::{
    self as b, CONFIG_HASH, CONFIG_VERSION, REISSUE_ANNOTATION, REISSUE_DONE, ROTATE_ANNOTATION,
};
use crate::apply::{apply, ensure, ensure_absent, quantity, standard_conditions, sync_status};
use crate::context::Context;
use crate::error::{backoff, Error, Result};
use crate::mqtt_cluster::builders as mqtt_builders;

const CONTROLLER: &str = "edgegateway";
/// Rotation requests remembered on the key Secret (so two gateways with
/// different request values never rotate back and forth).
const MAX_ROTATIONS_REMEMBERED: usize = 32;

pub async fn reconcile(gw: Arc<EdgeGateway>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = gw
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let client = ctx.client.clone();
    let api: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    if gw.metadata.deletion_timestamp.is_some() {
        // Everything it made is owned by it and goes by garbage collection.
        return Ok(Action::await_change());
    }
    let old = gw.status.clone().unwrap_or_default();
    let generation = gw.metadata.generation;

    if let Err(errors) = validate_spec(&gw.spec) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let status = EdgeGatewayStatus {
            phase: Some("Degraded".into()),
            observed_generation: generation,
            conditions: standard_conditions(
                &old.conditions,
                generation,
                (
                    false,
                    "InvalidConfig",
                    "the config was not signed; the agent keeps its last good config".into(),
                ),
                (false, "InvalidConfig", "waiting for a valid spec".into()),
                (true, "InvalidConfig", message.clone()),
            ),
            ..old.clone()
        };
        if sync_status(&api, &gw, gw.status.as_ref(), &status).await? {
            ctx.event(&*gw, EventType::Warning, "InvalidConfig", "Sign", message)
                .await;
        }
        return Ok(Action::await_change());
    }

    // The tenant's signing key, created on first use and rotated on request.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let (mut key, mut rotation, mut done) = match secrets.get_opt(b::SIGNING_KEY_SECRET).await? {
        Some(s) => b::load_key(&s)?,
        None => {
            let key = bundle::generate_key();
            match secrets
                .create(&PostParams::default(), &b::key_secret(&ns, &key, None, &[]))
                .await
            {
                Ok(_) => {
                    ctx.event(
                        &*gw,
                        EventType::Normal,
                        "SigningKeyCreated",
                        "Sign",
                        format!(
                            "created the tenant's signing key {}",
                            bundle::key_id(&key.verifying_key())
                        ),
                    )
                    .await;
                    (key, None, vec![])
                }
                // Another gateway of the tenant created it first: use that one.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    b::load_key(&secrets.get(b::SIGNING_KEY_SECRET).await?)?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if let Some(request) = gw.annotations().get(ROTATE_ANNOTATION) {
        if !done.contains(request) {
            let new = bundle::generate_key();
            let rot = bundle::sign_rotation(&key, &new, Utc::now());
            done.push(request.clone());
            if done.len() > MAX_ROTATIONS_REMEMBERED {
                done.remove(0);
            }
            apply(
                &secrets,
                b::SIGNING_KEY_SECRET,
                &b::key_secret(&ns, &new, Some(&rot), &done),
            )
            .await?;
            ctx.event(&*gw, EventType::Normal, "SigningKeyRotated", "Sign", format!("rotated the tenant's signing key {} -> {}; bundles carry the rotation signed by both keys", rot.old_key_id, rot.new_key.key_id)).await;
            key = new;
            rotation = Some(rot);
        }
    }
    let anchor = TrustAnchor::from_key(&key.verifying_key());

    // The signed bundle: re-signed when the config or key changed, or when
    // a quarter of its validity is left.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let hash = b::config_hash(&gw, &anchor.key_id);
    let live_cm = cms.get_opt(&b::config_map_name(&gw)).await?;
    let live_hash = live_cm
        .as_ref()
        .and_then(|c| c.annotations().get(CONFIG_HASH).cloned());
    let live_version: Option<u64> = live_cm
        .as_ref()
        .and_then(|c| c.annotations().get(CONFIG_VERSION)?.parse().ok());
    let validity = chrono::Duration::days(ctx.config.bundle_validity_days);
    let expiring = live_cm
        .as_ref()
        .and_then(b::bundle_expiry)
        .is_none_or(|exp| exp - Utc::now() < validity / 4);
    let version = if live_hash.as_deref() != Some(hash.as_str()) || expiring {
        let version = old.config_version.max(live_version).unwrap_or(0) + 1;
        let signed = b::sign_bundle(&gw, &key, rotation.as_ref(), version, Utc::now(), validity);
        apply(
            &cms,
            &b::config_map_name(&gw),
            &b::config_map(&gw, &signed, &anchor, &hash, version),
        )
        .await?;
        ctx.event(
            &*gw,
            EventType::Normal,
            "ConfigSigned",
            "Sign",
            format!("signed config version {version} with key {}", anchor.key_id),
        )
        .await;
        version
    } else {
        live_version.unwrap_or(0)
    };

    // Enrollment token: kept until someone asks for a new one.
    let token_name = b::token_secret_name(&gw);
    let live_token = secrets.get_opt(&token_name).await?;
    let reissue = gw.annotations().get(REISSUE_ANNOTATION).cloned();
    let answered = live_token
        .as_ref()
        .and_then(|s| s.annotations().get(REISSUE_DONE).cloned());
    if live_token.is_none() || (reissue.is_some() && reissue != answered) {
        let expires = Utc::now() + chrono::Duration::hours(ctx.config.token_ttl_hours);
        let secret = b::token_secret(
            &gw,
            &b::new_token(),
            expires,
            ctx.config.token_max_uses,
            reissue.as_deref(),
        );
        apply(&secrets, &token_name, &secret).await?;
        // The token itself never goes to logs or events.
        ctx.event(
            &*gw,
            EventType::Normal,
            "TokenIssued",
            "Enroll",
            format!(
                "issued an enrollment token in Secret {token_name}, valid until {}",
                weir_crds::condition::now_rfc3339(expires)
            ),
        )
        .await;
    }

    // In-cluster agent.
    let mut degraded: Option<(String, String)> = None;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    match gw.spec.mode {
        GatewayMode::InCluster => {
            let cluster_name = gw.spec.cluster_ref.clone().unwrap_or_default();
            match Api::<MqttCluster>::namespaced(client.clone(), &ns)
                .get_opt(&cluster_name)
                .await?
            {
                None => {
                    degraded = Some(("ClusterMissing".into(), format!("spec.clusterRef names MqttCluster {cluster_name}, which does not exist in {ns}")));
                }
                Some(cluster) => {
                    let listener = cluster
                        .spec
                        .listeners
                        .iter()
                        .find(|l| l.protocol == ListenerProtocol::Tcp)
                        .or(cluster.spec.listeners.first());
                    let url = match listener {
                        Some(l) if l.protocol == ListenerProtocol::Tcp => {
                            format!("mqtt://{cluster_name}.{ns}.svc:{}", l.port)
                        }
                        Some(l) => format!("mqtts://{cluster_name}.{ns}.svc:{}", l.port),
                        None => format!("mqtt://{cluster_name}.{ns}.svc:1883"),
                    };
                    let tag = gw
                        .spec
                        .agent_version
                        .clone()
                        .unwrap_or_else(|| ctx.config.agent_version.clone());
                    let image = format!("{}:{tag}", ctx.config.agent_image);
                    if let Some(problem) = ensure_agent_volume(&gw, &ctx, &ns).await? {
                        degraded = Some(problem);
                    }
                    ensure(&ctx, &deployments, b::agent_deployment(&gw, &image, &url)).await?;
                }
            }
        }
        GatewayMode::External => {
            ensure_absent(&deployments, &b::deployment_name(&gw)).await?;
            if b::agent_reclaim(&gw) == ReclaimPolicy::Delete {
                ensure_absent(
                    &Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns),
                    &b::agent_claim_name(&gw),
                )
                .await?;
            }
        }
    }

    let status = EdgeGatewayStatus {
        phase: Some(
            if degraded.is_some() {
                "Degraded"
            } else {
                "Ready"
            }
            .into(),
        ),
        config_version: Some(version),
        config_hash: Some(hash),
        observed_generation: generation,
        conditions: standard_conditions(
            &old.conditions,
            generation,
            match &degraded {
                None => (
                    true,
                    "ConfigSigned",
                    format!(
                        "config version {version} is signed and published in ConfigMap {}",
                        b::config_map_name(&gw)
                    ),
                ),
                Some((r, _)) => (
                    false,
                    r.as_str(),
                    format!("config version {version} is signed, but the agent cannot run"),
                ),
            },
            (false, "Reconciled", "nothing in progress".into()),
            match &degraded {
                None => (false, "Healthy", "no problems".into()),
                Some((r, m)) => (true, r.as_str(), m.clone()),
            },
        ),
        ..old.clone()
    };
    sync_status(&api, &gw, gw.status.as_ref(), &status).await?;
    ctx.succeeded(&key_of(&gw));
    // Wake up before the bundle needs re-signing even if nothing changes.
    Ok(Action::requeue(Duration::from_secs(
        if degraded.is_some() { 60 } else { 3600 },
    )))
}

/// The in-cluster agent's queue volume, sized from the uplink buffer. A
/// volume only grows (a smaller buffer keeps the volume it has); when its
/// storage class cannot expand it, that is a Degraded reason, not an error.
async fn ensure_agent_volume(
    gw: &EdgeGateway,
    ctx: &Context,
    ns: &str,
) -> Result<Option<(String, String)>> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let name = b::agent_claim_name(gw);
    let want = b::agent_storage_size(gw);
    let live = pvcs.get_opt(&name).await?;
    let (size, class) = match &live {
        None => (
            want.clone(),
            gw.spec
                .agent_storage
                .as_ref()
                .and_then(|s| s.storage_class_name.clone()),
        ),
        Some(pvc) => {
            // Never shrink: a volume at least as big as wanted keeps its size.
            let kept = mqtt_builders::claim_size(pvc).filter(
                |have| matches!((quantity(have), quantity(&want)), (Some(h), Some(w)) if h >= w),
            );
            (
                kept.map_or_else(|| want.clone(), str::to_string),
                pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
            )
        }
    };
    match ensure(ctx, &pvcs, b::agent_claim(gw, &size, class)).await {
        Ok(_) => Ok(None),
        Err(Error::Kube(kube::Error::Api(e))) if live.is_some() && matches!(e.code, 403 | 422) => {
            Ok(Some((
                "AgentStorageNotExpandable".into(),
                format!(
                    "volume {name} cannot grow to {want} for uplink.buffer.maxBytes: {}; use a storage class with allowVolumeExpansion or lower the buffer",
                    e.message
                ),
            )))
        }
        Err(e) => Err(e),
    }
}

fn key_of(gw: &EdgeGateway) -> String {
    format!(
        "edgegateway/{}/{}",
        gw.namespace().unwrap_or_default(),
        gw.name_any()
    )
}

pub fn error_policy(gw: Arc<EdgeGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error);
    let n = ctx.failed(&key_of(&gw));
    tracing::warn!(gateway = %gw.name_any(), namespace = ?gw.namespace(), error = %error, failures = n, "EdgeGateway reconcile failed");
    Action::requeue(backoff(n))
}
