//! The HTTP client factory: one reqwest client per TLS setting, shared process-wide (a
//! client holds the loaded trust roots and a connection pool), trusting the system roots,
//! `SSL_CERT_FILE`, a CA file and a PEM bundle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A CA bundle is not usable, or the TLS setup failed.
    #[error("{0}")]
    InvalidInput(String),
    /// A CA file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A reqwest client trusting the system roots, `SSL_CERT_FILE` when set, `ca_file` and the
/// PEM bundle `ca_pem`. Clients are shared process-wide per TLS setting: loading the system
/// roots costs tens of milliseconds, and a shared client also shares its connection pool.
pub fn http_client(
    insecure: bool,
    ca_file: Option<&std::path::Path>,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, ClientError> {
    type Key = (bool, Option<PathBuf>, Option<String>);
    static CLIENTS: std::sync::OnceLock<std::sync::Mutex<HashMap<Key, reqwest::Client>>> =
        std::sync::OnceLock::new();
    let key: Key = (
        insecure,
        ca_file.map(std::path::Path::to_path_buf),
        ca_pem.map(|pem| hex::encode(Sha256::digest(pem))),
    );
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let client = build_http_client(insecure, ca_file, ca_pem)?;
    clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, client.clone());
    Ok(client)
}

/// Where Linux distributions keep the system CA bundle (Debian/Ubuntu/Alpine, RHEL/Fedora,
/// openSUSE, and the generic `/etc/ssl/cert.pem`); the first that exists.
pub fn system_ca_bundle() -> Option<PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn build_http_client(
    insecure: bool,
    ca_file: Option<&std::path::Path>,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!(
            "aosm-artifact-operator/",
            env!("CARGO_PKG_VERSION")
        ))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true);
    let mut bundles: Vec<PathBuf> = Vec::new();
    if let Some(env) = std::env::var_os("SSL_CERT_FILE") {
        // The platform verifier reads *only* SSL_CERT_FILE/SSL_CERT_DIR once either is set;
        // SSL_CERT_FILE here adds to the system roots, so put them back explicitly.
        if std::env::var_os("SSL_CERT_DIR").is_none()
            && let Some(system) = system_ca_bundle()
        {
            bundles.push(system);
        }
        bundles.push(PathBuf::from(env));
    }
    if let Some(ca) = ca_file {
        bundles.push(ca.to_path_buf());
    }
    let mut pems: Vec<(String, Vec<u8>)> = Vec::new();
    for bundle in bundles {
        let pem = std::fs::read(&bundle).map_err(|source| ClientError::Io {
            path: bundle.display().to_string(),
            source,
        })?;
        pems.push((format!("CA file {}", bundle.display()), pem));
    }
    if let Some(pem) = ca_pem {
        pems.push(("the CA bundle (ca.crt)".to_string(), pem.to_vec()));
    }
    for (name, pem) in pems {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ClientError::InvalidInput(format!("{name} is not a PEM certificate bundle: {e}"))
        })?;
        if certs.is_empty() {
            return Err(ClientError::InvalidInput(format!(
                "{name} holds no PEM certificate"
            )));
        }
        builder = builder.tls_certs_merge(certs);
    }
    if insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| ClientError::InvalidInput(format!("cannot set up the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_system_ca_bundle() {
        // Debian (this project's machines and its container image) keeps it here.
        let bundle = system_ca_bundle().expect("a system CA bundle");
        let pem = std::fs::read(&bundle).expect("readable bundle");
        let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("PEM bundle");
        assert!(
            certs.len() > 10,
            "{} holds {} certificates",
            bundle.display(),
            certs.len()
        );
    }
}
