//! Runs a resolved [`TransferRequest`]: checks the artifact against the AOSM manifest,
//! gets (cached, shared) scoped credentials, and drives the engine.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::arm_clients::ArmClients;
use super::credential_cache::{CacheKey, CredentialCache, StoreCredentials};
use super::error::{Reason, TransferError};
use super::manifest_check::{ManifestCheck, check_source_fits};
use super::request::{
    ConfigMapSide, Destination, FileSource, RegistrySide, Source, StoreConfig, StoreSide,
    TransferRequest,
};
use crate::aosm::{AcrCredential, ArmClient, ManifestArtifact};
pub use crate::api::Direction;
use crate::engine::copy::{
    DEFAULT_CHUNK_SIZE, Endpoint, TransferOptions, TransferSummary, publish,
};
use crate::engine::files::{InlineFile, plan_files};
use crate::engine::helm_repo::HelmRepository;
use crate::engine::pull_one::{OneFile, read_one_file};
use crate::engine::referrer_copy::ReferrerSelection;
use crate::engine::retry::RetryPolicy;
use crate::engine::{
    Credentials, EngineError, ImageRef, Progress, RegistryClient, RegistryOptions,
};
use crate::slots::Memo;

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
    /// With referrers asked for: how many the destination holds for the artifact now
    /// (copied or already there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers: Option<usize>,
    /// For a ConfigMap destination: the file read, to be written by the caller; `None`
    /// when the ConfigMap already holds the store's digest (or for other destinations).
    #[serde(skip)]
    pub file: Option<OneFile>,
}

impl TransferOutcome {
    /// The outcome of an engine copy or publish to `destination_ref` (registry or store
    /// destination); `referrers_asked` says whether the request copied referrers.
    fn of_copy(
        direction: Direction,
        destination_ref: String,
        listed: &ManifestArtifact,
        referrers_asked: bool,
        summary: TransferSummary,
    ) -> Self {
        TransferOutcome {
            direction,
            source_digest: summary.source_digest.clone(),
            digest: summary.digest.clone(),
            destination_ref,
            artifact_type: listed.artifact_type.clone(),
            referrers: referrers_asked
                .then_some(summary.referrers_copied + summary.referrers_skipped),
            summary,
            file: None,
        }
    }
}

/// Drives transfers: checks each against its manifest ([`ManifestCheck`]), gets scoped
/// credentials ([`CredentialCache`]) through the store's ARM client ([`ArmClients`]), and
/// runs the engine. Everything it keeps is shared by every transfer and bounded.
pub struct Executor {
    arm: ArmClients,
    manifests: ManifestCheck,
    cache: CredentialCache,
    /// Registry clients of store registries per (server, store and identity, manifest):
    /// their tokens outlive one transfer, so a re-check is one HEAD while the token is valid.
    store_clients: Memo<(String, CacheKey), RegistryClient>,
    retry: RetryPolicy,
    concurrency: usize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("arm", &self.arm)
            .field("manifests", &self.manifests)
            .field("store_clients", &self.store_clients)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// A new executor; `concurrency` blobs in flight per transfer.
    pub fn new(concurrency: usize) -> Result<Self, TransferError> {
        let retry = RetryPolicy::default();
        Ok(Self {
            arm: ArmClients::new(
                crate::http::http_client(false, None, None).map_err(EngineError::from)?,
                retry.clone(),
            ),
            manifests: ManifestCheck::default(),
            cache: CredentialCache::default(),
            store_clients: Memo::new(crate::limits::MAX_CACHED_STORE_CLIENTS),
            retry,
            concurrency: concurrency.max(1),
        })
    }

    /// Serves stores whose identity is a ServiceAccount of their own with `tokens` (the
    /// controller's TokenRequest client).
    pub fn with_service_account_tokens(
        mut self,
        tokens: Arc<dyn crate::aosm::ServiceAccountTokens>,
    ) -> Self {
        self.arm = self.arm.with_service_account_tokens(tokens);
        self
    }

    /// The ARM client for a store (one per store configuration and identity).
    pub fn arm(&self, store: &StoreConfig) -> Result<Arc<ArmClient>, TransferError> {
        self.arm.client(store)
    }

    async fn check_manifest(
        &self,
        a: &StoreSide,
        direction: Direction,
    ) -> Result<ManifestArtifact, TransferError> {
        self.manifests.check(&self.arm, a, direction).await
    }

    /// A scoped credential for the artifact (shared, cached), and its repository.
    async fn store_endpoint(
        &self,
        a: &StoreSide,
    ) -> Result<(Endpoint, AcrCredential), TransferError> {
        let arm = self.arm(&a.store)?;
        let key = CacheKey::of(a);
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
            last_token: Mutex::new(Some(cred.token.expose().to_string())),
        };
        let options = RegistryOptions {
            credentials: Credentials::Dynamic(Arc::new(source)),
            retry: self.retry.clone(),
            ..Default::default()
        };
        let reference = ImageRef::parse(&format!("{}/{repo}:{}", cred.server, a.version))?;
        let client_key = (cred.server.clone(), key_for_clients);
        let client = self
            .store_clients
            .get_or_try_insert(&client_key, || RegistryClient::new(&cred.server, &options))?;
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

    /// Runs one transfer to completion: [`Self::check`], then [`Self::move_bytes`].
    pub async fn execute(
        &self,
        req: &TransferRequest,
        progress: &dyn Progress,
    ) -> Result<TransferOutcome, TransferError> {
        let listed = self.check(req).await?;
        self.move_bytes(req, &listed, progress).await
    }

    /// Checks a request against AOSM before any byte moves: exactly one side is a store,
    /// the store is ACR-backed, its manifest lists the artifact (a push also needs a
    /// `1.0.0`-style version), and the source fits the listed type. Returns the listed
    /// entry.
    pub async fn check(&self, req: &TransferRequest) -> Result<ManifestArtifact, TransferError> {
        match (&req.source, &req.destination) {
            (Source::Store(_), Destination::Store(_)) => Err(both_stores()),
            (Source::Store(store), Destination::Registry(_) | Destination::ConfigMap(_)) => {
                self.check_manifest(store, Direction::Pull).await
            }
            (source, Destination::Store(store)) => {
                let listed = self.check_manifest(store, Direction::Push).await?;
                check_source_fits(source, store, &listed)?;
                Ok(listed)
            }
            (_, Destination::Registry(_) | Destination::ConfigMap(_)) => Err(no_store()),
        }
    }

    /// Moves the bytes of a [`Self::check`]ed request (`listed` is what the check
    /// returned): scoped credentials, then the engine.
    pub async fn move_bytes(
        &self,
        req: &TransferRequest,
        listed: &ManifestArtifact,
        progress: &dyn Progress,
    ) -> Result<TransferOutcome, TransferError> {
        let started = Instant::now();
        let opts = TransferOptions {
            concurrency: self.concurrency,
            chunk_size: None,
            platforms: req.platforms.clone(),
            referrers: req.referrers.then(ReferrerSelection::default),
        };
        match (&req.source, &req.destination) {
            (Source::Store(_), Destination::Store(_)) => Err(both_stores()),
            (Source::Store(store), Destination::Registry(side)) => {
                let summary = self.pull_to_registry(store, side, &opts, progress).await?;
                Ok(TransferOutcome::of_copy(
                    Direction::Pull,
                    summary.reference.clone(),
                    listed,
                    req.referrers,
                    summary,
                ))
            }
            (Source::Store(store), Destination::ConfigMap(side)) => {
                self.pull_to_config_map(store, side, listed, started).await
            }
            (source, Destination::Store(store)) => {
                let (summary, destination_ref) = self
                    .push_to_store(source, store, opts, progress, started)
                    .await?;
                Ok(TransferOutcome::of_copy(
                    Direction::Push,
                    destination_ref,
                    listed,
                    req.referrers,
                    summary,
                ))
            }
            (_, Destination::Registry(_) | Destination::ConfigMap(_)) => Err(no_store()),
        }
    }

    /// A pull: the engine copies the artifact from the store's registry to `side`.
    async fn pull_to_registry(
        &self,
        store: &StoreSide,
        side: &RegistrySide,
        opts: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<TransferSummary, TransferError> {
        let (src, cred) = self.store_endpoint(store).await?;
        let dst = Self::registry_endpoint(side)?;
        crate::engine::copy(&src, &dst, opts, progress)
            .await
            .map_err(|e| store_refusal(e, &cred, &src.reference, store))
    }

    /// A pull into a ConfigMap: the artifact's one file read into memory (bounded), or
    /// nothing when the ConfigMap already holds the store's digest; the caller writes it.
    async fn pull_to_config_map(
        &self,
        store: &StoreSide,
        side: &ConfigMapSide,
        listed: &ManifestArtifact,
        started: Instant,
    ) -> Result<TransferOutcome, TransferError> {
        let (src, cred) = self.store_endpoint(store).await?;
        let read = read_one_file(
            &src,
            crate::limits::MAX_CONFIG_MAP_FILE_BYTES,
            side.held_digest.as_deref(),
        )
        .await
        .map_err(|e| store_refusal(e, &cred, &src.reference, store))?;
        let bytes = read.file.as_ref().map_or(0, |f| f.data.len() as u64);
        let summary = TransferSummary {
            reference: side.reference(),
            digest: read.digest.clone(),
            media_type: read.media_type,
            source_digest: read.digest.clone(),
            bytes,
            bytes_total: bytes,
            blobs_copied: usize::from(read.file.is_some()),
            blobs_skipped: usize::from(read.file.is_none()),
            blobs_mounted: 0,
            referrers_copied: 0,
            referrers_skipped: 0,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok(TransferOutcome {
            direction: Direction::Pull,
            source_digest: read.digest.clone(),
            digest: read.digest,
            destination_ref: side.reference(),
            artifact_type: listed.artifact_type.clone(),
            referrers: None,
            summary,
            file: read.file,
        })
    }

    /// A push: a registry artifact copied, or a Helm chart, an inline file or local files
    /// published, to the store's repository under the artifact's version. Returns the
    /// engine's summary and the destination reference (`<server>/<repository>:<version>`).
    async fn push_to_store(
        &self,
        source: &Source,
        store: &StoreSide,
        mut opts: TransferOptions,
        progress: &dyn Progress,
        started: Instant,
    ) -> Result<(TransferSummary, String), TransferError> {
        let (dst, cred) = self.store_endpoint(store).await?;
        // The store is an ACR: keep every request under its size limit.
        opts.chunk_size = Some(DEFAULT_CHUNK_SIZE);
        let tag = store.version.clone();
        let refused = |e| store_refusal(e, &cred, &dst.reference, store);
        let summary = match source {
            Source::Registry(side) => {
                let src = Self::registry_endpoint(side)?;
                crate::engine::copy(&src, &dst, &opts, progress)
                    .await
                    .map_err(refused)?
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
                    .map_err(refused)?
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
                    .map_err(refused)?
            }
            Source::LocalFiles(files) => {
                let plan = plan_files(files, &[], None).await?;
                publish(plan, &dst, Some(&tag), &opts, progress, started)
                    .await
                    .map_err(refused)?
            }
            Source::Store(_) => return Err(both_stores()),
        };
        let destination_ref = format!("{}/{}:{}", cred.server, dst.reference.repository, tag);
        Ok((summary, destination_ref))
    }

    /// The store's registry for `a` (checked against its manifest first, as a pull), with
    /// the scoped credential it got: what `store pull -o DIR` reads files from.
    pub async fn store_source(
        &self,
        a: &StoreSide,
    ) -> Result<(Endpoint, AcrCredential, ManifestArtifact), TransferError> {
        let listed = self.check_manifest(a, Direction::Pull).await?;
        let (endpoint, cred) = self.store_endpoint(a).await?;
        Ok((endpoint, cred, listed))
    }

    /// The digest the destination currently holds under `destination_ref` (the
    /// `status.destinationRef` of the last success), with one HEAD request; `None` when the
    /// tag is gone. Used to re-check a Ready transfer without copying anything. A
    /// ConfigMap counts as holding its digest only while the store still holds the same
    /// (one HEAD at the store): it follows the store, not the other way round.
    pub async fn destination_digest(
        &self,
        req: &TransferRequest,
        destination_ref: &str,
    ) -> Result<Option<String>, TransferError> {
        if let (Source::Store(store), Destination::ConfigMap(side)) =
            (&req.source, &req.destination)
        {
            let Some(held) = &side.held_digest else {
                return Ok(None);
            };
            let (endpoint, _) = self.store_endpoint(store).await?;
            let repository = &endpoint.reference.repository;
            let current = endpoint
                .client
                .head_manifest(
                    repository,
                    &store.version,
                    &crate::engine::registry::Scope::pull(repository),
                )
                .await?;
            return Ok(current.filter(|c| c == held));
        }
        let (client, reference) = match &req.destination {
            Destination::ConfigMap(_) => return Err(no_store()),
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
            store: store.clone(),
            manifest: manifest.to_string(),
        };
        self.cache.forget(&key).await;
        self.manifests.forget(&key);
        self.store_clients.remove_where(|(_, k)| k == &key);
        Ok(())
    }
}

fn both_stores() -> TransferError {
    TransferError::permanent(
        Reason::InvalidSpec,
        "source and destination are both artifact stores; exactly one side must be the store",
    )
}

fn no_store() -> TransferError {
    TransferError::permanent(
        Reason::InvalidSpec,
        "neither side is an artifact store; one side must be the store",
    )
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
    store: &StoreSide,
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
