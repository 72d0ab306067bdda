//! Pure functions from an EdgeGateway (and the tenant's key) to objects.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Secret,
    SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use weir_crds::bundle::{self, BundlePayload, KeyRotation, SignedBundle, TrustAnchor};
use weir_crds::mqtt_cluster::ReclaimPolicy;
use weir_crds::EdgeGateway;

use crate::apply::{hash_of, labels};
use crate::error::{Error, Result};
use crate::mqtt_cluster::builders::data_claim;
use weir_crds::names::{gateway_config, labels as label};

pub const SIGNING_KEY_SECRET: &str = "weir-signing-key";
/// Set (to any new value) on an EdgeGateway to rotate the tenant's key.
pub const ROTATE_ANNOTATION: &str = weir_crds::names::annotations::ROTATE_SIGNING_KEY;
/// On the key Secret: rotation requests already carried out (JSON list).
pub const ROTATIONS_DONE: &str = "weir.dev/rotations-done";
pub const CONFIG_HASH: &str = "weir.dev/config-hash";
pub const CONFIG_VERSION: &str = "weir.dev/config-version";

pub fn config_map_name(gw: &EdgeGateway) -> String {
    format!("{}-config", gw.name_any())
}
pub fn token_secret_name(gw: &EdgeGateway) -> String {
    format!("{}-enrollment", gw.name_any())
}
pub fn deployment_name(gw: &EdgeGateway) -> String {
    format!("{}-agent", gw.name_any())
}

/// The in-cluster agent's queue volume.
pub fn agent_claim_name(gw: &EdgeGateway) -> String {
    format!("{}-agent-data", gw.name_any())
}

const MIB: u64 = 1024 * 1024;

/// Size of the agent's queue volume: `uplink.buffer.maxBytes` plus a quarter
/// (at least 64 MiB) for the queue's segment files, its index and the agent's
/// own state, rounded up to MiB.
pub fn agent_storage_size(gw: &EdgeGateway) -> String {
    let buffer = gw.spec.config.uplink.buffer.max_bytes;
    let bytes = buffer.saturating_add((buffer / 4).max(64 * MIB));
    format!("{}Mi", bytes.div_ceil(MIB))
}

/// What happens to the agent's queue volume when the gateway goes:
/// `spec.agentStorage.reclaimPolicy`, `Delete` when unset.
pub fn agent_reclaim(gw: &EdgeGateway) -> ReclaimPolicy {
    gw.spec
        .agent_storage
        .as_ref()
        .map_or(ReclaimPolicy::Delete, |s| s.reclaim_policy)
}

/// The agent's queue volume, `size` big. Owned by the gateway (and deleted
/// with it) unless `spec.agentStorage.reclaimPolicy` is `Retain`: then it
/// outlives the gateway and a gateway of the same name picks it up again.
pub fn agent_claim(
    gw: &EdgeGateway,
    size: &str,
    storage_class: Option<String>,
) -> PersistentVolumeClaim {
    let mut metadata = owned_meta(gw, agent_claim_name(gw));
    if agent_reclaim(gw) == ReclaimPolicy::Retain {
        metadata.owner_references = None;
    }
    PersistentVolumeClaim {
        metadata,
        ..data_claim(size, storage_class)
    }
}

/// The tenant a gateway belongs to: its namespace is `weir-<tenant>`.
pub fn tenant_of(gw: &EdgeGateway) -> String {
    let ns = gw.namespace().unwrap_or_default();
    ns.strip_prefix("weir-").map(str::to_string).unwrap_or(ns)
}

fn owned_meta(gw: &EdgeGateway, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: gw.namespace(),
        labels: Some(labels(label::EDGE_GATEWAY, &gw.name_any())),
        owner_references: gw.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The tenant's signing key as stored. Not owned by any one gateway: it
/// outlives them and goes with the namespace. `chain` holds the rotations
/// that led to `key`, oldest first (`rotations.json`); the newest is also
/// `rotation.json`, as an operator that knew no chain wrote it.
pub fn key_secret(
    namespace: &str,
    key: &SigningKey,
    chain: &[KeyRotation],
    done: &[String],
) -> Secret {
    let anchor = TrustAnchor::from_key(&key.verifying_key());
    let mut data: BTreeMap<String, ByteString> = [
        ("private-key", B64.encode(key.to_bytes())),
        ("public-key", anchor.public_key.clone()),
        ("key-id", anchor.key_id.clone()),
        (
            gateway_config::TRUST,
            serde_json::to_string(&anchor).expect("anchor serializes"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    if let Some(r) = chain.last() {
        data.insert(
            "rotation.json".into(),
            ByteString(serde_json::to_vec(r).expect("rotation serializes")),
        );
        data.insert(
            gateway_config::ROTATIONS.into(),
            ByteString(serde_json::to_vec(chain).expect("rotations serialize")),
        );
    }
    let mut l = BTreeMap::new();
    l.insert(
        crate::apply::MANAGED_BY.0.to_string(),
        crate::apply::MANAGED_BY.1.to_string(),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(SIGNING_KEY_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(l),
            annotations: Some(
                [(
                    ROTATIONS_DONE.to_string(),
                    serde_json::to_string(done).expect("list"),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn data<'a>(s: &'a Secret, key: &str) -> Option<&'a [u8]> {
    s.data.as_ref()?.get(key).map(|b| b.0.as_slice())
}

/// The tenant's signing key as [`load_key`] reads it from its Secret.
pub struct StoredKey {
    pub key: SigningKey,
    /// The rotations that led to `key`, oldest first.
    pub chain: Vec<KeyRotation>,
    /// Rotation requests already carried out, oldest first.
    pub done: Vec<String>,
}

impl StoredKey {
    /// Hand over to a new key for `request`: the rotation, signed by the
    /// current and the new key, joins the chain and the request the done
    /// list (both bounded, oldest dropped first).
    pub fn rotate(self, request: &str, now: DateTime<Utc>) -> StoredKey {
        let new = bundle::generate_key();
        let mut chain = self.chain;
        chain.push(bundle::sign_rotation(&self.key, &new, now));
        let mut done = self.done;
        done.push(request.to_string());
        // As many as a bundle may carry (an agent that was away for more
        // rotations cannot follow and is enrolled again).
        if chain.len() > bundle::MAX_ROTATIONS {
            chain.drain(..chain.len() - bundle::MAX_ROTATIONS);
        }
        if done.len() > MAX_ROTATIONS_REMEMBERED {
            done.drain(..done.len() - MAX_ROTATIONS_REMEMBERED);
        }
        StoredKey {
            key: new,
            chain,
            done,
        }
    }
}

/// Rotation requests remembered on the key Secret (so two gateways with
/// different request values never rotate back and forth).
pub const MAX_ROTATIONS_REMEMBERED: usize = 32;

/// The key, the rotations that led to it and the rotation requests already
/// done. A Secret written before the chain was kept has only
/// `rotation.json`: a chain of one.
pub fn load_key(s: &Secret) -> Result<StoredKey> {
    let raw = data(s, "private-key").ok_or_else(|| Error::SigningKey("no private-key".into()))?;
    let bytes = B64
        .decode(raw)
        .map_err(|e| Error::SigningKey(format!("private-key is not base64: {e}")))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::SigningKey("private-key must be 32 bytes".into()))?;
    let chain = match (data(s, gateway_config::ROTATIONS), data(s, "rotation.json")) {
        (Some(c), _) => serde_json::from_slice(c)
            .map_err(|e| Error::SigningKey(format!("rotations.json: {e}")))?,
        (None, Some(r)) => vec![serde_json::from_slice(r)
            .map_err(|e| Error::SigningKey(format!("rotation.json: {e}")))?],
        (None, None) => vec![],
    };
    let done = s
        .annotations()
        .get(ROTATIONS_DONE)
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    Ok(StoredKey {
        key: SigningKey::from_bytes(&seed),
        chain,
        done,
    })
}

/// Hash of what the agent would run and who signs it: the bundle version
/// goes up exactly when this changes.
pub fn config_hash(gw: &EdgeGateway, key_id: &str) -> String {
    hash_of(&(
        bundle::canonical_json(&serde_json::to_value(&gw.spec.config).expect("config serializes")),
        key_id,
    ))
}

/// Sign version `version` of the gateway's config. The bundle carries the
/// rotations that led to `key` (`chain`, oldest first), so an agent that
/// pinned any key in it follows to `key`.
pub fn sign_bundle(
    gw: &EdgeGateway,
    key: &SigningKey,
    chain: &[KeyRotation],
    version: u64,
    now: DateTime<Utc>,
    validity: Duration,
) -> SignedBundle {
    let payload = BundlePayload::new(
        &tenant_of(gw),
        &gw.name_any(),
        version,
        gw.spec.config.clone(),
        now,
        validity,
    );
    let mut signed = bundle::sign(&payload, key);
    if let Some((last, earlier)) = chain.split_last() {
        signed.rotation = Some(last.clone());
        signed.rotation_chain = earlier.to_vec();
    }
    signed
}

/// `<gateway>-config` with `bundle.json` and `trust.json`.
pub fn config_map(
    gw: &EdgeGateway,
    signed: &SignedBundle,
    anchor: &TrustAnchor,
    hash: &str,
    version: u64,
) -> ConfigMap {
    let mut m = owned_meta(gw, config_map_name(gw));
    m.annotations = Some(
        [
            (CONFIG_HASH.to_string(), hash.to_string()),
            (CONFIG_VERSION.to_string(), version.to_string()),
        ]
        .into(),
    );
    ConfigMap {
        metadata: m,
        data: Some(
            [
                (
                    gateway_config::BUNDLE.to_string(),
                    serde_json::to_string_pretty(signed).expect("bundle serializes"),
                ),
                (
                    gateway_config::TRUST.to_string(),
                    serde_json::to_string_pretty(anchor).expect("anchor serializes"),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// When the bundle in a ConfigMap expires, if it can be read.
pub fn bundle_expiry(cm: &ConfigMap) -> Option<DateTime<Utc>> {
    let text = cm.data.as_ref()?.get(gateway_config::BUNDLE)?;
    let signed: SignedBundle = serde_json::from_str(text).ok()?;
    let bytes = B64.decode(signed.payload).ok()?;
    let payload: BundlePayload = serde_json::from_slice(&bytes).ok()?;
    Some(payload.expires)
}

/// Whether the in-cluster agent reaches the api at `api_url` over plain
/// HTTP: it is then started with `--insecure-http` (weir-agent refuses a
/// plain `http://` server off loopback without it), and the operator says so.
pub fn api_is_plain_http(api_url: &str) -> bool {
    api_url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// The in-cluster agent: enrolls with the api at `api_url` like any agent,
/// with the token the api writes to the gateway's Secret
/// (`<gateway>-enrollment`, key `token`, as `WEIR_TOKEN`), and keeps its
/// identity (key, agent id, broker credentials) and its store-and-forward
/// queue on its volume, so a restarted pod neither enrolls again nor loses
/// readings. It then fetches the signed bundle and its MQTT JWT from the
/// api; a new config version never restarts the pod. `mqtt_url` is the
/// cluster's in-cluster Service, which overrides the api's broker URLs.
pub fn agent_deployment(
    gw: &EdgeGateway,
    image: &str,
    mqtt_url: &str,
    api_url: &str,
) -> Deployment {
    let mut l = labels(label::EDGE_GATEWAY, &gw.name_any());
    l.insert(label::COMPONENT.into(), "agent".into());
    let mut args: Vec<String> = vec!["run".into(), "--server".into(), api_url.into()];
    if api_is_plain_http(api_url) {
        args.push("--insecure-http".into());
    }
    args.extend(
        ["--mqtt-url", mqtt_url, "--data-dir", "/data"]
            .iter()
            .map(|s| s.to_string()),
    );
    // Optional: once enrolled, the agent runs from its identity on the
    // volume and no longer needs the token (whose Secret may be reissued or
    // gone); before that, a missing token makes it exit and retry.
    let token = EnvVar {
        name: "WEIR_TOKEN".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: token_secret_name(gw),
                key: "token".into(),
                optional: Some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = |name: &str, path: &str, ro: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(ro),
        ..Default::default()
    };
    Deployment {
        metadata: owned_meta(gw, deployment_name(gw)),
        spec: DeploymentSpec {
            replicas: Some(1),
            // One agent per gateway: its sequence numbers and queue are single-writer.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(l.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some(image.into()),
                        args: Some(args),
                        env: Some(vec![token]),
                        volume_mounts: Some(vec![mount("data", "/data", false)]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        // The store-and-forward queue survives the pod
                        // moving to another node (an emptyDir would not).
                        Volume {
                            name: "data".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: agent_claim_name(gw),
                                read_only: None,
                            }),
                            ..Default::default()
                        },
                    ]),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        // The volume's files belong to the agent's group.
                        fs_group: Some(65532),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mqtt_cluster::builders::claim_size;
    use weir_crds::bundle::Expectations;
    use weir_crds::{EdgeGatewaySpec, GatewayMode};

    pub fn gateway(mode: GatewayMode) -> EdgeGateway {
        let spec: EdgeGatewaySpec = serde_json::from_value(serde_json::json!({
            "mode": match mode { GatewayMode::InCluster => "inCluster", GatewayMode::External => "external" },
            "clusterRef": "riverside-mqtt",
            "devices": [{
                "name": "pump-1", "adapter": "simulator",
                "groups": [{"name": "fast", "intervalMs": 1000, "tags": [
                    {"name": "flow", "address": "sim", "dataType": "float32", "signal": {"kind": "sine", "min": 0.0, "max": 10.0, "periodMs": 60000}}
                ]}]
            }]
        }))
        .unwrap();
        let mut g = EdgeGateway::new("pump-station-1", spec);
        g.metadata.namespace = Some("weir-riverside-water".into());
        g.metadata.uid = Some("gw-uid".into());
        g.metadata.generation = Some(1);
        g
    }

    #[test]
    fn bundle_verifies_with_the_trust_anchor() {
        let gw = gateway(GatewayMode::External);
        let key = bundle::generate_key();
        let signed = sign_bundle(&gw, &key, &[], 7, Utc::now(), Duration::days(30));
        let anchor = TrustAnchor::from_key(&key.verifying_key());
        let cm = config_map(&gw, &signed, &anchor, "h", 7);
        let read: SignedBundle =
            serde_json::from_str(&cm.data.as_ref().unwrap()["bundle.json"]).unwrap();
        let trust: TrustAnchor =
            serde_json::from_str(&cm.data.as_ref().unwrap()["trust.json"]).unwrap();
        let payload = bundle::verify(
            &read,
            &trust.verifying_key().unwrap(),
            &Expectations {
                tenant: "riverside-water",
                gateway: "pump-station-1",
                last_accepted: Some(6),
                now: Utc::now(),
            },
        )
        .unwrap();
        assert_eq!(payload.version, 7);
        assert_eq!(payload.config, gw.spec.config);
        assert!(bundle_expiry(&cm).unwrap() > Utc::now() + Duration::days(29));
        assert_eq!(cm.metadata.owner_references.unwrap()[0].kind, "EdgeGateway");
    }

    #[test]
    fn key_secret_round_trips() {
        let key = bundle::generate_key();
        let next = bundle::generate_key();
        let rot = bundle::sign_rotation(&key, &next, Utc::now());
        let mut s = key_secret("weir-x", &next, std::slice::from_ref(&rot), &["1".into()]);
        // The API server returns string data as `data`.
        s.data = s.data.take();
        let stored = load_key(&s).unwrap();
        assert_eq!(stored.key.to_bytes(), next.to_bytes());
        assert_eq!(stored.chain, vec![rot.clone()]);
        assert_eq!(stored.done, vec!["1".to_string()]);
        assert!(
            s.metadata.owner_references.is_none(),
            "the key outlives any one gateway"
        );
        // Written by an operator that kept only the last rotation.
        s.data.as_mut().unwrap().remove(gateway_config::ROTATIONS);
        assert_eq!(load_key(&s).unwrap().chain, vec![rot]);
    }

    #[test]
    fn rotations_chain_and_stay_bounded() {
        let k0 = bundle::generate_key();
        let mut stored = StoredKey {
            key: k0.clone(),
            chain: vec![],
            done: vec![],
        };
        for i in 0..MAX_ROTATIONS_REMEMBERED + 3 {
            stored = stored.rotate(&format!("r{i}"), Utc::now());
        }
        assert_eq!(stored.chain.len(), bundle::MAX_ROTATIONS);
        assert_eq!(stored.done.len(), MAX_ROTATIONS_REMEMBERED);
        assert_eq!(stored.done[0], "r3", "the oldest requests go first");
        // Every link hands over to the next one's old key, ending at the key.
        for w in stored.chain.windows(2) {
            assert_eq!(w[0].new_key.key_id, w[1].old_key_id);
        }
        let gw = gateway(GatewayMode::External);
        let signed = sign_bundle(
            &gw,
            &stored.key,
            &stored.chain,
            1,
            Utc::now(),
            Duration::days(30),
        );
        assert_eq!(signed.rotation_chain.len(), bundle::MAX_ROTATIONS - 1);
        // The first keys fell off the chain; an agent pinned to a key still
        // in it follows to the current one.
        assert_ne!(
            stored.chain[0].old_key_id,
            bundle::key_id(&k0.verifying_key())
        );
        let pinned = stored.chain[0].new_key.verifying_key().unwrap();
        assert_eq!(
            bundle::follow_rotations(&signed, &pinned).unwrap(),
            Some(stored.key.verifying_key())
        );
    }

    #[test]
    fn config_hash_changes_with_config_and_key_only() {
        let gw = gateway(GatewayMode::External);
        let h = config_hash(&gw, "ed25519:a");
        let mut other_site = gw.clone();
        other_site.spec.site.name = Some("renamed".into());
        assert_eq!(
            config_hash(&other_site, "ed25519:a"),
            h,
            "site metadata is not agent config"
        );
        assert_ne!(config_hash(&gw, "ed25519:b"), h);
        let mut changed = gw.clone();
        changed.spec.config.uplink.qos = 0;
        assert_ne!(config_hash(&changed, "ed25519:a"), h);
    }

    #[test]
    fn agent_enrolls_with_the_token_and_keeps_its_identity_on_its_volume() {
        let gw = gateway(GatewayMode::InCluster);
        let d = agent_deployment(
            &gw,
            "ghcr.io/weir-dev/weir-agent:0.1.0",
            "mqtt://riverside-mqtt.weir-riverside-water.svc:1883",
            "https://weir-api.weir-system.svc:8443",
        );
        let spec = d.spec;
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        assert_eq!(
            args,
            [
                "run",
                "--server",
                "https://weir-api.weir-system.svc:8443",
                "--mqtt-url",
                "mqtt://riverside-mqtt.weir-riverside-water.svc:1883",
                "--data-dir",
                "/data"
            ]
        );
        // No air-gapped bundle: the agent takes its config from the api.
        assert!(!args.iter().any(|a| a == "--bundle" || a == "--trust"));
        let env = c.env.clone().unwrap();
        let token = env.iter().find(|e| e.name == "WEIR_TOKEN").unwrap();
        let r = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (r.name.as_str(), r.key.as_str()),
            ("pump-station-1-enrollment", "token")
        );
        assert!(
            token.value.is_none(),
            "the token never sits in the pod spec"
        );
        let mounts = c.volume_mounts.clone().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
            ("data", "/data")
        );
        assert!(
            spec.template.metadata.unwrap().annotations.is_none(),
            "a new config version must not restart the agent"
        );
        assert_eq!(spec.replicas, Some(1));
        let vols = pod.volumes.unwrap();
        let data = vols.iter().find(|v| v.name == "data").unwrap();
        assert!(data.empty_dir.is_none(), "the queue must survive the pod");
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            "pump-station-1-agent-data"
        );
        assert_eq!(pod.security_context.unwrap().fs_group, Some(65532));
    }

    #[test]
    fn a_plain_http_api_is_reached_only_with_insecure_http() {
        let gw = gateway(GatewayMode::InCluster);
        let args = |api: &str| {
            agent_deployment(&gw, "img", "mqtt://m:1883", api)
                .spec
                .template
                .spec
                .unwrap()
                .containers[0]
                .args
                .clone()
                .unwrap()
        };
        let http = args("http://weir-api.weir-system.svc:8080");
        assert_eq!(
            &http[..4],
            [
                "run",
                "--server",
                "http://weir-api.weir-system.svc:8080",
                "--insecure-http"
            ]
        );
        assert!(!args("https://weir.example.com")
            .iter()
            .any(|a| a == "--insecure-http"));
        assert!(api_is_plain_http("HTTP://x"));
        assert!(!api_is_plain_http("https://x"));
    }

    #[test]
    fn agent_volume_holds_the_buffer_and_follows_the_reclaim_policy() {
        let mut gw = gateway(GatewayMode::InCluster);
        // Default buffer 1 GiB: + 256 MiB margin.
        assert_eq!(agent_storage_size(&gw), "1280Mi");
        gw.spec.config.uplink.buffer.max_bytes = 10 * MIB;
        assert_eq!(agent_storage_size(&gw), "74Mi", "at least 64 MiB margin");
        gw.spec.config.uplink.buffer.max_bytes = 4 * 1024 * MIB + 1;
        assert_eq!(agent_storage_size(&gw), "5121Mi", "rounded up");

        let pvc = agent_claim(&gw, "1280Mi", None);
        assert_eq!(
            pvc.metadata.name.as_deref(),
            Some("pump-station-1-agent-data")
        );
        assert_eq!(
            pvc.metadata.owner_references.as_ref().unwrap()[0].kind,
            "EdgeGateway",
            "deleted with the gateway by default"
        );
        assert_eq!(claim_size(&pvc), Some("1280Mi"));
        assert_eq!(
            pvc.spec.unwrap().access_modes.unwrap(),
            vec!["ReadWriteOnce"]
        );

        gw.spec.agent_storage = Some(weir_crds::edge_gateway::AgentStorage {
            storage_class_name: Some("fast".into()),
            reclaim_policy: ReclaimPolicy::Retain,
        });
        let kept = agent_claim(&gw, "1280Mi", Some("fast".into()));
        assert!(
            kept.metadata.owner_references.is_none(),
            "a retained volume has no owner, so deleting the gateway keeps it"
        );
        assert_eq!(
            kept.spec.unwrap().storage_class_name.as_deref(),
            Some("fast")
        );
    }
}
