//! Leader election on a coordination.k8s.io Lease (kube-lease-manager: server-side apply with
//! conflict detection), so that only one operator replica reconciles at a time. The lease is the one
//! object not written with the `pixie-operator` field manager: the crate detects a competing holder
//! through field-manager conflicts, so each replica needs its own (`kube-lease-manager-<identity>`).

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per replica: the pod name, plus a random suffix.
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration_secs: u64,
    /// How long before expiry the holder renews.
    pub grace_secs: u64,
}

/// Starts competing for the lease; the receiver turns true while this replica holds it. Dropping
/// the receiver releases the lease.
pub async fn campaign(client: Client, settings: &LeaderSettings) -> Result<watch::Receiver<bool>, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &settings.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_secs)
        .with_grace(settings.grace_secs)
        .build()
        .await?;
    let (receiver, _task) = manager.watch().await;
    Ok(receiver)
}

/// Resolves once `receiver` reads `leading`; also when the election task has stopped.
pub async fn wait_for(receiver: &mut watch::Receiver<bool>, leading: bool) {
    let _ = receiver.wait_for(|is_leader| *is_leader == leading).await;
}
