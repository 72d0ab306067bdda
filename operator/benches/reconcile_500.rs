//! Reconcile 500 MqttClusters through the in-memory API server (kube's
//! tower-test mock service) and a mock EMQX API, then measure steady state:
//! reconciles per second and API writes per steady-state reconcile (goal 0).
//!
//! Run: `cargo bench -p weir-operator --bench reconcile_500`

use std::sync::Arc;
use std::time::Instant;

use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, Secret};
use kube::api::ObjectMeta;
use kube::ResourceExt;
use weir_crds::MqttCluster;
use weir_operator::context::EmqxLocator;
use weir_operator::metrics::Metrics;
use weir_operator::mqtt_cluster::builders as mb;
use weir_operator::testing::emqx::{node, MockEmqx};
use weir_operator::testing::FakeApiServer;
use weir_operator::{Context, OperatorConfig};

const CLUSTERS: usize = 500;
const NAMESPACES: usize = 50;
const CONCURRENCY: usize = 16;
const STEADY_ROUNDS: usize = 4;

struct PrefixLocator(String);

impl EmqxLocator for PrefixLocator {
    fn base_url(&self, c: &MqttCluster, _pod: &str) -> String {
        format!("{}/{}", self.0, c.name_any())
    }
}

fn cluster(i: usize) -> MqttCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
        "metadata": {"name": format!("plant-{i}"), "namespace": format!("weir-tenant-{}", i % NAMESPACES)},
        "spec": {"replicas": 3, "config": {"mqtt.max_packet_size": "\"1MB\""}}
    }))
    .unwrap()
}

async fn reconcile_all(fake: &FakeApiServer, ctx: &Arc<Context>) -> (usize, usize) {
    let clusters: Vec<Arc<MqttCluster>> = (0..CLUSTERS)
        .map(|i| {
            let c = cluster(i);
            Arc::new(
                fake.get::<MqttCluster>(c.metadata.namespace.as_deref(), &c.name_any())
                    .unwrap(),
            )
        })
        .collect();
    let results: Vec<_> = stream::iter(clusters)
        .map(|c| {
            let ctx = ctx.clone();
            async move { weir_operator::mqtt_cluster::reconcile(c, ctx).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let errors = results.iter().filter(|r| r.is_err()).count();
    (results.len(), errors)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fake = FakeApiServer::new();
    let emqx = MockEmqx::start(vec![], "bench-key", "bench-secret").await;
    // Each namespace belongs to a Tenant whose connection quota its clusters
    // share (one more read per reconcile, and listener limits in emqx.conf).
    for t in 0..NAMESPACES {
        fake.put(
            &serde_json::from_value::<weir_crds::Tenant>(serde_json::json!({
                "apiVersion": "weir.dev/v1alpha1", "kind": "Tenant",
                "metadata": {"name": format!("tenant-{t}")},
                "spec": {"displayName": format!("Tenant {t}"), "quota": {"maxMqttConnections": 30000}}
            }))
            .unwrap(),
        );
    }
    for i in 0..CLUSTERS {
        let c = cluster(i);
        fake.put(&c);
        // Pre-made credentials so one mock EMQX can answer for every cluster.
        fake.put(&Secret {
            metadata: ObjectMeta {
                name: Some(mb::api_secret_name(&c)),
                namespace: c.metadata.namespace.clone(),
                ..Default::default()
            },
            string_data: Some(
                [("api-key", "bench-key"), ("api-secret", "bench-secret")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        });
        emqx.with(|s| {
            s.by_prefix.insert(
                c.name_any(),
                (0..3)
                    .map(|o| node(&mb::node_name(&c, o), "5.8.6", 4))
                    .collect(),
            );
        });
    }
    let ctx = Arc::new(
        Context::new(
            fake.client(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
        )
        .with_emqx_locator(Arc::new(PrefixLocator(emqx.url.clone()))),
    );

    let start = Instant::now();
    let (n, errors) = reconcile_all(&fake, &ctx).await;
    let create_writes = fake.writes().len();
    println!(
        "create:       {n} reconciles, {errors} errors, {create_writes} writes, {:.2} s",
        start.elapsed().as_secs_f64()
    );

    // Play the StatefulSet controller: every node up and ready.
    for i in 0..CLUSTERS {
        let c = cluster(i);
        let ns = c.metadata.namespace.clone().unwrap();
        fake.edit::<StatefulSet, _>(Some(&ns), &c.name_any(), |s| {
            s.status = Some(StatefulSetStatus {
                replicas: 3,
                ready_replicas: Some(3),
                observed_generation: s.metadata.generation,
                current_revision: Some("rev1".into()),
                update_revision: Some("rev1".into()),
                ..Default::default()
            })
        });
        for o in 0..3 {
            let mut labels = mb::selector_labels(&c);
            labels.insert("controller-revision-hash".into(), "rev1".into());
            fake.put(&Pod {
                metadata: ObjectMeta {
                    name: Some(mb::pod_name(&c, o)),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                status: Some(PodStatus {
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    fake.clear_calls();
    let start = Instant::now();
    let (n, errors) = reconcile_all(&fake, &ctx).await;
    let total_to_steady = start.elapsed();
    println!(
        "to ready:     {n} reconciles, {errors} errors, {} writes, {:.2} s",
        fake.writes().len(),
        total_to_steady.as_secs_f64()
    );
    let ready = (0..CLUSTERS)
        .filter(|i| {
            let c = cluster(*i);
            fake.get::<MqttCluster>(c.metadata.namespace.as_deref(), &c.name_any())
                .and_then(|c| c.status)
                .and_then(|s| s.phase)
                .as_deref()
                == Some("Ready")
        })
        .count();
    let limited = (0..CLUSTERS)
        .filter(|i| {
            let c = cluster(*i);
            fake.get::<MqttCluster>(c.metadata.namespace.as_deref(), &c.name_any())
                .and_then(|c| c.status?.connection_limit)
                .is_some()
        })
        .count();
    println!("ready:        {ready} of {CLUSTERS} clusters ({limited} with the tenant's connection limit)");

    fake.clear_calls();
    let start = Instant::now();
    let mut total = 0;
    for _ in 0..STEADY_ROUNDS {
        total += reconcile_all(&fake, &ctx).await.0;
    }
    let secs = start.elapsed().as_secs_f64();
    let calls = fake.calls();
    let writes = fake.writes().len();
    println!(
        "steady state: {total} reconciles in {secs:.2} s = {:.0} reconciles/s",
        total as f64 / secs
    );
    println!(
        "steady state: {:.3} API writes per reconcile (goal 0), {:.1} API reads per reconcile, {} EMQX calls",
        writes as f64 / total as f64,
        (calls.len() - writes) as f64 / total as f64,
        emqx.calls().len()
    );
}
