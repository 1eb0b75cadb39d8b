//! Transfer outcomes for callers that must decide: retry with backoff (transient) or stop
//! and tell the user (permanent, with a reason a condition can carry).

use std::fmt;
use std::time::Duration;

use crate::aosm::AosmError;
use crate::engine::EngineError;

/// Why a transfer cannot go on; becomes the `reason` of a Stalled or Reconciling condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The spec is invalid in a way the schema could not catch.
    InvalidSpec,
    /// The artifact (name, version) is not listed in the AOSM manifest, or its type does not fit.
    ArtifactNotInManifest,
    /// The version is not in the `1.0.0` format ACR / AOSM require.
    VersionFormat,
    /// A Helm chart's name or version differs from the artifact's.
    ChartNameMismatch,
    /// A referenced Secret (or key in it) does not exist.
    SecretNotFound,
    /// A referenced ConfigMap (or key) does not exist.
    ConfigMapNotFound,
    /// The named store does not exist or does not admit this namespace.
    StoreNotAllowed,
    /// A namespaced ArtifactStore would authenticate as the controller itself (its
    /// workload or managed identity), which the cluster admin has not allowed.
    AmbientIdentityNotAllowed,
    /// A namespaced ArtifactStore overrides an Azure endpoint (`armEndpoint`,
    /// `authorityHost`, `cloud: Custom`) on a host the cluster admin has not allowed.
    EndpointNotAllowed,
    /// The ServiceAccount named by a store's `identity.serviceAccountName` does not exist
    /// (or lacks the client-id annotation).
    ServiceAccountNotFound,
    /// Access was denied (ARM, Entra or registry).
    Forbidden,
    /// The source image, chart or version does not exist.
    SourceNotFound,
    /// The store is not backed by a container registry.
    UnsupportedStoreType,
    /// The AOSM publisher, store or manifest does not exist.
    StoreNotFound,
    /// Content failed verification (digest mismatch).
    IntegrityError,
    /// A transient failure (network, 5xx, 429, throttling); retried with backoff.
    TransientFailure,
    /// Anything else permanent.
    TransferFailed,
}

impl Reason {
    /// The CamelCase name used in conditions and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ArtifactNotInManifest => "ArtifactNotInManifest",
            Reason::VersionFormat => "VersionFormat",
            Reason::ChartNameMismatch => "ChartNameMismatch",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::ConfigMapNotFound => "ConfigMapNotFound",
            Reason::StoreNotAllowed => "StoreNotAllowed",
            Reason::AmbientIdentityNotAllowed => "AmbientIdentityNotAllowed",
            Reason::EndpointNotAllowed => "EndpointNotAllowed",
            Reason::ServiceAccountNotFound => "ServiceAccountNotFound",
            Reason::Forbidden => "Forbidden",
            Reason::SourceNotFound => "SourceNotFound",
            Reason::UnsupportedStoreType => "UnsupportedStoreType",
            Reason::StoreNotFound => "StoreNotFound",
            Reason::IntegrityError => "IntegrityError",
            Reason::TransientFailure => "TransientFailure",
            Reason::TransferFailed => "TransferFailed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        self.reason == Reason::TransientFailure
    }
}

impl From<EngineError> for TransferError {
    fn from(e: EngineError) -> Self {
        let reason = match &e {
            _ if e.is_transient() => Reason::TransientFailure,
            EngineError::NotFound { .. } => Reason::SourceNotFound,
            EngineError::Unauthorized { .. } | EngineError::Forbidden { .. } => Reason::Forbidden,
            EngineError::DigestMismatch { .. } => Reason::IntegrityError,
            EngineError::ChartMismatch { .. } => Reason::ChartNameMismatch,
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

impl From<AosmError> for TransferError {
    fn from(e: AosmError) -> Self {
        let reason = match &e {
            _ if e.is_transient() => Reason::TransientFailure,
            AosmError::NotFound { .. } => Reason::StoreNotFound,
            AosmError::Forbidden { .. } | AosmError::Identity { .. } => Reason::Forbidden,
            AosmError::UnsupportedStoreType { .. } => Reason::UnsupportedStoreType,
            AosmError::Config(_) => Reason::InvalidSpec,
            _ => Reason::TransferFailed,
        };
        Self {
            reason,
            retry_after: e.retry_after(),
            message: e.to_string().replace(['\n', '\r'], " "),
        }
    }
}
