//! The one error type of the operator.

use std::time::Duration;

/// What can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {}", kube_message(.0))]
    Kube(#[from] kube::Error),
    #[error("EMQX API error: {0}")]
    Emqx(#[from] crate::emqx::EmqxError),
    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("signing key Secret is unusable: {0}")]
    SigningKey(String),
    #[error("leader election failed: {0}")]
    Lease(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// kube's message; when the refusal is the operator's own RBAC on Secrets,
/// the API server's sentence (not kube's dump of the whole Status) and what
/// to do: the operator may use Secrets only in Tenant namespaces, where each
/// Tenant binds them to it, so an MqttCluster or EdgeGateway elsewhere
/// cannot get its credentials.
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s)
            if s.is_forbidden() && s.details.as_ref().is_some_and(|d| d.kind == "secrets") =>
        {
            format!(
                "{} (403); the operator may use Secrets only in Tenant namespaces \
                 (weir-<tenant>): create MqttClusters and EdgeGateways in the namespace of a Tenant",
                s.message
            )
        }
        _ => e.to_string(),
    }
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Emqx(_) => "emqx",
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "missing_field",
            Error::SigningKey(_) => "signing_key",
            Error::Lease(_) => "lease",
        }
    }
}

/// Requeue delay after `failures` consecutive errors: 5 s doubling to 5 min,
/// so a broken object neither hammers the API server nor waits forever.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_secret_says_where_secrets_may_be() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
            "reason": "Forbidden",
            "message": "secrets \"m-api-credentials\" is forbidden: User \"system:serviceaccount:weir-system:weir-operator\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\"",
            "details": {"name": "m-api-credentials", "kind": "secrets"}
        }))
        .unwrap();
        let e = Error::from(kube::Error::Api(Box::new(status)));
        let text = e.to_string();
        assert!(text.contains("cannot get resource \"secrets\""), "{text}");
        assert!(text.contains("only in Tenant namespaces"), "{text}");
        assert!(!text.contains("Status {"), "{text}");
        let other: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "pods is forbidden", "details": {"kind": "pods"}
        }))
        .unwrap();
        let text = Error::from(kube::Error::Api(Box::new(other))).to_string();
        assert!(!text.contains("Tenant namespaces"), "{text}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
