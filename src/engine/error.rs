//! Typed engine errors: each says what failed, where, why and what to do, and whether a
//! retry can help ([`EngineError::is_transient`]). None of them ever carries a secret.

use std::time::Duration;

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can make a transfer fail.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A reference that cannot be parsed.
    #[error(
        "invalid reference {input:?}: {reason}; expected HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]"
    )]
    InvalidReference {
        /// What the user gave.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// Input given to the command is wrong (file, platform, chart name, option).
    #[error("{0}")]
    InvalidInput(String),
    /// The source manifest, tag, chart or version does not exist.
    #[error("{what} not found at {location}: {hint}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where.
        location: String,
        /// What to check.
        hint: String,
    },
    /// The registry refused our credentials.
    #[error(
        "authentication to {registry} failed: {reason}; check the username and password (or token) for it"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Registry's reason, sanitised.
        reason: String,
    },
    /// Authenticated but not allowed.
    #[error(
        "access denied by {registry} for {action}: {reason}; the credential lacks this permission"
    )]
    Forbidden {
        /// Registry host.
        registry: String,
        /// What we tried.
        action: String,
        /// Registry's reason, sanitised.
        reason: String,
    },
    /// Bytes did not hash to the digest that named them.
    #[error(
        "digest mismatch for {what} from {location}: expected {expected}, got {actual}; the source served corrupt content, nothing was tagged"
    )]
    DigestMismatch {
        /// Blob or manifest.
        what: String,
        /// Where it came from.
        location: String,
        /// Digest that named the content.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// TLS handshake failed (certificate not trusted, name mismatch, ...).
    #[error(
        "TLS connection to {host} failed: {reason}; pass the registry's CA with --from-ca-file/--to-ca-file, or --from-insecure/--to-insecure to skip verification"
    )]
    Tls {
        /// Host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The host could not be reached (DNS, refused, reset, timeout).
    #[error(
        "cannot reach {host}: {reason}; check the host name and port, and that the registry is running"
    )]
    Connect {
        /// Host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve registry host {host}: {reason}; check the host name")]
    UnknownHost {
        /// Host.
        host: String,
        /// Resolver's answer.
        reason: String,
    },
    /// The server answered with a status we treat as transient (408, 429, 5xx).
    #[error("{host} answered {status} to {action}{retry}; try again later")]
    Transient {
        /// Host.
        host: String,
        /// HTTP status.
        status: u16,
        /// What we tried.
        action: String,
        /// Retry hint text.
        retry: String,
        /// Server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The server refused a request permanently (4xx other than auth and not-found).
    #[error("{host} refused {action}: HTTP {status} {reason}")]
    Refused {
        /// Host.
        host: String,
        /// HTTP status.
        status: u16,
        /// What we tried.
        action: String,
        /// Server's reason.
        reason: String,
    },
    /// The server broke the protocol (bad JSON, missing header, ...).
    #[error("{host} sent an unusable answer to {action}: {reason}")]
    Protocol {
        /// Host.
        host: String,
        /// What we tried.
        action: String,
        /// What was wrong.
        reason: String,
    },
    /// What a registry or its token server sent is over one of the hard limits on
    /// untrusted input (`crate::limits`): refused before it is held in memory.
    #[error("refused {what} from {host}: {problem}; {hint}")]
    LimitExceeded {
        /// Host (or source reference) that sent it.
        host: String,
        /// What was refused (a manifest, an index, a blob, a token answer, ...).
        what: String,
        /// What is over which limit, with the limit's value and name.
        problem: String,
        /// What to do.
        hint: String,
    },
    /// A chart archive's `Chart.yaml` names another chart or version than the one asked for.
    #[error(
        "the archive for chart {chart} {version} holds Chart.yaml of {found_name} {found_version}; the chart must be named {chart} with version {version} (fix the chart or the repository index)"
    )]
    ChartMismatch {
        /// Chart asked for.
        chart: String,
        /// Version asked for.
        version: String,
        /// Name in Chart.yaml.
        found_name: String,
        /// Version in Chart.yaml.
        found_version: String,
    },
    /// An artifact asked for as one file (e.g. for a ConfigMap) is not one: an index, a
    /// manifest with other than one layer, or a layer over the size limit.
    #[error("{reference} cannot be read as one file: {problem}")]
    NotOneFile {
        /// The artifact.
        reference: String,
        /// What it is instead, and what to do.
        problem: String,
    },
    /// A [`crate::engine::CredentialSource`] could not give credentials (e.g. AOSM's
    /// `listCredential` failed); its own error, so the caller can tell what it was.
    #[error("cannot get registry credentials: {source}")]
    CredentialSource {
        /// The source's error.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
        /// Whether a retry may succeed (the source said so).
        transient: bool,
        /// The delay the source's server asked for, if any.
        retry_after: Option<Duration>,
    },
    /// A multi-step operation failed; the message says which steps and why.
    #[error("{0}")]
    Failed(String),
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::http::ClientError> for EngineError {
    fn from(e: crate::http::ClientError) -> Self {
        match e {
            crate::http::ClientError::InvalidInput(text) => Self::InvalidInput(text),
            crate::http::ClientError::Io { path, source } => Self::Io { path, source },
        }
    }
}

impl crate::http::Retryable for EngineError {
    fn is_transient(&self) -> bool {
        EngineError::is_transient(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        EngineError::retry_after(self)
    }
}

impl EngineError {
    /// True when retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transient { .. }
                | Self::Connect { .. }
                | Self::CredentialSource {
                    transient: true,
                    ..
                }
        )
    }

    /// True when the user's input is at fault (exit code 2 in the CLI).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidReference { .. }
                | Self::InvalidInput(_)
                | Self::NotFound { .. }
                | Self::ChartMismatch { .. }
                | Self::NotOneFile { .. }
        )
    }

    /// Server-requested delay before the next attempt, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } | Self::CredentialSource { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Builds an [`EngineError::Io`].
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }
}
