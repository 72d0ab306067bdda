//! EdgeGateway reconciler: signed bundles (and no enrollment token: weir-api
//! issues it), trust-anchor rotation and the in-cluster agent.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::runtime::controller::Action;
use weir_crds::bundle::{self, Expectations, SignedBundle, TrustAnchor};
use weir_crds::EdgeGateway;
use weir_operator::testing::FakeApiServer;
use weir_operator::Context;

use crate::mqtt_cluster::cluster;
use crate::support::*;

fn gateway(mode: &str) -> EdgeGateway {
    let mut g: EdgeGateway = serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "EdgeGateway",
        "metadata": {"name": "pump-station-1", "namespace": NS},
        "spec": {
            "mode": mode, "clusterRef": "riverside-mqtt",
            "devices": [{
                "name": "pump-1", "adapter": "simulator",
                "groups": [{"name": "fast", "intervalMs": 1000, "tags": [
                    {"name": "flow", "address": "sim", "dataType": "float32",
                     "signal": {"kind": "sine", "min": 0.0, "max": 10.0, "periodMs": 60000}}
                ]}]
            }]
        }
    }))
    .unwrap();
    g.metadata.generation = Some(1);
    g
}

fn stored(fake: &FakeApiServer) -> Arc<EdgeGateway> {
    Arc::new(fake.get::<EdgeGateway>(Some(NS), "pump-station-1").unwrap())
}

fn published(fake: &FakeApiServer) -> (SignedBundle, TrustAnchor) {
    let cm = fake
        .get::<ConfigMap>(Some(NS), "pump-station-1-config")
        .expect("config map");
    let d = cm.data.unwrap();
    (
        serde_json::from_str(&d["bundle.json"]).unwrap(),
        serde_json::from_str(&d["trust.json"]).unwrap(),
    )
}

fn expect(last: Option<u64>) -> Expectations<'static> {
    Expectations {
        tenant: "riverside-water",
        gateway: "pump-station-1",
        last_accepted: last,
        now: chrono::Utc::now(),
    }
}

async fn run(fake: &FakeApiServer, ctx: &Arc<Context>) -> Action {
    weir_operator::edge_gateway::reconcile(stored(fake), ctx.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn create_path_signs_a_bundle_and_issues_no_token() {
    let fake = FakeApiServer::new();
    fake.put(&gateway("external"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    let p = "/api/v1/namespaces/weir-riverside-water";
    assert_eq!(
        writes_without_events(&fake),
        vec![
            format!("POST {p}/secrets"),
            format!("PATCH {p}/configmaps/pump-station-1-config"),
            "PATCH /apis/weir.dev/v1alpha1/namespaces/weir-riverside-water/edgegateways/pump-station-1/status".to_string(),
        ]
    );
    let (signed, anchor) = published(&fake);
    let key = anchor.verifying_key().unwrap();
    let payload = bundle::verify(&signed, &key, &expect(None)).unwrap();
    assert_eq!(payload.version, 1);
    assert_eq!(payload.config.devices[0].name, "pump-1");
    let st = stored(&fake).status.clone().unwrap();
    assert_eq!(
        (st.config_version, st.phase.as_deref()),
        (Some(1), Some("Ready"))
    );
    assert!(st.config_hash.is_some());
    assert!(
        fake.get::<Secret>(Some(NS), "pump-station-1-enrollment")
            .is_none(),
        "weir-api is the one issuer of enrollment tokens"
    );
    assert!(fake
        .get::<Deployment>(Some(NS), "pump-station-1-agent")
        .is_none());
}

#[tokio::test]
async fn no_change_path_makes_zero_writes_and_keeps_the_version() {
    let fake = FakeApiServer::new();
    fake.put(&gateway("external"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    assert_steady(&fake, async {
        run(&fake, &ctx).await;
        run(&fake, &ctx).await;
    })
    .await;
    // A status-only change (the agent reporting) bumps nothing either.
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        let st = g.status.as_mut().unwrap();
        st.applied_version = Some(1);
        st.online = Some(true);
    });
    assert_steady(&fake, run(&fake, &ctx)).await;
    assert_eq!(
        stored(&fake).status.as_ref().unwrap().config_version,
        Some(1)
    );
}

#[tokio::test]
async fn config_change_bumps_the_version_once() {
    let fake = FakeApiServer::new();
    fake.put(&gateway("external"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| g.spec.config.uplink.qos = 0);
    run(&fake, &ctx).await;
    run(&fake, &ctx).await;
    assert_eq!(
        stored(&fake).status.as_ref().unwrap().config_version,
        Some(2)
    );
    let (signed, anchor) = published(&fake);
    let payload =
        bundle::verify(&signed, &anchor.verifying_key().unwrap(), &expect(Some(1))).unwrap();
    assert_eq!((payload.version, payload.config.uplink.qos), (2, 0));
}

#[tokio::test]
async fn key_rotation_is_signed_by_old_and_new_key_once() {
    let fake = FakeApiServer::new();
    fake.put(&gateway("external"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    let (_, old_anchor) = published(&fake);
    let old_key = old_anchor.verifying_key().unwrap();
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.metadata.annotations = Some(
            [(
                "weir.dev/rotate-signing-key".to_string(),
                "2026-q1".to_string(),
            )]
            .into(),
        );
    });
    run(&fake, &ctx).await;
    let (signed, new_anchor) = published(&fake);
    assert_ne!(new_anchor.key_id, old_anchor.key_id);
    // An agent that pinned the old key accepts the rotation, then the bundle.
    let rotation = signed
        .rotation
        .clone()
        .expect("bundle carries the rotation");
    let pinned = bundle::verify_rotation(&rotation, &old_key).unwrap();
    assert_eq!(bundle::key_id(&pinned), new_anchor.key_id);
    assert_eq!(
        bundle::verify(&signed, &pinned, &expect(Some(1)))
            .unwrap()
            .version,
        2
    );
    // The same request is not carried out twice.
    assert_steady(&fake, run(&fake, &ctx)).await;
    assert_eq!(published(&fake).1.key_id, new_anchor.key_id);
}

/// Two gateways of a tenant asked to rotate its key at the same moment:
/// the other gateway's rotation lands between this one's read and write
/// of the key Secret. The write carries the resourceVersion it read, so
/// it is refused (409) instead of overwriting that rotation; the
/// reconcile reads again and rotates from the key now stored: K0 -> K1
/// -> K2, both requests remembered, and the bundle signed with K2 leads
/// an agent pinned to K0 through both rotations.
#[tokio::test]
async fn concurrent_rotations_chain_and_lose_no_request() {
    use weir_operator::edge_gateway::builders as eb;
    let fake = FakeApiServer::new();
    fake.put(&gateway("external"));
    let ctx = context(&fake, Arc::default());
    let mut woken = Box::pin(ctx.key_rotations());
    run(&fake, &ctx).await;
    let (_, first) = published(&fake);
    let k0 = first.verifying_key().unwrap();
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.metadata.annotations = Some(
            [(
                "weir.dev/rotate-signing-key".to_string(),
                "pump-station-1-q1".to_string(),
            )]
            .into(),
        );
    });
    fake.before("PUT", "/secrets/weir-signing-key", |f| {
        let live: Secret = f.get(Some(NS), "weir-signing-key").unwrap();
        let k1 = eb::load_key(&live)
            .unwrap()
            .rotate("filtration-1-q1", chrono::Utc::now());
        f.put(&eb::key_secret(NS, &k1.key, &k1.chain, &k1.done));
    });
    fake.clear_calls();
    run(&fake, &ctx).await;
    let key_puts: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.contains("/secrets/weir-signing-key") && !c.starts_with("GET "))
        .collect();
    assert_eq!(
        key_puts,
        vec![
            "PUT /api/v1/namespaces/weir-riverside-water/secrets/weir-signing-key",
            "PUT /api/v1/namespaces/weir-riverside-water/secrets/weir-signing-key",
        ],
        "an update refused with 409, then one from the new key; never a forced apply"
    );
    let stored = eb::load_key(&fake.get::<Secret>(Some(NS), "weir-signing-key").unwrap()).unwrap();
    assert_eq!(stored.done, vec!["filtration-1-q1", "pump-station-1-q1"]);
    let ids: Vec<(&str, &str)> = stored
        .chain
        .iter()
        .map(|r| (r.old_key_id.as_str(), r.new_key.key_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0].0, first.key_id);
    assert_eq!(ids[0].1, ids[1].0, "K1 hands over to K2");
    let (signed, anchor) = published(&fake);
    assert_eq!(anchor.key_id, bundle::key_id(&stored.key.verifying_key()));
    assert_eq!(ids[1].1, anchor.key_id);
    let pinned = bundle::follow_rotations(&signed, &k0)
        .unwrap()
        .expect("the bundle leads from K0 to K2");
    assert_eq!(
        bundle::verify(&signed, &pinned, &expect(Some(1)))
            .unwrap()
            .version,
        2
    );
    // The rotation wakes the tenant's other gateways to sign with K2.
    assert_eq!(
        futures::FutureExt::now_or_never(futures::StreamExt::next(&mut woken)),
        Some(Some(()))
    );
    // Done once: the next reconcile writes nothing.
    assert_steady(&fake, run(&fake, &ctx)).await;
}

#[tokio::test]
async fn a_reissue_request_is_left_to_the_api() {
    let fake = FakeApiServer::new();
    fake.put(&gateway("external"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.metadata.annotations =
            Some([("weir.dev/reissue-token".to_string(), "1".to_string())].into());
    });
    run(&fake, &ctx).await;
    assert!(fake
        .get::<Secret>(Some(NS), "pump-station-1-enrollment")
        .is_none());
}

#[tokio::test]
async fn in_cluster_gateway_runs_the_agent_against_its_cluster() {
    let fake = FakeApiServer::new();
    fake.put(&gateway("inCluster"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    let st = stored(&fake).status.clone().unwrap();
    let d = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (d.reason.as_str(), st.phase.as_deref()),
        ("ClusterMissing", Some("Degraded"))
    );
    fake.put(&cluster(3));
    run(&fake, &ctx).await;
    let dep = fake
        .get::<Deployment>(Some(NS), "pump-station-1-agent")
        .expect("agent deployment");
    let c = dep.spec.template.spec.unwrap().containers[0].clone();
    let args = c.args.unwrap().join(" ");
    // Enrolls with the api (plain HTTP in-cluster by default: said so).
    assert!(
        args.starts_with("run --server http://weir-api.weir-system.svc:8080 --insecure-http"),
        "{args}"
    );
    assert!(!args.contains("--bundle"), "{args}");
    assert!(
        args.contains("--mqtt-url mqtt://riverside-mqtt.weir-riverside-water.svc:1883"),
        "{args}"
    );
    assert_eq!(
        stored(&fake).status.as_ref().unwrap().phase.as_deref(),
        Some("Ready")
    );
    assert_steady(&fake, run(&fake, &ctx)).await;
}

fn agent_pvc(fake: &FakeApiServer) -> Option<PersistentVolumeClaim> {
    fake.get::<PersistentVolumeClaim>(Some(NS), "pump-station-1-agent-data")
}

fn pvc_size(p: &PersistentVolumeClaim) -> String {
    weir_operator::mqtt_cluster::builders::claim_size(p)
        .expect("storage request")
        .to_string()
}

#[tokio::test]
async fn in_cluster_agent_keeps_its_queue_on_a_volume_sized_from_the_buffer() {
    let fake = FakeApiServer::new();
    fake.put(&cluster(3));
    fake.put(&gateway("inCluster"));
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    let pvc = agent_pvc(&fake).expect("agent volume");
    assert_eq!(pvc_size(&pvc), "1280Mi", "1 GiB buffer + margin");
    assert_eq!(
        pvc.metadata.owner_references.as_ref().unwrap()[0].name,
        "pump-station-1",
        "deleted with the gateway unless the spec says Retain"
    );
    let dep = fake
        .get::<Deployment>(Some(NS), "pump-station-1-agent")
        .unwrap();
    let vols = dep.spec.template.spec.unwrap().volumes.unwrap();
    let data = vols.iter().find(|v| v.name == "data").unwrap();
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().claim_name,
        "pump-station-1-agent-data"
    );
    assert_steady(&fake, run(&fake, &ctx)).await;

    // A bigger buffer grows the volume; a smaller one keeps it.
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.spec.config.uplink.buffer.max_bytes = 4 * 1024 * 1024 * 1024
    });
    run(&fake, &ctx).await;
    assert_eq!(pvc_size(&agent_pvc(&fake).unwrap()), "5120Mi");
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.spec.config.uplink.buffer.max_bytes = 64 * 1024 * 1024
    });
    run(&fake, &ctx).await;
    assert_eq!(
        pvc_size(&agent_pvc(&fake).unwrap()),
        "5120Mi",
        "volumes never shrink"
    );

    // A storage class that cannot expand: Degraded with what to do, no error loop.
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.spec.config.uplink.buffer.max_bytes = 8 * 1024 * 1024 * 1024
    });
    fake.fail("PATCH", "persistentvolumeclaims", 422, 1);
    run(&fake, &ctx).await;
    let st = stored(&fake).status.clone().unwrap();
    let d = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(d.reason, "AgentStorageNotExpandable");
    assert!(d.message.contains("allowVolumeExpansion"), "{}", d.message);
}

#[tokio::test]
async fn agent_volume_is_retained_only_when_the_spec_says_so() {
    let fake = FakeApiServer::new();
    fake.put(&cluster(3));
    let mut g = gateway("inCluster");
    g.spec.agent_storage = Some(weir_crds::edge_gateway::AgentStorage {
        storage_class_name: None,
        reclaim_policy: weir_crds::mqtt_cluster::ReclaimPolicy::Retain,
    });
    fake.put(&g);
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    let pvc = agent_pvc(&fake).expect("agent volume");
    assert!(
        pvc.metadata.owner_references.is_none(),
        "no owner: garbage collection keeps it when the gateway goes"
    );
    // Moving the agent out of the cluster keeps a retained volume...
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.spec.mode = weir_crds::GatewayMode::External
    });
    run(&fake, &ctx).await;
    assert!(fake
        .get::<Deployment>(Some(NS), "pump-station-1-agent")
        .is_none());
    assert!(agent_pvc(&fake).is_some());
    // ...and deletes one under the default policy.
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.spec.mode = weir_crds::GatewayMode::InCluster;
        g.spec.agent_storage = None;
    });
    run(&fake, &ctx).await;
    assert_eq!(
        agent_pvc(&fake).unwrap().metadata.owner_references.unwrap()[0].kind,
        "EdgeGateway",
        "Retain -> Delete hands the volume to the gateway"
    );
    fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
        g.spec.mode = weir_crds::GatewayMode::External
    });
    run(&fake, &ctx).await;
    assert!(agent_pvc(&fake).is_none());
}

#[tokio::test]
async fn invalid_config_is_not_signed() {
    let fake = FakeApiServer::new();
    let mut g = gateway("external");
    g.spec.config.devices[0].groups[0].tags[0].signal = None;
    fake.put(&g);
    let ctx = context(&fake, Arc::default());
    let action = run(&fake, &ctx).await;
    assert_eq!(action, Action::await_change());
    assert!(fake
        .get::<ConfigMap>(Some(NS), "pump-station-1-config")
        .is_none());
    let st = stored(&fake).status.clone().unwrap();
    let d = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(d.reason, "InvalidConfig");
    assert!(d.message.contains("signal"), "{}", d.message);
}

/// A mistake the API server no longer checks (CEL's cost budget; README):
/// the operator refuses it on the status with the field and the reason.
#[tokio::test]
async fn an_address_the_api_server_accepts_is_refused_on_the_status() {
    let fake = FakeApiServer::new();
    let mut g = gateway("external");
    let d = &mut g.spec.config.devices[0];
    d.adapter = weir_crds::gateway::AdapterKind::ModbusTcp;
    d.modbus = Some(serde_json::from_value(serde_json::json!({"host": "10.0.0.5"})).unwrap());
    d.groups[0].tags[0].address = "intake".into();
    fake.put(&g);
    let ctx = context(&fake, Arc::default());
    run(&fake, &ctx).await;
    assert!(fake
        .get::<ConfigMap>(Some(NS), "pump-station-1-config")
        .is_none());
    let st = stored(&fake).status.clone().unwrap();
    let d = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(d.reason, "InvalidConfig");
    assert!(
        d.message
            .contains("spec.devices[0].groups[0].tags[0].address: tag 'flow': 'intake' has no '!'"),
        "{}",
        d.message
    );
}
