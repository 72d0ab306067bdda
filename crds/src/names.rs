//! Names that more than one component spells: the namespace a tenant gets,
//! the labels and annotations on the objects the operator makes, and the keys
//! of a gateway's config objects.
//!
//! They are part of the contract: the operator writes them, and the api, the
//! agent, the test simulators and users' `kubectl` commands read them. Keeping
//! them here means a rename is one edit that every reader follows.

/// The namespace the operator makes for tenant `tenant` (and where the api
/// looks for that tenant's clusters and gateways).
pub fn tenant_namespace(tenant: &str) -> String {
    format!("weir-{tenant}")
}

/// Labels on the objects the operator makes.
pub mod labels {
    /// The tenant (organization slug) an object belongs to.
    pub const TENANT: &str = "weir.dev/tenant";
    /// The project (slug) a Secret in the tenant namespace is for: the api
    /// lets a project's MqttCluster name only Secrets labelled for it.
    pub const PROJECT: &str = "weir.dev/project";
    /// The MqttCluster a broker pod, service or claim belongs to.
    pub const MQTT_CLUSTER: &str = "weir.dev/mqttcluster";
    /// The EdgeGateway an agent pod, claim or config object belongs to.
    pub const EDGE_GATEWAY: &str = "weir.dev/edgegateway";
    /// Kubernetes' recommended labels the operator sets.
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
}

/// Annotations users set with `kubectl annotate` to ask the operator for
/// something (the operator's own bookkeeping annotations stay in the
/// operator).
pub mod annotations {
    /// `"true"` holds a resource's reconcile: the operator changes nothing.
    pub const PAUSED: &str = "weir.dev/paused";
    /// Any new value asks for a new config-signing key for an EdgeGateway.
    pub const ROTATE_SIGNING_KEY: &str = "weir.dev/rotate-signing-key";
    /// Any new value asks for a new enrollment token for an EdgeGateway.
    pub const REISSUE_TOKEN: &str = "weir.dev/reissue-token";
}

/// Keys of an EdgeGateway's config objects: the ConfigMap the operator writes
/// (the api reads it back; the agent pod mounts it at `/config`).
pub mod gateway_config {
    /// The signed config bundle (`crate::bundle::SignedBundle`, JSON).
    pub const BUNDLE: &str = "bundle.json";
    /// The config-signing key agents pin (`crate::bundle::TrustAnchor`).
    pub const TRUST: &str = "trust.json";
    /// The chain of key rotations, oldest first (`crate::bundle::KeyRotation`s).
    pub const ROTATIONS: &str = "rotations.json";
}

/// The historian's broker identity: a Secret the api keeps in each tenant
/// namespace that runs a historian, renewed well before its JWT expires;
/// the operator's historian Deployment reads it (username from the env,
/// the password file from a volume, re-read at each reconnect).
pub mod historian_mqtt {
    /// Name of the Secret in the tenant namespace.
    pub const SECRET: &str = "weir-historian-mqtt";
    /// The MQTT username (also the JWT's `username` claim).
    pub const USERNAME: &str = "username";
    /// The MQTT password: a JWT signed by the api for the tenant's org.
    pub const PASSWORD: &str = "password";
    /// When the JWT expires (RFC 3339).
    pub const EXPIRES: &str = "expires";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_namespace_is_prefixed() {
        assert_eq!(tenant_namespace("riverside-water"), "weir-riverside-water");
    }
}
