//! How the binary under test reaches a registry (directly or through a proxy): host,
//! transport and credentials, turned into `--from-*` / `--to-*` flags.

use super::proxy::FaultProxy;
use super::registry::Registry;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub plain_http: bool,
    /// The test CA to pass with `--*-ca-file` (TLS registries).
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<(String, String)>,
}

impl Endpoint {
    /// `HOST/<path>`
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }

    /// Flags for one side (`"from"` or `"to"`): plain HTTP or CA file, and credentials.
    pub fn flags(&self, side: &str) -> Vec<String> {
        let mut flags = Vec::new();
        if self.plain_http {
            flags.push(format!("--{side}-plain-http"));
        }
        if let Some(ca) = &self.ca_file {
            flags.push(format!("--{side}-ca-file"));
            flags.push(ca.display().to_string());
        }
        if let Some((user, password)) = &self.credentials {
            flags.push(format!("--{side}-username"));
            flags.push(user.clone());
            // One argument, so that messages show it as `--{side}-password=***`.
            flags.push(format!("--{side}-password={password}"));
        }
        flags
    }

    /// The same endpoint without credentials.
    pub fn anonymous(&self) -> Self {
        Endpoint {
            credentials: None,
            ..self.clone()
        }
    }

    /// The same endpoint with other credentials.
    pub fn with_credentials(&self, user: &str, password: &str) -> Self {
        Endpoint {
            credentials: Some((user.into(), password.into())),
            ..self.clone()
        }
    }

    /// The same endpoint without the CA file (TLS verification then uses system roots).
    pub fn without_ca(&self) -> Self {
        Endpoint {
            ca_file: None,
            ..self.clone()
        }
    }
}

impl From<&Registry> for Endpoint {
    fn from(reg: &Registry) -> Self {
        Endpoint {
            host: reg.host(),
            plain_http: !reg.is_tls(),
            ca_file: reg.tls_files().map(|t| t.ca_pem.clone()),
            credentials: reg.credentials().map(|(u, p)| (u.into(), p.into())),
        }
    }
}

impl From<&FaultProxy> for Endpoint {
    fn from(proxy: &FaultProxy) -> Self {
        Endpoint {
            host: proxy.host(),
            plain_http: true,
            ca_file: None,
            credentials: proxy.upstream_credentials(),
        }
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(ep: &Endpoint) -> Self {
        ep.clone()
    }
}
