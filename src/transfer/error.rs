//! Transfer outcomes for callers that must decide: retry with backoff (transient) or stop
//! and tell the user (permanent, with a reason a condition can carry).

use std::time::Duration;

use crate::aosm::AosmError;
pub use crate::api::Reason;
use crate::engine::EngineError;

/// A failed transfer: reason, one-line message (never a secret), and whether to retry.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct TransferError {
    /// Why.
    pub reason: Reason,
    /// What happened and what to do.
    pub message: String,
    /// Server-requested delay, when transient.
    pub retry_after: Option<Duration>,
}

impl TransferError {
    /// A permanent error.
    pub fn permanent(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.reason.is_transient()
    }
}

impl From<EngineError> for TransferError {
    fn from(e: EngineError) -> Self {
        let reason = match &e {
            _ if e.is_transient() => Reason::TransientFailure,
            EngineError::CredentialSource { source, .. } => {
                match source.downcast_ref::<AosmError>() {
                    Some(aosm) => aosm_reason(aosm),
                    None => Reason::Forbidden,
                }
            }
            EngineError::NotFound { .. } => Reason::SourceNotFound,
            EngineError::Unauthorized { .. } | EngineError::Forbidden { .. } => Reason::Forbidden,
            EngineError::DigestMismatch { .. } => Reason::IntegrityError,
            EngineError::ChartMismatch { .. } => Reason::ChartNameMismatch,
            EngineError::NotOneFile { .. } => Reason::NotASingleFile,
            EngineError::InvalidReference { .. } | EngineError::InvalidInput(_) => {
                Reason::InvalidSpec
            }
            _ => Reason::TransferFailed,
        };
        Self {
            reason,
            retry_after: e.retry_after(),
            message: e.to_string().replace(['\n', '\r'], " "),
        }
    }
}

/// The reason of an ARM (or Entra) failure.
fn aosm_reason(e: &AosmError) -> Reason {
    match e {
        _ if e.is_transient() => Reason::TransientFailure,
        AosmError::NotFound { .. } => Reason::StoreNotFound,
        AosmError::Forbidden { .. } | AosmError::Identity { .. } => Reason::Forbidden,
        AosmError::UnsupportedStoreType { .. } => Reason::UnsupportedStoreType,
        AosmError::Config(_) => Reason::InvalidSpec,
        _ => Reason::TransferFailed,
    }
}

impl From<AosmError> for TransferError {
    fn from(e: AosmError) -> Self {
        let reason = aosm_reason(&e);
        Self {
            reason,
            retry_after: e.retry_after(),
            message: e.to_string().replace(['\n', '\r'], " "),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn an_arm_failure_behind_the_credential_source_keeps_its_reason() {
        let wrapped = |e: AosmError| EngineError::CredentialSource {
            transient: e.is_transient(),
            retry_after: e.retry_after(),
            source: Arc::new(e),
        };
        let missing = TransferError::from(wrapped(AosmError::NotFound {
            resource: "artifact manifest m".into(),
            code: "ResourceNotFound".into(),
            message: "gone".into(),
        }));
        assert_eq!(missing.reason, Reason::StoreNotFound, "{missing}");
        assert!(missing.message.contains("artifact manifest m"), "{missing}");
        let other = TransferError::from(EngineError::CredentialSource {
            transient: false,
            retry_after: None,
            source: Arc::new(std::io::Error::other("no")),
        });
        assert_eq!(other.reason, Reason::Forbidden);
    }
}
