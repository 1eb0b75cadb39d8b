//! The emulator's certificates: a CA (kept in the state dir and reused across runs), the
//! HTTPS server certificate (for the listener and the registry), and the certificate whose
//! key signs registry tokens (sent in the tokens' `x5c` header; the registry trusts the CA).

use crate::files;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

const CA_COMMON_NAME: &str = "aosm-emulator CA";

/// Errors while preparing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A certificate given on the command line instead of the generated server certificate.
#[derive(Debug, Clone)]
pub struct GivenTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// What clients should trust; `None` = the certificate file itself.
    pub ca: Option<PathBuf>,
}

/// A key pair with its certificate.
pub struct CertifiedKey {
    /// The private key.
    pub key: KeyPair,
    /// DER of the certificate.
    pub cert_der: Vec<u8>,
}

/// Everything TLS and token signing need.
pub struct Pki {
    /// The PEM file clients trust (`caFile` in endpoints.json).
    pub ca_file: PathBuf,
    /// The generated CA certificate (the registry's `rootcertbundle`).
    pub token_root_file: PathBuf,
    /// Server certificate chain (PEM) of the HTTPS listener and the registry.
    pub server_cert_file: PathBuf,
    /// Its private key (PEM).
    pub server_key_file: PathBuf,
    /// The key that signs registry tokens, with its CA-issued certificate.
    pub registry_token_key: CertifiedKey,
}

/// Prepares the PKI in `dir`: loads or creates `ca.pem`/`ca.key`, issues a fresh
/// `server.pem`/`server.key` for 127.0.0.1, ::1, localhost and `hostnames` (unless `given`),
/// and a registry-token signing certificate (`registry-token.pem`).
pub fn prepare(
    dir: &Path,
    hostnames: &[String],
    given: Option<&GivenTls>,
) -> Result<Pki, PkiError> {
    let ca_file = dir.join("ca.pem");
    let ca_key_file = dir.join("ca.key");
    let ca = load_or_create_ca(&ca_file, &ca_key_file)?;

    let (server_cert_file, server_key_file, trusted) = match given {
        Some(g) => (
            g.cert.clone(),
            g.key.clone(),
            g.ca.clone().unwrap_or_else(|| g.cert.clone()),
        ),
        None => {
            let mut names = vec![
                "127.0.0.1".to_string(),
                "::1".to_string(),
                "localhost".to_string(),
            ];
            names.extend(hostnames.iter().cloned());
            names.dedup();
            let leaf = issue_leaf(&ca, names, "aosm-emulator", true)?;
            let cert_file = dir.join("server.pem");
            let key_file = dir.join("server.key");
            let chain = format!(
                "{}{}",
                pem_cert(&leaf.cert_der),
                pem_cert_from_issuer_file(&ca_file)?
            );
            write(&cert_file, chain.as_bytes(), false)?;
            write(&key_file, leaf.key.serialize_pem().as_bytes(), true)?;
            (cert_file, key_file, ca_file.clone())
        }
    };

    let registry_token_key = issue_leaf(
        &ca,
        Vec::new(),
        "aosm-emulator registry token signer",
        false,
    )?;
    write(
        &dir.join("registry-token.pem"),
        pem_cert(&registry_token_key.cert_der).as_bytes(),
        false,
    )?;

    Ok(Pki {
        ca_file: trusted,
        token_root_file: ca_file,
        server_cert_file,
        server_key_file,
        registry_token_key,
    })
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "aosm-artifact-operator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    Ok(params)
}

/// Reuses `ca.pem` + `ca.key` when both exist and the key parses (the issuer is rebuilt
/// from the same distinguished name, so new certificates chain to the stored CA);
/// otherwise creates a new CA.
fn load_or_create_ca(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let params = ca_params()?;
    if cert_file.is_file()
        && let Ok(pem) = std::fs::read_to_string(key_file)
        && let Ok(key) = KeyPair::from_pem(&pem)
    {
        return Ok(Issuer::new(params, key));
    }
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write(key_file, key.serialize_pem().as_bytes(), true)?;
    write(cert_file, cert.pem().as_bytes(), false)?;
    Ok(Issuer::new(params, key))
}

fn issue_leaf(
    ca: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    common_name: &str,
    server: bool,
) -> Result<CertifiedKey, PkiError> {
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if server {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(CertifiedKey {
        key,
        cert_der: cert.der().to_vec(),
    })
}

/// PEM of a DER certificate.
pub fn pem_cert(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn pem_cert_from_issuer_file(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), PkiError> {
    files::write_atomic(path, bytes, private).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}
