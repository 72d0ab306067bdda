//! cert-manager Certificates for listeners whose TLS Secret is missing.

use weir_crds::MqttCluster;

use super::*;

/// cert-manager's Certificate kind (used only when cert-manager is installed).
pub fn certificate_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    }
}

/// A Certificate asking cert-manager to issue the TLS Secret `secret`
/// for the cluster's client and node names.
pub fn certificate(c: &MqttCluster, secret: &str, issuer: &str) -> kube::api::DynamicObject {
    let ns = ns(c);
    let mut obj = kube::api::DynamicObject::new(secret, &certificate_resource()).within(&ns);
    obj.metadata = meta(c, secret.to_string());
    obj.data = serde_json::json!({
        "spec": {
            "secretName": secret,
            "dnsNames": [
                format!("{}.{ns}.svc", name(c)),
                format!("{}.{ns}.svc.cluster.local", name(c)),
                format!("*.{}.{ns}.svc.cluster.local", headless_name(c)),
            ],
            "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        }
    });
    obj
}
