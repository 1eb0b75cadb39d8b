//! Shared state of all handlers.

use crate::config::RuntimeConfig;
use crate::credentials::Credentials;
use crate::faults::FaultState;
use crate::jwt::JwtKey;
use crate::operations::Operations;
use crate::resources::Resources;
use crate::secret::Secret;
use crate::stats::Stats;
use std::sync::{Mutex, MutexGuard};

/// Who may get Entra tokens.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The only tenant.
    pub tenant_id: String,
    /// The service principal (client secret and workload identity).
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The managed identity served by the App Service style endpoint.
    pub managed_identity_client_id: String,
    /// Value the managed identity endpoint expects in `X-IDENTITY-HEADER`.
    pub identity_header: Secret,
}

/// The one subscription of the emulated directory.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Subscription id (`subscriptionId`).
    pub id: String,
    /// `displayName`.
    pub display_name: String,
}

/// The registry behind the ACR token server.
#[derive(Debug, Clone)]
pub struct RegistryInfo {
    /// `host:port` clients use (also the token `aud`, the registry's `service`).
    pub host: String,
    /// The registry's filesystem storage root (`storage.filesystem.rootdirectory`).
    pub storage: std::path::PathBuf,
}

/// Issuer of registry tokens (the registry's `auth.token.issuer`).
pub const REGISTRY_TOKEN_ISSUER: &str = "aosm-emulator";

/// Everything the handlers share.
pub struct App {
    /// Accepted identities.
    pub identity: Identity,
    /// The subscription `GET /subscriptions` lists.
    pub subscription: Subscription,
    /// `https://host:port` of the listener (ARM endpoint and authority host).
    pub base_url: String,
    /// The registry, when one runs.
    pub registry: Option<RegistryInfo>,
    /// Signs Entra access tokens (ES256, `kid`).
    pub entra_key: JwtKey,
    /// Signs registry tokens (ES256, `x5c`).
    pub registry_key: JwtKey,
    /// Runtime knobs.
    pub config: Mutex<RuntimeConfig>,
    /// Position in the fault sequences.
    pub faults: Mutex<FaultState>,
    /// ARM resources.
    pub resources: Mutex<Resources>,
    /// Issued ACR credentials.
    pub credentials: Mutex<Credentials>,
    /// Long-running updateState operations.
    pub operations: Mutex<Operations>,
    /// Counters.
    pub stats: Mutex<Stats>,
}

impl App {
    /// `iss` of Entra tokens: `<base>/<tenant>/v2.0`.
    pub fn entra_issuer(&self) -> String {
        format!("{}/{}/v2.0", self.base_url, self.identity.tenant_id)
    }

    /// A copy of the current knobs.
    pub fn config(&self) -> RuntimeConfig {
        lock(&self.config).clone()
    }

    /// `acrServerUrl` of listCredential answers.
    pub fn acr_server(&self) -> String {
        let host = match &self.registry {
            Some(r) => r.host.clone(),
            None => self.base_url.trim_start_matches("https://").to_string(),
        };
        if self.config().acr_server_url_scheme {
            format!("https://{host}")
        } else {
            host
        }
    }
}

impl App {
    /// Removes tag `tag` of repository `repo` from the registry's storage (the manifest
    /// and its blobs stay, untagged, as ACR keeps them until purged). False when there is
    /// no registry, no such tag, or the names are not a repository and a tag.
    pub fn untag(&self, repo: &str, tag: &str) -> bool {
        let Some(registry) = &self.registry else {
            return false;
        };
        let repo_ok = !repo.is_empty()
            && repo.split('/').all(|c| {
                !c.is_empty()
                    && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                    && c.chars().all(|ch| {
                        ch.is_ascii_lowercase()
                            || ch.is_ascii_digit()
                            || matches!(ch, '.' | '_' | '-')
                    })
            });
        let tag_ok = tag.len() <= 128
            && tag.starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
            && tag
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
        if !repo_ok || !tag_ok {
            return false;
        }
        let dir = registry
            .storage
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag);
        std::fs::remove_dir_all(&dir).is_ok()
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every critical
/// section leaves the data consistent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An `App` for unit tests of handlers: the default identities, subscription
/// `00000000-0000-0000-0000-0000000000aa`, base URL `https://127.0.0.1:8443`, no registry.
#[cfg(test)]
pub fn test_app() -> App {
    crate::jwt::install_crypto_provider();
    let entra_key = JwtKey::generate("entra").unwrap();
    let registry_key = JwtKey::generate("registry").unwrap();
    App {
        identity: Identity {
            tenant_id: crate::cli::DEFAULT_TENANT_ID.into(),
            client_id: crate::cli::DEFAULT_CLIENT_ID.into(),
            client_secret: Secret::new("test-secret"),
            managed_identity_client_id: crate::cli::DEFAULT_MANAGED_IDENTITY_CLIENT_ID.into(),
            identity_header: Secret::new("test-header"),
        },
        subscription: Subscription {
            id: "00000000-0000-0000-0000-0000000000aa".into(),
            display_name: "Test subscription".into(),
        },
        base_url: "https://127.0.0.1:8443".into(),
        registry: None,
        entra_key,
        registry_key,
        config: Mutex::default(),
        faults: Mutex::default(),
        resources: Mutex::default(),
        credentials: Mutex::default(),
        operations: Mutex::default(),
        stats: Mutex::default(),
    }
}
