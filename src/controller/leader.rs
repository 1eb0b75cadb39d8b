//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the holder
//! reconciles; standby replicas wait and take over when the holder stops renewing.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::Error;

/// A running lease watcher.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Lease timing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// Seconds a lock stays valid after its last renewal.
    pub duration: u64,
    /// Seconds before expiry the holder renews.
    pub grace: u64,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            duration: 15,
            grace: 5,
        }
    }
}

impl Leadership {
    /// Starts competing for Lease `name` in `namespace` as `identity`.
    pub async fn start(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Result<Self, Error> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(timing.duration)
            .with_grace(timing.grace.min(timing.duration.saturating_sub(1)).max(1))
            .build()
            .await
            .map_err(|e| Error::Leader(e.to_string()))?;
        let (state, task) = manager.watch().await;
        Ok(Self { state, task })
    }

    /// Resolves once this instance holds the lease.
    pub async fn acquired(&mut self) -> Result<(), Error> {
        self.state
            .wait_for(|leader| *leader)
            .await
            .map(|_| ())
            .map_err(|_| Error::Leader("the lease watcher stopped".into()))
    }

    /// Resolves when this instance no longer holds the lease.
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leader| !*leader).await;
    }

    /// Releases the lease (if held) so a standby takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the lease"),
            Err(e) => tracing::warn!(error = %e, "lease task failed"),
        }
    }
}
