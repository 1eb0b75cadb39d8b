//! The copy graph: walk a source manifest tree, then write it to the destination in
//! dependency order — blobs, child manifests, the root, and only then the tag.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::blob::{self, BlobOutcome, BlobSource};
use super::error::{EngineError, Result};
use super::media::{self, Descriptor};
use super::platform::{PlatformFilter, filter_index};
use super::progress::Progress;
use super::reference::ImageRef;
use super::referrer_copy::{ReferrerSelection, copy_referrers};
use super::registry::{RawManifest, RegistryClient, Scope, human_bytes};
use crate::limits::{
    MANIFEST_FETCH_CONCURRENCY, MAX_BLOBS_PER_TRANSFER, MAX_INDEX_DEPTH, MAX_MANIFEST_BYTES,
    MAX_MANIFESTS_PER_TRANSFER, MAX_METADATA_BYTES_PER_TRANSFER,
};

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
    /// Also copy the artifact's referrers (signatures, SBOMs), recursively; `None` =
    /// only the artifact.
    pub referrers: Option<ReferrerSelection>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            chunk_size: None,
            platforms: Vec::new(),
            referrers: None,
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
    /// Referrers written to the destination (with `referrers` asked for).
    pub referrers_copied: usize,
    /// Referrers the destination already held.
    pub referrers_skipped: usize,
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

/// Copies `src` to `dst`: the whole manifest tree, or the platforms asked for, and with
/// [`TransferOptions::referrers`] its referrers, before the tag is written.
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
    let Some(selection) = &opts.referrers else {
        return publish(plan, dst, tag.as_deref(), opts, progress, started).await;
    };
    // The artifact by digest, its referrers, and only then the tag: whoever resolves
    // the tag finds the signatures there already.
    let subjects = referrer_subjects(&plan);
    let root = plan.root.clone();
    let mut summary = publish(plan, dst, None, opts, progress, started).await?;
    let counts = copy_referrers(src, dst, &subjects, selection, opts, progress).await?;
    summary.referrers_copied = counts.copied;
    summary.referrers_skipped = counts.skipped;
    if let Some(tag) = tag {
        let repo = &dst.reference.repository;
        if dst
            .client
            .head_manifest(repo, &tag, &Scope::push(repo))
            .await?
            .as_deref()
            != Some(root.digest.as_str())
        {
            dst.client.put_manifest(repo, &tag, &root).await?;
        }
        summary.reference = format!("{}/{repo}:{tag}", dst.client.host());
        progress.manifest_pushed(&summary.reference);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The manifests of a plan that reach the destination byte-exact, whose referrers come
/// along: every child, and the root unless a platform filter rewrote it (the source's
/// referrers name the source's index, which the destination does not hold).
fn referrer_subjects(plan: &Plan) -> Vec<String> {
    let mut subjects: Vec<String> = plan.children.iter().map(|c| c.digest.clone()).collect();
    if plan.root.digest == plan.source_digest {
        subjects.insert(0, plan.root.digest.clone());
    }
    subjects
}

/// What the source may make one transfer hold while it plans (see `crate::limits`).
struct Budget<'a> {
    host: &'a str,
    /// Manifests read (root, indexes, children).
    manifests: usize,
    /// Their bytes.
    bytes: usize,
}

impl Budget<'_> {
    fn refuse(&self, what: String, problem: String) -> EngineError {
        EngineError::LimitExceeded {
            host: self.host.to_string(),
            what,
            problem,
            hint: "one transfer holds bounded metadata whatever the source sends; copy fewer platforms with --platform, or split the artifact; nothing was tagged".into(),
        }
    }

    /// Admits the children `new` of `index` (not yet fetched) against the manifest count
    /// and metadata byte budgets, from their descriptors' sizes.
    fn admit(&mut self, index: &str, new: &[Descriptor]) -> Result<()> {
        let count = self.manifests.saturating_add(new.len());
        if count > MAX_MANIFESTS_PER_TRANSFER {
            return Err(self.refuse(
                format!("index {index}"),
                format!(
                    "it lists {} manifests, which makes {count}, more than the {MAX_MANIFESTS_PER_TRANSFER} one transfer may copy (MAX_MANIFESTS_PER_TRANSFER)",
                    new.len()
                ),
            ));
        }
        let mut bytes = self.bytes;
        for (i, child) in new.iter().enumerate() {
            if child.size > MAX_MANIFEST_BYTES as u64 {
                return Err(self.refuse(
                    format!("index {index}"),
                    format!(
                        "its child manifest {i} ({}) states {} bytes, more than {} (MAX_MANIFEST_BYTES)",
                        child.digest,
                        child.size,
                        human_bytes(MAX_MANIFEST_BYTES as u64)
                    ),
                ));
            }
            bytes = bytes.saturating_add(usize::try_from(child.size).unwrap_or(usize::MAX));
        }
        if bytes > MAX_METADATA_BYTES_PER_TRANSFER {
            return Err(self.refuse(
                format!("index {index}"),
                format!(
                    "its child manifests would bring the manifests of this transfer to {bytes} bytes, more than {} (MAX_METADATA_BYTES_PER_TRANSFER)",
                    human_bytes(MAX_METADATA_BYTES_PER_TRANSFER as u64)
                ),
            ));
        }
        self.manifests = count;
        self.bytes = bytes;
        Ok(())
    }
}

/// Reads the source tree into a [`Plan`], within the limits of `crate::limits`: every
/// manifest capped at [`MAX_MANIFEST_BYTES`] (a child at its descriptor's size), at most
/// [`MAX_MANIFESTS_PER_TRANSFER`] manifests and [`MAX_METADATA_BYTES_PER_TRANSFER`] bytes
/// of them, indexes nested at most [`MAX_INDEX_DEPTH`] deep, at most
/// [`MAX_BLOBS_PER_TRANSFER`] blobs. An index's children are checked against the
/// budgets from their descriptors before any is fetched, then fetched
/// [`MANIFEST_FETCH_CONCURRENCY`] at a time; each is verified against its digest before
/// its own links are read.
pub async fn plan_registry_copy(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &TransferOptions,
) -> Result<Plan> {
    let repo = &src.reference.repository;
    let host = src.client.host();
    let reference = src.reference.manifest_reference().unwrap_or("latest");
    let source_root = src.client.get_manifest(repo, reference).await?;
    let source_digest = source_root.digest.clone();
    let mut budget = Budget {
        host,
        manifests: 1,
        bytes: source_root.bytes.len(),
    };
    let mut seen_manifests = HashSet::from([source_digest.clone()]);
    let root = if !opts.platforms.is_empty() && media::is_index(&source_root.media_type) {
        filter_index(&source_root, &opts.platforms)?
    } else {
        source_root
    };
    seen_manifests.insert(root.digest.clone());

    let mut children = Vec::new();
    let mut blobs = Vec::new();
    let mut seen_blobs = HashSet::new();
    // Depth-first post-order: a manifest is listed after everything it references.
    // Entries: (manifest, expanded, nesting depth; the root is 0).
    let mut stack: Vec<(RawManifest, bool, usize)> = vec![(root.clone(), false, 0)];
    while let Some((manifest, expanded, depth)) = stack.pop() {
        if expanded {
            if manifest.digest != root.digest {
                children.push(manifest);
            }
            continue;
        }
        let links = media::links(&manifest.bytes).map_err(|reason| EngineError::Protocol {
            host: host.to_string(),
            action: format!("read manifest {}", manifest.digest),
            reason: format!("{reason}; the source's manifest is unusable, nothing was copied"),
        })?;
        for b in links.blobs {
            if seen_blobs.insert(b.digest.clone()) {
                blobs.push(b);
                if blobs.len() > MAX_BLOBS_PER_TRANSFER {
                    return Err(budget.refuse(
                        format!("manifest {}", manifest.digest),
                        format!(
                            "the artifact references more than {MAX_BLOBS_PER_TRANSFER} blobs (MAX_BLOBS_PER_TRANSFER)"
                        ),
                    ));
                }
            }
        }
        if !links.manifests.is_empty() && depth + 1 > MAX_INDEX_DEPTH {
            return Err(budget.refuse(
                format!("index {}", manifest.digest),
                format!("indexes are nested more than {MAX_INDEX_DEPTH} deep (MAX_INDEX_DEPTH)"),
            ));
        }
        let new: Vec<Descriptor> = links
            .manifests
            .into_iter()
            .filter(|child| seen_manifests.insert(child.digest.clone()))
            .collect();
        budget.admit(&manifest.digest, &new)?;
        // Collected first: a lazy `map` closure in the stream trips the higher-ranked
        // `Send` check of the controller's futures.
        let fetches: Vec<_> = new
            .iter()
            .map(|child| {
                src.client
                    .get_manifest_sized(repo, &child.digest, Some(child.size))
            })
            .collect();
        let fetched: Vec<RawManifest> = futures_util::stream::iter(fetches)
            .buffered(MANIFEST_FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        stack.push((manifest, true, depth));
        for child in fetched.into_iter().rev() {
            stack.push((child, false, depth + 1));
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
    // Sizes come from the source: add without overflow (each is at most 2^63-1).
    let bytes_total: u64 = plan
        .blobs
        .iter()
        .fold(0u64, |sum, (b, _)| sum.saturating_add(b.size));
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
        referrers_copied: 0,
        referrers_skipped: 0,
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

    fn children(n: usize, size: u64) -> Vec<Descriptor> {
        (0..n)
            .map(|i| Descriptor {
                media_type: media::OCI_MANIFEST.into(),
                digest: crate::engine::digest::sha256_digest(&i.to_le_bytes()),
                size,
                platform: None,
            })
            .collect()
    }

    #[test]
    fn budget_admits_up_to_the_limits() {
        let mut b = Budget {
            host: "h",
            manifests: 1,
            bytes: 1000,
        };
        b.admit("sha256:x", &children(MAX_MANIFESTS_PER_TRANSFER - 1, 10))
            .unwrap();
        assert_eq!(b.manifests, MAX_MANIFESTS_PER_TRANSFER);
        let err = b
            .admit("sha256:x", &children(1, 10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAX_MANIFESTS_PER_TRANSFER"), "{err}");

        // The root's one byte, then seven maximal children: the eighth passes 32 MiB.
        let mut b = Budget {
            host: "h",
            manifests: 1,
            bytes: 1,
        };
        let max = MAX_MANIFEST_BYTES as u64;
        b.admit("sha256:x", &children(7, max)).unwrap();
        let err = b
            .admit("sha256:x", &children(1, max))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAX_METADATA_BYTES_PER_TRANSFER"), "{err}");
        let err = b
            .admit("sha256:x", &children(1, max + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAX_MANIFEST_BYTES"), "{err}");
        let err = b
            .admit("sha256:x", &children(1, u64::MAX >> 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAX_MANIFEST_BYTES"), "{err}");
    }

    #[test]
    fn acr_gets_chunks_under_its_limit() {
        assert!(auto_chunk_size("contoso.azurecr.io") < 20_000_000);
        assert!(auto_chunk_size("Contoso.AzureCR.io:443") < 20_000_000);
        assert_eq!(auto_chunk_size("127.0.0.1:5000"), u64::MAX);
    }
}
