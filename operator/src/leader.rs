//! Leader election with a coordination.k8s.io/v1 Lease (kube-lease-manager,
//! server-side apply). Only the leader runs controllers; a replica that
//! loses the lease stops, so two replicas never reconcile at once.

use std::future::Future;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration: u64,
    /// Seconds before expiry when the holder renews.
    pub grace: u64,
}

/// Wait for the lease, then run `work` until it ends or the lease is lost.
/// Returns `Err(Error::Lease)` when leadership was lost, so the process can
/// exit and restart as a follower.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    s: LeaseSettings,
    metrics: &Metrics,
    work: F,
) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, &s.name)
        .with_namespace(&s.namespace)
        .with_identity(&s.identity)
        .with_duration(s.duration)
        .with_grace(s.grace)
        .with_field_manager(crate::FIELD_MANAGER)
        .build()
        .await
        .map_err(|e| Error::Lease(e.to_string()))?;
    let (mut leader, task) = manager.watch().await;
    tracing::info!(lease = %s.name, identity = %s.identity, "waiting for the leader lease");
    while !*leader.borrow_and_update() {
        if leader.changed().await.is_err() {
            return Err(Error::Lease(lease_task_error(task).await));
        }
    }
    tracing::info!(lease = %s.name, "acquired the leader lease; starting controllers");
    metrics.leader.set(1);
    let lost = async {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow() {
                return;
            }
        }
    };
    let result = tokio::select! {
        _ = work() => Ok(()),
        _ = lost => Err(Error::Lease("lost the leader lease".into())),
    };
    metrics.leader.set(0);
    // Dropping the receiver makes the manager release the lease for the next replica.
    drop(leader);
    let _ = task.await;
    result
}

async fn lease_task_error(
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> String {
    match task.await {
        Ok(Ok(_)) => "lease manager stopped".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}
