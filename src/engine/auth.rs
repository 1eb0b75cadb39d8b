//! Registry credentials: anonymous, basic, docker config JSON, and the parsing of
//! `WWW-Authenticate` challenges for the registry bearer-token flow.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::{EngineError, Result};

/// A secret string: never printed by `Debug` or `Display`. It compares and hashes by
/// value, so a configuration holding one can key a cache (in memory only).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for putting on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A source of username/password pairs that can change during a transfer (e.g. scoped
/// registry tokens from AOSM `listCredential`, which expire).
pub trait CredentialSource: Send + Sync {
    /// The current pair; `refresh` means the previous pair was refused and a new one is wanted.
    fn basic(&self, refresh: bool)
    -> futures_util::future::BoxFuture<'_, Result<(String, Secret)>>;
}

/// How to authenticate to one registry.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials (anonymous tokens are still requested when the registry asks).
    #[default]
    Anonymous,
    /// Username and password (or token), used for HTTP Basic or the token endpoint.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: Secret,
    },
    /// Username and password from a [`CredentialSource`], asked again when refused.
    Dynamic(std::sync::Arc<dyn CredentialSource>),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Self::Dynamic(_) => f.write_str("Dynamic"),
        }
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Anonymous, Self::Anonymous) => true,
            (
                Self::Basic {
                    username: a,
                    password: p,
                },
                Self::Basic {
                    username: b,
                    password: q,
                },
            ) => a == b && p == q,
            (Self::Dynamic(a), Self::Dynamic(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Credentials {
    /// Basic credentials from a username and password.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuthEntry>,
}

#[derive(Deserialize, Default)]
struct DockerAuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Credentials read from a docker `config.json` (`auths` entries).
#[derive(Clone, Debug, Default)]
pub struct DockerConfigAuth {
    entries: HashMap<String, Credentials>,
}

impl DockerConfigAuth {
    /// Loads `path`, or `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json`
    /// when `path` is `None`. A missing default file is an empty config; a missing
    /// explicit file is an error.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match default_docker_config_path() {
                Some(p) => (p, false),
                None => return Ok(Self::default()),
            },
        };
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(e) => return Err(EngineError::io(file.display(), e)),
        };
        Self::parse(&text).map_err(|reason| {
            EngineError::InvalidInput(format!(
                "registry config {} is not a valid docker config.json: {reason}",
                file.display()
            ))
        })
    }

    /// Parses the JSON text of a docker config.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let config: DockerConfig = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let mut entries = HashMap::new();
        for (key, entry) in config.auths {
            let creds = if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                Credentials::basic(u.clone(), p.clone())
            } else if let Some(auth) = &entry.auth {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("the auth entry for {key} is not base64"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("the auth entry for {key} is not UTF-8"))?;
                let (u, p) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("the auth entry for {key} is not user:password"))?;
                Credentials::basic(u, p)
            } else if let Some(token) = &entry.identitytoken {
                // ACR convention: an identity token is a refresh token used with this user.
                Credentials::basic("00000000-0000-0000-0000-000000000000", token.clone())
            } else {
                continue;
            };
            entries.insert(normalize_host(&key), creds);
        }
        Ok(Self { entries })
    }

    /// Credentials for `registry` (`host[:port]`), if the config has them.
    pub fn lookup(&self, registry: &str) -> Option<Credentials> {
        let host = normalize_host(registry);
        self.entries.get(&host).cloned().or_else(|| {
            (host == "index.docker.io")
                .then(|| self.entries.get("docker.io").cloned())
                .flatten()
        })
    }
}

pub fn default_docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:5000` stays.
fn normalize_host(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme.split('/').next().unwrap_or(no_scheme);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_string(),
        other => other.to_string(),
    }
}

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// No authentication needed.
    None,
    /// HTTP Basic on every request.
    Basic,
    /// Bearer tokens from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to send.
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Self::Basic),
            "bearer" => {
                let params = parse_auth_params(rest);
                let realm = params.get("realm")?.clone();
                Some(Self::Bearer {
                    realm,
                    service: params.get("service").cloned(),
                })
            }
            _ => None,
        }
    }
}

/// Checks the `realm` of a Bearer challenge before any credential is sent to it, and
/// returns it parsed. It must be an absolute `http`/`https` URL with a host and no user
/// info; a plain `http` realm is refused when the registry itself is `https` (the
/// registry's credentials would otherwise cross the network in clear). A realm on another
/// host is allowed: that is how ACR and Docker Hub work (the token server gets only this
/// registry's own credentials, as HTTP Basic).
pub fn check_realm(realm: &str, registry_https: bool) -> Result<url::Url, String> {
    let shown = super::digest::quote_untrusted(realm, 120);
    let url = url::Url::parse(realm)
        .map_err(|e| format!("the token realm {shown} is not an absolute URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if !registry_https => {}
        "http" => {
            return Err(format!(
                "the registry is https but its token realm {shown} is plain http; credentials are never sent over plain HTTP (the registry's WWW-Authenticate header must name an https token server)"
            ));
        }
        other => {
            return Err(format!(
                "the token realm {shown} has scheme {}; only http and https token servers are used",
                super::digest::quote_untrusted(other, 20)
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the token realm {shown} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the token realm {shown} carries user info; refusing it"
        ));
    }
    Ok(url)
}

/// Parses `k="v",k2=v2` (quoted values may contain commas).
fn parse_auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://x.azurecr.io/oauth2/token",service="x.azurecr.io",scope="repository:a,b:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://x.azurecr.io/oauth2/token".into(),
                service: Some("x.azurecr.io".into())
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn docker_config_entries() {
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"h:5000":{"username":"a","password":"b"}}}"#;
        let cfg = DockerConfigAuth::parse(json).unwrap();
        assert_eq!(
            cfg.lookup("index.docker.io"),
            Some(Credentials::basic("u", "p"))
        );
        assert_eq!(cfg.lookup("h:5000"), Some(Credentials::basic("a", "b")));
        assert_eq!(cfg.lookup("other"), None);
        assert!(DockerConfigAuth::parse(br#"{"auths":{"h":{"auth":"!!"}}}"#).is_err());
    }

    #[test]
    fn realms() {
        assert!(check_realm("https://auth.docker.io/token", true).is_ok());
        assert!(check_realm("https://other.example/oauth2/token?x=1", false).is_ok());
        assert!(check_realm("http://127.0.0.1:5000/token", false).is_ok());
        let err = check_realm("http://127.0.0.1:5000/token", true).unwrap_err();
        assert!(err.contains("plain http"), "{err}");
        for bad in [
            "",
            "/token",
            "token",
            "ftp://h/token",
            "file:///etc/passwd",
            "https://user:pw@h/token",
            "https://",
        ] {
            assert!(check_realm(bad, false).is_err(), "{bad}");
        }
        let long = format!("http://h/{}", "x".repeat(100_000));
        let err = check_realm(&long, true).unwrap_err();
        assert!(err.len() < 600, "{err}");
    }

    /// A `WWW-Authenticate` value as a server would write it: `value` quoted and escaped.
    fn quoted(value: &str) -> String {
        let mut out = String::from('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn challenge_parse_never_panics(header in "\\PC{0,300}") {
            let _ = Challenge::parse(&header);
        }

        #[test]
        fn challenge_parse_never_panics_on_bytes(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Challenge::parse(&String::from_utf8_lossy(&raw));
        }

        #[test]
        fn bearer_challenge_round_trips(
            realm in "[ -~]{0,80}",
            service in proptest::option::of("[ -~]{0,40}"),
            scope in "[ -~]{0,40}",
            scheme in "(Bearer|bearer|BEARER)",
        ) {
            let mut header = format!("{scheme} realm={}", quoted(&realm));
            if let Some(s) = &service {
                header.push_str(&format!(",service={}", quoted(s)));
            }
            header.push_str(&format!(", scope={}", quoted(&scope)));
            let parsed = Challenge::parse(&header);
            proptest::prop_assert_eq!(
                parsed,
                Some(Challenge::Bearer {
                    realm: realm.trim().to_string(),
                    service: service.map(|s| s.trim().to_string()),
                })
            );
        }

        #[test]
        fn realm_check_never_panics(realm in "\\PC{0,200}", https in proptest::prelude::any::<bool>()) {
            if let Ok(url) = check_realm(&realm, https) {
                proptest::prop_assert!(url.scheme() == "https" || (!https && url.scheme() == "http"));
                proptest::prop_assert!(url.host_str().is_some());
            }
        }
    }

    #[test]
    fn secret_is_not_printed() {
        let c = Credentials::basic("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
