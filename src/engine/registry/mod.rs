//! A thin registry client over the shared HTTP layer ([`crate::http`]), split by job:
//! this module holds the client, its options and [`RegistryClient::send`] (authenticated,
//! retried); [`tokens`] authenticates (challenge, bearer tokens per scope, basic);
//! [`distribution`] makes the distribution-API calls the copy needs; [`checks`] validates
//! names, digests and `Location`s before they reach a URL; [`errors`] maps answers to
//! [`EngineError`]s.
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

mod checks;
mod distribution;
mod errors;
pub mod referrers;
mod tokens;

use checks::{check_digest, check_reference, check_repository, same_origin};
pub use checks::{parse_upload_range, resolve_location};
use errors::{error_text, is_transient_status};
pub(crate) use errors::{status_error, transport_error};

use super::auth::{Challenge, Credentials, check_realm};
use super::digest::{Algorithm, digest_with, parse_digest, quote_untrusted};
use super::error::{EngineError, Result};
use super::media::MANIFEST_ACCEPT;
use crate::http::{
    CappedReadError, RetryPolicy, Step, bounded_header, http_client, read_capped, read_up_to,
    with_retry,
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
                // Authorizing fetches tokens with retries of its own: not retried again here.
                let req = match self.authorize(build(&self.http), scope, action).await {
                    Ok(req) => req,
                    Err(e) => return Step::Abort(e),
                };
                match req.send().await {
                    Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                        let bearer = match self.challenge().await {
                            Ok(c) => !matches!(c, Challenge::Basic),
                            Err(e) => return Step::Abort(e),
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
}
