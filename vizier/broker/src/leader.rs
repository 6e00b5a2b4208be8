//! Leader election among a Vizier's broker replicas on a coordination.k8s.io Lease (the operator's
//! approach, kube-lease-manager): only the holder schedules, so that no tick runs twice. Each
//! replica applies the lease with its own field manager (`kube-lease-manager-<identity>`), which is
//! how the crate detects a competing holder.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Name of the Lease in the Vizier's namespace, one per Vizier.
    pub name: String,
    /// Unique per replica: the pod name plus a random suffix.
    pub identity: String,
    /// How long a lease lasts without renewal; a dead leader's scripts wait this long at most.
    pub duration_secs: u64,
    /// How long before expiry the holder renews.
    pub grace_secs: u64,
}

impl LeaseSettings {
    /// The Lease of a Vizier's brokers unless told otherwise.
    pub fn default_name(vizier: &str) -> String {
        format!("pixie-broker-{vizier}")
    }
}

/// Starts competing for the lease; the receiver reads true while this replica holds it. Dropping
/// the receiver releases the lease.
pub async fn campaign(
    client: Client,
    namespace: &str,
    settings: &LeaseSettings,
) -> Result<watch::Receiver<bool>, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_secs)
        .with_grace(settings.grace_secs)
        .build()
        .await?;
    let (receiver, _task) = manager.watch().await;
    Ok(receiver)
}
