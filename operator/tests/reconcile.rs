//! Reconcilers against the in-memory API server (kube's tower-test mock
//! service) and a mock EMQX API, asserting the exact calls they make.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateWaiting, ContainerStatus, PersistentVolumeClaim, Pod,
    PodCondition, PodStatus, Secret, Service,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use weir_crds::{MqttCluster, Tenant};
use weir_operator::context::EmqxLocator;
use weir_operator::emqx::Node;
use weir_operator::metrics::Metrics;
use weir_operator::mqtt_cluster::builders as mb;
use weir_operator::testing::emqx::{node, MockEmqx};
use weir_operator::testing::FakeApiServer;
use weir_operator::{Context, OperatorConfig};

const NS: &str = "weir-riverside-water";

/// Pods → mock EMQX URLs; unknown pods get a closed port.
#[derive(Default)]
struct Locator(Mutex<HashMap<String, String>>);

impl EmqxLocator for Locator {
    fn base_url(&self, _c: &MqttCluster, pod: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .get(pod)
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:9".into())
    }
}

fn context(fake: &FakeApiServer, locator: Arc<Locator>) -> Arc<Context> {
    context_with(fake, OperatorConfig::default(), locator)
}

/// [`context`] with other operator settings.
fn context_with(
    fake: &FakeApiServer,
    config: OperatorConfig,
    locator: Arc<Locator>,
) -> Arc<Context> {
    Arc::new(
        Context::new(fake.client(), config, Arc::new(Metrics::default()))
            .with_emqx_locator(locator),
    )
}

fn writes_without_events(fake: &FakeApiServer) -> Vec<String> {
    fake.writes()
        .into_iter()
        .filter(|w| !w.contains("/events"))
        .collect()
}

// ---------------------------------------------------------------- Tenant

fn tenant() -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "riverside-water"},
        "spec": {"displayName": "Riverside Water", "admins": [{"kind": "email", "name": "ops@riverside.example"}]}
    }))
    .unwrap()
}

fn stored_tenant(fake: &FakeApiServer) -> Arc<Tenant> {
    Arc::new(
        fake.get::<Tenant>(None, "riverside-water")
            .expect("tenant stored"),
    )
}

#[tokio::test]
async fn tenant_create_path_writes_each_object_once_in_order() {
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    let action = weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        fake.calls(),
        vec![
            "PATCH /apis/weir.dev/v1alpha1/tenants/riverside-water",
            // Is the namespace someone else's? Then `ensure` reads it again.
            "GET /api/v1/namespaces/weir-riverside-water",
            "GET /api/v1/namespaces/weir-riverside-water",
            "PATCH /api/v1/namespaces/weir-riverside-water",
            "GET /api/v1/namespaces/weir-riverside-water/resourcequotas/weir-quota",
            "PATCH /api/v1/namespaces/weir-riverside-water/resourcequotas/weir-quota",
            "GET /api/v1/namespaces/weir-riverside-water/limitranges/weir-limits",
            "PATCH /api/v1/namespaces/weir-riverside-water/limitranges/weir-limits",
            "GET /apis/networking.k8s.io/v1/namespaces/weir-riverside-water/networkpolicies/weir-isolate",
            "PATCH /apis/networking.k8s.io/v1/namespaces/weir-riverside-water/networkpolicies/weir-isolate",
            "GET /apis/networking.k8s.io/v1/namespaces/weir-riverside-water/networkpolicies/weir-allow-api-to-brokers",
            "PATCH /apis/networking.k8s.io/v1/namespaces/weir-riverside-water/networkpolicies/weir-allow-api-to-brokers",
            "GET /apis/rbac.authorization.k8s.io/v1/namespaces/weir-riverside-water/rolebindings/weir-tenant-admins",
            "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/weir-riverside-water/rolebindings/weir-tenant-admins",
            // The operator's own access to Secrets, in this namespace only.
            "GET /apis/rbac.authorization.k8s.io/v1/namespaces/weir-riverside-water/rolebindings/weir-operator-secrets",
            "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/weir-riverside-water/rolebindings/weir-operator-secrets",
            "PATCH /apis/weir.dev/v1alpha1/tenants/riverside-water/status",
            "POST /apis/events.k8s.io/v1/namespaces/default/events",
        ]
    );
    let t = stored_tenant(&fake);
    assert_eq!(
        t.metadata.finalizers.as_deref(),
        Some(&["weir.dev/tenant-protection".to_string()][..])
    );
    let st = t.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Ready"));
    assert_eq!(st.namespace.as_deref(), Some(NS));
    assert_eq!(st.observed_generation, Some(1));
    let ns = fake
        .get::<k8s_openapi::api::core::v1::Namespace>(None, NS)
        .unwrap();
    assert_eq!(
        ns.metadata.owner_references.unwrap()[0].name,
        "riverside-water"
    );
    let rb = fake
        .get::<RoleBinding>(Some(NS), "weir-operator-secrets")
        .unwrap();
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("ClusterRole", "weir-operator-secrets")
    );
    let s = &rb.subjects.unwrap()[0];
    assert_eq!(
        (s.kind.as_str(), s.namespace.as_deref(), s.name.as_str()),
        ("ServiceAccount", Some("weir-system"), "weir-operator")
    );
}

/// The operator binds the ClusterRole and ServiceAccount its flags name;
/// when the role's name changes, the API server refuses the new roleRef
/// (immutable, 422) and the binding is replaced.
#[tokio::test]
async fn tenant_operator_secrets_binding_follows_flags_and_is_replaced_on_role_change() {
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    let config = OperatorConfig {
        service_account: "ops-operator".into(),
        operator_namespace: "ops".into(),
        secrets_role: "ops-operator-secrets".into(),
        ..Default::default()
    };
    let ctx = Arc::new(Context::new(
        fake.client(),
        config,
        Arc::new(Metrics::default()),
    ));
    fake.clear_calls();
    fake.fail("PATCH", "/rolebindings/weir-operator-secrets", 422, 1);
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    let binding = "/apis/rbac.authorization.k8s.io/v1/namespaces/weir-riverside-water/rolebindings/weir-operator-secrets";
    let calls: Vec<String> = fake
        .writes()
        .into_iter()
        .filter(|c| c.contains("/rolebindings/"))
        .collect();
    assert_eq!(
        calls,
        vec![
            format!("PATCH {binding}"),
            format!("DELETE {binding}"),
            format!("PATCH {binding}"),
        ]
    );
    let rb = fake
        .get::<RoleBinding>(Some(NS), "weir-operator-secrets")
        .unwrap();
    assert_eq!(rb.role_ref.name, "ops-operator-secrets");
    let s = &rb.subjects.unwrap()[0];
    assert_eq!(
        (s.namespace.as_deref(), s.name.as_str()),
        (Some("ops"), "ops-operator")
    );
}

/// A namespace `weir-<name>` that someone else made is not taken over: the
/// Tenant says why, and nothing is written into the namespace.
#[tokio::test]
async fn tenant_refuses_a_namespace_it_does_not_own() {
    let fake = FakeApiServer::new();
    fake.put(&k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    let action = weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let st = stored_tenant(&fake).status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Degraded"));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "NamespaceNotOwned");
    assert!(
        ready.message.contains("does not belong to this Tenant"),
        "{}",
        ready.message
    );
    let writes: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET ") && !c.contains("/tenants/") && !c.contains("/events"))
        .collect();
    assert!(
        writes.is_empty(),
        "wrote into a namespace not its own: {writes:?}"
    );
    let ns = fake
        .get::<k8s_openapi::api::core::v1::Namespace>(None, NS)
        .unwrap();
    assert!(ns.metadata.owner_references.is_none());
}

#[tokio::test]
async fn tenant_no_change_path_makes_zero_writes() {
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    fake.clear_calls();
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "second reconcile must not write"
    );
    assert!(fake.calls().iter().all(|c| c.starts_with("GET ")));
}

#[tokio::test]
async fn tenant_deletion_is_refused_while_clusters_remain_unless_cascade() {
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    fake.put(&cluster(3));
    fake.edit::<Tenant, _>(None, "riverside-water", |t| {
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ))
    });
    fake.clear_calls();
    let action = weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let t = stored_tenant(&fake);
    assert!(t
        .metadata
        .finalizers
        .as_ref()
        .unwrap()
        .contains(&"weir.dev/tenant-protection".to_string()));
    let st = t.status.clone().unwrap();
    let degraded = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "DeletionBlocked");
    assert!(
        degraded.message.contains("riverside-mqtt") && degraded.message.contains("cascadeDelete"),
        "{}",
        degraded.message
    );
    // Asking again changes nothing: no status or event churn.
    fake.clear_calls();
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
    // With cascade the finalizer goes and the Tenant is gone.
    fake.edit::<Tenant, _>(None, "riverside-water", |t| t.spec.cascade_delete = true);
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(fake.get::<Tenant>(None, "riverside-water").is_none());
}

#[tokio::test]
async fn tenant_errors_requeue_with_growing_backoff() {
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    fake.fail("PATCH", "resourcequotas", 500, 2);
    for expected in [5, 10] {
        let t = stored_tenant(&fake);
        let err = weir_operator::tenant::reconcile(t.clone(), ctx.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(
            weir_operator::tenant::error_policy(t, &err, ctx.clone()),
            Action::requeue(Duration::from_secs(expected))
        );
    }
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(ctx
        .metrics
        .render()
        .contains("weir_operator_reconcile_errors_total{controller=\"tenant\",error=\"kube\"} 2"));
}

// ----------------------------------------------------------- MqttCluster

fn cluster(replicas: i32) -> MqttCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
        "metadata": {"name": "riverside-mqtt", "namespace": NS},
        "spec": {"replicas": replicas}
    }))
    .unwrap()
}

fn stored_cluster(fake: &FakeApiServer) -> Arc<MqttCluster> {
    Arc::new(
        fake.get::<MqttCluster>(Some(NS), "riverside-mqtt")
            .expect("cluster stored"),
    )
}

fn api_key(fake: &FakeApiServer) -> (String, String) {
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

fn pod(ordinal: i32, revision: &str, ready: bool) -> Pod {
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

fn node_of(ordinal: i32, version: &str) -> Node {
    node(&mb::node_name(&cluster(3), ordinal), version, 10)
}

/// Play the StatefulSet controller: `replicas` pods on `revision`, all ready.
fn settle(fake: &FakeApiServer, replicas: i32, revision: &str) {
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
async fn steady_cluster(replicas: i32) -> (FakeApiServer, Arc<Context>, MockEmqx, Arc<Locator>) {
    steady_cluster_in(FakeApiServer::new(), replicas).await
}

/// [`steady_cluster`] on an API server that already holds other objects.
async fn steady_cluster_in(
    fake: FakeApiServer,
    replicas: i32,
) -> (FakeApiServer, Arc<Context>, MockEmqx, Arc<Locator>) {
    fake.put(&cluster(replicas));
    let locator = Arc::new(Locator::default());
    let ctx = context(&fake, locator.clone());
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
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
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let st = stored_cluster(&fake).status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Ready"), "{st:?}");
    fake.clear_calls();
    (fake, ctx, emqx, locator)
}

fn condition(c: &MqttCluster, type_: &str) -> weir_crds::Condition {
    c.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|x| x.type_ == type_)
        .cloned()
        .unwrap()
}

fn sts(fake: &FakeApiServer) -> StatefulSet {
    fake.get::<StatefulSet>(Some(NS), "riverside-mqtt").unwrap()
}

fn partition(s: &StatefulSet) -> i32 {
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

fn image(s: &StatefulSet) -> String {
    s.spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test]
async fn cluster_create_path_writes_in_order() {
    let fake = FakeApiServer::new();
    fake.put(&cluster(3));
    let ctx = context(&fake, Arc::default());
    let action = weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "a new cluster is watched closely"
    );
    let p = "/api/v1/namespaces/weir-riverside-water";
    let a = "/apis/apps/v1/namespaces/weir-riverside-water";
    assert_eq!(
        writes_without_events(&fake),
        vec![
            format!("POST {p}/secrets"),
            format!("POST {p}/secrets"),
            format!("PATCH {p}/configmaps/riverside-mqtt-config"),
            format!("PATCH {p}/services/riverside-mqtt-headless"),
            format!("PATCH {p}/services/riverside-mqtt"),
            format!("PATCH {p}/services/riverside-mqtt-dashboard"),
            "PATCH /apis/policy/v1/namespaces/weir-riverside-water/poddisruptionbudgets/riverside-mqtt".to_string(),
            format!("PATCH {a}/statefulsets/riverside-mqtt"),
            "PATCH /apis/weir.dev/v1alpha1/namespaces/weir-riverside-water/mqttclusters/riverside-mqtt/status".to_string(),
        ]
    );
    let s = sts(&fake);
    assert_eq!(s.spec.replicas, Some(3));
    assert_eq!(partition(&s), 0);
    assert_eq!(image(&s), "emqx/emqx:5.8.6");
    let c = stored_cluster(&fake);
    assert_eq!(
        c.status.as_ref().unwrap().phase.as_deref(),
        Some("Provisioning")
    );
    assert!(c.metadata.finalizers.is_none(), "Retain needs no finalizer");
    assert_eq!(
        c.status.as_ref().unwrap().endpoints,
        vec!["mqtt://riverside-mqtt.weir-riverside-water.svc:1883"]
    );
}

#[tokio::test]
async fn cluster_no_change_path_makes_zero_writes_despite_server_defaults() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    for _ in 0..3 {
        let action = weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    }
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "steady state must not write (Services, pods, status)"
    );
    // Health comes from EMQX's API, every time.
    assert!(
        emqx.calls()
            .iter()
            .filter(|c| *c == "GET /api/v5/nodes")
            .count()
            >= 3
    );
    let c = stored_cluster(&fake);
    let st = c.status.as_ref().unwrap();
    assert_eq!(
        (st.replicas, st.ready_replicas, st.ready_text.as_deref()),
        (3, 3, Some("3/3"))
    );
    assert_eq!(st.current_version.as_deref(), Some("5.8.6"));
    assert_eq!(st.nodes.len(), 3);
    assert_eq!(
        condition(&c, "Ready").status,
        weir_crds::ConditionStatus::True
    );
}

#[tokio::test]
async fn moving_connection_counts_do_not_cause_a_status_write_loop() {
    let (fake, ctx, emqx, locator) = steady_cluster(3).await;
    // Clients come and go between every reconcile.
    for i in 0..5u64 {
        emqx.with(|s| s.nodes[0].connections = 100 + i);
        weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
            .await
            .unwrap();
    }
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "counts alone are refreshed at most once per interval"
    );
    // Once the interval has passed they are written.
    let config = OperatorConfig {
        status_refresh_secs: 0,
        ..Default::default()
    };
    let ctx = context_with(&fake, config, locator);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes().len(), 1);
    assert_eq!(
        stored_cluster(&fake).status.as_ref().unwrap().nodes[0].connections,
        104
    );
}

#[tokio::test]
async fn scale_down_evacuates_the_highest_node_before_shrinking() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    emqx.with(|s| {
        s.rebalance_available = true;
        s.drain_after_polls = 2;
    });
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 2);
    let leaving = mb::node_name(&cluster(3), 2);

    // 1: evacuation starts; the StatefulSet keeps 3 nodes.
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    assert!(emqx.calls().contains(&format!(
        "POST /api/v5/load_rebalance/{leaving}/evacuation/start"
    )));
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Scaling")
    );
    // 2: sessions still draining; still 3.
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    assert!(condition(&stored_cluster(&fake), "Progressing")
        .message
        .contains("evacuating node riverside-mqtt-2"));
    // Polling the drain does not rewrite the status each time.
    fake.clear_calls();
    emqx.with(|s| s.drain_after_polls = 100);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
    emqx.with(|s| s.drain_after_polls = 0);
    // 3: drained: now, and only now, the StatefulSet shrinks.
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(sts(&fake).spec.replicas, Some(2));
    let evac_started = emqx
        .calls()
        .iter()
        .filter(|c| c.ends_with("/evacuation/start"))
        .count();
    assert_eq!(evac_started, 1, "evacuation is started once");
    // The pod goes; EMQX lists its node as stopped: it is removed from the cluster.
    fake.remove::<Pod>(Some(NS), "riverside-mqtt-2");
    settle(&fake, 2, "rev1");
    emqx.with(|s| s.nodes[2].node_status = "stopped".into());
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx
        .calls()
        .contains(&format!("DELETE /api/v5/cluster/{leaving}/force_leave")));
    assert_eq!(emqx.with(|s| s.nodes.len()), 2);
    let c = stored_cluster(&fake);
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(
        c.status.as_ref().unwrap().ready_text.as_deref(),
        Some("2/2")
    );
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn a_cancelled_scale_down_stops_the_evacuation() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    emqx.with(|s| {
        s.rebalance_available = true;
        s.drain_after_polls = 100;
    });
    let leaving = mb::node_name(&cluster(3), 2);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 2);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(emqx.with(|s| s.evacuations.len()), 1);
    // Back to 3 before node 2 drained: it must take connections again.
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 3);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(
        emqx.calls().contains(&format!(
            "POST /api/v5/load_rebalance/{leaving}/evacuation/stop"
        )),
        "{:?}",
        emqx.calls()
    );
    assert_eq!(emqx.with(|s| s.evacuations.len()), 0);
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    let st = stored_cluster(&fake).status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Ready"), "{st:?}");
    // Steady again: EMQX is not asked about evacuations on every round.
    let before = emqx.calls().len();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(!emqx.calls()[before..]
        .iter()
        .any(|c| c.contains("load_rebalance")));
}

#[tokio::test]
async fn scale_down_without_evacuation_api_shrinks_with_a_warning() {
    // Open-source EMQX 5.8 answers 404 to the rebalance API.
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| c.spec.replicas = 2);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(sts(&fake).spec.replicas, Some(2));
    assert!(emqx
        .calls()
        .contains(&"GET /api/v5/load_rebalance/global_status".to_string()));
    assert!(fake.writes().iter().any(|w| w.contains("/events")));
}

/// Play the StatefulSet controller after a template change up to `partition`.
fn roll(fake: &FakeApiServer, emqx: &MockEmqx, ordinals: &[i32], version: &str) {
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

#[tokio::test]
async fn no_upgrade_across_the_licence_boundary_without_a_license() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    let before = sts(&fake);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.9.1".into()
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        sts(&fake).spec,
        before.spec,
        "the 5.8 nodes are left as they are"
    );
    let c = stored_cluster(&fake);
    let d = condition(&c, "Degraded");
    assert_eq!(d.reason, "LicenseRequired");
    assert!(d.message.contains("kept as they are"), "{}", d.message);
    assert_eq!(
        c.status.as_ref().unwrap().current_version.as_deref(),
        Some("5.8.6")
    );
}

#[tokio::test]
async fn a_rollout_step_that_waits_too_long_is_reported() {
    let (fake, _ctx, _emqx, locator) = steady_cluster(3).await;
    let config = OperatorConfig {
        rollout_timeout_secs: 0,
        ..Default::default()
    };
    let ctx = context_with(&fake, config, locator);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.7".into()
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let c = stored_cluster(&fake);
    let d = condition(&c, "Degraded");
    assert_eq!(d.reason, "RolloutTimedOut");
    assert!(d.message.contains("riverside-mqtt-2"), "{}", d.message);
    assert_eq!(
        partition(&sts(&fake)),
        2,
        "the rollout itself goes on waiting"
    );
}

#[tokio::test]
async fn upgrade_goes_one_node_at_a_time_via_partition() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.7".into()
    });

    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let s = sts(&fake);
    assert_eq!(
        (image(&s), partition(&s)),
        ("emqx/emqx:5.8.7".to_string(), 2),
        "only the highest node first"
    );
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Upgrading")
    );

    // Node 2 restarted on the new image but has not rejoined EMQX yet: hold.
    roll(&fake, &emqx, &[2], "5.8.7");
    emqx.with(|s| s.nodes[2].node_status = "stopped".into());
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        partition(&sts(&fake)),
        2,
        "next node waits until the upgraded one rejoined"
    );
    emqx.with(|s| s.nodes[2].node_status = "running".into());
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(partition(&sts(&fake)), 1);
    roll(&fake, &emqx, &[1], "5.8.7");
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(partition(&sts(&fake)), 0);
    roll(&fake, &emqx, &[0], "5.8.7");
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.status.as_mut().unwrap().current_revision = Some("rev2".into())
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let c = stored_cluster(&fake);
    let st = c.status.as_ref().unwrap();
    assert_eq!(
        (st.phase.as_deref(), st.current_version.as_deref()),
        (Some("Ready"), Some("5.8.7"))
    );
    assert!(st
        .nodes
        .iter()
        .all(|n| n.version.as_deref() == Some("5.8.7")));
    // No old nodes left and no further writes.
    assert!(!emqx.calls().iter().any(|c| c.contains("force_leave")));
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn upgrade_stuck_on_bad_image_recovers_when_image_is_corrected() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.99".into()
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    // The StatefulSet controller starts node 2 on the bad image; it cannot pull.
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        let st = s.status.as_mut().unwrap();
        st.update_revision = Some("rev-bad".into());
        st.observed_generation = s.metadata.generation;
    });
    let mut bad = pod(2, "rev-bad", false);
    bad.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "emqx".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("manifest for emqx/emqx:5.8.99 not found".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    fake.put(&bad);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let c = stored_cluster(&fake);
    let degraded = condition(&c, "Degraded");
    assert_eq!(degraded.reason, "UpgradeStalled");
    assert!(
        degraded.message.contains("riverside-mqtt-2")
            && degraded.message.contains("ImagePullBackOff"),
        "{}",
        degraded.message
    );
    assert_eq!(partition(&sts(&fake)), 2, "a failed node stops the rollout");

    // The user corrects the version: the template changes and the stuck pod
    // is replaced (the StatefulSet controller alone would wait forever).
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.version = "5.8.7".into()
    });
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(image(&sts(&fake)), "emqx/emqx:5.8.7");
    assert!(fake.calls().contains(
        &"DELETE /api/v1/namespaces/weir-riverside-water/pods/riverside-mqtt-2".to_string()
    ));
    assert!(fake.get::<Pod>(Some(NS), "riverside-mqtt-2").is_none());
    assert!(
        fake.get::<Pod>(Some(NS), "riverside-mqtt-1").is_some(),
        "healthy nodes are left alone"
    );
}

#[tokio::test]
async fn a_removed_runtime_setting_is_reset_and_authentication_changes_reach_running_nodes() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    let before = sts(&fake);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"2MB\"".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.config.clear();
        c.spec.authentication.jwks_url = Some("https://idp.example/jwks.json".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(
        emqx.calls()
            .contains(&"POST /api/v5/configs_reset/mqtt?conf_path=max_packet_size".to_string()),
        "{:?}",
        emqx.calls()
    );
    let pushed = emqx.with(|s| s.configs.clone());
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    assert!(
        pushed[1].contains("endpoint = \"https://idp.example/jwks.json\""),
        "{}",
        pushed[1]
    );
    assert!(!pushed[1].contains("max_packet_size"), "{}", pushed[1]);
    assert!(emqx_conf(&fake).contains("https://idp.example/jwks.json"));
    assert!(!emqx_conf(&fake).contains("max_packet_size"));
    assert_eq!(sts(&fake).spec, before.spec, "no restart for either");
}

#[tokio::test]
async fn runtime_config_change_is_applied_through_the_api_without_restart() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    let before = sts(&fake);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"2MB\"".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx
        .calls()
        .contains(&"PUT /api/v5/configs?mode=merge".to_string()));
    let pushed = emqx.with(|s| s.configs.clone());
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(
        pushed[0].contains("mqtt.max_packet_size = \"2MB\"\n"),
        "{}",
        pushed[0]
    );
    let cm = fake
        .get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap();
    assert!(cm.data.unwrap()["emqx.conf"].contains("mqtt.max_packet_size = \"2MB\""));
    assert_eq!(
        sts(&fake).spec,
        before.spec,
        "a runtime setting never restarts nodes"
    );
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
    assert_eq!(emqx.with(|s| s.configs.len()), 1, "applied once");
}

#[tokio::test]
async fn restart_config_change_rolls_nodes_one_at_a_time() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("node.process_limit".into(), "4194304".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(partition(&sts(&fake)), 2);
    assert!(!emqx
        .calls()
        .iter()
        .any(|c| c.starts_with("PUT /api/v5/configs")));
}

#[tokio::test]
async fn rejected_config_is_reported_and_retried() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    emqx.with(|s| s.config_error = Some("mqtt.max_packet_size: bad_size".into()));
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "lots".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert_eq!(d.reason, "ConfigRejected");
    assert!(d.message.contains("bad_size"), "{}", d.message);
    let cm = fake
        .get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap();
    assert!(
        !cm.data.unwrap()["emqx.conf"].contains("lots"),
        "the file keeps the last good config"
    );
    emqx.with(|s| s.config_error = None);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"1MB\"".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
}

#[tokio::test]
async fn ghost_nodes_are_removed_from_the_cluster() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    let ghost =
        "emqx@riverside-mqtt-5.riverside-mqtt-headless.weir-riverside-water.svc.cluster.local";
    emqx.with(|s| {
        let mut n = node(ghost, "5.8.5", 0);
        n.node_status = "stopped".into();
        s.nodes.push(n);
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx
        .calls()
        .contains(&format!("DELETE /api/v5/cluster/{ghost}/force_leave")));
    assert_eq!(emqx.with(|s| s.nodes.len()), 3);
}

#[tokio::test]
async fn emqx_is_reached_through_any_ready_node() {
    let (fake, ctx, emqx, locator) = steady_cluster(3).await;
    // Node 0's API is down (closed port); the others answer.
    locator
        .0
        .lock()
        .unwrap()
        .insert("riverside-mqtt-0".into(), "http://127.0.0.1:9".into());
    let before = emqx.calls().len();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx.calls().len() > before);
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
    // All down: Degraded with a reason that says what is wrong.
    for i in 0..3 {
        locator
            .0
            .lock()
            .unwrap()
            .insert(format!("riverside-mqtt-{i}"), "http://127.0.0.1:9".into());
    }
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        condition(&stored_cluster(&fake), "Degraded").reason,
        "EmqxApiUnreachable"
    );
}

#[tokio::test]
async fn deletion_removes_volumes_only_when_told() {
    for (policy, expect_deleted) in [("Delete", true), ("Retain", false)] {
        let fake = FakeApiServer::new();
        let mut c = cluster(3);
        c.spec.storage.reclaim_policy = serde_json::from_value(serde_json::json!(policy)).unwrap();
        fake.put(&c);
        let ctx = context(&fake, Arc::default());
        weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
            .await
            .unwrap();
        let has_finalizer = stored_cluster(&fake)
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .contains(&"weir.dev/pvc-cleanup".to_string());
        assert_eq!(has_finalizer, expect_deleted, "{policy}");
        fake.put(&PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-riverside-mqtt-0".into()),
                namespace: Some(NS.into()),
                labels: Some(mb::selector_labels(&c)),
                ..Default::default()
            },
            ..Default::default()
        });
        fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
            c.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-01-01T00:00:00Z".parse().unwrap(),
                ));
        });
        fake.clear_calls();
        weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
            .await
            .unwrap();
        let pvc_left = fake
            .get::<PersistentVolumeClaim>(Some(NS), "data-riverside-mqtt-0")
            .is_some();
        assert_eq!(pvc_left, !expect_deleted, "{policy}: volumes");
        if expect_deleted {
            assert!(
                fake.get::<MqttCluster>(Some(NS), "riverside-mqtt")
                    .is_none(),
                "finalizer released"
            );
        } else {
            assert_eq!(
                writes_without_events(&fake),
                Vec::<String>::new(),
                "Retain: the operator touches nothing"
            );
        }
    }
}

#[tokio::test]
async fn paused_cluster_is_left_alone() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.metadata.annotations = Some([("weir.dev/paused".to_string(), "true".to_string())].into());
        c.spec.replicas = 5;
    });
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        fake.calls(),
        vec!["PATCH /apis/weir.dev/v1alpha1/namespaces/weir-riverside-water/mqttclusters/riverside-mqtt/status"]
    );
    let c = stored_cluster(&fake);
    assert_eq!(
        condition(&c, "Paused").status,
        weir_crds::ConditionStatus::True
    );
    assert_eq!(sts(&fake).spec.replicas, Some(3));
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn unrealisable_specs_are_degraded_with_what_to_fix() {
    let fake = FakeApiServer::new();
    let mut c: MqttCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
        "metadata": {"name": "riverside-mqtt", "namespace": NS},
        "spec": {"replicas": 3, "version": "5.9.1",
                 "storage": {"storageClassName": "fast-ssd"},
                 "listeners": [{"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "mqtt-tls"}]}
    }))
    .unwrap();
    c.metadata.generation = Some(1);
    fake.put(&c);
    let ctx = context(&fake, Arc::default());
    let action = weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert_eq!(d.reason, "LicenseRequired");
    for needle in ["spec.license.secretRef", "mqtt-tls", "fast-ssd"] {
        assert!(
            d.message.contains(needle),
            "{needle} missing in: {}",
            d.message
        );
    }
    // Fix what can be fixed: the messages go away.
    fake.put(&StorageClass {
        metadata: ObjectMeta {
            name: Some("fast-ssd".into()),
            ..Default::default()
        },
        provisioner: "x".into(),
        ..Default::default()
    });
    fake.put(&Secret {
        metadata: ObjectMeta {
            name: Some("mqtt-tls".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert!(
        !d.message.contains("fast-ssd") && !d.message.contains("mqtt-tls"),
        "{}",
        d.message
    );
}

#[tokio::test]
async fn missing_tls_secret_is_requested_from_cert_manager_when_installed() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let fake = FakeApiServer::new();
    let mut c = cluster(3);
    c.spec.listeners.push(
        serde_json::from_value(serde_json::json!(
            {"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "riverside-mqtt-tls"}
        ))
        .unwrap(),
    );
    fake.put(&c);
    let mut crd = CustomResourceDefinition::default();
    crd.metadata.name = Some("certificates.cert-manager.io".into());
    fake.put(&crd);
    let ctx = context(&fake, Arc::default());
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let path = "PATCH /apis/cert-manager.io/v1/namespaces/weir-riverside-water/certificates/riverside-mqtt-tls";
    assert!(
        fake.calls().contains(&path.to_string()),
        "{:?}",
        fake.calls()
    );
    let p = condition(&stored_cluster(&fake), "Progressing");
    assert_eq!(p.reason, "CertificatePending");
    assert_eq!(
        condition(&stored_cluster(&fake), "Degraded").status,
        weir_crds::ConditionStatus::False
    );
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(
        !fake.calls().contains(&path.to_string()),
        "the Certificate is requested once"
    );
}

#[tokio::test]
async fn quota_exceeded_is_reported_from_the_statefulset_events() {
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    fake.remove::<Pod>(Some(NS), "riverside-mqtt-2");
    fake.put(&Event {
        metadata: ObjectMeta { name: Some("riverside-mqtt.1".into()), namespace: Some(NS.into()), ..Default::default() },
        involved_object: ObjectReference {
            kind: Some("StatefulSet".into()),
            name: Some("riverside-mqtt".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        reason: Some("FailedCreate".into()),
        message: Some("create Pod riverside-mqtt-2 in StatefulSet riverside-mqtt failed error: pods \"riverside-mqtt-2\" is forbidden: exceeded quota: weir-quota, requested: limits.memory=1Gi, used: limits.memory=16Gi, limited: limits.memory=16Gi".into()),
        ..Default::default()
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert_eq!(d.reason, "PodCreationFailed");
    assert!(
        d.message.contains("exceeded quota: weir-quota"),
        "{}",
        d.message
    );
}

#[tokio::test]
async fn cluster_errors_requeue_and_are_counted() {
    let fake = FakeApiServer::new();
    fake.put(&cluster(3));
    let ctx = context(&fake, Arc::default());
    fake.fail("PATCH", "statefulsets", 500, 1);
    let c = stored_cluster(&fake);
    let err = weir_operator::mqtt_cluster::reconcile(c.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(
        weir_operator::mqtt_cluster::error_policy(c, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    // The next attempt completes, reusing the Secrets made the first time.
    let secret_before = api_key(&fake);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        api_key(&fake),
        secret_before,
        "generated credentials are never regenerated"
    );
    assert!(fake
        .get::<StatefulSet>(Some(NS), "riverside-mqtt")
        .is_some());
}

#[tokio::test]
async fn status_selector_lets_an_hpa_find_the_pods() {
    let (fake, _ctx, _emqx, _) = steady_cluster(3).await;
    let c = stored_cluster(&fake);
    let selector = c
        .status
        .as_ref()
        .unwrap()
        .selector
        .clone()
        .expect("status.selector");
    assert_eq!(
        selector,
        "app.kubernetes.io/component=mqtt-broker,weir.dev/mqttcluster=riverside-mqtt"
    );
    // The selector picks exactly the cluster's pods, as an HPA would.
    let pods: kube::Api<Pod> = kube::Api::namespaced(fake.client(), NS);
    let found = pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 3);
    assert_eq!(c.status.as_ref().unwrap().replicas, 3);
}

#[tokio::test]
async fn hand_edits_of_owned_objects_are_reverted_then_left_alone() {
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    let before_sts = sts(&fake);
    let before_svc = fake.get::<Service>(Some(NS), "riverside-mqtt").unwrap();
    let before_cm = fake
        .get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap();
    // Someone runs `kubectl scale`/`kubectl edit`: our hash annotation stays.
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec.replicas = Some(1);
        s.spec.template.spec.as_mut().unwrap().containers[0].image =
            Some("emqx/emqx:latest".into());
    });
    fake.edit::<Service, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 11883;
    });
    fake.edit::<ConfigMap, _>(Some(NS), "riverside-mqtt-config", |m| {
        m.data
            .as_mut()
            .unwrap()
            .insert("emqx.conf".into(), "log.console.level = debug\n".into());
    });
    fake.clear_calls();
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let writes = writes_without_events(&fake);
    let p = "/api/v1/namespaces/weir-riverside-water";
    for w in [
        format!("PATCH {p}/configmaps/riverside-mqtt-config"),
        format!("PATCH {p}/services/riverside-mqtt"),
        "PATCH /apis/apps/v1/namespaces/weir-riverside-water/statefulsets/riverside-mqtt"
            .to_string(),
    ] {
        assert!(writes.contains(&w), "{w} missing from {writes:?}");
    }
    assert!(
        !writes.iter().any(|w| w.contains("riverside-mqtt-dashboard")
            || w.contains("headless")
            || w.contains("poddisruptionbudgets")),
        "only drifted objects are written: {writes:?}"
    );
    let s = sts(&fake);
    assert_eq!(s.spec.replicas, Some(3));
    assert_eq!(image(&s), "emqx/emqx:5.8.6");
    assert_eq!(s.spec.template, before_sts.spec.template);
    assert_eq!(
        fake.get::<Service>(Some(NS), "riverside-mqtt")
            .unwrap()
            .spec
            .unwrap()
            .ports,
        before_svc.spec.unwrap().ports
    );
    assert_eq!(
        fake.get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
            .unwrap()
            .data,
        before_cm.data
    );
    assert!(ctx
        .metrics
        .render()
        .contains("weir_operator_drift_corrections_total{resource=\"statefulsets\"} 1"));
    // The StatefulSet controller catches up with the restored spec.
    settle(&fake, 3, "rev1");
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
    // Fields others add (an annotation from `kubectl rollout restart`, a
    // label) are theirs: not drift, no writes.
    fake.edit::<StatefulSet, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec
            .template
            .metadata
            .as_mut()
            .unwrap()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "kubectl.kubernetes.io/restartedAt".into(),
                "2026-11-25T10:00:00Z".into(),
            );
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "water".into());
    });
    fake.clear_calls();
    for _ in 0..2 {
        weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
            .await
            .unwrap();
    }
    assert_eq!(fake.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn a_server_normalisation_is_not_mistaken_for_drift() {
    // An API server (or webhook) that stores a port number as a string:
    // the live object never looks like our rendering. Applied once, it is
    // remembered and not fought on every reconcile.
    let fake = FakeApiServer::new();
    fake.on_apply("services", |svc| {
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for p in ports {
                if let Some(n) = p["targetPort"].as_i64() {
                    p["targetPort"] = serde_json::json!(n.to_string());
                }
            }
        }
    });
    let (fake, ctx, _emqx, _) = steady_cluster_in(fake, 3).await;
    for _ in 0..3 {
        weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
            .await
            .unwrap();
    }
    assert_eq!(fake.writes(), Vec::<String>::new());
    // A real edit of the same object is still drift.
    fake.edit::<Service, _>(Some(NS), "riverside-mqtt", |s| {
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 11883;
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        writes_without_events(&fake),
        vec!["PATCH /api/v1/namespaces/weir-riverside-water/services/riverside-mqtt"]
    );
    let svc = fake.get::<Service>(Some(NS), "riverside-mqtt").unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 1883);
}

#[tokio::test]
async fn tenant_objects_edited_by_hand_are_reverted() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    fake.edit::<ResourceQuota, _>(Some(NS), "weir-quota", |q| {
        q.spec.as_mut().unwrap().hard.as_mut().unwrap().insert(
            "limits.cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("64".into()),
        );
    });
    fake.clear_calls();
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        writes_without_events(&fake),
        vec!["PATCH /api/v1/namespaces/weir-riverside-water/resourcequotas/weir-quota"]
    );
    let q = fake.get::<ResourceQuota>(Some(NS), "weir-quota").unwrap();
    assert_eq!(q.spec.unwrap().hard.unwrap()["limits.cpu"].0, "8");
    fake.clear_calls();
    weir_operator::tenant::reconcile(stored_tenant(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
}

fn tenant_with_connections(max: u32) -> Tenant {
    let mut t = tenant();
    t.spec.quota.max_mqtt_connections = max;
    t
}

fn emqx_conf(fake: &FakeApiServer) -> String {
    fake.get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap()
        .data
        .unwrap()["emqx.conf"]
        .clone()
}

#[tokio::test]
async fn tenant_connection_quota_is_enforced_as_listener_limits() {
    let fake = FakeApiServer::new();
    fake.put(&tenant_with_connections(9000));
    let (fake, ctx, emqx, _) = steady_cluster_in(fake, 3).await;
    // One cluster of 3 nodes with one listener: 3000 per node.
    assert!(
        emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 3000\n"),
        "{}",
        emqx_conf(&fake)
    );
    let limit = stored_cluster(&fake)
        .status
        .clone()
        .unwrap()
        .connection_limit
        .expect("status.connectionLimit");
    assert_eq!(
        (
            limit.tenant_quota,
            limit.tenant_nodes,
            limit.per_listener,
            limit.cluster_max
        ),
        (9000, 3, 3000, 9000)
    );

    // A second cluster of the tenant takes its share: running nodes get the
    // new limit through EMQX's config API, without a restart.
    let mut other = cluster(3);
    other.metadata.name = Some("backup-mqtt".into());
    fake.put(&other);
    let before = sts(&fake);
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    let pushed = emqx.with(|s| s.configs.clone());
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(
        pushed[0].contains("listeners.tcp.mqtt.max_connections = 1500\n"),
        "{}",
        pushed[0]
    );
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 1500\n"));
    assert_eq!(
        sts(&fake).spec,
        before.spec,
        "a new limit never restarts nodes"
    );
    let limit = stored_cluster(&fake)
        .status
        .clone()
        .unwrap()
        .connection_limit
        .unwrap();
    assert_eq!(
        (limit.tenant_nodes, limit.per_listener, limit.cluster_max),
        (6, 1500, 4500)
    );

    // spec.config cannot raise the limit; it may lower it.
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.config.insert(
            "listeners.tcp.mqtt.max_connections".into(),
            "infinity".into(),
        );
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 1500\n"));
    let pushed = emqx.with(|s| s.configs.last().cloned()).unwrap_or_default();
    assert!(
        pushed.ends_with("listeners.tcp.mqtt.max_connections = 1500\n"),
        "{pushed}"
    );
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("listeners.tcp.mqtt.max_connections".into(), "100".into());
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 100\n"));

    // The platform admin raises the quota.
    fake.edit::<Tenant, _>(None, "riverside-water", |t| {
        t.spec.quota.max_mqtt_connections = 60_000
    });
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.config.clear();
    });
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 10000\n"));
    let pushed = emqx.with(|s| s.configs.last().cloned()).unwrap_or_default();
    assert!(
        pushed.ends_with("listeners.tcp.mqtt.max_connections = 10000\n"),
        "{pushed}"
    );
    // Then nothing more to do.
    fake.clear_calls();
    let applied = emqx.with(|s| s.configs.len());
    weir_operator::mqtt_cluster::reconcile(stored_cluster(&fake), ctx.clone())
        .await
        .unwrap();
    assert_eq!(fake.writes(), Vec::<String>::new());
    assert_eq!(emqx.with(|s| s.configs.len()), applied);
}

// ----------------------------------------------------------- EdgeGateway

mod gateways {
    use super::*;
    use base64::Engine as _;
    use k8s_openapi::api::apps::v1::Deployment;
    use weir_crds::bundle::{self, Expectations, SignedBundle, TrustAnchor};
    use weir_crds::EdgeGateway;

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

    fn secret_data(fake: &FakeApiServer, name: &str) -> std::collections::BTreeMap<String, String> {
        let s = fake.get::<Secret>(Some(NS), name).unwrap();
        let mut out: std::collections::BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect();
        out.extend(s.string_data.unwrap_or_default());
        out
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
    async fn create_path_signs_a_bundle_and_issues_a_token() {
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
                format!("PATCH {p}/secrets/pump-station-1-enrollment"),
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
        let token = secret_data(&fake, "pump-station-1-enrollment");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token["token"])
            .unwrap();
        assert!(raw.len() * 8 >= 128);
        assert_eq!(token["max-uses"], "1");
        assert!(
            token["expires"]
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                > chrono::Utc::now()
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
        fake.clear_calls();
        run(&fake, &ctx).await;
        run(&fake, &ctx).await;
        assert_eq!(fake.writes(), Vec::<String>::new());
        // A status-only change (the agent reporting) bumps nothing either.
        fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
            let st = g.status.as_mut().unwrap();
            st.applied_version = Some(1);
            st.online = Some(true);
        });
        run(&fake, &ctx).await;
        assert_eq!(fake.writes(), Vec::<String>::new());
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
        fake.clear_calls();
        run(&fake, &ctx).await;
        assert_eq!(fake.writes(), Vec::<String>::new());
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
        let stored =
            eb::load_key(&fake.get::<Secret>(Some(NS), "weir-signing-key").unwrap()).unwrap();
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
        fake.clear_calls();
        run(&fake, &ctx).await;
        assert_eq!(fake.writes(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn token_is_reissued_once_per_request() {
        let fake = FakeApiServer::new();
        fake.put(&gateway("external"));
        let ctx = context(&fake, Arc::default());
        run(&fake, &ctx).await;
        let first = secret_data(&fake, "pump-station-1-enrollment")["token"].clone();
        run(&fake, &ctx).await;
        assert_eq!(
            secret_data(&fake, "pump-station-1-enrollment")["token"],
            first,
            "kept without a request"
        );
        fake.edit::<EdgeGateway, _>(Some(NS), "pump-station-1", |g| {
            g.metadata.annotations =
                Some([("weir.dev/reissue-token".to_string(), "1".to_string())].into());
        });
        run(&fake, &ctx).await;
        let second = secret_data(&fake, "pump-station-1-enrollment")["token"].clone();
        assert_ne!(second, first);
        run(&fake, &ctx).await;
        assert_eq!(
            secret_data(&fake, "pump-station-1-enrollment")["token"],
            second
        );
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
        assert!(
            args.starts_with("run --bundle /config/bundle.json --trust /config/trust.json"),
            "{args}"
        );
        assert!(
            args.contains("--mqtt-url mqtt://riverside-mqtt.weir-riverside-water.svc:1883"),
            "{args}"
        );
        assert_eq!(
            stored(&fake).status.as_ref().unwrap().phase.as_deref(),
            Some("Ready")
        );
        fake.clear_calls();
        run(&fake, &ctx).await;
        assert_eq!(fake.writes(), Vec::<String>::new());
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
        fake.clear_calls();
        run(&fake, &ctx).await;
        assert_eq!(fake.writes(), Vec::<String>::new());

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
}

// ------------------------------------------------------ EMQX API client

mod emqx_client {
    use weir_operator::emqx::{ApiKey, EmqxClient, EmqxCluster, EmqxError, EvacuationRequest};
    use weir_operator::testing::emqx::{node, MockEmqx};

    fn key(secret: &str) -> ApiKey {
        ApiKey {
            key: "k".into(),
            secret: secret.into(),
        }
    }

    #[tokio::test]
    async fn reads_nodes_in_emqx_documented_shape() {
        // A response as EMQX 5.8 documents it, with fields we do not use.
        let body = r#"[{"node":"emqx@10.0.0.1","node_status":"running","version":"5.8.6","uptime":1200,
            "connections":12,"live_connections":11,"otp_release":"26.2.5-3","role":"core",
            "memory_total":"0","memory_used":"0","process_available":2097152,"process_used":400,
            "max_fds":1048576,"load1":0.1,"load5":0.1,"load15":0.1,"sys_path":"/opt/emqx","log_path":"/opt/emqx/log","edition":"Opensource"}]"#;
        let nodes: Vec<weir_operator::emqx::Node> = serde_json::from_str(body).unwrap();
        assert_eq!(
            (
                nodes[0].node.as_str(),
                nodes[0].running(),
                nodes[0].connections
            ),
            ("emqx@10.0.0.1", true, 12)
        );

        let mock = MockEmqx::start(vec![node("emqx@a", "5.8.6", 3)], "k", "s").await;
        let client = EmqxClient::new(
            weir_operator::emqx::http_client(),
            mock.url.clone(),
            key("s"),
        );
        assert_eq!(client.nodes().await.unwrap()[0].node, "emqx@a");
        // Wrong secret: refused with EMQX's code, and the secret is not in the message.
        let bad = EmqxClient::new(
            weir_operator::emqx::http_client(),
            mock.url.clone(),
            key("wrong"),
        );
        let err = bad.nodes().await.unwrap_err();
        assert!(
            matches!(err, EmqxError::Refused { status: 401, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("BAD_API_KEY_OR_SECRET") && !err.to_string().contains("wrong")
        );
        assert!(
            !format!("{:?}", key("topsecret")).contains("topsecret"),
            "Debug never shows the secret"
        );
    }

    #[tokio::test]
    async fn evacuation_and_missing_feature() {
        let mock = MockEmqx::start(
            vec![node("emqx@a", "5.8.6", 3), node("emqx@b", "5.8.6", 0)],
            "k",
            "s",
        )
        .await;
        let client = EmqxClient::new(
            weir_operator::emqx::http_client(),
            mock.url.clone(),
            key("s"),
        );
        let req = EvacuationRequest {
            conn_evict_rate: 10,
            sess_evict_rate: 10,
            wait_takeover: 1,
            migrate_to: vec!["emqx@b".into()],
        };
        // Open-source 5.8: the rebalance API does not exist.
        assert!(matches!(
            client.start_evacuation("emqx@a", &req).await,
            Err(EmqxError::NotAvailable(_))
        ));
        mock.with(|s| s.rebalance_available = true);
        client.start_evacuation("emqx@a", &req).await.unwrap();
        let status = client.rebalance_status().await.unwrap();
        assert_eq!(status.evacuations[0].node, "emqx@a");
        assert!(status.evacuations[0].drained());
        client
            .merge_config("mqtt.max_packet_size = \"1MB\"\n")
            .await
            .unwrap();
        assert_eq!(
            mock.with(|s| s.configs.clone()),
            vec!["mqtt.max_packet_size = \"1MB\"\n".to_string()]
        );
        client.force_leave("emqx@b").await.unwrap();
        assert_eq!(mock.with(|s| s.nodes.len()), 1);
    }

    #[tokio::test]
    async fn cluster_calls_skip_unreachable_nodes_only() {
        let mock = MockEmqx::start(vec![node("emqx@a", "5.8.6", 0)], "k", "s").await;
        let http = weir_operator::emqx::http_client();
        let down = EmqxClient::new(http.clone(), "http://127.0.0.1:9", key("s"));
        let up = EmqxClient::new(http.clone(), mock.url.clone(), key("s"));
        let cluster = EmqxCluster {
            nodes: vec![down.clone(), up],
        };
        assert_eq!(
            cluster
                .call(|c| async move { c.nodes().await })
                .await
                .unwrap()
                .len(),
            1
        );
        let all_down = EmqxCluster { nodes: vec![down] };
        assert!(matches!(
            all_down.call(|c| async move { c.nodes().await }).await,
            Err(EmqxError::NoNodeAnswered { tried: 1 })
        ));
        // A refusal from EMQX is final: it is not retried on other nodes.
        let bad = EmqxCluster {
            nodes: vec![
                EmqxClient::new(http.clone(), mock.url.clone(), key("x")),
                EmqxClient::new(http, mock.url.clone(), key("s")),
            ],
        };
        assert!(matches!(
            bad.call(|c| async move { c.nodes().await }).await,
            Err(EmqxError::Refused { .. })
        ));
    }
}

// ------------------------------------------------------ leader election

#[tokio::test]
async fn only_the_lease_holder_runs_controllers() {
    use k8s_openapi::api::coordination::v1::Lease;
    use weir_operator::leader::{run_as_leader, LeaseSettings};
    let fake = FakeApiServer::new();
    let metrics = Metrics::default();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let settings = LeaseSettings {
        namespace: "weir-system".into(),
        name: "weir-operator".into(),
        identity: "replica-a".into(),
        duration: 15,
        grace: 5,
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        run_as_leader(fake.client(), settings, &metrics, || async move {
            r.store(true, std::sync::atomic::Ordering::SeqCst);
        }),
    )
    .await
    .expect("leadership acquired in time")
    .unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    let lease = fake
        .get::<Lease>(Some("weir-system"), "weir-operator")
        .expect("lease written");
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.starts_with(
            "PATCH /apis/coordination.k8s.io/v1/namespaces/weir-system/leases/weir-operator"
        )),
        "{calls:?}"
    );
    // Released on the way out so the next replica takes over at once.
    assert_ne!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-a")
    );
}

// ------------------------------------------------- health and metrics

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use weir_operator::server::{router, Health};
    let metrics = Arc::new(Metrics::default());
    drop(metrics.reconcile("mqttcluster"));
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    ready.store(true, Ordering::Relaxed);
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("weir_operator_reconciles_total{controller=\"mqttcluster\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weir_operator_reconcile_duration_seconds_bucket"),
        "{text}"
    );
}

// ------------------------------------------------------- controller wiring

#[tokio::test]
async fn controllers_reconcile_what_they_watch() {
    use k8s_openapi::api::core::v1::Namespace;
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    fake.put(&cluster(3));
    let ctx = context(&fake, Arc::default());
    let run = tokio::spawn(weir_operator::controllers::run(ctx.clone(), 2));
    let mut done = false;
    for _ in 0..200 {
        let tenant_ready = fake
            .get::<Tenant>(None, "riverside-water")
            .and_then(|t| t.status)
            .and_then(|s| s.phase)
            .is_some();
        if tenant_ready
            && fake
                .get::<StatefulSet>(Some(NS), "riverside-mqtt")
                .is_some()
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        done,
        "controllers did not reconcile; calls: {:?}",
        fake.calls()
    );
    assert!(fake.get::<Namespace>(None, NS).is_some());
    // Owned objects are watched, so a hand edit wakes their owner at once.
    let wanted = [
        "/apis/weir.dev/v1alpha1/tenants",
        "/apis/weir.dev/v1alpha1/mqttclusters",
        "/apis/weir.dev/v1alpha1/edgegateways",
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/api/v1/resourcequotas",
        "/api/v1/limitranges",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "/apis/apps/v1/statefulsets",
        "/apis/apps/v1/deployments",
        "/api/v1/services",
        "/api/v1/configmaps",
        "/apis/policy/v1/poddisruptionbudgets",
        "/api/v1/persistentvolumeclaims",
    ];
    let mut missing: Vec<&str> = wanted.to_vec();
    for _ in 0..100 {
        let watches: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("WATCH "))
            .collect();
        missing.retain(|p| !watches.iter().any(|w| w.ends_with(p)));
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    assert!(missing.is_empty(), "no watch on {missing:?}");
    // Secrets are read by name in tenant namespaces only (the operator may
    // not list or watch them cluster-wide).
    let cluster_wide_secrets: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.contains(" /api/v1/secrets"))
        .collect();
    assert!(
        cluster_wide_secrets.is_empty(),
        "Secrets listed or watched cluster-wide: {cluster_wide_secrets:?}"
    );
    assert!(ctx
        .metrics
        .render()
        .contains("weir_operator_reconciles_total{controller=\"tenant\"}"));
}
