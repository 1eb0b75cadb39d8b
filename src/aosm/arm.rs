//! ARM client for `Microsoft.HybridNetwork`: artifact store and manifest GETs,
//! `listCredential`, and `updateState` with long-running-operation polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::{Method, Response, StatusCode, header};
use serde::Deserialize;

use super::error::AosmError;
use super::identity::{Identity, arm_token, first_line};
use crate::engine::Secret;
use crate::engine::retry::{RetryPolicy, parse_retry_after};

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
    /// ARM resource path of the store.
    pub fn path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.HybridNetwork/publishers/{}/artifactStores/{}",
            self.subscription_id, self.resource_group, self.publisher, self.artifact_store
        )
    }

    /// ARM resource path of a manifest in the store.
    pub fn manifest_path(&self, manifest: &str) -> String {
        format!("{}/artifactManifests/{manifest}", self.path())
    }
}

/// An artifact listed in a manifest.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestArtifact {
    /// Artifact (repository) name.
    pub artifact_name: String,
    /// OCIArtifact | ArmTemplate | ImageFile | VhdImageFile | Unknown.
    #[serde(default)]
    pub artifact_type: String,
    /// Version (tag).
    pub artifact_version: String,
}

/// The parts of an artifact manifest we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactManifest {
    /// Artifacts it lists.
    pub artifacts: Vec<ManifestArtifact>,
    /// Unknown | Uploading | Uploaded | Validating | ValidationFailed | Succeeded.
    pub state: String,
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

impl AcrCredential {
    /// The repository for `artifact`: `<artifact>` or, from api-version 2025-03-30,
    /// `<manifest>/<artifact>` — whichever the credential grants.
    pub fn repository_for(&self, manifest: &str, artifact: &str) -> Option<String> {
        let nested = format!(
            "{}/{}",
            manifest.to_ascii_lowercase(),
            artifact.to_ascii_lowercase()
        );
        let artifact_lc = artifact.to_ascii_lowercase();
        self.repositories
            .iter()
            .find(|r| r.to_ascii_lowercase() == artifact_lc)
            .or_else(|| {
                self.repositories
                    .iter()
                    .find(|r| r.to_ascii_lowercase() == nested)
            })
            .or_else(|| {
                self.repositories
                    .iter()
                    .find(|r| r.to_ascii_lowercase().ends_with(&format!("/{artifact_lc}")))
            })
            .cloned()
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

/// Client for one store's ARM endpoint with one identity.
pub struct ArmClient {
    http: reqwest::Client,
    arm_endpoint: String,
    arm_scope: String,
    api_version: String,
    identity: Identity,
    credential: Arc<dyn TokenCredential>,
    retry: RetryPolicy,
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
        let credential = super::identity::credential(
            &identity,
            &endpoints.authority_host,
            http.clone(),
            tokens,
        )?;
        Ok(Self {
            http,
            arm_endpoint: endpoints.arm_endpoint.clone(),
            arm_scope: endpoints.arm_scope.clone(),
            api_version: api_version.to_string(),
            identity,
            credential,
            retry,
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}?api-version={}",
            self.arm_endpoint, self.api_version
        )
    }

    /// One ARM call with the bearer token, retrying throttling and transient failures.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        action: &str,
        resource: &str,
    ) -> Result<Response, AosmError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = arm_token(self.credential.as_ref(), &self.identity, &self.arm_scope).await;
            let result = match token {
                Ok(token) => {
                    let mut req = self
                        .http
                        .request(method.clone(), url)
                        .bearer_auth(token.expose());
                    req = match body {
                        Some(b) => req.json(b),
                        None => req.header(header::CONTENT_LENGTH, 0),
                    };
                    if action == LIST_CREDENTIAL {
                        LIST_CREDENTIAL_CALLS.fetch_add(1, Ordering::Relaxed);
                    }
                    match req.send().await {
                        Ok(resp) if resp.status().is_success() => return Ok(resp),
                        Ok(resp) => Err(arm_error(resp, action, resource).await),
                        Err(e) => Err(AosmError::Connect {
                            endpoint: self.arm_endpoint.clone(),
                            reason: crate::engine::registry::describe_reqwest_error(&e),
                        }),
                    }
                }
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if !err.is_transient() || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt, err.retry_after());
            tracing::debug!(action, attempt, ?delay, error = %err, "ARM call failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: Response,
        action: &str,
    ) -> Result<T, AosmError> {
        resp.json().await.map_err(|e| AosmError::Protocol {
            action: action.to_string(),
            reason: format!(
                "answer is not the expected JSON: {}",
                crate::engine::registry::describe_reqwest_error(&e)
            ),
        })
    }

    /// The store's `storeType` (AzureContainerRegistry | AzureStorageAccount).
    pub async fn store_type(&self, store: &StoreId) -> Result<String, AosmError> {
        let path = store.path();
        let resp = self
            .call(
                Method::GET,
                &self.url(&path),
                None,
                "GET artifact store",
                &path,
            )
            .await?;
        let v: serde_json::Value = Self::json(resp, "GET artifact store").await?;
        Ok(v["properties"]["storeType"]
            .as_str()
            .unwrap_or("Unknown")
            .to_string())
    }

    /// The manifest's artifacts and state.
    pub async fn manifest(
        &self,
        store: &StoreId,
        manifest: &str,
    ) -> Result<ArtifactManifest, AosmError> {
        let path = store.manifest_path(manifest);
        let resp = self
            .call(
                Method::GET,
                &self.url(&path),
                None,
                "GET artifact manifest",
                &path,
            )
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            properties: Props,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Props {
            #[serde(default)]
            artifacts: Vec<ManifestArtifact>,
            #[serde(default)]
            artifact_manifest_state: Option<String>,
        }
        let a: Answer = Self::json(resp, "GET artifact manifest").await?;
        Ok(ArtifactManifest {
            artifacts: a.properties.artifacts,
            state: a
                .properties
                .artifact_manifest_state
                .unwrap_or_else(|| "Unknown".into()),
        })
    }

    /// `listCredential` of a manifest: a registry credential scoped to its repositories.
    pub async fn list_credential(
        &self,
        store: &StoreId,
        manifest: &str,
    ) -> Result<AcrCredential, AosmError> {
        let path = format!("{}/listCredential", store.manifest_path(manifest));
        let action = LIST_CREDENTIAL;
        let resp = self
            .call(Method::POST, &self.url(&path), None, action, &path)
            .await?;
        let a: CredentialAnswer = Self::json(resp, action).await?;
        if a.credential_type != "AzureContainerRegistryScopedToken" {
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
        let server = server_url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let expiry = a.expiry.ok_or_else(|| missing("expiry"))?;
        let expiry: jiff::Timestamp = expiry.parse().map_err(|e| AosmError::Protocol {
            action: action.into(),
            reason: format!("expiry {expiry:?} is not a timestamp: {e}"),
        })?;
        Ok(AcrCredential {
            server,
            username: a.username.ok_or_else(|| missing("username"))?,
            token: Secret::new(a.acr_token.ok_or_else(|| missing("acrToken"))?),
            repositories: a.repositories,
            expiry,
        })
    }

    /// Sets the manifest state (e.g. `Uploaded`), following the long-running operation.
    pub async fn update_state(
        &self,
        store: &StoreId,
        manifest: &str,
        state: &str,
        deadline: Duration,
    ) -> Result<(), AosmError> {
        let path = format!("{}/updateState", store.manifest_path(manifest));
        let action = "POST updateState";
        let body = serde_json::json!({ "artifactManifestState": state });
        let mut resp = self
            .call(Method::POST, &self.url(&path), Some(&body), action, &path)
            .await?;
        let started = std::time::Instant::now();
        while resp.status() == StatusCode::ACCEPTED {
            let location = resp
                .headers()
                .get(header::LOCATION)
                .or_else(|| resp.headers().get("azure-asyncoperation"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| AosmError::Protocol {
                    action: action.into(),
                    reason: "202 without Location".into(),
                })?;
            let wait = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(30));
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
            resp = self
                .call(Method::GET, &location, None, "poll updateState", &path)
                .await?;
        }
        Ok(())
    }
}

async fn arm_error(resp: Response, action: &str, resource: &str) -> AosmError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let text = resp.text().await.unwrap_or_default();
    let body: ArmErrorBody = serde_json::from_str(&text).unwrap_or_default();
    let code = if body.error.code.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_string()
    } else {
        body.error.code
    };
    let message = first_line(&body.error.message);
    match status {
        StatusCode::NOT_FOUND => AosmError::NotFound {
            resource: resource.to_string(),
            code,
            message,
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => AosmError::Forbidden {
            action: action.to_string(),
            resource: resource.to_string(),
            code,
            message,
        },
        s if s == StatusCode::TOO_MANY_REQUESTS
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
    fn repository_resolution_old_and_new_naming() {
        assert_eq!(
            cred(&["cnf"]).repository_for("Mf", "cnf").as_deref(),
            Some("cnf")
        );
        assert_eq!(
            cred(&["mf/cnf", "mf/other"])
                .repository_for("Mf", "cnf")
                .as_deref(),
            Some("mf/cnf")
        );
        assert_eq!(cred(&["cnf2"]).repository_for("mf", "cnf"), None);
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
