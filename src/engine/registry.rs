//! A thin registry client over reqwest: authentication (basic and bearer tokens, renewed
//! on 401), retries of transient failures, and the distribution-API calls the copy needs.
//!
//! oci-client 0.18's calls lack what a byte-exact, resumable, ACR-friendly copy needs
//! (response Content-Type, 202 on mount, chunk size, retries, 401 refresh, failing on a
//! token error), so this layer speaks HTTP itself; see docs/architecture.md.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell};

use super::auth::{Challenge, Credentials};
use super::digest::sha256_digest;
use super::error::{EngineError, Result};
use super::media::MANIFEST_ACCEPT;
use super::retry::{RetryPolicy, parse_retry_after};

/// Largest manifest we accept (OCI recommends registries accept at least 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Connection settings for one side of a transfer.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Use `http://` instead of `https://`.
    pub plain_http: bool,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Extra PEM CA bundle to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Extra PEM CA bundle given as bytes (e.g. a Secret's `ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    /// Credentials.
    pub credentials: Credentials,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
}

/// Token scope: one or more `repository:NAME:ACTIONS` entries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Pull access to `repo`.
    pub fn pull(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull")])
    }
    /// Pull and push access to `repo`.
    pub fn push(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull,push")])
    }
    /// Adds pull access to `repo` (the source of a cross-repository mount).
    pub fn and_pull(mut self, repo: &str) -> Self {
        self.0.push(format!("repository:{repo}:pull"));
        self
    }
    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// A manifest as stored: raw bytes, its media type and digest.
#[derive(Clone, Debug)]
pub struct RawManifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// Media type (response Content-Type, or the `mediaType` field).
    pub media_type: String,
    /// `sha256:` digest of `bytes`.
    pub digest: String,
}

/// Answer to an upload start (`POST /blobs/uploads/`).
#[derive(Debug)]
pub enum UploadStart {
    /// The blob was mounted from another repository; nothing to upload.
    Mounted,
    /// Upload session URL.
    Session(String),
}

/// Client for one registry host with one set of credentials.
pub struct RegistryClient {
    host: String,
    base_url: String,
    http: reqwest::Client,
    credentials: Credentials,
    retry: RetryPolicy,
    challenge: OnceCell<Challenge>,
    tokens: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// A reqwest client trusting the system roots, `SSL_CERT_FILE` when set, `ca_file` and the
/// PEM bundle `ca_pem`. Clients are shared process-wide per TLS setting: loading the system
/// roots costs tens of milliseconds, and a shared client also shares its connection pool.
pub fn http_client(
    insecure: bool,
    ca_file: Option<&std::path::Path>,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client> {
    type Key = (bool, Option<PathBuf>, Option<String>);
    static CLIENTS: std::sync::OnceLock<std::sync::Mutex<HashMap<Key, reqwest::Client>>> =
        std::sync::OnceLock::new();
    let key: Key = (
        insecure,
        ca_file.map(std::path::Path::to_path_buf),
        ca_pem.map(sha256_digest),
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
) -> Result<reqwest::Client> {
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
        let pem = std::fs::read(&bundle).map_err(|e| EngineError::io(bundle.display(), e))?;
        pems.push((format!("CA file {}", bundle.display()), pem));
    }
    if let Some(pem) = ca_pem {
        pems.push(("the CA bundle (ca.crt)".to_string(), pem.to_vec()));
    }
    for (name, pem) in pems {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            EngineError::InvalidInput(format!("{name} is not a PEM certificate bundle: {e}"))
        })?;
        if certs.is_empty() {
            return Err(EngineError::InvalidInput(format!(
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
        .map_err(|e| EngineError::InvalidInput(format!("cannot set up the HTTP client: {e}")))
}

impl RegistryClient {
    /// A client for `host` (`name[:port]`).
    pub fn new(host: &str, options: &RegistryOptions) -> Result<Self> {
        let scheme = if options.plain_http { "http" } else { "https" };
        Ok(Self {
            host: host.to_string(),
            base_url: format!("{scheme}://{host}"),
            http: http_client(
                options.insecure,
                options.ca_file.as_deref(),
                options.ca_pem.as_deref(),
            )?,
            credentials: options.credentials.clone(),
            retry: options.retry.clone(),
            challenge: OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Registry host (`name[:port]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Resolves a `Location` header (absolute or relative) against the registry URL.
    fn resolve_location(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            self.url(&format!("/{location}"))
        }
    }

    async fn challenge(&self) -> Result<&Challenge> {
        self.challenge
            .get_or_try_init(|| async {
                let url = self.url("/v2/");
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let result = self.http.get(&url).send().await;
                    let err = match result {
                        Ok(resp) => match resp.status() {
                            s if s.is_success() => return Ok(Challenge::None),
                            StatusCode::UNAUTHORIZED => {
                                let header = resp
                                    .headers()
                                    .get(header::WWW_AUTHENTICATE)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default();
                                return Challenge::parse(header).ok_or_else(|| {
                                    EngineError::Protocol {
                                        host: self.host.clone(),
                                        action: "GET /v2/".into(),
                                        reason: "401 without a usable WWW-Authenticate header"
                                            .into(),
                                    }
                                });
                            }
                            _ => status_error(&self.host, "GET /v2/", resp).await,
                        },
                        Err(e) => transport_error(&self.host, &e),
                    };
                    if !err.is_transient() || attempt >= self.retry.max_attempts {
                        return Err(err);
                    }
                    tokio::time::sleep(self.retry.delay(attempt, err.retry_after())).await;
                }
            })
            .await
    }

    /// A bearer token for `scope`, from the cache or the token endpoint.
    async fn token(&self, realm: &str, service: Option<&str>, scope: &Scope) -> Result<String> {
        let key = scope.key();
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&key) {
            return Ok(t.clone());
        }
        let mut query: Vec<(&str, &str)> = scope.0.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut attempt = 0;
        let mut refreshed = false;
        let token = loop {
            attempt += 1;
            let mut req = self.http.get(realm).query(&query);
            if let Some((username, password)) = self.basic_pair(refreshed).await? {
                req = req.basic_auth(username, Some(password.expose()));
            }
            let err = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    #[derive(Deserialize)]
                    struct TokenAnswer {
                        token: Option<String>,
                        access_token: Option<String>,
                    }
                    let answer: TokenAnswer =
                        resp.json().await.map_err(|e| EngineError::Protocol {
                            host: self.host.clone(),
                            action: "token request".into(),
                            reason: format!(
                                "token answer is not JSON: {}",
                                describe_reqwest_error(&e)
                            ),
                        })?;
                    match answer.access_token.or(answer.token) {
                        Some(t) if !t.is_empty() => break t,
                        _ => {
                            return Err(EngineError::Protocol {
                                host: self.host.clone(),
                                action: "token request".into(),
                                reason: "token answer has no token".into(),
                            });
                        }
                    }
                }
                Ok(resp)
                    if resp.status() == StatusCode::UNAUTHORIZED
                        || resp.status() == StatusCode::FORBIDDEN =>
                {
                    let status = resp.status();
                    let reason = error_text(resp).await;
                    if status == StatusCode::UNAUTHORIZED
                        && !refreshed
                        && matches!(self.credentials, Credentials::Dynamic(_))
                    {
                        // The credential expired or was revoked: ask its source for a new one.
                        refreshed = true;
                        attempt -= 1;
                        continue;
                    }
                    return Err(if status == StatusCode::UNAUTHORIZED {
                        EngineError::Unauthorized {
                            registry: self.host.clone(),
                            reason: format!("token endpoint refused the credentials ({reason})"),
                        }
                    } else {
                        EngineError::Forbidden {
                            registry: self.host.clone(),
                            action: scope.key(),
                            reason,
                        }
                    });
                }
                Ok(resp) => status_error(&self.host, "token request", resp).await,
                Err(e) => transport_error(&self.host, &e),
            };
            if !err.is_transient() || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(self.retry.delay(attempt, err.retry_after())).await;
        };
        tokens.insert(key, token.clone());
        Ok(token)
    }

    /// The username/password to present, if any.
    async fn basic_pair(&self, refresh: bool) -> Result<Option<(String, super::auth::Secret)>> {
        Ok(match &self.credentials {
            Credentials::Anonymous => None,
            Credentials::Basic { username, password } => Some((username.clone(), password.clone())),
            Credentials::Dynamic(source) => Some(source.basic(refresh).await?),
        })
    }

    /// Drops the cached token for `scope` (after a 401: expired or too narrow).
    async fn forget_token(&self, scope: &Scope) {
        self.tokens.lock().await.remove(&scope.key());
    }

    async fn authorize(&self, req: RequestBuilder, scope: &Scope) -> Result<RequestBuilder> {
        Ok(match self.challenge().await? {
            Challenge::None => req,
            Challenge::Basic => match self.basic_pair(false).await? {
                Some((username, password)) => req.basic_auth(username, Some(password.expose())),
                None => {
                    return Err(EngineError::Unauthorized {
                        registry: self.host.clone(),
                        reason: "the registry requires credentials and none were given".into(),
                    });
                }
            },
            Challenge::Bearer { realm, service } => {
                let token = self.token(realm, service.as_deref(), scope).await?;
                req.bearer_auth(token)
            }
        })
    }

    /// Sends a request built by `build` (called once per attempt) with authentication,
    /// retrying transient failures and renewing the token once on 401. Returns any
    /// response that is not a transient failure or 401; the caller judges its status.
    pub async fn send(
        &self,
        scope: &Scope,
        action: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_with(scope, action, self.retry.max_attempts, build)
            .await
    }

    /// [`Self::send`] with an explicit attempt budget (1 = no retry, for one-shot bodies).
    pub async fn send_with(
        &self,
        scope: &Scope,
        action: &str,
        max_attempts: u32,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let req = self.authorize(build(&self.http), scope).await?;
            let err = match req.send().await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if !renewed && !matches!(self.challenge().await?, Challenge::Basic) {
                        // Token expired or lacks scope: fetch a fresh one once, right away.
                        renewed = true;
                        self.forget_token(scope).await;
                        tracing::debug!(host = %self.host, action, "401: renewing token");
                        attempt -= 1;
                        if max_attempts == 1 {
                            // Body already consumed: let the caller restart.
                            return Err(EngineError::Transient {
                                host: self.host.clone(),
                                status: 401,
                                action: action.to_string(),
                                retry: " (token renewed)".into(),
                                retry_after: Some(Duration::ZERO),
                            });
                        }
                        continue;
                    }
                    let reason = error_text(resp).await;
                    return Err(EngineError::Unauthorized {
                        registry: self.host.clone(),
                        reason,
                    });
                }
                Ok(resp) if is_transient_status(resp.status()) => {
                    status_error(&self.host, action, resp).await
                }
                Ok(resp) => return Ok(resp),
                Err(e) => transport_error(&self.host, &e),
            };
            if !err.is_transient() || attempt >= max_attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt, err.retry_after());
            tracing::debug!(host = %self.host, action, attempt, ?delay, error = %err, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Fetches a manifest by tag or digest, verifying its digest.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawManifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("GET manifest {}", manifest_name(repo, reference));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .send(&Scope::pull(repo), &action, |c| {
                    c.get(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
                })
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(EngineError::NotFound {
                    what: format!("manifest {}", manifest_name(repo, reference)),
                    location: self.host.clone(),
                    hint: "check the repository name and tag or digest".into(),
                });
            }
            if !resp.status().is_success() {
                return Err(status_error(&self.host, &action, resp).await);
            }
            let content_type = header_str(resp.headers(), header::CONTENT_TYPE);
            let header_digest = header_str(resp.headers(), "docker-content-digest");
            let body = match read_limited(resp, MAX_MANIFEST_BYTES).await {
                Ok(b) => b,
                Err(e) if e.is_transient() && attempt < self.retry.max_attempts => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(e.with_host(&self.host, &action)),
            };
            let digest = sha256_digest(&body);
            let expected = if reference.contains(':') {
                Some(reference.to_string())
            } else {
                header_digest
            };
            if let Some(expected) = expected
                && expected.starts_with("sha256:")
                && expected != digest
            {
                return Err(EngineError::DigestMismatch {
                    what: format!("manifest {}", manifest_name(repo, reference)),
                    location: self.host.clone(),
                    expected,
                    actual: digest,
                });
            }
            let media_type = super::media::manifest_media_type(&body, content_type.as_deref());
            return Ok(RawManifest {
                bytes: body,
                media_type,
                digest,
            });
        }
    }

    /// HEADs a manifest: `Some(digest)` when it exists, `None` on 404.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<Option<String>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("HEAD manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(scope, &action, |c| {
                c.head(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(header_str(resp.headers(), "docker-content-digest")),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// PUTs a manifest under `reference` (tag or digest); returns the registry's digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &RawManifest,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("PUT manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(&Scope::push(repo), &action, |c| {
                c.put(&url)
                    .header(header::CONTENT_TYPE, manifest.media_type.as_str())
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&self.host, &action, resp).await);
        }
        if let Some(d) = header_str(resp.headers(), "docker-content-digest")
            && d.starts_with("sha256:")
            && d != manifest.digest
        {
            return Err(EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason: format!("registry stored digest {d}, expected {}", manifest.digest),
            });
        }
        Ok(())
    }

    /// True when the blob exists in `repo`.
    pub async fn blob_exists(&self, repo: &str, digest: &str, scope: &Scope) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let action = format!("HEAD blob {repo}@{digest}");
        let resp = self.send(scope, &action, |c| c.head(&url)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// GETs a blob from `offset` on; the response streams the bytes.
    pub async fn get_blob(&self, repo: &str, digest: &str, offset: u64) -> Result<Response> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let action = format!("GET blob {repo}@{digest}");
        let resp = self
            .send(&Scope::pull(repo), &action, |c| {
                let req = c.get(&url);
                if offset > 0 {
                    req.header(header::RANGE, format!("bytes={offset}-"))
                } else {
                    req
                }
            })
            .await?;
        match resp.status() {
            StatusCode::OK if offset == 0 => Ok(resp),
            StatusCode::PARTIAL_CONTENT if offset > 0 => Ok(resp),
            StatusCode::OK => Err(EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason: "registry ignored the Range header".into(),
            }),
            StatusCode::NOT_FOUND => Err(EngineError::NotFound {
                what: format!("blob {digest}"),
                location: format!("{}/{repo}", self.host),
                hint: "the source manifest references a blob the registry does not have".into(),
            }),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// Starts an upload, trying a cross-repository mount first when `mount_from` is set.
    pub async fn start_upload(
        &self,
        repo: &str,
        digest: &str,
        mount_from: Option<&str>,
    ) -> Result<UploadStart> {
        let (url, scope) = match mount_from {
            Some(from) => (
                self.url(&format!(
                    "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
                )),
                Scope::push(repo).and_pull(from),
            ),
            None => (
                self.url(&format!("/v2/{repo}/blobs/uploads/")),
                Scope::push(repo),
            ),
        };
        let action = format!("POST upload {repo}");
        let resp = self
            .send(&scope, &action, |c| {
                c.post(&url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED | StatusCode::CREATED => {
                match header_str(resp.headers(), header::LOCATION) {
                    Some(loc) => Ok(UploadStart::Session(self.resolve_location(&loc))),
                    None => Err(EngineError::Protocol {
                        host: self.host.clone(),
                        action,
                        reason: "upload answer has no Location".into(),
                    }),
                }
            }
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// Sends one chunk of an upload: PATCH (more to come) or PUT with the digest (last).
    /// The body is consumed, so this makes one attempt; the caller resumes on failure.
    pub async fn send_chunk(
        &self,
        repo: &str,
        location: &str,
        range: (u64, u64),
        body: reqwest::Body,
        finish_with_digest: Option<&str>,
    ) -> Result<Option<String>> {
        let (start, len) = range;
        let body = std::sync::Mutex::new(Some(body));
        let (method, url) = match finish_with_digest {
            Some(d) => (Method::PUT, with_query(location, "digest", d)),
            None => (Method::PATCH, location.to_string()),
        };
        let action = format!("{method} upload {repo}");
        let resp = self
            .send_with(&Scope::push(repo), &action, 1, |c| {
                let mut req = c
                    .request(method.clone(), &url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, len);
                if len > 0 && finish_with_digest.is_none() {
                    req = req.header("Content-Range", format!("{start}-{}", start + len - 1));
                }
                let taken = body.lock().ok().and_then(|mut b| b.take());
                req.body(taken.unwrap_or_else(|| reqwest::Body::from(Bytes::new())))
            })
            .await?;
        let ok = if finish_with_digest.is_some() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        if resp.status() != ok && !(finish_with_digest.is_some() && resp.status().is_success()) {
            return Err(status_error(&self.host, &action, resp).await);
        }
        Ok(header_str(resp.headers(), header::LOCATION).map(|l| self.resolve_location(&l)))
    }

    /// Bytes the registry holds for an upload session (end of its `Range`).
    pub async fn upload_offset(&self, repo: &str, location: &str) -> Result<u64> {
        let action = format!("GET upload status {repo}");
        let resp = self
            .send(&Scope::push(repo), &action, |c| c.get(location))
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&self.host, &action, resp).await);
        }
        Ok(header_str(resp.headers(), header::RANGE)
            .and_then(|r| r.rsplit('-').next().and_then(|e| e.parse::<u64>().ok()))
            .map(|end| end + 1)
            .unwrap_or(0))
    }

    /// Abandons an upload session (best effort).
    pub async fn cancel_upload(&self, repo: &str, location: &str) {
        let _ = self
            .send_with(&Scope::push(repo), "DELETE upload", 1, |c| {
                c.delete(location)
            })
            .await;
    }
}

/// `repo:tag` or `repo@sha256:...`, as users write references.
fn manifest_name(repo: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("{repo}@{reference}")
    } else {
        format!("{repo}:{reference}")
    }
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

fn is_transient_status(s: StatusCode) -> bool {
    s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

async fn read_limited(resp: Response, limit: usize) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| EngineError::Connect {
            host: String::new(),
            reason: format!(
                "connection lost while reading: {}",
                describe_reqwest_error(&e)
            ),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(EngineError::InvalidInput(format!(
                "manifest larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

impl EngineError {
    /// Fills in the host of a connection error raised without one.
    fn with_host(self, host: &str, action: &str) -> Self {
        match self {
            EngineError::Connect { host: h, reason } if h.is_empty() => EngineError::Connect {
                host: host.to_string(),
                reason: format!("{action}: {reason}"),
            },
            other => other,
        }
    }
}

/// A reqwest error's text without the URL (URLs may carry upload-session state).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut msg = e.without_url_ref_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        if self.is_connect() {
            "connection failed".into()
        } else if self.is_timeout() {
            "timed out".into()
        } else if self.is_body() || self.is_decode() {
            "error reading the response body".into()
        } else if self.is_request() {
            "request failed".into()
        } else {
            "HTTP error".into()
        }
    }
}

/// Maps a transport error: TLS problems are permanent, the rest transient.
pub(crate) fn transport_error(host: &str, e: &reqwest::Error) -> EngineError {
    let text = describe_reqwest_error(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return EngineError::Tls {
            host: host.to_string(),
            reason: text,
        };
    }
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return EngineError::UnknownHost {
            host: host.to_string(),
            reason: text,
        };
    }
    EngineError::Connect {
        host: host.to_string(),
        reason: text,
    }
}

/// Reads the registry's error text (distribution `errors[]` or plain text), bounded.
async fn error_text(resp: Response) -> String {
    let status = resp.status();
    let body = read_limited(resp, 16 * 1024).await.unwrap_or_default();
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body)
        && let Some(first) = e.errors.first()
    {
        return [first.code.as_deref(), first.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
    }
    let text = String::from_utf8_lossy(&body);
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() || line.len() > 200 {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        line.to_string()
    }
}

/// Maps a non-success response to a typed error.
pub(crate) async fn status_error(host: &str, action: &str, resp: Response) -> EngineError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    if is_transient_status(status) {
        let _ = error_text(resp).await;
        return EngineError::Transient {
            host: host.to_string(),
            status: status.as_u16(),
            action: action.to_string(),
            retry: retry_after
                .map(|d| format!(" (retry after {}s)", d.as_secs()))
                .unwrap_or_default(),
            retry_after,
        };
    }
    let reason = error_text(resp).await;
    match status {
        StatusCode::UNAUTHORIZED => EngineError::Unauthorized {
            registry: host.to_string(),
            reason,
        },
        StatusCode::FORBIDDEN => EngineError::Forbidden {
            registry: host.to_string(),
            action: action.to_string(),
            reason,
        },
        _ => EngineError::Refused {
            host: host.to_string(),
            status: status.as_u16(),
            action: action.to_string(),
            reason,
        },
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
