//! Tenant reconciler.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use weir_crds::{MqttCluster, Tenant, TenantStatus};

use super::builders;
use crate::apply::{ensure, ensure_absent, standard_conditions, sync_finalizer, sync_status};
use crate::context::Context;
use crate::error::{backoff, Error, Result};

/// Held while the tenant's namespace may still hold MQTT clusters that the
/// spec does not allow to be deleted with it.
pub const FINALIZER: &str = "weir.dev/tenant-protection";
const CONTROLLER: &str = "tenant";

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    if tenant.metadata.deletion_timestamp.is_some() {
        return cleanup(&tenant, &api, &ctx).await;
    }
    sync_finalizer(&api, &tenant, FINALIZER, true).await?;

    let ns = tenant.namespace_name();
    let client = ctx.client.clone();
    // A namespace of that name made by someone else (or by an earlier Tenant
    // of the same name, still being deleted) is never taken over.
    if let Some(live) = Api::<Namespace>::all(client.clone()).get_opt(&ns).await? {
        if !builders::owned_by(&live, &tenant) {
            return refuse_foreign_namespace(&tenant, &api, &ctx, &ns).await;
        }
    }
    let mut changed = Vec::new();
    if ensure(
        &ctx,
        &Api::<Namespace>::all(client.clone()),
        builders::namespace(&tenant),
    )
    .await?
    .written()
    {
        changed.push("namespace");
    }
    if ensure(
        &ctx,
        &Api::<ResourceQuota>::namespaced(client.clone(), &ns),
        builders::resource_quota(&tenant),
    )
    .await?
    .written()
    {
        changed.push("quota");
    }
    if ensure(
        &ctx,
        &Api::<LimitRange>::namespaced(client.clone(), &ns),
        builders::limit_range(&tenant),
    )
    .await?
    .written()
    {
        changed.push("limits");
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    if tenant.spec.network_isolation {
        if ensure(&ctx, &policies, builders::isolation_policy(&tenant))
            .await?
            .written()
        {
            changed.push("isolation");
        }
        if ensure(
            &ctx,
            &policies,
            builders::api_to_brokers_policy(&tenant, &ctx.config.api_namespace),
        )
        .await?
        .written()
        {
            changed.push("isolation");
        }
    } else {
        for name in [builders::ISOLATION_POLICY, builders::API_TO_BROKERS_POLICY] {
            if ensure_absent(&policies, name).await? {
                changed.push("isolation");
            }
        }
    }
    if ensure(
        &ctx,
        &Api::<RoleBinding>::namespaced(client.clone(), &ns),
        builders::admin_binding(&tenant),
    )
    .await?
    .written()
    {
        changed.push("admins");
    }
    if ensure_operator_secrets_binding(&tenant, &ctx, &ns).await? {
        changed.push("operator access to Secrets");
    }

    let old = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    let status = TenantStatus {
        phase: Some("Ready".into()),
        namespace: Some(ns.clone()),
        observed_generation: generation,
        conditions: standard_conditions(
            &old.conditions,
            generation,
            (
                true,
                "NamespaceReady",
                format!(
                    "namespace {ns} is ready with quota, isolation and {} admin(s)",
                    tenant.spec.admins.len()
                ),
            ),
            (false, "Reconciled", "nothing in progress".into()),
            (false, "Healthy", "no problems".into()),
        ),
    };
    sync_status(&api, &tenant, tenant.status.as_ref(), &status).await?;
    if !changed.is_empty() {
        changed.dedup();
        ctx.event(
            &*tenant,
            EventType::Normal,
            "Reconciled",
            "Apply",
            format!("updated {} in {ns}", changed.join(", ")),
        )
        .await;
    }
    ctx.succeeded(&key(&tenant));
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The RoleBinding of the Secrets ClusterRole to the operator's own
/// ServiceAccount in the tenant namespace. A binding's roleRef cannot change:
/// when the API server refuses the apply as invalid (the ClusterRole's name
/// was changed, `--secrets-cluster-role`), the binding is replaced.
async fn ensure_operator_secrets_binding(tenant: &Tenant, ctx: &Context, ns: &str) -> Result<bool> {
    let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), ns);
    let c = &ctx.config;
    let desired = builders::operator_secrets_binding(
        tenant,
        &c.secrets_role,
        &c.operator_namespace,
        &c.service_account,
    );
    match ensure(ctx, &api, desired.clone()).await {
        Ok(applied) => Ok(applied.written()),
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 => {
            tracing::info!(namespace = ns, role = %c.secrets_role, "replacing the operator's Secrets RoleBinding: its roleRef changed");
            ensure_absent(&api, builders::OPERATOR_SECRETS_BINDING).await?;
            Ok(ensure(ctx, &api, desired).await?.written())
        }
        Err(e) => Err(e),
    }
}

/// The Tenant's namespace exists and is not this Tenant's: say so in the
/// status and an event, and touch nothing in it.
async fn refuse_foreign_namespace(
    tenant: &Tenant,
    api: &Api<Tenant>,
    ctx: &Context,
    ns: &str,
) -> Result<Action> {
    let message = format!(
        "namespace {ns} already exists and does not belong to this Tenant; \
         delete or rename it, or give the Tenant another name"
    );
    let old = tenant.status.clone().unwrap_or_default();
    let status = TenantStatus {
        phase: Some("Degraded".into()),
        namespace: None,
        observed_generation: tenant.metadata.generation,
        conditions: standard_conditions(
            &old.conditions,
            tenant.metadata.generation,
            (false, "NamespaceNotOwned", message.clone()),
            (
                false,
                "NamespaceNotOwned",
                format!("waiting for namespace {ns} to be freed"),
            ),
            (true, "NamespaceNotOwned", message.clone()),
        ),
    };
    if sync_status(api, tenant, tenant.status.as_ref(), &status).await? {
        ctx.event(
            tenant,
            EventType::Warning,
            "NamespaceNotOwned",
            "Reconcile",
            message,
        )
        .await;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Refuse deletion while MqttClusters remain, unless `cascadeDelete`.
async fn cleanup(tenant: &Tenant, api: &Api<Tenant>, ctx: &Context) -> Result<Action> {
    if !tenant.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let ns = tenant.namespace_name();
    let clusters: Api<MqttCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let remaining: Vec<String> = clusters
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    if !remaining.is_empty() && !tenant.spec.cascade_delete {
        let old = tenant.status.clone().unwrap_or_default();
        let message = format!(
            "namespace {ns} still holds MqttCluster(s) {}; delete them first or set spec.cascadeDelete: true",
            remaining.join(", ")
        );
        let status = TenantStatus {
            phase: Some("Terminating".into()),
            namespace: Some(ns.clone()),
            observed_generation: tenant.metadata.generation,
            conditions: standard_conditions(
                &old.conditions,
                tenant.metadata.generation,
                (false, "DeletionBlocked", message.clone()),
                (
                    false,
                    "DeletionBlocked",
                    "waiting for the MQTT clusters to be deleted".into(),
                ),
                (true, "DeletionBlocked", message.clone()),
            ),
        };
        if sync_status(api, tenant, tenant.status.as_ref(), &status).await? {
            ctx.event(
                tenant,
                EventType::Warning,
                "DeletionBlocked",
                "Delete",
                message,
            )
            .await;
        }
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    // The namespace (and everything in it) goes by garbage collection once
    // the Tenant, its owner, is gone.
    sync_finalizer(api, tenant, FINALIZER, false).await?;
    Ok(Action::await_change())
}

fn key(t: &Tenant) -> String {
    format!("tenant/{}", t.name_any())
}

pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error);
    let n = ctx.failed(&key(&tenant));
    tracing::warn!(tenant = %tenant.name_any(), error = %error, failures = n, "tenant reconcile failed");
    crate::report::reconcile_failed(ctx, tenant, error.to_string());
    Action::requeue(backoff(n))
}
