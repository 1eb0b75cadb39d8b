//! Typed errors of the AOSM client: transient (retry with backoff) or permanent.

use std::time::Duration;

/// What can go wrong talking to ARM / Entra for an artifact store.
#[derive(Debug, thiserror::Error)]
pub enum AosmError {
    /// The identity could not get an ARM token (bad secret, unknown client, no federated token).
    #[error("cannot get an Azure token for {identity}: {reason}")]
    Identity {
        /// Which identity (type and client id; never a secret).
        identity: String,
        /// Why.
        reason: String,
    },
    /// ARM refused the token or the principal lacks permission.
    #[error(
        "ARM denied {action} on {resource}: {code}: {message}; grant the identity access to the artifact store"
    )]
    Forbidden {
        /// What we tried.
        action: String,
        /// Resource id.
        resource: String,
        /// ARM error code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// The publisher, store or manifest does not exist.
    #[error(
        "{resource} not found: {code}: {message}; check subscriptionId, resourceGroup, publisher, artifactStore and manifest"
    )]
    NotFound {
        /// Resource id.
        resource: String,
        /// ARM error code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// ARM throttled or failed transiently.
    #[error("ARM answered {status} to {action}: {code}: {message}; will retry")]
    Transient {
        /// HTTP status.
        status: u16,
        /// What we tried.
        action: String,
        /// ARM error code.
        code: String,
        /// ARM message.
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// ARM or Entra could not be reached.
    #[error("cannot reach {endpoint}: {reason}")]
    Connect {
        /// Endpoint URL (no query).
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// ARM refused the request permanently (400 and the like).
    #[error("ARM refused {action}: HTTP {status} {code}: {message}")]
    Refused {
        /// What we tried.
        action: String,
        /// HTTP status.
        status: u16,
        /// ARM error code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// The store is not backed by a container registry.
    #[error(
        "artifact store {store} is of type {store_type}; only AzureContainerRegistry stores are supported"
    )]
    UnsupportedStoreType {
        /// Store id.
        store: String,
        /// Its type.
        store_type: String,
    },
    /// An answer we cannot use.
    #[error("unexpected answer to {action}: {reason}")]
    Protocol {
        /// What we tried.
        action: String,
        /// What was wrong.
        reason: String,
    },
    /// Bad configuration (URLs, cloud settings).
    #[error("{0}")]
    Config(String),
}

impl AosmError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Connect { .. })
    }

    /// Server-requested delay before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl crate::http::Retryable for AosmError {
    fn is_transient(&self) -> bool {
        AosmError::is_transient(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        AosmError::retry_after(self)
    }
}
