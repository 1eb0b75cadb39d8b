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

/// The registry behind the ACR token server.
#[derive(Debug, Clone)]
pub struct RegistryInfo {
    /// `host:port` clients use (also the token `aud`, the registry's `service`).
    pub host: String,
}

/// Issuer of registry tokens (the registry's `auth.token.issuer`).
pub const REGISTRY_TOKEN_ISSUER: &str = "aosm-emulator";

/// Everything the handlers share.
pub struct App {
    /// Accepted identities.
    pub identity: Identity,
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

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every critical
/// section leaves the data consistent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
