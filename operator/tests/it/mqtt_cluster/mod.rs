//! MqttCluster reconciler against the in-memory API server and a mock
//! EMQX API, one module per concern; the shared cluster fixtures are here.

mod config;
mod drift;
mod findings;
mod lifecycle;
mod quota;
mod scale;
mod upgrade;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodCondition, PodStatus, Secret, Service};
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use weir_crds::MqttCluster;
use weir_operator::emqx::Node;
use weir_operator::mqtt_cluster::builders as mb;
use weir_operator::testing::emqx::{node, MockEmqx};
use weir_operator::testing::FakeApiServer;
use weir_operator::Context;

use crate::support::*;

pub fn cluster(replicas: i32) -> MqttCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
        "metadata": {"name": "riverside-mqtt", "namespace": NS},
        "spec": {"replicas": replicas}
    }))
    .unwrap()
}

pub fn stored_cluster(fake: &FakeApiServer) -> Arc<MqttCluster> {
    Arc::new(
        fake.get::<MqttCluster>(Some(NS), "riverside-mqtt")
            .expect("cluster stored"),
    )
}

pub fn api_key(fake: &FakeApiServer) -> (String, String) {
    let s = fake
        .get::<Secret>(Some(NS), "riverside-mqtt-api-credentials")
        .expect("api secret");
    let d = s
        .string_data
        .or_else(|| {
            s.data.map(|d| {
                d.into_iter()
                    .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
                    .collect()
            })
        })
        .unwrap();
    (d["api-key"].clone(), d["api-secret"].clone())
}

pub fn pod(ordinal: i32, revision: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("riverside-mqtt-{ordinal}")),
            namespace: Some(NS.into()),
            labels: Some(
                [
                    ("weir.dev/mqttcluster", "riverside-mqtt"),
                    ("app.kubernetes.io/component", "mqtt-broker"),
                    ("controller-revision-hash", revision),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn node_of(ordinal: i32, version: &str) -> Node {
    node(&mb::node_name(&cluster(3), ordinal), version, 10)
}

/// Play the StatefulSet controller: `replicas` pods on `revision`, all ready.
pub fn settle(fake: &FakeApiServer, replicas: i32, revision: &str) {
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.status = Some(StatefulSetStatus {
            replicas,
            ready_replicas: Some(replicas),
            observed_generation: s.metadata.generation,
            current_revision: Some(revision.into()),
            update_revision: Some(revision.into()),
            updated_replicas: Some(replicas),
            ..Default::default()
        })
    });
    for i in 0..replicas {
        fake.put(&pod(i, revision, true));
    }
}

/// A 3-node cluster reconciled to steady state, with its mock EMQX.
pub async fn steady_cluster(
    replicas: i32,
) -> (FakeApiServer, Arc<Context>, MockEmqx, Arc<Locator>) {
    steady_cluster_in(FakeApiServer::new(), replicas).await
}

/// [`steady_cluster`] on an API server that already holds other objects.
pub async fn steady_cluster_in(
    fake: FakeApiServer,
    replicas: i32,
) -> (FakeApiServer, Arc<Context>, MockEmqx, Arc<Locator>) {
    fake.put(&cluster(replicas));
    let locator = Arc::new(Locator::default());
    let ctx = context(&fake, locator.clone());
    reconcile_cluster(&fake, &ctx).await;
    let (key, secret) = api_key(&fake);
    let emqx = MockEmqx::start(
        (0..replicas).map(|i| node_of(i, "5.8.6")).collect(),
        &key,
        &secret,
    )
    .await;
    for i in 0..replicas {
        locator
            .0
            .lock()
            .unwrap()
            .insert(format!("riverside-mqtt-{i}"), emqx.url.clone());
    }
    settle(&fake, replicas, "rev1");
    // Server-side defaulting the operator must not fight (emqx-operator
    // patched Services forever over fields like these).
    for svc in ["riverside-mqtt", "riverside-mqtt-dashboard"] {
        fake.edit::<Service, _>(Some(NS), svc, |s| {
            let spec = s.spec.as_mut().unwrap();
            spec.cluster_ip = Some("10.96.0.17".into());
            spec.session_affinity = Some("None".into());
            spec.ports.as_mut().unwrap()[0].node_port = None;
        });
    }
    reconcile_cluster(&fake, &ctx).await;
    let st = stored_cluster(&fake).status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Ready"), "{st:?}");
    fake.clear_calls();
    (fake, ctx, emqx, locator)
}

pub fn condition(c: &MqttCluster, type_: &str) -> weir_crds::Condition {
    c.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|x| x.type_ == type_)
        .cloned()
        .unwrap()
}

pub fn sts(fake: &FakeApiServer) -> StatefulSet {
    fake.get::<StatefulSet>(Some(NS), "riverside-mqtt").unwrap()
}

pub fn partition(s: &StatefulSet) -> i32 {
    s.spec
        .update_strategy
        .as_ref()
        .unwrap()
        .rolling_update
        .as_ref()
        .unwrap()
        .partition
        .unwrap()
}

pub fn image(s: &StatefulSet) -> String {
    s.spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

pub fn roll(fake: &FakeApiServer, emqx: &MockEmqx, ordinals: &[i32], version: &str) {
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        let st = s.status.as_mut().unwrap();
        st.update_revision = Some("rev2".into());
        st.observed_generation = s.metadata.generation;
    });
    for o in ordinals {
        fake.put(&pod(*o, "rev2", true));
        emqx.with(|s| s.nodes[*o as usize].version = Some(version.into()));
    }
}

pub fn emqx_conf(fake: &FakeApiServer) -> String {
    fake.get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap()
        .data
        .unwrap()["emqx.conf"]
        .clone()
}

/// One MqttCluster reconcile of the stored cluster, which must succeed.
pub async fn reconcile_cluster(fake: &FakeApiServer, ctx: &Arc<Context>) -> Action {
    weir_operator::mqtt_cluster::reconcile(stored_cluster(fake), ctx.clone())
        .await
        .unwrap()
}
