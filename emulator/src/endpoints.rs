//! `DIR/endpoints.json`: how clients reach the emulator. Written atomically (temp file +
//! rename, mode 0600: it holds the client secret) once everything is ready.

use crate::files;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The file's content (camelCase JSON).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// ARM endpoint (`https://127.0.0.1:PORT`).
    pub arm_endpoint: String,
    /// Entra authority host (same base URL).
    pub authority_host: String,
    /// Tenant id.
    pub tenant_id: String,
    /// The subscription `GET /subscriptions` lists.
    pub subscription_id: String,
    /// Its display name.
    pub subscription_name: String,
    /// Service principal client id.
    pub client_id: String,
    /// Its secret (random per run unless given).
    pub client_secret: String,
    /// PEM bundle to trust for the emulator and the registry.
    pub ca_file: PathBuf,
    /// Registry `host:port` (null with --no-registry).
    pub registry: Option<String>,
    /// `https://<registry>`.
    pub registry_url: Option<String>,
    /// Entra v2 token endpoint of the tenant.
    pub token_endpoint: String,
    /// Scope for ARM tokens.
    pub arm_scope: String,
    /// `IDENTITY_ENDPOINT` for App Service style managed identity.
    pub identity_endpoint: String,
    /// `IDENTITY_HEADER` for it.
    pub identity_header: String,
    /// Client id of the managed identity.
    pub managed_identity_client_id: String,
    /// Supported `Microsoft.HybridNetwork` api-versions.
    pub api_versions: Vec<String>,
    /// Base URL of `/_emulator` (config, stats).
    pub admin_url: String,
    /// Process id of the emulator.
    pub pid: u32,
    /// Process id of the registry.
    pub registry_pid: Option<u32>,
}

/// Writes `dir/endpoints.json` atomically and returns its path.
pub fn write(dir: &Path, endpoints: &Endpoints) -> std::io::Result<PathBuf> {
    let path = dir.join("endpoints.json");
    let mut json = serde_json::to_vec_pretty(endpoints).map_err(std::io::Error::other)?;
    json.push(b'\n');
    files::write_atomic(&path, &json, true)?;
    Ok(path)
}
