//! What a cluster needs from outside itself: the tenant's connection quota,
//! and the things the API server accepted but that cannot work (a license,
//! TLS Secrets, storage class, ...), each a finding that says what to do.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, ResourceExt};
use weir_crds::mqtt_cluster::ConnectionLimit;
use weir_crds::{MqttCluster, Tenant};

use super::builders as b;
use super::findings::Findings;
use crate::apply::ensure;
use crate::context::Context;
use crate::error::Result;

/// The tenant's `quota.maxMqttConnections` share of this cluster, when its
/// namespace belongs to a Tenant (`weir-<tenant>`). The quota is shared by
/// every node of the tenant's clusters.
pub(super) async fn tenant_connection_limit(
    c: &MqttCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Option<ConnectionLimit>> {
    let Some(name) = ns.strip_prefix("weir-") else {
        return Ok(None);
    };
    let Some(tenant) = Api::<Tenant>::all(ctx.client.clone()).get_opt(name).await? else {
        return Ok(None);
    };
    if tenant.namespace_name() != ns {
        return Ok(None);
    }
    let others: u32 = Api::<MqttCluster>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|o| o.name_any() != c.name_any() && o.metadata.deletion_timestamp.is_none())
        .map(|o| o.spec.replicas.max(0) as u32)
        .sum();
    Ok(Some(b::connection_limit(
        c,
        tenant.spec.quota.max_mqtt_connections,
        others + c.spec.replicas.max(0) as u32,
    )))
}

/// Things the API server accepted but that cannot work.
pub(super) async fn check(c: &MqttCluster, ctx: &Context, f: &mut Findings) -> Result<()> {
    if license_required(c) {
        f.degraded("LicenseRequired", format!("EMQX {} needs a license to cluster more than one node; set spec.license.secretRef or use the 5.8 line (e.g. 5.8.6). The running nodes are kept as they are until then", c.spec.version));
    }
    let ns = c.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut cert_manager: Option<bool> = None;
    for l in &c.spec.listeners {
        if let Some(name) = &l.tls_secret_ref {
            if secrets.get_opt(name).await?.is_some() {
                continue;
            }
            // Asked once per reconcile, only when a TLS Secret is missing.
            if cert_manager.is_none() {
                let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
                cert_manager = Some(
                    crds.get_opt("certificates.cert-manager.io")
                        .await?
                        .is_some(),
                );
            }
            if cert_manager == Some(true) {
                let certs: Api<DynamicObject> =
                    Api::namespaced_with(ctx.client.clone(), &ns, &b::certificate_resource());
                ensure(
                    ctx,
                    &certs,
                    b::certificate(c, name, &ctx.config.cert_issuer),
                )
                .await?;
                f.progressing("CertificatePending", format!("waiting for cert-manager (ClusterIssuer {}) to issue TLS Secret {name} for listener {}", ctx.config.cert_issuer, l.name));
            } else {
                f.degraded("TlsSecretMissing", format!("listener {} needs TLS Secret {name} in namespace {ns}; create it (type kubernetes.io/tls) or install cert-manager and the operator requests it", l.name));
            }
        }
    }
    if let Some(lic) = &c.spec.license {
        if secrets.get_opt(&lic.secret_ref).await?.is_none() {
            f.degraded(
                "LicenseSecretMissing",
                format!(
                    "license Secret {} (key `license`) does not exist in namespace {ns}",
                    lic.secret_ref
                ),
            );
        }
    }
    if let Some(h) = &c.spec.historian {
        if secrets.get_opt(&h.database_secret_ref).await?.is_none() {
            f.degraded(
                "HistorianSecretMissing",
                format!(
                    "historian database Secret {} (key `url`) does not exist in namespace {ns}",
                    h.database_secret_ref
                ),
            );
        }
        // Its broker identity comes from weir-api; until it is there the
        // historian pod waits for the Secret.
        let identity = weir_crds::names::historian_mqtt::SECRET;
        if secrets.get_opt(identity).await?.is_none() {
            f.progressing(
                "HistorianIdentityPending",
                format!("waiting for weir-api to write the historian's broker identity, Secret {identity} in namespace {ns}; the historian starts once it is there"),
            );
        }
    }
    if let Some(sc) = &c.spec.storage.storage_class_name {
        if Api::<StorageClass>::all(ctx.client.clone())
            .get_opt(sc)
            .await?
            .is_none()
        {
            f.degraded("StorageClassMissing", format!("storage class {sc} does not exist; volumes cannot be provisioned. Create it or pick an existing class in a new cluster"));
        }
    }
    Ok(())
}

/// EMQX 5.9 and later cluster only with a license. While one is missing the
/// StatefulSet is left as it is: rolling 5.8 nodes onto 5.9 would break a
/// working cluster apart.
pub(super) fn license_required(c: &MqttCluster) -> bool {
    c.spec.needs_license() && c.spec.replicas > 1 && c.spec.license.is_none()
}
