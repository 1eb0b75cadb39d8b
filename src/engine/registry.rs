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
use reqwest::header;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell};

use super::auth::{Challenge, Credentials, check_realm};
use super::digest::{Algorithm, digest_with, parse_digest, quote_untrusted};
use super::error::{EngineError, Result};
use super::media::MANIFEST_ACCEPT;
use crate::http::{
    CappedReadError, RetryPolicy, Step, bounded_header, http_client, parse_retry_after,
    read_capped, read_up_to, with_retry,
};
pub use crate::http::{describe_reqwest_error, human_bytes, one_line};
use crate::limits::{MAX_ERROR_BODY_BYTES, MAX_MANIFEST_BYTES, MAX_TOKEN_RESPONSE_BYTES};

/// What to do about a manifest over [`MAX_MANIFEST_BYTES`].
const MANIFEST_TOO_LARGE_HINT: &str =
    "registries and clients (containerd, oras) refuse manifests above 4 MiB; nothing was tagged";

/// What to do about a token answer over [`MAX_TOKEN_RESPONSE_BYTES`].
const TOKEN_TOO_LARGE_HINT: &str =
    "a token answer is a small JSON object; check the registry's token server";

/// What to do about a blob the source announces longer than its descriptor.
const BLOB_MISMATCH_HINT: &str =
    "the source serves content that does not match its manifest; nothing was tagged";

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
    /// Digest of `bytes` (`sha256:`, or `sha512:` when a `sha512` digest named it).
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
    /// `base_url` parsed: only requests to this origin get credentials.
    origin: url::Url,
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

impl RegistryClient {
    /// A client for `host` (`name[:port]`).
    pub fn new(host: &str, options: &RegistryOptions) -> Result<Self> {
        let scheme = if options.plain_http { "http" } else { "https" };
        let base_url = format!("{scheme}://{host}");
        let origin = url::Url::parse(&base_url)
            .ok()
            .filter(|u| u.host_str().is_some() && u.path() == "/")
            .ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "registry host {} is not a valid HOST[:PORT]",
                    quote_untrusted(host, 100)
                ))
            })?;
        Ok(Self {
            host: host.to_string(),
            base_url,
            origin,
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

    /// Resolves a `Location` header (absolute, or relative to the registry) into the URL
    /// to continue with; see [`resolve_location`].
    fn resolve_location(&self, location: &str, action: &str) -> Result<url::Url> {
        resolve_location(&self.origin, location).map_err(|reason| EngineError::Protocol {
            host: self.host.clone(),
            action: action.to_string(),
            reason,
        })
    }

    /// True when `url` has this registry's scheme, host and port: only such requests get
    /// the registry's credentials (an upload `Location` or a redirect elsewhere gets none).
    pub fn is_own_origin(&self, url: &url::Url) -> bool {
        same_origin(&self.origin, url)
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
                                let protocol = |reason: String| EngineError::Protocol {
                                    host: self.host.clone(),
                                    action: "GET /v2/".into(),
                                    reason,
                                };
                                let header = bounded_header(resp.headers(), "WWW-Authenticate")
                                    .map_err(protocol)?
                                    .unwrap_or_default();
                                let challenge = Challenge::parse(&header).ok_or_else(|| {
                                    protocol("401 without a usable WWW-Authenticate header".into())
                                })?;
                                if let Challenge::Bearer { realm, .. } = &challenge {
                                    check_realm(realm, self.origin.scheme() == "https")
                                        .map_err(protocol)?;
                                }
                                return Ok(challenge);
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

    /// A bearer token for `scope`, from the cache or the token endpoint. The realm was
    /// checked by [`check_realm`] when the challenge was read; the answer is read capped
    /// at [`MAX_TOKEN_RESPONSE_BYTES`].
    async fn token(&self, realm: &str, service: Option<&str>, scope: &Scope) -> Result<String> {
        let key = scope.key();
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&key) {
            return Ok(t.clone());
        }
        let realm_url = check_realm(realm, self.origin.scheme() == "https").map_err(|reason| {
            EngineError::Protocol {
                host: self.host.clone(),
                action: "token request".into(),
                reason,
            }
        })?;
        let token_host = match (realm_url.host_str(), realm_url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => self.host.clone(),
        };
        let mut query: Vec<(&str, &str)> = scope.0.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let protocol = |reason: String| EngineError::Protocol {
            host: token_host.clone(),
            action: format!("token request for {}", self.host),
            reason,
        };
        let mut attempt = 0;
        let mut refreshed = false;
        let token = loop {
            attempt += 1;
            let mut req = self.http.get(realm_url.clone()).query(&query);
            if let Some((username, password)) = self.basic_pair(refreshed).await? {
                req = req.basic_auth(username, Some(password.expose()));
            }
            let err = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    match read_capped(resp, MAX_TOKEN_RESPONSE_BYTES).await {
                        Ok(body) => break parse_token_answer(&body).map_err(protocol)?,
                        Err(CappedReadError::TooLarge { .. }) => {
                            return Err(EngineError::LimitExceeded {
                                host: token_host.clone(),
                                what: format!("the token answer for {}", self.host),
                                problem: format!(
                                    "it is larger than {} (MAX_TOKEN_RESPONSE_BYTES)",
                                    human_bytes(MAX_TOKEN_RESPONSE_BYTES as u64)
                                ),
                                hint: TOKEN_TOO_LARGE_HINT.into(),
                            });
                        }
                        Err(CappedReadError::Transport(e)) => EngineError::Connect {
                            host: token_host.clone(),
                            reason: format!(
                                "reading the token answer: {}",
                                describe_reqwest_error(&e)
                            ),
                        },
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
                Ok(resp) => status_error(&token_host, "token request", resp).await,
                Err(e) => transport_error(&token_host, &e),
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

    /// Adds this registry's credentials to a request, if it goes to the registry's own
    /// origin (scheme, host and port). A request elsewhere (an upload `Location` on
    /// another host, say) is sent without them. reqwest itself drops `Authorization` when
    /// it follows a redirect to another origin.
    async fn authorize(
        &self,
        req: RequestBuilder,
        scope: &Scope,
        action: &str,
    ) -> Result<RequestBuilder> {
        let (client, request) = req.build_split();
        let request = request.map_err(|e| EngineError::Protocol {
            host: self.host.clone(),
            action: action.to_string(),
            reason: format!("cannot build the request: {}", describe_reqwest_error(&e)),
        })?;
        if !self.is_own_origin(request.url()) {
            tracing::debug!(host = %self.host, action, "request to another origin: no credentials");
            return Ok(RequestBuilder::from_parts(client, request));
        }
        let req = RequestBuilder::from_parts(client, request);
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
        with_retry(&self.retry, max_attempts, action, |renewed| {
            let build = &build;
            async move {
                let req = match self.authorize(build(&self.http), scope, action).await {
                    Ok(req) => req,
                    Err(e) => return Step::Failed(e),
                };
                match req.send().await {
                    Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                        let bearer = match self.challenge().await {
                            Ok(c) => !matches!(c, Challenge::Basic),
                            Err(e) => return Step::Failed(e),
                        };
                        if !renewed && bearer {
                            // Token expired or lacks scope: a fresh one, right away.
                            self.forget_token(scope).await;
                            tracing::debug!(host = %self.host, action, "401: renewing token");
                            if max_attempts == 1 {
                                // Body already consumed: let the caller restart.
                                return Step::Failed(EngineError::Transient {
                                    host: self.host.clone(),
                                    status: 401,
                                    action: action.to_string(),
                                    retry: " (token renewed)".into(),
                                    retry_after: Some(Duration::ZERO),
                                });
                            }
                            return Step::Renew(EngineError::Unauthorized {
                                registry: self.host.clone(),
                                reason: "token refused".into(),
                            });
                        }
                        Step::Failed(EngineError::Unauthorized {
                            registry: self.host.clone(),
                            reason: error_text(resp).await,
                        })
                    }
                    Ok(resp) if is_transient_status(resp.status()) => {
                        Step::Failed(status_error(&self.host, action, resp).await)
                    }
                    Ok(resp) => Step::Done(resp),
                    Err(e) => Step::Failed(transport_error(&self.host, &e)),
                }
            }
        })
        .await
    }

    /// Fetches a manifest by tag or digest, verifying its digest.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawManifest> {
        self.get_manifest_sized(repo, reference, None).await
    }

    /// Fetches a manifest by tag or digest, reading at most `expected_size` bytes (a
    /// child's descriptor size) or [`MAX_MANIFEST_BYTES`], and verifies it: its size
    /// against `expected_size`, its digest against the digest that named it (or the
    /// `Docker-Content-Digest` header for a tag), with that digest's algorithm.
    pub async fn get_manifest_sized(
        &self,
        repo: &str,
        reference: &str,
        expected_size: Option<u64>,
    ) -> Result<RawManifest> {
        check_repository(repo)?;
        let by_digest = check_reference(reference)?;
        let name = manifest_name(repo, reference);
        let too_large = |problem: String| EngineError::LimitExceeded {
            host: self.host.clone(),
            what: format!("manifest {name}"),
            problem,
            hint: MANIFEST_TOO_LARGE_HINT.into(),
        };
        let cap = match expected_size {
            Some(size) if size > MAX_MANIFEST_BYTES as u64 => {
                return Err(too_large(format!(
                    "its descriptor states {size} bytes, more than {} (MAX_MANIFEST_BYTES)",
                    human_bytes(MAX_MANIFEST_BYTES as u64)
                )));
            }
            Some(size) => usize::try_from(size).unwrap_or(MAX_MANIFEST_BYTES),
            None => MAX_MANIFEST_BYTES,
        };
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("GET manifest {name}");
        let protocol = |reason: String| EngineError::Protocol {
            host: self.host.clone(),
            action: action.clone(),
            reason,
        };
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
                    what: format!("manifest {name}"),
                    location: self.host.clone(),
                    hint: "check the repository name and tag or digest".into(),
                });
            }
            if !resp.status().is_success() {
                return Err(status_error(&self.host, &action, resp).await);
            }
            let content_type = bounded_header(resp.headers(), "Content-Type").map_err(protocol)?;
            // The digest that names the content: the reference itself, else the header
            // (checked by the digest grammar before it is used).
            let expected = match by_digest {
                Some(_) => Some(reference.to_string()),
                None => match bounded_header(resp.headers(), "Docker-Content-Digest")
                    .map_err(protocol)?
                {
                    Some(d) => {
                        parse_digest(&d).map_err(|e| {
                            protocol(format!("its Docker-Content-Digest header: {e}"))
                        })?;
                        Some(d)
                    }
                    None => None,
                },
            };
            let body = match read_capped(resp, cap).await {
                Ok(b) => b,
                Err(CappedReadError::TooLarge { announced, .. }) => {
                    let said = announced
                        .map(|n| format!(" (Content-Length {n})"))
                        .unwrap_or_default();
                    return Err(match expected_size {
                        Some(size) => protocol(format!(
                            "the manifest is longer than the {size} bytes its descriptor states{said}"
                        )),
                        None => too_large(format!(
                            "it is larger than {} (MAX_MANIFEST_BYTES){said}",
                            human_bytes(MAX_MANIFEST_BYTES as u64)
                        )),
                    });
                }
                Err(CappedReadError::Transport(lost)) => {
                    let e = EngineError::Connect {
                        host: self.host.clone(),
                        reason: format!(
                            "{action}: connection lost while reading: {}",
                            describe_reqwest_error(&lost)
                        ),
                    };
                    if attempt < self.retry.max_attempts {
                        tokio::time::sleep(self.retry.delay(attempt, None)).await;
                        continue;
                    }
                    return Err(e);
                }
            };
            if let Some(size) = expected_size
                && body.len() as u64 != size
            {
                return Err(protocol(format!(
                    "the manifest is {} bytes, but its descriptor states {size}",
                    body.len()
                )));
            }
            let algorithm = match &expected {
                Some(d) => parse_digest(d).map_err(|e| protocol(e.to_string()))?,
                None => Algorithm::Sha256,
            };
            let digest = digest_with(algorithm, &body);
            if let Some(expected) = expected
                && expected != digest
            {
                return Err(EngineError::DigestMismatch {
                    what: format!("manifest {name}"),
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

    /// HEADs a manifest: `Some(digest)` when it exists, `None` on 404. The digest comes
    /// from `Docker-Content-Digest` and is checked by the digest grammar.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<Option<String>> {
        check_repository(repo)?;
        check_reference(reference)?;
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("HEAD manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(scope, &action, |c| {
                c.head(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.digest_header(&resp, &action),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// The `Docker-Content-Digest` header of `resp`, refused unless it is a valid digest.
    fn digest_header(&self, resp: &Response, action: &str) -> Result<Option<String>> {
        let protocol = |reason: String| EngineError::Protocol {
            host: self.host.clone(),
            action: action.to_string(),
            reason,
        };
        match bounded_header(resp.headers(), "Docker-Content-Digest").map_err(protocol)? {
            Some(d) => {
                parse_digest(&d)
                    .map_err(|e| protocol(format!("its Docker-Content-Digest header: {e}")))?;
                Ok(Some(d))
            }
            None => Ok(None),
        }
    }

    /// PUTs a manifest under `reference` (tag or digest), and checks the digest the
    /// registry reports (when it uses the same algorithm).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &RawManifest,
    ) -> Result<()> {
        check_repository(repo)?;
        check_reference(reference)?;
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
        if let Some(d) = self.digest_header(&resp, &action)?
            && parse_digest(&d).ok() == parse_digest(&manifest.digest).ok()
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
        check_repository(repo)?;
        check_digest(digest)?;
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let action = format!("HEAD blob {repo}@{digest}");
        let resp = self.send(scope, &action, |c| c.head(&url)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// GETs a blob of `size` bytes from `offset` on; the response streams the bytes. A
    /// `Content-Length` other than `size - offset` is refused before the body is read.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
        size: u64,
    ) -> Result<Response> {
        check_repository(repo)?;
        check_digest(digest)?;
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
        let resp = match resp.status() {
            StatusCode::OK if offset == 0 => resp,
            StatusCode::PARTIAL_CONTENT if offset > 0 => resp,
            StatusCode::OK => {
                return Err(EngineError::Protocol {
                    host: self.host.clone(),
                    action,
                    reason: "registry ignored the Range header".into(),
                });
            }
            StatusCode::NOT_FOUND => {
                return Err(EngineError::NotFound {
                    what: format!("blob {digest}"),
                    location: format!("{}/{repo}", self.host),
                    hint: "the source manifest references a blob the registry does not have".into(),
                });
            }
            _ => return Err(status_error(&self.host, &action, resp).await),
        };
        let want = size.saturating_sub(offset);
        let mismatch = |announced: u64| {
            let from = if offset > 0 {
                format!(" from offset {offset}")
            } else {
                String::new()
            };
            format!(
                "the registry announces {announced} bytes (Content-Length) where the descriptor states {size}{from}"
            )
        };
        match resp.content_length() {
            // More than stated: refused before a byte is read.
            Some(announced) if announced > want => Err(EngineError::LimitExceeded {
                host: self.host.clone(),
                what: format!("blob {repo}@{digest}"),
                problem: mismatch(announced),
                hint: BLOB_MISMATCH_HINT.into(),
            }),
            Some(announced) if announced < want => Err(EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason: mismatch(announced),
            }),
            _ => Ok(resp),
        }
    }

    /// Starts an upload, trying a cross-repository mount first when `mount_from` is set.
    /// Returns the session URL (the `Location`, resolved and checked).
    pub async fn start_upload(
        &self,
        repo: &str,
        digest: &str,
        mount_from: Option<&str>,
    ) -> Result<UploadStart> {
        check_repository(repo)?;
        check_digest(digest)?;
        if let Some(from) = mount_from {
            check_repository(from)?;
        }
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
                match self.location_header(&resp, &action)? {
                    Some(loc) => Ok(UploadStart::Session(loc)),
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

    /// The `Location` header of `resp`, bounded and resolved against the registry.
    fn location_header(&self, resp: &Response, action: &str) -> Result<Option<String>> {
        let location =
            bounded_header(resp.headers(), "Location").map_err(|reason| EngineError::Protocol {
                host: self.host.clone(),
                action: action.to_string(),
                reason,
            })?;
        location
            .map(|l| self.resolve_location(&l, action).map(String::from))
            .transpose()
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
        if let Some(d) = finish_with_digest {
            check_digest(d)?;
        }
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
        self.location_header(&resp, &action)
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
        let range =
            bounded_header(resp.headers(), "Range").map_err(|reason| EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason,
            })?;
        Ok(range.as_deref().and_then(parse_upload_range).unwrap_or(0))
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

/// Checks a repository name by the distribution grammar before it goes into a URL:
/// `/`-separated components of `[a-z0-9]` runs joined by `.`, `_`, `__` or `-`s (so no
/// empty, `.` or `..` component, no `?`, `#` or `%`).
fn check_repository(repo: &str) -> Result<()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        !b.is_empty()
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter()
                .all(|x| alnum(x) || *x == b'.' || *x == b'_' || *x == b'-')
            && !c.contains("..")
            && !c.contains("___")
    };
    if repo.len() <= 255 && repo.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "repository name {} is not valid: lowercase letters, digits and . _ - separated by /",
            quote_untrusted(repo, 100)
        )))
    }
}

/// Checks a digest by the OCI grammar before it goes into a URL; see [`parse_digest`].
fn check_digest(digest: &str) -> Result<Algorithm> {
    parse_digest(digest).map_err(|e| EngineError::InvalidInput(format!("invalid digest: {e}")))
}

/// Checks a manifest reference before it goes into a URL: a digest (see
/// [`parse_digest`]; returns its algorithm) or a tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
fn check_reference(reference: &str) -> Result<Option<Algorithm>> {
    if reference.contains(':') {
        return check_digest(reference).map(Some);
    }
    let b = reference.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(None)
    } else {
        Err(EngineError::InvalidInput(format!(
            "tag {} is not valid: up to 128 letters, digits, _ . -, not starting with . or -",
            quote_untrusted(reference, 140)
        )))
    }
}

/// Resolves a `Location` header against the registry's origin (`base`): an absolute URL,
/// an absolute path or a relative one (relative to `/`, as registries mean it). Only
/// `http`/`https` URLs are accepted, and a Location that would leave an `https` registry
/// for plain `http` is refused. A Location on another origin is allowed (it gets no
/// credentials: see [`RegistryClient::is_own_origin`]).
pub fn resolve_location(base: &url::Url, location: &str) -> std::result::Result<url::Url, String> {
    let shown = || quote_untrusted(location, 120);
    let location = location.trim();
    if location.is_empty() {
        return Err("its Location header is empty".into());
    }
    let root = base
        .join("/")
        .map_err(|e| format!("cannot resolve Location {}: {e}", shown()))?;
    let url = match url::Url::parse(location) {
        Err(url::ParseError::RelativeUrlWithoutBase) if location.starts_with('/') => {
            root.join(location)
        }
        Err(url::ParseError::RelativeUrlWithoutBase) => root.join(&format!("/{location}")),
        other => other,
    }
    .map_err(|e| format!("its Location {} is not a URL ({e})", shown()))?;
    match url.scheme() {
        "https" => {}
        "http" if base.scheme() == "http" => {}
        "http" => {
            return Err(format!(
                "its Location {} leaves https for plain http; refusing to continue over plain HTTP",
                shown()
            ));
        }
        _ => {
            return Err(format!("its Location {} is not an http(s) URL", shown()));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("its Location {} has no host", shown()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("its Location {} carries user info", shown()));
    }
    Ok(url)
}

/// True when `a` and `b` share scheme, host and port (known defaults filled in), the
/// rule reqwest applies to redirects.
fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Bytes an upload session holds, from its `Range: 0-<last>` header (distribution's
/// form; `bytes=0-<last>` too): `last + 1`. `None` for anything else.
pub fn parse_upload_range(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) || start.parse::<u64>().ok()? != 0 {
        return None;
    }
    end.parse::<u64>().ok()?.checked_add(1)
}

/// The token of a token server's answer (`{"token": ...}` or `{"access_token": ...}`),
/// refused when missing or not usable in an HTTP header.
fn parse_token_answer(body: &[u8]) -> std::result::Result<String, String> {
    #[derive(Deserialize)]
    struct TokenAnswer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not JSON: {e}"))?;
    match answer.access_token.or(answer.token) {
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => Ok(t),
        Some(t) if !t.is_empty() => {
            Err("the token holds characters not allowed in an HTTP header".into())
        }
        _ => Err("token answer has no token".into()),
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

/// Reads the registry's error text (distribution `errors[]` or plain text): at most
/// [`MAX_ERROR_BODY_BYTES`] are read, and the text is cut to one line of 200 characters.
async fn error_text(resp: Response) -> String {
    let status = resp.status();
    let body = read_up_to(resp, MAX_ERROR_BODY_BYTES).await;
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
        let text = [first.code.as_deref(), first.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return one_line(&text, 200);
    }
    let text = String::from_utf8_lossy(&body);
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() || line.len() > 200 {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        one_line(line, 200)
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
    use proptest::prelude::*;

    fn base(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn locations() {
        let https = base("https://reg.example:5000");
        let ok = |b: &url::Url, l: &str| resolve_location(b, l).unwrap().to_string();
        assert_eq!(
            ok(&https, "/v2/a/blobs/uploads/123?_state=x"),
            "https://reg.example:5000/v2/a/blobs/uploads/123?_state=x"
        );
        assert_eq!(
            ok(&https, "v2/a/blobs/uploads/1"),
            "https://reg.example:5000/v2/a/blobs/uploads/1"
        );
        assert_eq!(
            ok(&https, "https://storage.example/upload?sig=1"),
            "https://storage.example/upload?sig=1"
        );
        let http = base("http://127.0.0.1:5000");
        assert_eq!(
            ok(&http, "http://127.0.0.1:6000/u"),
            "http://127.0.0.1:6000/u"
        );
        for bad in [
            "",
            "   ",
            "http://127.0.0.1:6000/u",
            "ftp://h/x",
            "file:///etc/passwd",
            "https://user:pw@h/x",
            "https://",
            "//",
            "javascript:alert(1)",
        ] {
            assert!(resolve_location(&https, bad).is_err(), "{bad:?}");
        }
        let a = resolve_location(&http, "http://127.0.0.1:6000/u").unwrap();
        assert!(!same_origin(&http, &a));
        let b = resolve_location(&http, "/v2/x").unwrap();
        assert!(same_origin(&http, &b));
        assert!(same_origin(&base("https://h"), &base("https://h:443/v2/")));
        assert!(!same_origin(&base("https://h"), &base("http://h:443/")));
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), Some(1));
        assert_eq!(parse_upload_range("0-1023"), Some(1024));
        assert_eq!(parse_upload_range("bytes=0-9"), Some(10));
        assert_eq!(parse_upload_range("0-18446744073709551615"), None);
        for bad in ["", "-", "0-", "-5", "1-5", "0-x", "0--1", "0-1-2", "0 - 1"] {
            assert_eq!(parse_upload_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn references_and_repositories_before_urls() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(check_reference(&d).unwrap(), Some(Algorithm::Sha256));
        assert_eq!(check_reference("v1.2.3_rc-1").unwrap(), None);
        for bad in [
            "sha256:../../x",
            "sha256:abc?x=",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "a?b",
            "a#b",
            "",
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?}");
        }
        assert!(check_reference(&"a".repeat(129)).is_err());
        for ok in ["a", "team/app", "a.b/c_d/e__f/g-h/i--j", "0"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/..", "a/./b", "A", "a?b", "a%2fb", "a..b", "-a",
            "a_", "a___b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_answers() {
        assert_eq!(parse_token_answer(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(
            parse_token_answer(br#"{"token":"t","access_token":"a"}"#).unwrap(),
            "a"
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"token":""}"#,
            br#"{"token":"a b"}"#,
            b"{\"token\":\"a\\r\\nX-Evil: 1\"}",
            b"not json",
        ] {
            assert!(parse_token_answer(bad).is_err());
        }
    }

    proptest! {
        #[test]
        fn resolve_location_never_panics(loc in "\\PC{0,200}", https in any::<bool>()) {
            let b = base(if https { "https://reg.example" } else { "http://127.0.0.1:5000" });
            if let Ok(url) = resolve_location(&b, &loc) {
                prop_assert!(url.scheme() == "https" || (!https && url.scheme() == "http"));
                prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()));
                prop_assert!(url.username().is_empty() && url.password().is_none());
            }
        }

        #[test]
        fn relative_locations_stay_on_the_registry(path in "/?[a-zA-Z0-9_.=?&-][a-zA-Z0-9/_.=?&-]{0,100}") {
            let b = base("https://reg.example:5000");
            let url = resolve_location(&b, &path).unwrap();
            prop_assert!(same_origin(&b, &url), "{} left the registry", url);
        }

        #[test]
        fn upload_range_round_trips(end in any::<u64>()) {
            let got = parse_upload_range(&format!("0-{end}"));
            prop_assert_eq!(got, end.checked_add(1));
        }

        #[test]
        fn upload_range_never_panics(s in "\\PC{0,40}") {
            let _ = parse_upload_range(&s);
        }

        #[test]
        fn header_checks_never_panic(r in "\\PC{0,80}") {
            let _ = check_reference(&r);
            let _ = check_repository(&r);
            let _ = parse_token_answer(r.as_bytes());
        }
    }
}
