//! Copying the referrers of a copied artifact (signatures, SBOMs, attestations: the
//! manifests whose `subject` names it), as `oras cp -r` and `regctl image copy
//! --referrers` do.
//!
//! For each subject (the root, when it reached the destination byte-exact, and every
//! child manifest of an index) the source's referrers are listed
//! ([`RegistryClient::referrers`]: the referrers API, or the tag schema), the
//! destination's too, and each one the destination lacks is copied byte-exact into the
//! destination repository by digest, with its own tree (an index referrer's children,
//! blobs). Then the referrers of those referrers (a signature of an SBOM), breadth first,
//! at most [`MAX_REFERRER_DEPTH`] levels and [`MAX_REFERRERS_PER_TRANSFER`] manifests.
//!
//! Where the destination has no referrers API (it answered the listing with 404), the
//! referrers tag schema is kept up to date after the referrers are pushed: the index
//! tagged `<alg>-<hex>` gets a descriptor for each one copied, as the distribution spec
//! asks of clients. A destination with the API indexes `subject`s itself.
//!
//! Everything a source lists is checked: a listed manifest must name the subject it is
//! listed for, so a source cannot make us write unrelated content into the destination's
//! referrers.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use super::copy::{Endpoint, TransferOptions, plan_registry_copy, publish};
use super::digest::sha256_digest;
use super::error::{EngineError, Result};
use super::media::{self, OCI_INDEX};
use super::progress::Progress;
use super::registry::referrers::{Discovery, Referrer, referrers_tag};
use super::registry::{RawManifest, RegistryClient, Scope};
use crate::limits::{MAX_REFERRER_DEPTH, MAX_REFERRERS_PER_TRANSFER};

/// Which referrers a copy brings along.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferrerSelection {
    /// Only the direct referrers of this artifact type (their own referrers all come
    /// along, so a selected SBOM keeps its signature). `None` = every referrer.
    pub artifact_type: Option<String>,
}

/// What copying the referrers did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReferrerCounts {
    /// Referrers written to the destination.
    pub copied: usize,
    /// Referrers the destination already held.
    pub skipped: usize,
}

/// Copies the referrers of `subjects` (digests present at both `src` and `dst`, in
/// their repositories) from `src` to `dst`, recursively. Errors of the source, the
/// destination and the limits end the copy; the caller tags the artifact only after.
pub async fn copy_referrers(
    src: &Endpoint,
    dst: &Endpoint,
    subjects: &[String],
    selection: &ReferrerSelection,
    opts: &TransferOptions,
    progress: &dyn Progress,
) -> Result<ReferrerCounts> {
    let src_repo = &src.reference.repository;
    let dst_repo = &dst.reference.repository;
    // A referrer's tree is copied whole: a platform filter is for the artifact itself.
    let tree_opts = TransferOptions {
        platforms: Vec::new(),
        referrers: None,
        ..opts.clone()
    };
    let quiet = ManifestsOnly(progress);
    let mut counts = ReferrerCounts::default();
    let mut taken = 0usize;
    let mut seen: HashSet<String> = subjects.iter().cloned().collect();
    let mut queue: VecDeque<(String, usize)> = subjects.iter().map(|s| (s.clone(), 0)).collect();
    while let Some((subject, depth)) = queue.pop_front() {
        let filter = if depth == 0 {
            selection.artifact_type.as_deref()
        } else {
            None
        };
        let (found, _) = src.client.referrers(src_repo, &subject, filter).await?;
        if found.is_empty() {
            continue;
        }
        if depth == MAX_REFERRER_DEPTH {
            return Err(limit(
                src.client.host(),
                &subject,
                format!(
                    "referrers are chained more than {MAX_REFERRER_DEPTH} deep (MAX_REFERRER_DEPTH)"
                ),
            ));
        }
        let (held, discovery) = dst.client.referrers(dst_repo, &subject, None).await?;
        let held_digests: HashSet<&str> = held.iter().map(|r| r.digest.as_str()).collect();
        let mut added = Vec::new();
        for listed in found {
            if !seen.insert(listed.digest.clone()) {
                continue;
            }
            taken += 1;
            if taken > MAX_REFERRERS_PER_TRANSFER {
                return Err(limit(
                    src.client.host(),
                    &subject,
                    format!(
                        "the artifact has more than {MAX_REFERRERS_PER_TRANSFER} referrers (MAX_REFERRERS_PER_TRANSFER)"
                    ),
                ));
            }
            queue.push_back((listed.digest.clone(), depth + 1));
            if held_digests.contains(listed.digest.as_str()) {
                counts.skipped += 1;
                continue;
            }
            if dst
                .client
                .head_manifest(dst_repo, &listed.digest, &Scope::push(dst_repo))
                .await?
                .is_some()
            {
                // There, only missing from the destination's listing (e.g. pushed without
                // updating the referrers tag): its descriptor is still owed to the listing.
                let manifest = src.client.get_manifest(src_repo, &listed.digest).await?;
                added.push(descriptor_for(&src.client, &manifest, &subject)?);
                counts.skipped += 1;
                continue;
            }
            let src_at = Endpoint {
                client: src.client.clone(),
                reference: src.reference.with_digest(&listed.digest),
            };
            let dst_at = Endpoint {
                client: dst.client.clone(),
                reference: dst.reference.with_digest(&listed.digest),
            };
            let plan = plan_registry_copy(&src_at, &dst_at, &tree_opts).await?;
            added.push(descriptor_for(&src.client, &plan.root, &subject)?);
            publish(plan, &dst_at, None, &tree_opts, &quiet, Instant::now()).await?;
            counts.copied += 1;
        }
        if discovery == Discovery::TagSchema && !added.is_empty() {
            update_referrers_tag(&dst.client, dst_repo, &subject, held, added).await?;
        }
    }
    Ok(counts)
}

/// The descriptor of referrer `manifest` for a referrers index, after checking that it
/// names `subject`.
fn descriptor_for(
    source: &RegistryClient,
    manifest: &RawManifest,
    subject: &str,
) -> Result<Referrer> {
    let protocol = |reason: String| EngineError::Protocol {
        host: source.host().to_string(),
        action: format!("read referrer {} of {subject}", manifest.digest),
        reason,
    };
    let facts = media::referrer_facts(&manifest.bytes).map_err(&protocol)?;
    if facts.subject.as_deref() != Some(subject) {
        return Err(protocol(format!(
            "the source lists it as a referrer, but its subject is {}; nothing of it was copied",
            facts.subject.as_deref().unwrap_or("missing")
        )));
    }
    Ok(Referrer {
        media_type: manifest.media_type.clone(),
        digest: manifest.digest.clone(),
        size: manifest.bytes.len() as u64,
        artifact_type: facts.artifact_type,
        annotations: facts.annotations,
    })
}

/// Adds `added` to the referrers tag index of `subject` at a registry without the
/// referrers API (distribution spec 1.1, "Pushing Manifests with Subject"): the index it
/// holds (`held`), with the new descriptors after it.
async fn update_referrers_tag(
    client: &RegistryClient,
    repo: &str,
    subject: &str,
    held: Vec<Referrer>,
    added: Vec<Referrer>,
) -> Result<()> {
    let mut manifests = held;
    for r in added {
        if !manifests.iter().any(|h| h.digest == r.digest) {
            manifests.push(r);
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| {
        EngineError::InvalidInput(format!(
            "cannot write the referrers index of {subject}: {e}"
        ))
    })?;
    let manifest = RawManifest {
        digest: sha256_digest(&bytes),
        bytes: bytes.into(),
        media_type: OCI_INDEX.to_string(),
    };
    client
        .put_manifest(repo, &referrers_tag(subject), &manifest)
        .await
}

fn limit(host: &str, subject: &str, problem: String) -> EngineError {
    EngineError::LimitExceeded {
        host: host.to_string(),
        what: format!("the referrers of {subject}"),
        problem,
        hint: "copy them with a narrower --artifact-type, or without referrers; the artifact was not tagged".into(),
    }
}

/// Passes on only that a manifest was written: a referrer's blobs are not part of the
/// artifact's plan the progress was sized for.
struct ManifestsOnly<'a>(&'a dyn Progress);

impl Progress for ManifestsOnly<'_> {
    fn manifest_pushed(&self, reference: &str) {
        self.0.manifest_pushed(reference);
    }
}
