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

use super::builders::{self as b, StoredKey, CONFIG_HASH, CONFIG_VERSION, ROTATE_ANNOTATION};
use crate::apply::{
    apply, ensure, ensure_absent, quantity, standard_conditions, sync_owned_status,
};
use crate::context::Context;
use crate::error::{backoff, Error, Result};
use crate::mqtt_cluster::builders as mqtt_builders;

const CONTROLLER: &str = "edgegateway";
/// The fields of `EdgeGateway.status` the operator writes (JSON names).
/// The rest (online, appliedVersion, lastHeartbeat, device health, ...) the
/// api writes from heartbeats with its own field manager: the operator
/// neither copies them into its apply nor writes because they changed.
pub const OWNED_STATUS: &[&str] = &[
    "phase",
    "conditions",
    "configVersion",
    "configHash",
    "observedGeneration",
];
/// Times a rotation is tried again after another write to the key Secret
/// came first, before the reconcile fails (and is retried with backoff).
const ROTATION_ATTEMPTS: usize = 5;

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
            // The last signed version stays published.
            config_version: old.config_version,
            config_hash: old.config_hash.clone(),
            ..Default::default()
        };
        if sync_owned_status(&api, &gw, gw.status.as_ref(), &status, OWNED_STATUS).await? {
            ctx.event(&*gw, EventType::Warning, "InvalidConfig", "Sign", message)
                .await;
        }
        return Ok(Action::await_change());
    }

    // The tenant's signing key, created on first use and rotated on request.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut stored = match secrets.get_opt(b::SIGNING_KEY_SECRET).await? {
        Some(s) => b::load_key(&s)?,
        None => {
            let key = bundle::generate_key();
            match secrets
                .create(&PostParams::default(), &b::key_secret(&ns, &key, &[], &[]))
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
                    StoredKey {
                        key,
                        chain: vec![],
                        done: vec![],
                    }
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
        if !stored.done.contains(request) {
            stored = rotate_key(&ctx, &gw, &secrets, request).await?;
        }
    }
    let key = &stored.key;
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
        let signed = b::sign_bundle(&gw, key, &stored.chain, version, Utc::now(), validity);
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

    // The enrollment token in Secret `<gateway>-enrollment` is weir-api's:
    // it is the one issuer (the agent Deployment only mounts it).

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
                    let api_url = &ctx.config.api_url;
                    let written = ensure(
                        &ctx,
                        &deployments,
                        b::agent_deployment(&gw, &image, &url, api_url),
                    )
                    .await?
                    .written();
                    if written && b::api_is_plain_http(api_url) {
                        tracing::warn!(gateway = %gw.name_any(), namespace = %ns, %api_url, "the in-cluster agent reaches the api over plain HTTP (--insecure-http)");
                        ctx.event(
                            &*gw,
                            EventType::Warning,
                            "InsecureApiUrl",
                            "Deploy",
                            insecure_note(api_url),
                        )
                        .await;
                    }
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
                        "config version {version} is signed and published in ConfigMap {}{}",
                        b::config_map_name(&gw),
                        match gw.spec.mode {
                            GatewayMode::InCluster if b::api_is_plain_http(&ctx.config.api_url) =>
                                format!("; {}", insecure_note(&ctx.config.api_url)),
                            _ => String::new(),
                        }
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
        ..Default::default()
    };
    sync_owned_status(&api, &gw, gw.status.as_ref(), &status, OWNED_STATUS).await?;
    ctx.succeeded(&key_of(&gw));
    // Wake up before the bundle needs re-signing even if nothing changes.
    Ok(Action::requeue(Duration::from_secs(
        if degraded.is_some() { 60 } else { 3600 },
    )))
}

/// What the operator says when the in-cluster agent talks plain HTTP.
fn insecure_note(api_url: &str) -> String {
    format!("the in-cluster agent reaches the api at {api_url} over plain HTTP (started with --insecure-http): its enrollment token and broker credentials cross the cluster network unencrypted; give the operator an https:// --api-url to avoid it")
}

/// Carry out the rotation request `request` on the tenant's key Secret and
/// return the key as stored afterwards.
///
/// Several gateways of a tenant share the key, and each may be asked to
/// rotate it at the same moment. So the rotated Secret is written as an
/// update that carries the resourceVersion it was read at, never forced:
/// when another rotation was written in between, the API server answers 409
/// Conflict, and the rotation starts again from the key now stored. The
/// rotations then chain (K0 -> K1 -> K2, each signed by its old and new
/// key) and every request ends in the Secret's done list; a last write
/// winning would instead drop a request and leave a bundle signed by a key
/// the stored chain does not lead to.
async fn rotate_key(
    ctx: &Context,
    gw: &EdgeGateway,
    secrets: &Api<Secret>,
    request: &str,
) -> Result<StoredKey> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let live = secrets.get(b::SIGNING_KEY_SECRET).await?;
        let stored = b::load_key(&live)?;
        if stored.done.iter().any(|d| d == request) {
            // Carried out meanwhile (by another replica, or by a write of
            // ours whose answer was lost).
            return Ok(stored);
        }
        let old_id = bundle::key_id(&stored.key.verifying_key());
        let rotated = stored.rotate(request, Utc::now());
        let desired = b::key_secret(
            &live.namespace().unwrap_or_default(),
            &rotated.key,
            &rotated.chain,
            &rotated.done,
        );
        // The live Secret with the new data: its resourceVersion makes the
        // update conditional; labels and annotations others set stay.
        let mut update = live;
        update.data = desired.data;
        update
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend(desired.metadata.annotations.unwrap_or_default());
        update
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .extend(desired.metadata.labels.unwrap_or_default());
        let params = PostParams {
            field_manager: Some(crate::FIELD_MANAGER.into()),
            ..Default::default()
        };
        match secrets
            .replace(b::SIGNING_KEY_SECRET, &params, &update)
            .await
        {
            Ok(_) => {
                ctx.key_rotated();
                let new_id = bundle::key_id(&rotated.key.verifying_key());
                ctx.event(
                    gw,
                    EventType::Normal,
                    "SigningKeyRotated",
                    "Sign",
                    format!("rotated the tenant's signing key {old_id} -> {new_id} for request '{request}'; bundles carry the rotations signed by old and new key"),
                )
                .await;
                return Ok(rotated);
            }
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < ROTATION_ATTEMPTS => {
                tracing::info!(
                    gateway = %gw.name_any(),
                    namespace = ?gw.namespace(),
                    request,
                    "the signing key changed while rotating it; rotating again from the key now stored"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
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
    crate::report::reconcile_failed(ctx, gw, error.to_string());
    Action::requeue(backoff(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::owned_fields;

    fn api_written() -> EdgeGatewayStatus {
        EdgeGatewayStatus {
            phase: Some("Ready".into()),
            config_version: Some(3),
            config_hash: Some("h".into()),
            observed_generation: Some(2),
            applied_version: Some(3),
            online: Some(true),
            last_heartbeat: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_operator_applies_only_its_own_status_fields() {
        let live = api_written();
        let mine = EdgeGatewayStatus {
            phase: Some("Ready".into()),
            config_version: Some(3),
            config_hash: Some("h".into()),
            observed_generation: Some(2),
            ..Default::default()
        };
        let sent = owned_fields(&live, OWNED_STATUS);
        for k in sent.keys() {
            assert!(OWNED_STATUS.contains(&k.as_str()), "{k}");
        }
        for k in ["online", "appliedVersion", "lastHeartbeat"] {
            assert!(!sent.contains_key(k), "{k} is the api's");
        }
        // What the api wrote is no reason to write: unchanged.
        assert_eq!(
            owned_fields(&live, OWNED_STATUS),
            owned_fields(&mine, OWNED_STATUS)
        );
        // A heartbeat field changing is still no reason.
        let mut later = live.clone();
        later.online = Some(false);
        later.last_heartbeat = Some("2026-01-01T00:01:00Z".into());
        assert_eq!(
            owned_fields(&later, OWNED_STATUS),
            owned_fields(&mine, OWNED_STATUS)
        );
        // Its own fields are.
        let mut degraded = mine.clone();
        degraded.phase = Some("Degraded".into());
        assert_ne!(
            owned_fields(&live, OWNED_STATUS),
            owned_fields(&degraded, OWNED_STATUS)
        );
    }

    #[test]
    fn the_operator_and_the_api_share_the_status_without_overlap() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(EdgeGateway::crd()).unwrap();
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["status"]["properties"];
        let all: std::collections::BTreeSet<&str> = props
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let api = EdgeGatewayStatus::HEARTBEAT_FIELDS;
        for f in OWNED_STATUS {
            assert!(!api.contains(f), "{f} is written by both");
        }
        // Every status field has exactly one writer.
        let both: std::collections::BTreeSet<&str> =
            OWNED_STATUS.iter().chain(api).copied().collect();
        assert_eq!(both, all);
    }

    #[test]
    fn owned_names_are_the_status_json_names() {
        let s = EdgeGatewayStatus {
            phase: Some("Ready".into()),
            config_version: Some(1),
            config_hash: Some("h".into()),
            observed_generation: Some(1),
            ..Default::default()
        };
        // Every owned field is found under the name given (a rename in
        // crds would silently drop it from the operator's apply).
        assert_eq!(owned_fields(&s, OWNED_STATUS).len(), OWNED_STATUS.len());
    }
}
