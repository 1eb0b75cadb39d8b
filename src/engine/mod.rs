//! The transfer engine: byte-exact, streaming copies of OCI content between registries,
//! and pushes of local content (files, Helm charts from HTTP repositories).
//! It knows nothing about Kubernetes; the CLI and the controller are adapters around it.

pub mod auth;
pub mod blob;
pub mod copy;
pub mod digest;
pub mod error;
pub mod files;
pub mod helm_repo;
pub mod media;
pub mod platform;
pub mod progress;
pub mod pull_files;
pub mod pull_one;
pub mod reference;
pub mod referrer_copy;
pub mod registry;
/// The retry policy (the shared HTTP layer's).
pub use crate::http::retry;

pub use auth::{CredentialSource, Credentials, DockerConfigAuth, Secret};
pub use copy::{Endpoint, TransferOptions, TransferSummary, copy};
pub use error::{EngineError, Result};
pub use platform::PlatformFilter;
pub use progress::{NoProgress, Progress};
pub use reference::ImageRef;
pub use referrer_copy::{ReferrerCounts, ReferrerSelection};
pub use registry::{RegistryClient, RegistryOptions};
