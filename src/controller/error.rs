//! Errors of the controller's reconcilers: a transfer or store that must be retried with
//! backoff, or a failure to talk to the Kubernetes API.

use crate::transfer::TransferError;

/// Why a reconcile did not finish; every variant is retried with exponential backoff by
/// the error policy (permanent transfer failures are not errors: they end as Stalled).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A transient transfer or ARM failure (network, 5xx, 429, throttling, timeout).
    #[error("{0}")]
    Transient(TransferError),
    /// The Kubernetes API refused or failed a read or a status write.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Leader election failed or the lease was lost.
    #[error("leader election: {0}")]
    Leader(String),
    /// The controller could not start (configuration, address in use, ...).
    #[error("{0}")]
    Startup(String),
}

impl Error {
    /// The reason label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Transient(_) => "TransientFailure",
            Error::Kube(_) => "KubernetesAPI",
            Error::Leader(_) => "LeaderElection",
            Error::Startup(_) => "Startup",
        }
    }
}
