//! Runs a resolved [`TransferRequest`]: checks the artifact against the AOSM manifest,
//! gets (cached, shared) scoped credentials, and drives the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde::Serialize;

use super::error::{Reason, TransferError};
use super::request::{
    Destination, FileSource, Source, StoreArtifact, StoreConfig, TransferRequest,
};
use crate::aosm::{
    AcrCredential, ArmClient, ArtifactManifest, CacheKey, CredentialCache, ManifestArtifact,
};
pub use crate::api::Direction;
use crate::engine::copy::{
    DEFAULT_CHUNK_SIZE, Endpoint, TransferOptions, TransferSummary, publish,
};
use crate::engine::files::{InlineFile, plan_files};
use crate::engine::helm_repo::HelmRepository;
use crate::engine::retry::RetryPolicy;
use crate::engine::{
    CredentialSource, Credentials, EngineError, ImageRef, Progress, RegistryClient,
    RegistryOptions, Secret,
};

/// What a successful transfer produced (the status to write).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferOutcome {
    /// Push or pull.
    pub direction: Direction,
    /// Digest at the source.
    pub source_digest: String,
    /// Digest at the destination.
    pub digest: String,
    /// Destination reference.
    pub destination_ref: String,
    /// Artifact type as listed in the AOSM manifest.
    pub artifact_type: String,
    /// Engine summary (bytes, blobs).
    pub summary: TransferSummary,
}

/// The `artifactType` values of the api-versions this client speaks (`ArtifactType` in
/// the specification); any other value is a later addition.
const KNOWN_ARTIFACT_TYPES: [&str; 5] = [
    "OCIArtifact",
    "ArmTemplate",
    "ImageFile",
    "VhdImageFile",
    "Unknown",
];

/// How long an artifact manifest read from ARM answers "is this artifact listed?" before
/// it is read again. A miss always reads it again, so a newly added artifact is never
/// refused because of the cache.
const MANIFEST_TTL: Duration = Duration::from_secs(300);

/// Artifacts of a manifest named in an `ArtifactNotInManifest` message (the rest are
/// counted).
const LISTED_IN_MESSAGE: usize = 20;

type ManifestSlot = Arc<tokio::sync::Mutex<Option<(Instant, Arc<ArtifactManifest>)>>>;

/// Executes transfers; shares ARM clients and credentials across them.
pub struct Executor {
    http: reqwest::Client,
    cache: CredentialCache,
    arm_clients: Mutex<HashMap<String, Arc<ArmClient>>>,
    /// Store types already read from ARM (a store's type never changes), one read at a
    /// time per store.
    store_types: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<String>>>>>,
    /// Artifact manifests read from ARM recently, one fetch at a time per manifest.
    manifests: Mutex<HashMap<CacheKey, ManifestSlot>>,
    /// Registry clients of store registries per (server, store, manifest): their tokens
    /// outlive one transfer, so a re-check is one HEAD while the token is valid.
    store_clients: Mutex<HashMap<(String, CacheKey), Arc<RegistryClient>>>,
    retry: RetryPolicy,
    concurrency: usize,
    /// Tokens of stores' own ServiceAccounts (`identity.serviceAccountName`).
    service_account_tokens: Option<Arc<dyn crate::aosm::ServiceAccountTokens>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// `1.0.0`: three dot-separated numbers, as ACR tags for AOSM must be.
pub fn is_valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn aosm_to_engine(e: crate::aosm::AosmError) -> EngineError {
    if e.is_transient() {
        EngineError::Connect {
            host: "ARM".into(),
            reason: e.to_string(),
        }
    } else {
        EngineError::Forbidden {
            registry: "ARM".into(),
            action: "listCredential".into(),
            reason: e.to_string(),
        }
    }
}

/// Registry credentials that come from the credential cache and are renewed on refusal.
struct StoreCredentials {
    cache: CredentialCache,
    arm: Arc<ArmClient>,
    key: CacheKey,
    artifact: StoreArtifact,
    last_token: Mutex<Option<String>>,
}

impl CredentialSource for StoreCredentials {
    fn basic(
        &self,
        refresh: bool,
    ) -> futures_util::future::BoxFuture<'_, crate::engine::Result<(String, Secret)>> {
        async move {
            if refresh {
                let last = self
                    .last_token
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Some(t) = last {
                    self.cache.invalidate(&self.key, &t).await;
                }
            }
            let c = self
                .cache
                .get(&self.key, || {
                    self.arm
                        .list_credential(&self.artifact.store.id, &self.artifact.manifest)
                })
                .await
                .map_err(aosm_to_engine)?;
            *self.last_token.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(c.token.expose().to_string());
            Ok((c.username, c.token))
        }
        .boxed()
    }
}

impl Executor {
    /// A new executor; `concurrency` blobs in flight per transfer.
    pub fn new(concurrency: usize) -> Result<Self, TransferError> {
        Ok(Self {
            http: crate::engine::registry::http_client(false, None, None)?,
            cache: CredentialCache::default(),
            arm_clients: Mutex::new(HashMap::new()),
            store_types: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
            store_clients: Mutex::new(HashMap::new()),
            retry: RetryPolicy::default(),
            concurrency: concurrency.max(1),
            service_account_tokens: None,
        })
    }

    /// Serves stores whose identity is a ServiceAccount of their own with `tokens` (the
    /// controller's TokenRequest client).
    pub fn with_service_account_tokens(
        mut self,
        tokens: Arc<dyn crate::aosm::ServiceAccountTokens>,
    ) -> Self {
        self.service_account_tokens = Some(tokens);
        self
    }

    /// The ARM client for a store (one per store configuration).
    pub fn arm(&self, store: &StoreConfig) -> Result<Arc<ArmClient>, TransferError> {
        let key = identity_key(store);
        let mut clients = self.arm_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let endpoints = store.cloud.endpoints(
            store.arm_endpoint.as_deref(),
            store.authority_host.as_deref(),
        )?;
        let client = Arc::new(ArmClient::new(
            self.http.clone(),
            &endpoints,
            &store.api_version,
            store.identity.clone(),
            self.retry.clone(),
            self.service_account_tokens.as_ref(),
        )?);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Key of everything cached per manifest (credential, manifest, registry client): the
    /// store *and the identity*, so a wrong or rotated secret never rides on what another
    /// identity was given.
    fn cache_key(a: &StoreArtifact) -> CacheKey {
        CacheKey {
            store: identity_key(&a.store),
            manifest: a.manifest.clone(),
        }
    }

    /// Validates the artifact against its manifest and returns its listed entry.
    /// Refuses stores not backed by a container registry (once per store; cached).
    async fn check_store_type(&self, store: &StoreConfig) -> Result<(), TransferError> {
        let key = format!(
            "{}|{}",
            store.arm_endpoint.as_deref().unwrap_or_default(),
            store.id.path()
        );
        let slot = self
            .store_types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut known = slot.lock().await;
        let store_type = match known.as_ref() {
            Some(t) => t.clone(),
            None => {
                let t = self.arm(store)?.store_type(&store.id).await?;
                *known = Some(t.clone());
                t
            }
        };
        drop(known);
        if store_type == "AzureContainerRegistry" {
            Ok(())
        } else {
            Err(crate::aosm::AosmError::UnsupportedStoreType {
                store: store.id.path(),
                store_type,
            }
            .into())
        }
    }

    /// Checks the artifact against its manifest and returns its listed entry. A push
    /// needs a `1.0.0`-style version (Microsoft's rule for ACR-backed stores); a pull
    /// takes the version as the manifest lists it (the official example lists `v1`).
    async fn check_manifest(
        &self,
        a: &StoreArtifact,
        direction: Direction,
    ) -> Result<ManifestArtifact, TransferError> {
        if direction == Direction::Push && !is_valid_version(&a.version) {
            return Err(TransferError::permanent(
                Reason::VersionFormat,
                format!(
                    "version {:?} must look like 1.0.0 to push into an artifact store (AOSM artifact versions in ACR-backed stores are tags in that format)",
                    a.version
                ),
            ));
        }
        self.check_store_type(&a.store).await?;
        let find = |m: &ArtifactManifest| {
            m.artifacts
                .iter()
                .find(|x| {
                    x.artifact_name.eq_ignore_ascii_case(&a.artifact)
                        && x.artifact_version == a.version
                })
                .cloned()
        };
        let slot = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(Self::cache_key(a))
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some((read_at, m)) = cached.as_ref()
            && read_at.elapsed() < MANIFEST_TTL
            && let Some(found) = find(m)
        {
            return Ok(found);
        }
        let manifest = Arc::new(
            self.arm(&a.store)?
                .manifest(&a.store.id, &a.manifest)
                .await?,
        );
        *cached = Some((Instant::now(), manifest.clone()));
        drop(cached);
        find(&manifest).ok_or_else(|| {
                // A manifest may list very many artifacts: the message names a few.
                let mut listed: Vec<String> = manifest
                    .artifacts
                    .iter()
                    .take(LISTED_IN_MESSAGE)
                    .map(|x| format!("{}:{} ({})", x.artifact_name, x.artifact_version, x.artifact_type))
                    .collect();
                if manifest.artifacts.len() > LISTED_IN_MESSAGE {
                    listed.push(format!("and {} more", manifest.artifacts.len() - LISTED_IN_MESSAGE));
                }
                if manifest.ignored > 0 {
                    listed.push(format!("{} entries without a usable name and version", manifest.ignored));
                }
                TransferError::permanent(
                    Reason::ArtifactNotInManifest,
                    format!(
                        "artifact {}:{} is not listed in artifact manifest {}; it lists: {}; add it to the manifest or fix the spec",
                        a.artifact,
                        a.version,
                        a.manifest,
                        if listed.is_empty() { "nothing".to_string() } else { listed.join(", ") }
                    ),
                )
            })
    }

    /// A scoped credential for the artifact (shared, cached), and its repository.
    async fn store_endpoint(
        &self,
        a: &StoreArtifact,
    ) -> Result<(Endpoint, AcrCredential), TransferError> {
        let arm = self.arm(&a.store)?;
        let key = Self::cache_key(a);
        let cred = self
            .cache
            .get(&key, || arm.list_credential(&a.store.id, &a.manifest))
            .await?;
        let choice = cred.repository_for(&a.manifest, &a.artifact);
        if !choice.from_credential {
            tracing::debug!(
                manifest = %a.manifest,
                artifact = %a.artifact,
                "the credential's repositories name none for the artifact: trying repository <artifact>"
            );
        }
        let repo = choice.name;
        let key_for_clients = key.clone();
        let source = StoreCredentials {
            cache: self.cache.clone(),
            arm,
            key,
            artifact: a.clone(),
            last_token: Mutex::new(Some(cred.token.expose().to_string())),
        };
        let options = RegistryOptions {
            credentials: Credentials::Dynamic(Arc::new(source)),
            retry: self.retry.clone(),
            ..Default::default()
        };
        let reference = ImageRef::parse(&format!("{}/{repo}:{}", cred.server, a.version))?;
        let client_key = (cred.server.clone(), key_for_clients);
        let cached = self
            .store_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client_key)
            .cloned();
        let client = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(RegistryClient::new(&cred.server, &options)?);
                self.store_clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(client_key)
                    .or_insert(c)
                    .clone()
            }
        };
        Ok((Endpoint { client, reference }, cred))
    }

    fn registry_endpoint(side: &super::request::RegistrySide) -> Result<Endpoint, TransferError> {
        let reference = ImageRef::parse(&side.image)?;
        let options = RegistryOptions {
            plain_http: side.plain_http,
            insecure: side.insecure,
            ca_file: None,
            ca_pem: side.ca_pem.clone(),
            credentials: side.credentials.clone(),
            retry: RetryPolicy::default(),
        };
        let client = Arc::new(RegistryClient::new(&reference.registry, &options)?);
        Ok(Endpoint { client, reference })
    }

    /// Runs one transfer to completion.
    pub async fn run(
        &self,
        req: &TransferRequest,
        progress: &dyn Progress,
    ) -> Result<TransferOutcome, TransferError> {
        let started = Instant::now();
        let mut opts = TransferOptions {
            concurrency: self.concurrency,
            chunk_size: None,
            platforms: req.platforms.clone(),
        };
        match (&req.source, &req.destination) {
            (Source::Store(_), Destination::Store(_)) => Err(TransferError::permanent(
                Reason::InvalidSpec,
                "source and destination are both artifact stores; exactly one side must be the store",
            )),
            (Source::Store(store), Destination::Registry(side)) => {
                let listed = self.check_manifest(store, Direction::Pull).await?;
                let (src, cred) = self.store_endpoint(store).await?;
                let dst = Self::registry_endpoint(side)?;
                let summary = crate::engine::copy(&src, &dst, &opts, progress)
                    .await
                    .map_err(|e| store_refusal(e, &cred, &src.reference, store))?;
                Ok(TransferOutcome {
                    direction: Direction::Pull,
                    source_digest: summary.source_digest.clone(),
                    digest: summary.digest.clone(),
                    destination_ref: summary.reference.clone(),
                    artifact_type: listed.artifact_type,
                    summary,
                })
            }
            (source, Destination::Store(store)) => {
                let listed = self.check_manifest(store, Direction::Push).await?;
                check_source_fits(source, store, &listed)?;
                let (dst, cred) = self.store_endpoint(store).await?;
                // The store is an ACR: keep every request under its size limit.
                opts.chunk_size = Some(DEFAULT_CHUNK_SIZE);
                let tag = store.version.clone();
                let summary = match source {
                    Source::Registry(side) => {
                        let src = Self::registry_endpoint(side)?;
                        crate::engine::copy(&src, &dst, &opts, progress)
                            .await
                            .map_err(|e| store_refusal(e, &cred, &dst.reference, store))?
                    }
                    Source::HelmRepository(h) => {
                        let url = url::Url::parse(&h.url).map_err(|e| {
                            TransferError::permanent(
                                Reason::InvalidSpec,
                                format!("helm repository URL {:?}: {e}", h.url),
                            )
                        })?;
                        let repo = HelmRepository {
                            url,
                            credentials: h.credentials.clone(),
                            ca_file: None,
                            ca_pem: h.ca_pem.clone(),
                            insecure: h.insecure,
                        };
                        let fetched = repo.fetch(&h.chart, &h.version).await?;
                        publish(fetched.plan, &dst, Some(&tag), &opts, progress, started)
                            .await
                            .map_err(|e| store_refusal(e, &cred, &dst.reference, store))?
                    }
                    Source::File(FileSource {
                        name,
                        media_type,
                        data,
                    }) => {
                        let inline = InlineFile {
                            name: name.clone(),
                            media_type: media_type.clone(),
                            data: data.clone().into(),
                        };
                        let plan = plan_files(&[], &[inline], None).await?;
                        publish(plan, &dst, Some(&tag), &opts, progress, started)
                            .await
                            .map_err(|e| store_refusal(e, &cred, &dst.reference, store))?
                    }
                    Source::Store(_) => {
                        return Err(TransferError::permanent(
                            Reason::InvalidSpec,
                            "source and destination are both artifact stores; exactly one side must be the store",
                        ));
                    }
                };
                Ok(TransferOutcome {
                    direction: Direction::Push,
                    source_digest: summary.source_digest.clone(),
                    digest: summary.digest.clone(),
                    destination_ref: format!(
                        "{}/{}:{}",
                        cred.server, dst.reference.repository, tag
                    ),
                    artifact_type: listed.artifact_type,
                    summary,
                })
            }
            (_, Destination::Registry(_)) => Err(TransferError::permanent(
                Reason::InvalidSpec,
                "neither side is an artifact store; one side must be the store",
            )),
        }
    }

    /// The digest the destination currently holds under `destination_ref` (the
    /// `status.destinationRef` of the last success), with one HEAD request; `None` when the
    /// tag is gone. Used to re-check a Ready transfer without copying anything.
    pub async fn destination_digest(
        &self,
        req: &TransferRequest,
        destination_ref: &str,
    ) -> Result<Option<String>, TransferError> {
        let (client, reference) = match &req.destination {
            Destination::Store(store) => {
                let (endpoint, _) = self.store_endpoint(store).await?;
                (endpoint.client, endpoint.reference)
            }
            Destination::Registry(side) => {
                let endpoint = Self::registry_endpoint(side)?;
                let reference = ImageRef::parse(destination_ref)?;
                (endpoint.client, reference)
            }
        };
        let tag = reference
            .manifest_reference()
            .unwrap_or(req_version(req))
            .to_string();
        // The scope the copy used for the destination, so a still-valid token is reused.
        let scope = crate::engine::registry::Scope::push(&reference.repository);
        Ok(client
            .head_manifest(&reference.repository, &tag, &scope)
            .await?)
    }

    /// The store's type as ARM reports it now (`AzureContainerRegistry` is the supported
    /// one). Always asks ARM: the answer is what a store's Ready condition reports.
    pub async fn store_type(&self, store: &StoreConfig) -> Result<String, TransferError> {
        Ok(self.arm(store)?.store_type(&store.id).await?)
    }

    /// Sets an artifact manifest's state to `Uploaded` (after all its artifacts are pushed).
    pub async fn mark_uploaded(
        &self,
        store: &StoreConfig,
        manifest: &str,
    ) -> Result<(), TransferError> {
        self.arm(store)?
            .update_state(&store.id, manifest, "Uploaded", Duration::from_secs(600))
            .await?;
        // The manifest's credential and listing belong to its Uploading state: forget them.
        let key = CacheKey {
            store: identity_key(store),
            manifest: manifest.to_string(),
        };
        self.cache.forget(&key).await;
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.store_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, k), _| k != &key);
        Ok(())
    }
}

/// One key per store configuration and identity. `Debug` of a [`StoreConfig`] hides the
/// client secret; its fingerprint keeps two secrets apart.
fn identity_key(store: &StoreConfig) -> String {
    let fingerprint = match &store.identity {
        crate::aosm::Identity::ClientSecret { client_secret, .. } => {
            crate::engine::digest::sha256_digest(client_secret.expose().as_bytes())
        }
        _ => String::new(),
    };
    format!("{store:?}|{fingerprint}")
}

/// The version on the store side of a request.
fn req_version(req: &TransferRequest) -> &str {
    match (&req.source, &req.destination) {
        (_, Destination::Store(s)) | (Source::Store(s), _) => &s.version,
        _ => "latest",
    }
}

/// An engine failure on the store's registry, as a transfer error. A refusal (401, 403)
/// names the repository tried and where its name came from: the credential's
/// `repositories`, or, when they named none for the artifact, `<artifact>` (what `az aosm`
/// pushes to), so a store that keeps the artifact elsewhere is recognisable.
fn store_refusal(
    e: EngineError,
    cred: &AcrCredential,
    reference: &ImageRef,
    store: &StoreArtifact,
) -> TransferError {
    let refused = matches!(
        e,
        EngineError::Unauthorized { .. } | EngineError::Forbidden { .. }
    );
    let mut err = TransferError::from(e);
    if refused {
        let choice = cred.repository_for(&store.manifest, &store.artifact);
        let origin = if choice.from_credential {
            "named by the listCredential answer's repositories".to_string()
        } else {
            format!(
                "tried because the listCredential answer's repositories ({}) name none for artifact {}",
                shown_repositories(&cred.repositories),
                store.artifact
            )
        };
        err.message = format!(
            "{} (repository {} on {}, {origin}; check that manifest {} lists the artifact)",
            err.message, reference.repository, cred.server, store.manifest
        );
    }
    err
}

/// The credential's `repositories` for a message: at most 5 entries, quoted.
fn shown_repositories(repositories: &[String]) -> String {
    let mut shown: Vec<String> = repositories
        .iter()
        .take(5)
        .map(|r| format!("{r:?}"))
        .collect();
    if repositories.len() > 5 {
        shown.push(format!("and {} more", repositories.len() - 5));
    }
    format!("[{}]", shown.join(", "))
}

/// The source must fit the artifact: Helm chart name and version, and the listed type.
/// A type this client does not know (one a later api-version adds) is not held against
/// the source: the registry decides.
fn check_source_fits(
    source: &Source,
    store: &StoreArtifact,
    listed: &ManifestArtifact,
) -> Result<(), TransferError> {
    if let Source::HelmRepository(h) = source
        && (h.chart != store.artifact || h.version != store.version)
    {
        return Err(TransferError::permanent(
            Reason::ChartNameMismatch,
            format!(
                "chart {}:{} must have the artifact's name and version {}:{} (AOSM finds charts by repository and tag)",
                h.chart, h.version, store.artifact, store.version
            ),
        ));
    }
    let known = |t: &str| KNOWN_ARTIFACT_TYPES.contains(&t);
    let t = listed.artifact_type.as_str();
    let fits = !known(t)
        || match source {
            Source::Registry(_) | Source::HelmRepository(_) => {
                matches!(t, "OCIArtifact" | "ImageFile" | "Unknown")
            }
            Source::File(_) => matches!(t, "ArmTemplate" | "OCIArtifact" | "Unknown"),
            Source::Store(_) => true,
        };
    if !fits {
        return Err(TransferError::permanent(
            Reason::ArtifactNotInManifest,
            format!(
                "artifact {}:{} is listed as {}, which this source cannot provide",
                store.artifact, store.version, listed.artifact_type
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.0.0", "0.1.10", "10.20.30"] {
            assert!(is_valid_version(ok), "{ok}");
        }
        for bad in ["1.0", "v1.0.0", "1.0.0-rc1", "1..0", "1.0.0.0", ""] {
            assert!(!is_valid_version(bad), "{bad}");
        }
    }
}
