//! The HTTP client factory: one reqwest client per TLS setting, shared process-wide (a
//! client holds the trust roots and a connection pool), trusting the system roots,
//! `SSL_CERT_FILE`, a CA file and a PEM bundle.
//!
//! The TLS configuration is the one reqwest builds with its `rustls` feature (aws-lc-rs,
//! TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, rustls-platform-verifier with the extra
//! roots), with one difference: the system roots (~150 certificates, parsed from the
//! system bundle and `/etc/ssl/certs`: about a third of a no-op copy's CPU time) are loaded
//! at the first TLS handshake, so a command that speaks only plain HTTP never loads them.
//! The extra CA bundles are still read and checked when the client is made.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
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
    let builder = reqwest::Client::builder()
        .user_agent(concat!(
            "aosm-artifact-operator/",
            env!("CARGO_PKG_VERSION")
        ))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true);
    // SSL_CERT_FILE adds to the system roots: read with them, at the first handshake.
    let mut env_bundles: Vec<PathBuf> = Vec::new();
    if let Some(env) = std::env::var_os("SSL_CERT_FILE") {
        // The platform verifier reads *only* SSL_CERT_FILE/SSL_CERT_DIR once either is set;
        // SSL_CERT_FILE here adds to the system roots, so put them back explicitly.
        if std::env::var_os("SSL_CERT_DIR").is_none()
            && let Some(system) = system_ca_bundle()
        {
            env_bundles.push(system);
        }
        env_bundles.push(PathBuf::from(env));
    }
    // A CA file or bundle given for this client is read and checked now.
    let mut pems: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|source| ClientError::Io {
            path: ca.display().to_string(),
            source,
        })?;
        pems.push((format!("CA file {}", ca.display()), pem));
    }
    if let Some(pem) = ca_pem {
        pems.push(("the CA bundle (ca.crt)".to_string(), pem.to_vec()));
    }
    let mut extra_roots: Vec<CertificateDer<'static>> = Vec::new();
    for (name, pem) in pems {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ClientError::InvalidInput(format!("{name} is not a PEM certificate bundle: {e}"))
        })?;
        if certs.is_empty() {
            return Err(ClientError::InvalidInput(format!(
                "{name} holds no PEM certificate"
            )));
        }
        extra_roots.extend(pem_certificates(&name, &pem).map_err(ClientError::InvalidInput)?);
    }
    let tls = tls_config(insecure, env_bundles, extra_roots)?;
    builder
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| ClientError::InvalidInput(format!("cannot set up the HTTP client: {e}")))
}

/// The certificates of a PEM bundle named `name` (for messages); other sections are skipped.
fn pem_certificates(name: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{name} is not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{name} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The rustls configuration reqwest 0.13 builds by default (see the module comment), with
/// the verifier [`LazyPlatformVerifier`], or none at all when `insecure`.
fn tls_config(
    insecure: bool,
    env_bundles: Vec<PathBuf>,
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, ClientError> {
    // reqwest's choice: an installed process default, else aws-lc-rs.
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(NoVerifier)
    } else {
        // A bad extra root fails now, as reqwest's builder would fail.
        let mut store = rustls::RootCertStore::empty();
        for cert in &extra_roots {
            store.add(cert.clone()).map_err(|e| {
                ClientError::InvalidInput(format!("cannot set up the HTTP client: {e}"))
            })?;
        }
        Arc::new(LazyPlatformVerifier {
            env_bundles,
            extra_roots,
            provider: provider.clone(),
            inner: OnceLock::new(),
        })
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| ClientError::InvalidInput(format!("cannot set up the HTTP client: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// rustls-platform-verifier's verifier (the system roots, the bundles of `SSL_CERT_FILE`
/// and the extra roots), made at the first certificate to verify and kept for the client's
/// life. An unreadable or empty `SSL_CERT_FILE` bundle fails that handshake.
#[derive(Debug)]
struct LazyPlatformVerifier {
    env_bundles: Vec<PathBuf>,
    extra_roots: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    inner: OnceLock<Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error>>,
}

impl LazyPlatformVerifier {
    fn verifier(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        let made = self.inner.get_or_init(|| {
            let mut roots = Vec::new();
            for bundle in &self.env_bundles {
                let name = format!("CA file {}", bundle.display());
                let pem = std::fs::read(bundle)
                    .map_err(|e| rustls::Error::General(format!("{name}: {e}")))?;
                roots.extend(pem_certificates(&name, &pem).map_err(rustls::Error::General)?);
            }
            roots.extend(self.extra_roots.iter().cloned());
            let provider = self.provider.clone();
            let verifier = if roots.is_empty() {
                rustls_platform_verifier::Verifier::new(provider)
            } else {
                rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
            };
            verifier.map(Arc::new)
        });
        made.as_deref().map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // What the platform verifier answers, without loading the roots.
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `--insecure`: any certificate and signature is accepted, as reqwest's
/// `danger_accept_invalid_certs` does (its `NoVerifier`, schemes included).
#[derive(Debug)]
struct NoVerifier;

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::RSA_PKCS1_SHA1,
            SignatureScheme::ECDSA_SHA1_Legacy,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::ECDSA_NISTP521_SHA512,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::ED25519,
            SignatureScheme::ED448,
        ]
    }
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
