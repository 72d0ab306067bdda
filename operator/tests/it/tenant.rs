//! Tenant reconciler: the namespace and what isolates it, refusals, deletion
//! guarded by the tenant's clusters, and hand edits reverted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::controller::Action;
use weir_crds::Tenant;
use weir_operator::metrics::Metrics;
use weir_operator::testing::FakeApiServer;
use weir_operator::{Context, OperatorConfig};

use crate::mqtt_cluster::cluster;
use crate::support::*;

pub fn tenant() -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "riverside-water"},
        "spec": {"displayName": "Riverside Water", "admins": [{"kind": "email", "name": "ops@riverside.example"}]}
    }))
    .unwrap()
}

/// One Tenant reconcile of the stored tenant, which must succeed.
pub async fn reconcile_tenant(fake: &FakeApiServer, ctx: &Arc<Context>) -> Action {
    weir_operator::tenant::reconcile(stored_tenant(fake), ctx.clone())
        .await
        .unwrap()
}

pub fn stored_tenant(fake: &FakeApiServer) -> Arc<Tenant> {
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
    let action = reconcile_tenant(&fake, &ctx).await;
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
    reconcile_tenant(&fake, &ctx).await;
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
    reconcile_tenant(&fake, &ctx).await;
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
    let action = reconcile_tenant(&fake, &ctx).await;
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
    reconcile_tenant(&fake, &ctx).await;
    assert_steady(&fake, reconcile_tenant(&fake, &ctx)).await;
    assert!(fake.calls().iter().all(|c| c.starts_with("GET ")));
}

#[tokio::test]
async fn tenant_deletion_is_refused_while_clusters_remain_unless_cascade() {
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    reconcile_tenant(&fake, &ctx).await;
    fake.put(&cluster(3));
    fake.edit::<Tenant, _>(None, "riverside-water", |t| {
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ))
    });
    fake.clear_calls();
    let action = reconcile_tenant(&fake, &ctx).await;
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
    assert_steady(&fake, reconcile_tenant(&fake, &ctx)).await;
    // With cascade the finalizer goes and the Tenant is gone.
    fake.edit::<Tenant, _>(None, "riverside-water", |t| t.spec.cascade_delete = true);
    reconcile_tenant(&fake, &ctx).await;
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
    reconcile_tenant(&fake, &ctx).await;
    assert!(ctx
        .metrics
        .render()
        .contains("weir_operator_reconcile_errors_total{controller=\"tenant\",error=\"kube\"} 2"));
}

#[tokio::test]
async fn tenant_objects_edited_by_hand_are_reverted() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let fake = FakeApiServer::new();
    fake.put(&tenant());
    let ctx = context(&fake, Arc::default());
    reconcile_tenant(&fake, &ctx).await;
    fake.edit::<ResourceQuota, _>(Some(NS), "weir-quota", |q| {
        q.spec.as_mut().unwrap().hard.as_mut().unwrap().insert(
            "limits.cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("64".into()),
        );
    });
    fake.clear_calls();
    reconcile_tenant(&fake, &ctx).await;
    assert_eq!(
        writes_without_events(&fake),
        vec!["PATCH /api/v1/namespaces/weir-riverside-water/resourcequotas/weir-quota"]
    );
    let q = fake.get::<ResourceQuota>(Some(NS), "weir-quota").unwrap();
    assert_eq!(q.spec.unwrap().hard.unwrap()["limits.cpu"].0, "8");
    assert_steady(&fake, reconcile_tenant(&fake, &ctx)).await;
}
