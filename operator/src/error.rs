//! The one error type of the operator.

use std::time::Duration;

/// What can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
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
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
