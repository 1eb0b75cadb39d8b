//! ARM client for `Microsoft.HybridNetwork`: artifact store and manifest GETs,
//! `listCredential`, and `updateState` with long-running-operation polling.
//!
//! Whatever the endpoint sends is bounded before it is used: answers are read up to
//! [`MAX_ARM_RESPONSE_BYTES`] and error bodies up to [`MAX_ERROR_BODY_BYTES`] (refused
//! as soon as they pass it, or when `Content-Length` announces more), every request
//! (body included) within a timeout, fields checked for length and shape, and operation
//! URLs followed only on the ARM endpoint's own host, over https.
//!
//! | module | job |
//! | --- | --- |
//! | this one | the client: one call with its token, retries and error mapping; the store, manifest and `listCredential` operations |
//! | `resources` | what the operations name and answer: store paths, manifest entries, scoped credentials and the repository a transfer uses |
//! | `answer_checks` | the checks every answer's fields pass before use (JSON without quoting, bounded text, `acrServerUrl`) |
//! | `long_running` | `updateState` and its long-running operation (`Location` / `Azure-AsyncOperation`) |

mod answer_checks;
mod long_running;
mod resources;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    MAX_CREDENTIAL_TOKEN_BYTES, MAX_CREDENTIAL_USERNAME_BYTES, MAX_ERROR_BODY_BYTES,
};

use answer_checks::{acr_server, parse_json, required, short, size, text_field};
pub use resources::{AcrCredential, ArtifactManifest, ManifestArtifact, RepositoryChoice, StoreId};

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

/// A successful ARM answer, its body read whole (at most [`MAX_ARM_RESPONSE_BYTES`]).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
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
}
