//! AOSM client: ARM tokens through azure_identity, the `Microsoft.HybridNetwork` calls a
//! transfer needs (manifest, `listCredential`, `updateState`).

pub mod arm;
pub mod cloud;
pub mod error;
pub mod identity;

pub use arm::{
    AcrCredential, ArmClient, ArtifactManifest, ManifestArtifact, StoreId, list_credential_calls,
};
pub use cloud::{Cloud, CloudEndpoints};
pub use error::AosmError;
pub use identity::{
    Identity, ServiceAccountTokenError, ServiceAccountTokens, TOKEN_EXCHANGE_AUDIENCE,
};
