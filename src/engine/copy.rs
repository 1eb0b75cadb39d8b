//! The copy graph: walk a source manifest tree, then write it to the destination in
//! dependency order — blobs, child manifests, the root, and only then the tag.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::TryStreamExt as _;
use serde::Serialize;

use super::blob::{self, BlobOutcome, BlobSource};
use super::error::{EngineError, Result};
use super::media::{self, Descriptor};
use super::platform::{PlatformFilter, filter_index};
use super::progress::Progress;
use super::reference::ImageRef;
use super::registry::{RawManifest, RegistryClient, Scope};

/// Default largest request body: under ACR's ~20 MB limit for one upload request.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// Chunk size for a registry when none was asked for: ACR refuses request bodies above
/// ~20 MB, so its hosts get chunks; other registries take one streaming request per blob,
/// which is faster (fewer round trips and registry-side resumes).
pub fn auto_chunk_size(host: &str) -> u64 {
    let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let acr = [".azurecr.io", ".azurecr.cn", ".azurecr.us", ".azurecr.de"];
    if acr.iter().any(|suffix| name.ends_with(suffix)) {
        DEFAULT_CHUNK_SIZE
    } else {
        u64::MAX
    }
}

/// Tuning of a transfer.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// Blobs in flight at once.
    pub concurrency: usize,
    /// Largest upload request body in bytes. `None` = automatic: one streaming request per
    /// blob, except for registries known to cap request size (ACR), which get
    /// [`DEFAULT_CHUNK_SIZE`] chunks; a `413` answer also switches to chunks.
    pub chunk_size: Option<u64>,
    /// Platforms to keep from a multi-arch index (empty = copy everything, byte-exact).
    pub platforms: Vec<PlatformFilter>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            chunk_size: None,
            platforms: Vec::new(),
        }
    }
}

/// One side of a transfer: a registry client and a reference in it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Client for the registry.
    pub client: Arc<RegistryClient>,
    /// Reference (registry must be the client's host).
    pub reference: ImageRef,
}

/// What a finished transfer did.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransferSummary {
    /// Destination reference (with tag when tagged).
    pub reference: String,
    /// Digest of the root manifest at the destination.
    pub digest: String,
    /// Media type of the root manifest.
    pub media_type: String,
    /// Digest of the root manifest at the source (differs when a platform filter rewrote it).
    pub source_digest: String,
    /// Bytes uploaded to the destination.
    pub bytes: u64,
    /// Total size of all blobs of the artifact.
    pub bytes_total: u64,
    /// Blobs uploaded.
    pub blobs_copied: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Everything to write for one artifact, in no particular order yet.
pub struct Plan {
    /// Blobs and where their bytes come from.
    pub blobs: Vec<(Descriptor, BlobSource)>,
    /// Child manifests, children before parents (pushed by digest).
    pub children: Vec<RawManifest>,
    /// Root manifest (pushed last, under the tag).
    pub root: RawManifest,
    /// Digest of the root at the source.
    pub source_digest: String,
    /// Repository of the same registry to mount blobs from.
    pub mount_from: Option<String>,
    /// Label for error messages about the source.
    pub source_label: String,
}

/// Copies `src` to `dst`: the whole manifest tree, or the platforms asked for.
pub async fn copy(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &TransferOptions,
    progress: &dyn Progress,
) -> Result<TransferSummary> {
    let started = Instant::now();
    let plan = plan_registry_copy(src, dst, opts).await?;
    let tag = dst.reference.tag.clone().or_else(|| {
        if dst.reference.digest.is_none() {
            src.reference.tag.clone()
        } else {
            None
        }
    });
    publish(plan, dst, tag.as_deref(), opts, progress, started).await
}

/// Reads the source tree into a [`Plan`].
pub async fn plan_registry_copy(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &TransferOptions,
) -> Result<Plan> {
    let repo = &src.reference.repository;
    let reference = src.reference.manifest_reference().unwrap_or("latest");
    let source_root = src.client.get_manifest(repo, reference).await?;
    let source_digest = source_root.digest.clone();
    let root = if !opts.platforms.is_empty() && media::is_index(&source_root.media_type) {
        filter_index(&source_root, &opts.platforms)?
    } else {
        source_root
    };

    let mut children = Vec::new();
    let mut blobs = Vec::new();
    let mut seen_blobs = HashSet::new();
    let mut seen_manifests = HashSet::new();
    // Depth-first post-order: a manifest is listed after everything it references.
    let mut stack: Vec<(RawManifest, bool)> = vec![(root.clone(), false)];
    while let Some((manifest, expanded)) = stack.pop() {
        if expanded {
            if manifest.digest != root.digest {
                children.push(manifest);
            }
            continue;
        }
        let links = media::links(&manifest.bytes).map_err(|reason| EngineError::Protocol {
            host: src.client.host().to_string(),
            action: format!("read manifest {}", manifest.digest),
            reason,
        })?;
        for b in links.blobs {
            if seen_blobs.insert(b.digest.clone()) {
                blobs.push(b);
            }
        }
        let mut fetched = Vec::new();
        for child in &links.manifests {
            if seen_manifests.insert(child.digest.clone()) {
                fetched.push(src.client.get_manifest(repo, &child.digest));
            }
        }
        let fetched: Vec<RawManifest> = futures_util::future::try_join_all(fetched).await?;
        stack.push((manifest, true));
        for child in fetched.into_iter().rev() {
            stack.push((child, false));
        }
    }

    let same_registry = src.client.host() == dst.client.host();
    let source = BlobSource::Registry {
        client: src.client.clone(),
        repository: repo.clone(),
    };
    Ok(Plan {
        blobs: blobs.into_iter().map(|b| (b, source.clone())).collect(),
        children,
        root,
        source_digest,
        mount_from: (same_registry && *repo != dst.reference.repository).then(|| repo.clone()),
        source_label: src.reference.to_string(),
    })
}

/// Writes a plan to `dst`: blobs (concurrently), child manifests, the root, then the tag.
pub async fn publish(
    plan: Plan,
    dst: &Endpoint,
    tag: Option<&str>,
    opts: &TransferOptions,
    progress: &dyn Progress,
    started: Instant,
) -> Result<TransferSummary> {
    let repo = &dst.reference.repository;
    if let Some(want) = &dst.reference.digest
        && *want != plan.root.digest
    {
        return Err(EngineError::InvalidInput(format!(
            "destination digest {want} does not match the content's digest {}; drop the @digest from the destination",
            plan.root.digest
        )));
    }
    let target = tag
        .map(str::to_string)
        .unwrap_or_else(|| plan.root.digest.clone());
    let shown = match tag {
        Some(t) => format!("{}/{repo}:{t}", dst.client.host()),
        None => format!("{}/{repo}@{}", dst.client.host(), plan.root.digest),
    };
    let bytes_total: u64 = plan.blobs.iter().map(|(b, _)| b.size).sum();
    progress.plan(bytes_total, plan.blobs.len());

    let summary = |bytes, copied, skipped, mounted| TransferSummary {
        reference: shown.clone(),
        digest: plan.root.digest.clone(),
        media_type: plan.root.media_type.clone(),
        source_digest: plan.source_digest.clone(),
        bytes,
        bytes_total,
        blobs_copied: copied,
        blobs_skipped: skipped,
        blobs_mounted: mounted,
        seconds: started.elapsed().as_secs_f64(),
    };

    // Destination already complete: the registry only tags manifests whose content it holds.
    if dst
        .client
        .head_manifest(repo, &target, &Scope::push(repo))
        .await?
        == Some(plan.root.digest.clone())
    {
        for (b, _) in &plan.blobs {
            progress.blob_done(b, BlobOutcome::Skipped);
        }
        return Ok(summary(0, 0, plan.blobs.len(), 0));
    }

    let bytes = AtomicU64::new(0);
    let counts = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let on_bytes = |n: u64| {
        bytes.fetch_add(n, Ordering::Relaxed);
        progress.bytes(n);
    };
    let scope = Scope::push(repo);
    futures_util::stream::iter(plan.blobs.iter().map(Ok::<_, EngineError>))
        .try_for_each_concurrent(opts.concurrency.max(1), |(blob, source)| {
            let (scope, on_bytes, counts) = (&scope, &on_bytes, &counts);
            let mount_from = plan.mount_from.as_deref();
            let source_label = plan.source_label.as_str();
            async move {
                let outcome = if dst.client.blob_exists(repo, &blob.digest, scope).await? {
                    BlobOutcome::Skipped
                } else {
                    blob::upload(blob::Upload {
                        dst: &dst.client,
                        repository: repo,
                        blob,
                        source,
                        source_label,
                        mount_from,
                        chunk_size: opts
                            .chunk_size
                            .unwrap_or_else(|| auto_chunk_size(dst.client.host())),
                        on_bytes,
                    })
                    .await?
                };
                let i = match outcome {
                    BlobOutcome::Copied => 0,
                    BlobOutcome::Skipped => 1,
                    BlobOutcome::Mounted => 2,
                };
                counts[i].fetch_add(1, Ordering::Relaxed);
                progress.blob_done(blob, outcome);
                Ok(())
            }
        })
        .await?;

    for child in &plan.children {
        dst.client.put_manifest(repo, &child.digest, child).await?;
        progress.manifest_pushed(&child.digest);
    }
    dst.client.put_manifest(repo, &target, &plan.root).await?;
    progress.manifest_pushed(&shown);
    let [c, s, m] = counts.map(AtomicUsize::into_inner);
    Ok(summary(bytes.into_inner(), c, s, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_gets_chunks_under_its_limit() {
        assert!(auto_chunk_size("contoso.azurecr.io") < 20_000_000);
        assert!(auto_chunk_size("Contoso.AzureCR.io:443") < 20_000_000);
        assert_eq!(auto_chunk_size("127.0.0.1:5000"), u64::MAX);
    }
}
