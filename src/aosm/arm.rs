//! ARM client for `Microsoft.HybridNetwork`: artifact store and manifest GETs,
//! `listCredential`, and `updateState` with long-running-operation polling.
//!
//! Whatever the endpoint sends is bounded before it is used: answers are read up to
//! [`MAX_ARM_RESPONSE_BYTES`] and error bodies up to [`MAX_ERROR_BODY_BYTES`] (refused
//! as soon as they pass it, or when `Content-Length` announces more), every request
//! (body included) within a timeout, fields checked for length and shape, and operation
//! URLs followed only on the ARM endpoint's own host, over https.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::error::AosmError;
use super::identity::{Identity, arm_token, first_line};
use crate::engine::Secret;
use crate::http::{CappedReadError, RetryPolicy, Step, read_capped, with_retry};
use crate::limits::{
    ARM_REQUEST_TIMEOUT, MAX_ARM_ERROR_CODE_CHARS as MAX_ERROR_CODE_CHARS,
    MAX_ARM_NAME_BYTES as MAX_NAME_BYTES, MAX_ARM_RESPONSE_BYTES, MAX_ARTIFACT_NAME_BYTES,
    MAX_ARTIFACT_VERSION_BYTES, MAX_CREDENTIAL_TOKEN_BYTES, MAX_CREDENTIAL_USERNAME_BYTES,
    MAX_ERROR_BODY_BYTES, MAX_HEADER_VALUE_BYTES, MAX_POLL_INTERVAL, MAX_SERVER_URL_BYTES,
    MIN_POLL_INTERVAL,
};

/// `listCredential` HTTP requests sent by this process (every attempt, retries included).
static LIST_CREDENTIAL_CALLS: AtomicU64 = AtomicU64::new(0);

/// The action name of `listCredential`, also how [`ArmClient::call`] recognises it.
const LIST_CREDENTIAL: &str = "POST listCredential";

/// How many `listCredential` requests this process has sent (each attempt counts).
pub fn list_credential_calls() -> u64 {
    LIST_CREDENTIAL_CALLS.load(Ordering::Relaxed)
}

/// The ARM api-versions we speak.
pub const API_VERSIONS: [&str; 3] = ["2023-09-01", "2024-04-15", "2025-03-30"];

/// Identifies an artifact store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreId {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// Publisher name.
    pub publisher: String,
    /// Artifact store name.
    pub artifact_store: String,
}

impl StoreId {
    /// ARM resource path of the store, every name percent-encoded as a path segment.
    pub fn path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.HybridNetwork/publishers/{}/artifactStores/{}",
            segment(&self.subscription_id),
            segment(&self.resource_group),
            segment(&self.publisher),
            segment(&self.artifact_store)
        )
    }

    /// ARM resource path of a manifest in the store.
    pub fn manifest_path(&self, manifest: &str) -> String {
        format!("{}/artifactManifests/{}", self.path(), segment(manifest))
    }
}

/// Characters kept as they are in a path segment (RFC 3986 unreserved); every other byte
/// is percent-encoded, so a name can never add a segment, a query or a fragment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `name` as one percent-encoded path segment.
fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// An artifact listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestArtifact {
    /// Artifact (repository) name.
    pub artifact_name: String,
    /// OCIArtifact | ArmTemplate | ImageFile | VhdImageFile | Unknown, or a value a later
    /// api-version adds (kept as ARM sent it; empty when absent).
    pub artifact_type: String,
    /// Version (tag).
    pub artifact_version: String,
}

/// The parts of an artifact manifest we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactManifest {
    /// The usable artifacts it lists: entries with a name and a version of bounded length.
    pub artifacts: Vec<ManifestArtifact>,
    /// Entries left out of `artifacts` (no name or version, a field of another type, an
    /// oversized or control-character value): they cannot be the artifact transferred.
    pub ignored: usize,
    /// Unknown | Uploading | Uploaded | Validating | ValidationFailed | Succeeded, or a
    /// value a later api-version adds.
    pub state: String,
}

impl ManifestArtifact {
    /// The entry of one `properties.artifacts` item, `None` when it is not usable: the
    /// name or version missing, empty, not a string, too long or holding control
    /// characters. An absent or odd `artifactType` leaves the type empty (a transfer then
    /// judges it); it never makes the whole manifest unreadable.
    fn from_json(item: &serde_json::Value) -> Option<Self> {
        let text = |field: &str, max: usize| {
            item.get(field)
                .and_then(serde_json::Value::as_str)
                .filter(|v| !v.is_empty() && v.len() <= max && !v.chars().any(char::is_control))
                .map(str::to_string)
        };
        Some(ManifestArtifact {
            artifact_name: text("artifactName", MAX_ARTIFACT_NAME_BYTES)?,
            artifact_version: text("artifactVersion", MAX_ARTIFACT_VERSION_BYTES)?,
            artifact_type: text("artifactType", MAX_NAME_BYTES).unwrap_or_default(),
        })
    }
}

/// A scoped registry credential from `listCredential`.
#[derive(Clone, Debug)]
pub struct AcrCredential {
    /// Registry host (`name[:port]`, scheme stripped).
    pub server: String,
    /// User name (the manifest name).
    pub username: String,
    /// The scoped token.
    pub token: Secret,
    /// Repositories it grants.
    pub repositories: Vec<String>,
    /// When it stops working.
    pub expiry: jiff::Timestamp,
}

/// The repository a transfer uses in the store's registry, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryChoice {
    /// Repository path (no registry host).
    pub name: String,
    /// True when an entry of the credential's `repositories` named it; false when the
    /// credential named none for the artifact and `<artifact>` is tried (what `az aosm`
    /// always does), leaving the registry to decide.
    pub from_credential: bool,
}

impl AcrCredential {
    /// The repository for `artifact`. `repositories` is a hint: every official
    /// `listCredential` example answers `[""]`, and `az aosm` pushes to `<artifact>`
    /// without reading it. An entry that names the artifact is used — `<artifact>`, then
    /// `<manifest>/<artifact>` (manifests created with api-version 2025-03-30), then any
    /// `<prefix>/<artifact>` — blank entries are ignored, and otherwise `<artifact>`.
    pub fn repository_for(&self, manifest: &str, artifact: &str) -> RepositoryChoice {
        let artifact_lc = artifact.to_ascii_lowercase();
        let nested = format!("{}/{artifact_lc}", manifest.to_ascii_lowercase());
        let suffix = format!("/{artifact_lc}");
        let listed: Vec<(&String, String)> = self
            .repositories
            .iter()
            .filter(|r| !r.trim().is_empty())
            .map(|r| (r, r.to_ascii_lowercase()))
            .collect();
        let found = listed
            .iter()
            .find(|(_, lc)| *lc == artifact_lc)
            .or_else(|| listed.iter().find(|(_, lc)| *lc == nested))
            .or_else(|| listed.iter().find(|(_, lc)| lc.ends_with(&suffix)));
        match found {
            Some((name, _)) => RepositoryChoice {
                name: (*name).clone(),
                from_credential: true,
            },
            None => RepositoryChoice {
                name: artifact.to_string(),
                from_credential: false,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialAnswer {
    credential_type: String,
    acr_server_url: Option<String>,
    username: Option<String>,
    acr_token: Option<String>,
    #[serde(default)]
    repositories: Vec<String>,
    expiry: Option<String>,
}

#[derive(Deserialize, Default)]
struct ArmErrorBody {
    #[serde(default)]
    error: ArmErrorDetail,
}

#[derive(Deserialize, Default)]
struct ArmErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The answer of an `Azure-AsyncOperation` URL.
#[derive(Deserialize, Default)]
struct OperationStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: ArmErrorDetail,
}

/// A successful ARM answer, its body read whole (at most [`MAX_ARM_RESPONSE_BYTES`]).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

/// How a long-running operation is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PollKind {
    /// `Location`: 202 while running, then the final answer.
    Location,
    /// `Azure-AsyncOperation`: 200 with `{"status": ...}`.
    AsyncOperation,
}

impl PollKind {
    fn header(self) -> &'static str {
        match self {
            PollKind::Location => "Location",
            PollKind::AsyncOperation => "Azure-AsyncOperation",
        }
    }
}

/// Client for one store's ARM endpoint with one identity.
pub struct ArmClient {
    http: reqwest::Client,
    arm_endpoint: String,
    /// `arm_endpoint` parsed: operation URLs must be on its scheme, host and port.
    arm_base: url::Url,
    arm_scope: String,
    api_version: String,
    identity: Identity,
    /// The token credential; replaced by a fresh one (an empty token cache) when ARM
    /// answers 401 to a token the credential still thought valid.
    credential: std::sync::Mutex<Arc<dyn TokenCredential>>,
    /// What a fresh credential is built from.
    renew: CredentialInputs,
    retry: RetryPolicy,
}

/// The inputs of [`super::identity::credential`], kept to build a fresh credential.
struct CredentialInputs {
    authority_host: String,
    http: reqwest::Client,
    tokens: Option<Arc<dyn super::identity::ServiceAccountTokens>>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("arm_endpoint", &self.arm_endpoint)
            .field("identity", &self.identity.describe())
            .finish()
    }
}

impl ArmClient {
    /// A client; `http` should trust the system roots plus `SSL_CERT_FILE`.
    pub fn new(
        http: reqwest::Client,
        endpoints: &super::cloud::CloudEndpoints,
        api_version: &str,
        identity: Identity,
        retry: RetryPolicy,
        tokens: Option<&Arc<dyn super::identity::ServiceAccountTokens>>,
    ) -> Result<Self, AosmError> {
        if !API_VERSIONS.contains(&api_version) {
            return Err(AosmError::Config(format!(
                "apiVersion {api_version} is not supported; use one of {}",
                API_VERSIONS.join(", ")
            )));
        }
        let arm_base = url::Url::parse(&endpoints.arm_endpoint)
            .ok()
            .filter(|u| u.scheme() == "https" && u.host_str().is_some())
            .ok_or_else(|| {
                AosmError::Config(format!(
                    "armEndpoint {:?} must be an https URL",
                    endpoints.arm_endpoint
                ))
            })?;
        let credential = super::identity::credential(
            &identity,
            &endpoints.authority_host,
            http.clone(),
            tokens,
        )?;
        Ok(Self {
            renew: CredentialInputs {
                authority_host: endpoints.authority_host.clone(),
                http: http.clone(),
                tokens: tokens.cloned(),
            },
            http,
            arm_endpoint: endpoints.arm_endpoint.clone(),
            arm_base,
            arm_scope: endpoints.arm_scope.clone(),
            api_version: api_version.to_string(),
            identity,
            credential: std::sync::Mutex::new(credential),
            retry,
        })
    }

    /// The current token credential.
    fn credential(&self) -> Arc<dyn TokenCredential> {
        self.credential
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the token credential with a fresh one, so the next call asks Entra ID for
    /// a new ARM token instead of reusing the one ARM refused.
    fn renew_credential(&self) -> Result<(), AosmError> {
        let fresh = super::identity::credential(
            &self.identity,
            &self.renew.authority_host,
            self.renew.http.clone(),
            self.renew.tokens.as_ref(),
        )?;
        *self.credential.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}?api-version={}",
            self.arm_endpoint, self.api_version
        )
    }

    /// One ARM call with the bearer token, retrying throttling and transient failures
    /// (429, 5xx, 408, and 409: another operation on the resource is in progress). A 401
    /// (the token expired, or ARM's clock is ahead of ours) is retried at once with a
    /// token from a fresh credential, then with backoff like the others.
    /// The answer's body is read here, bounded in size and (with the request) in time.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        action: &str,
        resource: &str,
    ) -> Result<Answer, AosmError> {
        with_retry(&self.retry, self.retry.max_attempts, action, |renewed| {
            let method = method.clone();
            async move {
                match self.attempt(&method, url, body, action, resource).await {
                    Ok(answer) => Step::Done(answer),
                    Err(err @ AosmError::Transient { status: 401, .. }) if !renewed => {
                        tracing::debug!(action, "ARM answered 401: asking for a fresh token");
                        match self.renew_credential() {
                            Ok(()) => Step::Renew(err),
                            Err(e) => Step::Failed(e),
                        }
                    }
                    Err(err) => Step::Failed(err),
                }
            }
        })
        .await
    }

    /// One attempt of [`ArmClient::call`].
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&serde_json::Value>,
        action: &str,
        resource: &str,
    ) -> Result<Answer, AosmError> {
        let credential = self.credential();
        let token = arm_token(credential.as_ref(), &self.identity, &self.arm_scope).await?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.expose())
            .timeout(ARM_REQUEST_TIMEOUT);
        req = match body {
            Some(b) => req.json(b),
            None => req.header(header::CONTENT_LENGTH, 0),
        };
        if action == LIST_CREDENTIAL {
            LIST_CREDENTIAL_CALLS.fetch_add(1, Ordering::Relaxed);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.read_failed(action, "sending the request", &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.arm_error(resp, action, resource).await);
        }
        let headers = resp.headers().clone();
        let body = read_capped(resp, MAX_ARM_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                CappedReadError::TooLarge { limit, announced } => AosmError::Protocol {
                    action: action.to_string(),
                    reason: self.too_large("answer", limit, announced),
                },
                CappedReadError::Transport(e) => self.read_failed(action, "reading the answer", &e),
            })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// A transport failure (connection, timeout) while `doing` part of `action`: transient.
    fn read_failed(&self, action: &str, doing: &str, e: &reqwest::Error) -> AosmError {
        let reason = if e.is_timeout() {
            format!(
                "{action} got no complete answer within {} s ({doing})",
                ARM_REQUEST_TIMEOUT.as_secs()
            )
        } else {
            format!(
                "{action}: {doing}: {}",
                crate::http::describe_reqwest_error(e)
            )
        };
        AosmError::Connect {
            endpoint: self.arm_endpoint.clone(),
            reason,
        }
    }

    /// The reason of an answer refused for its size: names the endpoint and the limit.
    fn too_large(&self, what: &str, limit: usize, announced: Option<u64>) -> String {
        let announced = announced
            .map(|n| format!(" (Content-Length {n})"))
            .unwrap_or_default();
        format!(
            "the {what} from {} is larger than the {} limit{announced}; not read",
            self.arm_endpoint,
            size(limit)
        )
    }

    /// The typed error of a non-2xx answer; its body is read up to
    /// [`MAX_ERROR_BODY_BYTES`] (a longer one is not read: the status decides).
    async fn arm_error(&self, resp: Response, action: &str, resource: &str) -> AosmError {
        let status = resp.status();
        let retry_after = crate::http::retry_after_header(resp.headers());
        let (body, oversized) = match read_capped(resp, MAX_ERROR_BODY_BYTES).await {
            Ok(bytes) => (
                serde_json::from_slice::<ArmErrorBody>(&bytes).unwrap_or_default(),
                None,
            ),
            Err(CappedReadError::TooLarge { limit, announced }) => (
                ArmErrorBody::default(),
                Some(self.too_large("error body", limit, announced)),
            ),
            // The status says enough when the body is cut.
            Err(CappedReadError::Transport(_)) => (ArmErrorBody::default(), None),
        };
        let code = if body.error.code.is_empty() {
            status.canonical_reason().unwrap_or("Error").to_string()
        } else {
            short(&body.error.code, MAX_ERROR_CODE_CHARS)
        };
        let message = oversized.unwrap_or_else(|| first_line(&body.error.message));
        match status {
            StatusCode::NOT_FOUND => AosmError::NotFound {
                resource: resource.to_string(),
                code,
                message,
            },
            StatusCode::FORBIDDEN => AosmError::Forbidden {
                action: action.to_string(),
                resource: resource.to_string(),
                code,
                message,
            },
            // 401: the token expired or is not yet valid for ARM (clock skew): a fresh
            // token, then backoff. 409: another operation on the resource (a manifest
            // being created or updated) is in progress: it ends on its own.
            s if s == StatusCode::UNAUTHORIZED
                || s == StatusCode::CONFLICT
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
                || s.is_server_error() =>
            {
                AosmError::Transient {
                    status: s.as_u16(),
                    action: action.to_string(),
                    code,
                    message,
                    retry_after,
                }
            }
            s => AosmError::Refused {
                action: action.to_string(),
                status: s.as_u16(),
                code,
                message,
            },
        }
    }

    /// The store's `storeType` (AzureContainerRegistry | AzureStorageAccount).
    pub async fn store_type(&self, store: &StoreId) -> Result<String, AosmError> {
        let path = store.path();
        let action = "GET artifact store";
        let answer = self
            .call(Method::GET, &self.url(&path), None, action, &path)
            .await?;
        let v: serde_json::Value = parse_json(&answer.body, action)?;
        let store_type = v["properties"]["storeType"].as_str().unwrap_or("Unknown");
        text_field(action, "storeType", store_type, MAX_NAME_BYTES)?;
        Ok(store_type.to_string())
    }

    /// The manifest's artifacts and state.
    pub async fn manifest(
        &self,
        store: &StoreId,
        manifest: &str,
    ) -> Result<ArtifactManifest, AosmError> {
        let path = store.manifest_path(manifest);
        let action = "GET artifact manifest";
        let answer = self
            .call(Method::GET, &self.url(&path), None, action, &path)
            .await?;
        #[derive(Deserialize)]
        struct ManifestAnswer {
            #[serde(default)]
            properties: Props,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Props {
            #[serde(default)]
            artifacts: Option<Vec<serde_json::Value>>,
            #[serde(default)]
            artifact_manifest_state: Option<serde_json::Value>,
        }
        let a: ManifestAnswer = parse_json(&answer.body, action)?;
        let entries = a.properties.artifacts.unwrap_or_default();
        let artifacts: Vec<ManifestArtifact> = entries
            .iter()
            .filter_map(ManifestArtifact::from_json)
            .collect();
        let ignored = entries.len() - artifacts.len();
        if ignored > 0 {
            tracing::debug!(
                manifest,
                ignored,
                "manifest entries without a usable name and version left out"
            );
        }
        // A state this client does not know (a later api-version's) is kept as it came.
        let state = a
            .properties
            .artifact_manifest_state
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .unwrap_or("Unknown")
            .to_string();
        text_field(action, "artifactManifestState", &state, MAX_NAME_BYTES)?;
        Ok(ArtifactManifest {
            artifacts,
            ignored,
            state,
        })
    }

    /// `listCredential` of a manifest: a registry credential scoped to its repositories.
    /// The answer is checked before use: an ACR scoped token, `acrServerUrl` a
    /// `host[:port]` (optionally `https://`, nothing after it), a non-empty user name
    /// and token of bounded length, a parseable expiry.
    pub async fn list_credential(
        &self,
        store: &StoreId,
        manifest: &str,
    ) -> Result<AcrCredential, AosmError> {
        let path = format!("{}/listCredential", store.manifest_path(manifest));
        let action = LIST_CREDENTIAL;
        let answer = self
            .call(Method::POST, &self.url(&path), None, action, &path)
            .await?;
        let a: CredentialAnswer = parse_json(&answer.body, action)?;
        if a.credential_type != "AzureContainerRegistryScopedToken" {
            text_field(action, "credentialType", &a.credential_type, MAX_NAME_BYTES)?;
            return Err(AosmError::UnsupportedStoreType {
                store: store.path(),
                store_type: a.credential_type,
            });
        }
        let missing = |field: &str| AosmError::Protocol {
            action: action.into(),
            reason: format!("the answer has no {field}"),
        };
        let server_url = a.acr_server_url.ok_or_else(|| missing("acrServerUrl"))?;
        let server = acr_server(&server_url).map_err(|reason| AosmError::Protocol {
            action: action.into(),
            reason,
        })?;
        let username = a.username.ok_or_else(|| missing("username"))?;
        required(action, "username", &username)?;
        text_field(action, "username", &username, MAX_CREDENTIAL_USERNAME_BYTES)?;
        if username.contains(':') {
            return Err(AosmError::Protocol {
                action: action.into(),
                reason: "the username holds ':', which basic authentication cannot carry".into(),
            });
        }
        // Never quoted in an error: it is the secret.
        let token = Secret::new(a.acr_token.ok_or_else(|| missing("acrToken"))?);
        required(action, "acrToken", token.expose())?;
        text_field(
            action,
            "acrToken",
            token.expose(),
            MAX_CREDENTIAL_TOKEN_BYTES,
        )?;
        // Blank entries are what the official examples answer: ignored, not refused.
        for (i, r) in a.repositories.iter().enumerate() {
            text_field(
                action,
                &format!("repositories[{i}]"),
                r,
                MAX_ARTIFACT_NAME_BYTES,
            )?;
        }
        let expiry = a.expiry.ok_or_else(|| missing("expiry"))?;
        text_field(action, "expiry", &expiry, MAX_NAME_BYTES)?;
        let expiry: jiff::Timestamp = expiry.parse().map_err(|e| AosmError::Protocol {
            action: action.into(),
            reason: format!("expiry {expiry:?} is not a timestamp: {e}"),
        })?;
        Ok(AcrCredential {
            server,
            username,
            token,
            repositories: a.repositories,
            expiry,
        })
    }

    /// Sets the manifest state (e.g. `Uploaded`), following the long-running operation
    /// through `Location` (preferred) or `Azure-AsyncOperation`. An operation URL is
    /// followed only when it is https on the ARM endpoint's own host and port: an answer
    /// cannot send the ARM token anywhere else.
    pub async fn update_state(
        &self,
        store: &StoreId,
        manifest: &str,
        state: &str,
        deadline: Duration,
    ) -> Result<(), AosmError> {
        let path = format!("{}/updateState", store.manifest_path(manifest));
        let action = "POST updateState";
        let poll_action = "poll updateState";
        let body = serde_json::json!({ "artifactManifestState": state });
        let mut answer = self
            .call(Method::POST, &self.url(&path), Some(&body), action, &path)
            .await?;
        if answer.status != StatusCode::ACCEPTED {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (kind, mut url) = self.operation_url(&answer.headers, None, action)?;
        loop {
            let wait = crate::http::retry_after_header(&answer.headers)
                .unwrap_or(MIN_POLL_INTERVAL)
                .clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL);
            if started.elapsed() + wait > deadline {
                return Err(AosmError::Transient {
                    status: 202,
                    action: action.into(),
                    code: "OperationTimeout".into(),
                    message: format!(
                        "updateState to {state} still running after {}s",
                        started.elapsed().as_secs()
                    ),
                    retry_after: None,
                });
            }
            tokio::time::sleep(wait).await;
            answer = self
                .call(Method::GET, &url, None, poll_action, &path)
                .await?;
            match kind {
                PollKind::Location => {
                    if answer.status != StatusCode::ACCEPTED {
                        return Ok(());
                    }
                    // A 202 may name the next URL; it is checked like the first.
                    if answer.headers.contains_key(header::LOCATION) {
                        url = self
                            .operation_url(&answer.headers, Some(kind), poll_action)?
                            .1;
                    }
                }
                PollKind::AsyncOperation => {
                    let op: OperationStatus = parse_json(&answer.body, poll_action)?;
                    match op.status.to_ascii_lowercase().as_str() {
                        "succeeded" => return Ok(()),
                        "failed" | "canceled" | "cancelled" => {
                            return Err(AosmError::Refused {
                                action: action.into(),
                                status: answer.status.as_u16(),
                                code: if op.error.code.is_empty() {
                                    short(&op.status, MAX_ERROR_CODE_CHARS)
                                } else {
                                    short(&op.error.code, MAX_ERROR_CODE_CHARS)
                                },
                                message: first_line(&op.error.message),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The operation URL of a 202 answer: `Location`, else `Azure-AsyncOperation` (or
    /// only the header of `kind`), resolved against the ARM endpoint; refused unless it
    /// is https on the ARM endpoint's host and port, without user info.
    fn operation_url(
        &self,
        headers: &HeaderMap,
        kind: Option<PollKind>,
        action: &str,
    ) -> Result<(PollKind, String), AosmError> {
        let protocol = |reason: String| AosmError::Protocol {
            action: action.to_string(),
            reason,
        };
        let found = [PollKind::Location, PollKind::AsyncOperation]
            .into_iter()
            .filter(|k| kind.is_none_or(|want| want == *k))
            .find_map(|k| headers.get(k.header()).map(|v| (k, v)));
        let Some((kind, value)) = found else {
            return Err(protocol(
                "202 without a Location or Azure-AsyncOperation header".into(),
            ));
        };
        let name = kind.header();
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(protocol(format!(
                "its {name} header is longer than the {} limit",
                size(MAX_HEADER_VALUE_BYTES)
            )));
        }
        let url = value
            .to_str()
            .ok()
            .and_then(|v| self.arm_base.join(v.trim()).ok())
            .ok_or_else(|| protocol(format!("its {name} header is not a URL")))?;
        let refuse = |what: String| {
            protocol(format!(
                "its {name} URL {what}; the ARM token is only sent over https to the ARM endpoint {}",
                self.arm_endpoint
            ))
        };
        if url.scheme() != "https" {
            return Err(refuse(format!(
                "uses {}:// instead of https://",
                short(url.scheme(), MAX_NAME_BYTES)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("carries user info".into()));
        }
        let host = url.host_str().unwrap_or_default();
        if !host.eq_ignore_ascii_case(self.arm_base.host_str().unwrap_or_default())
            || url.port_or_known_default() != self.arm_base.port_or_known_default()
        {
            return Err(refuse(format!(
                "points at {}:{}, another host",
                short(host, MAX_NAME_BYTES),
                url.port_or_known_default().unwrap_or(443)
            )));
        }
        Ok((kind, url.to_string()))
    }
}

/// `n` bytes for a message: `4 MiB`, `8 KiB` or `N bytes`.
fn size(n: usize) -> String {
    crate::http::human_bytes(n as u64)
}

/// At most `max` characters of `s`, control characters dropped, for a one-line message.
fn short(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().filter(|c| !c.is_control()).nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Parses an ARM answer. The message says where the JSON went wrong but quotes none of
/// it (a malformed `listCredential` answer must not put its token in an error).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], action: &str) -> Result<T, AosmError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let text = e.to_string();
        let what = match e.classify() {
            // Names a field of ours, never a value of theirs.
            Category::Data if text.starts_with("missing field") => {
                short(text.split(" at line").next().unwrap_or_default(), 100)
            }
            Category::Data => "a field has the wrong type or value".into(),
            Category::Syntax => "malformed JSON".into(),
            Category::Eof => "cut short".into(),
            Category::Io => "unreadable".into(),
        };
        AosmError::Protocol {
            action: action.to_string(),
            reason: format!(
                "the answer is not the expected JSON: {what} at line {} column {}",
                e.line(),
                e.column()
            ),
        }
    })
}

/// Refuses an empty `field`.
fn required(action: &str, field: &str, value: &str) -> Result<(), AosmError> {
    if value.is_empty() {
        return Err(AosmError::Protocol {
            action: action.to_string(),
            reason: format!("the answer has an empty {field}"),
        });
    }
    Ok(())
}

/// Refuses a `field` longer than `max` bytes or holding control characters. The value
/// itself is never quoted (it may be a secret).
fn text_field(action: &str, field: &str, value: &str, max: usize) -> Result<(), AosmError> {
    let reason = if value.len() > max {
        format!(
            "its {field} is {} bytes long, more than the {max} allowed",
            value.len()
        )
    } else if value.chars().any(char::is_control) {
        format!("its {field} holds control characters")
    } else {
        return Ok(());
    };
    Err(AosmError::Protocol {
        action: action.to_string(),
        reason,
    })
}

/// The registry host of a `listCredential` `acrServerUrl`: `host[:port]`, optionally
/// with `https://` before it and one `/` after it — no other scheme, path, query,
/// fragment or user info. The error is the reason, quoting the value (bounded).
fn acr_server(url: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "acrServerUrl {:?} {why}; expected host[:port] or https://host[:port]",
            short(url, 100)
        )
    };
    if url.len() > MAX_SERVER_URL_BYTES {
        return Err(format!(
            "acrServerUrl is {} bytes long, more than the {MAX_SERVER_URL_BYTES} allowed",
            url.len()
        ));
    }
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some(_) => return Err(bad("does not use https")),
        None => url,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority
        .chars()
        .any(|c| matches!(c, '/' | '?' | '#' | '@' | '\\'))
    {
        return Err(bad("has a path, query, fragment or user info"));
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| bad("is not a valid host"))?;
        let (host, after) = authority.split_at(end + 1);
        if host[1..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("is not a valid host"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("is not a valid host"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && (!p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u16>(), Ok(n) if n > 0))
    {
        return Err(bad("has an invalid port"));
    }
    if !host.starts_with('[') && !is_dns_name(host) {
        return Err(bad("is not a valid host"));
    }
    Ok(authority.to_string())
}

/// A DNS name (or dotted IPv4 address): labels of 1-63 letters, digits and `-` (not at
/// either end), 253 bytes at most.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(repos: &[&str]) -> AcrCredential {
        AcrCredential {
            server: "x.azurecr.io".into(),
            username: "m".into(),
            token: Secret::new("t"),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            expiry: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn repositories_are_a_hint_with_artifact_as_the_fallback() {
        let pick = |repos: &[&str], manifest: &str, artifact: &str| {
            let c = cred(repos).repository_for(manifest, artifact);
            (c.name, c.from_credential)
        };
        // An entry naming the artifact: as it is, under the manifest (manifests created
        // with 2025-03-30), or under another prefix.
        assert_eq!(pick(&["cnf"], "Mf", "cnf"), ("cnf".into(), true));
        assert_eq!(
            pick(&["mf/other", "mf/cnf"], "Mf", "cnf"),
            ("mf/cnf".into(), true)
        );
        assert_eq!(
            pick(&["mf/cnf", "cnf"], "mf", "cnf"),
            ("cnf".into(), true),
            "<artifact> first"
        );
        assert_eq!(pick(&["x/cnf"], "mf", "cnf"), ("x/cnf".into(), true));
        assert_eq!(pick(&["CNF"], "mf", "cnf"), ("CNF".into(), true));
        // What every official example answers, nothing, blanks, or other artifacts only:
        // `<artifact>`, as `az aosm` pushes, and the registry decides.
        for repos in [
            &[""][..],
            &[],
            &["", "  "],
            &["cnf2"],
            &["mf/cnf2", "cnf-x"],
        ] {
            assert_eq!(pick(repos, "mf", "cnf"), ("cnf".into(), false), "{repos:?}");
        }
    }

    #[test]
    fn manifest_entries_are_read_one_by_one() {
        let entry = |v: serde_json::Value| ManifestArtifact::from_json(&v);
        assert_eq!(
            entry(
                serde_json::json!({"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"})
            ),
            Some(ManifestArtifact {
                artifact_name: "a".into(),
                artifact_type: "OCIArtifact".into(),
                artifact_version: "1.0.0".into(),
            })
        );
        // An unknown type is kept; a missing or odd one is left empty.
        let t = |v| entry(v).map(|a| a.artifact_type);
        assert_eq!(
            t(
                serde_json::json!({"artifactName": "a", "artifactType": "HelmPackage", "artifactVersion": "v1"})
            ),
            Some("HelmPackage".into())
        );
        assert_eq!(
            t(serde_json::json!({"artifactName": "a", "artifactVersion": "1"})),
            Some(String::new())
        );
        assert_eq!(
            t(serde_json::json!({"artifactName": "a", "artifactType": 7, "artifactVersion": "1"})),
            Some(String::new())
        );
        // No name or version, empty, of another type, oversized, control characters.
        for bad in [
            serde_json::json!({"artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}),
            serde_json::json!({"artifactName": "a"}),
            serde_json::json!({"artifactName": "", "artifactVersion": "1.0.0"}),
            serde_json::json!({"artifactName": 1, "artifactVersion": "1.0.0"}),
            serde_json::json!({"artifactName": "a".repeat(MAX_ARTIFACT_NAME_BYTES + 1), "artifactVersion": "1"}),
            serde_json::json!({"artifactName": "a\nb", "artifactVersion": "1"}),
            serde_json::json!("not an object"),
            serde_json::Value::Null,
        ] {
            assert_eq!(entry(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn acr_server_urls_are_host_and_port_only() {
        for (url, server) in [
            ("localhost:5000", "localhost:5000"),
            ("https://myacr.azurecr.io", "myacr.azurecr.io"),
            ("https://myacr.azurecr.io/", "myacr.azurecr.io"),
            ("HTTPS://127.0.0.1:443", "127.0.0.1:443"),
            ("https://[::1]:5000", "[::1]:5000"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(acr_server(url).as_deref(), Ok(server), "{url}");
        }
        for (url, why) in [
            ("https://evil.example/path?x", "path, query"),
            ("https://evil.example?x", "path, query"),
            ("https://user:pw@evil.example", "user info"),
            ("evil.example#frag", "fragment"),
            ("https://evil.example\\@good.example", "path, query"),
            ("http://myacr.azurecr.io", "https"),
            ("ftp://myacr.azurecr.io", "https"),
            ("myacr.azurecr.io:0", "port"),
            ("myacr.azurecr.io:65536", "port"),
            ("myacr.azurecr.io:", "port"),
            ("myacr.azurecr.io:+1", "port"),
            ("", "valid host"),
            ("https://", "valid host"),
            ("-bad.example", "valid host"),
            ("bad..example", "valid host"),
            ("bad_host.example", "valid host"),
            ("b\u{e4}d.example", "valid host"),
            ("evil example", "valid host"),
            ("[::1", "valid host"),
            ("[nothost]:1", "valid host"),
            ("[::1]x", "valid host"),
        ] {
            let err = acr_server(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let long = format!("{}.example", "a.".repeat(200));
        assert!(acr_server(&long).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn text_fields_are_bounded_and_never_quoted() {
        let err = text_field("a", "acrToken", &"s".repeat(9000), 8192).unwrap_err();
        assert!(err.to_string().contains("9000 bytes long"), "{err}");
        assert!(!err.to_string().contains("sss"), "{err}");
        let err = text_field("a", "acrToken", "sec\nret", 8192).unwrap_err();
        assert!(err.to_string().contains("control characters"), "{err}");
        assert!(!err.to_string().contains("sec"), "{err}");
        assert!(text_field("a", "f", "fine", 4).is_ok());
        assert!(required("a", "f", "").is_err());
    }

    #[test]
    fn json_errors_quote_nothing_of_the_answer() {
        let secret = "s3cr3t-token-value";
        for body in [
            format!(r#"{{"credentialType": 1, "acrToken": "{secret}"}}"#),
            format!(r#"{{"credentialType": "{secret}"#),
            format!(r#"{{"credentialType": ["{secret}"]}}"#),
            secret.to_string(),
        ] {
            let err = parse_json::<CredentialAnswer>(body.as_bytes(), LIST_CREDENTIAL)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("line 1 column"), "{err}");
        }
        let err = parse_json::<CredentialAnswer>(b"{}", LIST_CREDENTIAL)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `credentialType`"), "{err}");
    }

    #[test]
    fn sizes_and_short_texts() {
        assert_eq!(size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(size(8 * 1024), "8 KiB");
        assert_eq!(size(1000), "1000 bytes");
        assert_eq!(short("ab\ncd", 10), "abcd");
        assert_eq!(short("abcdef", 3), "abc…");
    }

    fn client(arm_endpoint: &str) -> ArmClient {
        ArmClient::new(
            reqwest::Client::new(),
            &super::super::cloud::CloudEndpoints {
                arm_endpoint: arm_endpoint.into(),
                authority_host: "https://login.microsoftonline.com".into(),
                arm_scope: "https://management.azure.com/.default".into(),
            },
            API_VERSIONS[0],
            Identity::ClientSecret {
                tenant_id: "00000000-0000-0000-0000-000000000001".into(),
                client_id: "00000000-0000-0000-0000-000000000002".into(),
                client_secret: Secret::new("x"),
            },
            RetryPolicy::default(),
            None,
        )
        .expect("a client")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("a header value"));
        }
        h
    }

    #[test]
    fn operation_urls_must_be_https_on_the_arm_host() {
        let c = client("https://management.azure.com");
        let ok = |pairs: &[(&'static str, &str)]| {
            c.operation_url(&headers(pairs), None, "POST updateState")
                .map_err(|e| e.to_string())
        };
        let op = "https://management.azure.com/subscriptions/s/providers/Microsoft.HybridNetwork/locations/eastus/operationResults/1?api-version=2023-09-01";
        assert_eq!(ok(&[("location", op)]), Ok((PollKind::Location, op.into())));
        assert_eq!(
            ok(&[("azure-asyncoperation", op)]),
            Ok((PollKind::AsyncOperation, op.into()))
        );
        assert_eq!(
            ok(&[("location", op), ("azure-asyncoperation", "http://x")]),
            Ok((PollKind::Location, op.into())),
            "Location wins"
        );
        assert_eq!(
            ok(&[("location", "HTTPS://Management.Azure.COM:443/op")]).map(|(_, u)| u),
            Ok("https://management.azure.com/op".into())
        );
        assert_eq!(
            ok(&[("location", "/subscriptions/s/op")]).map(|(_, u)| u),
            Ok("https://management.azure.com/subscriptions/s/op".into()),
            "a relative URL stays on the ARM host"
        );
        for (value, why) in [
            (
                "http://management.azure.com/op",
                "uses http:// instead of https://",
            ),
            (
                "https://evil.example/op",
                "points at evil.example:443, another host",
            ),
            (
                "https://management.azure.com:8443/op",
                "points at management.azure.com:8443",
            ),
            (
                "https://management.azure.com.evil.example/op",
                "another host",
            ),
            ("https://management.azure.com@evil.example/op", "user info"),
            ("https://u:p@management.azure.com/op", "user info"),
            ("//evil.example/op", "another host"),
            ("https://", "not a URL"),
        ] {
            let err = ok(&[("location", value)]).expect_err(value);
            assert!(err.contains(why), "{value}: {err}");
            assert!(
                err.contains("the ARM token is only sent over https to the ARM endpoint https://management.azure.com")
                    || why == "not a URL",
                "{err}"
            );
        }
        let long = format!("https://management.azure.com/{}", "a".repeat(9000));
        assert!(
            ok(&[("location", &long)])
                .unwrap_err()
                .contains("8 KiB limit")
        );
        assert!(ok(&[]).unwrap_err().contains("202 without"));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let s = StoreId {
            subscription_id: "sub".into(),
            resource_group: "rg (1).x".into(),
            publisher: "p/../x".into(),
            artifact_store: "s?api-version=1#f".into(),
        };
        assert_eq!(
            s.manifest_path("m%2F n"),
            "/subscriptions/sub/resourceGroups/rg%20%281%29.x/providers/Microsoft.HybridNetwork/publishers/p%2F..%2Fx/artifactStores/s%3Fapi-version%3D1%23f/artifactManifests/m%252F%20n"
        );
    }

    #[test]
    fn store_paths() {
        let s = StoreId {
            subscription_id: "sub".into(),
            resource_group: "rg".into(),
            publisher: "p".into(),
            artifact_store: "s".into(),
        };
        assert_eq!(
            s.manifest_path("m"),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/s/artifactManifests/m"
        );
    }
}
