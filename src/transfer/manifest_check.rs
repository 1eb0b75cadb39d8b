//! Is the artifact listed in its AOSM artifact manifest, and does the source fit it?
//! Manifests read from ARM are kept for a while ([`MANIFEST_TTL`], at most
//! [`crate::limits::MAX_CACHED_MANIFESTS`]), one read at a time per manifest; a miss always
//! reads the manifest again, so a newly added artifact is never refused because of the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::arm_clients::ArmClients;
use super::credential_cache::CacheKey;
use super::error::{Reason, TransferError};
use super::request::{Source, StoreSide};
use crate::aosm::{ArtifactManifest, ManifestArtifact};
use crate::api::Direction;
use crate::slots::SlotMap;

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
pub const MANIFEST_TTL: Duration = Duration::from_secs(300);

/// Artifacts of a manifest named in an `ArtifactNotInManifest` message (the rest are
/// counted).
const LISTED_IN_MESSAGE: usize = 20;

/// `1.0.0`: three dot-separated numbers, as ACR tags for AOSM must be.
pub fn is_valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks artifacts against their manifests, keeping the manifests ARM sent for a while.
#[derive(Debug)]
pub struct ManifestCheck {
    manifests: SlotMap<CacheKey, (Instant, Arc<ArtifactManifest>)>,
}

impl Default for ManifestCheck {
    fn default() -> Self {
        Self {
            manifests: SlotMap::new(crate::limits::MAX_CACHED_MANIFESTS),
        }
    }
}

impl ManifestCheck {
    /// Checks the artifact against its manifest and returns its listed entry. A push
    /// needs a `1.0.0`-style version (Microsoft's rule for ACR-backed stores); a pull
    /// takes the version as the manifest lists it (the official example lists `v1`).
    pub async fn check(
        &self,
        arm: &ArmClients,
        a: &StoreSide,
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
        arm.check_store_type(&a.store).await?;
        let find = |m: &ArtifactManifest| {
            m.artifacts
                .iter()
                .find(|x| {
                    x.artifact_name.eq_ignore_ascii_case(&a.artifact)
                        && x.artifact_version == a.version
                })
                .cloned()
        };
        let slot = self.manifests.slot(&CacheKey::of(a));
        let mut cached = slot.lock().await;
        if let Some((read_at, m)) = cached.as_ref()
            && read_at.elapsed() < MANIFEST_TTL
            && let Some(found) = find(m)
        {
            return Ok(found);
        }
        let manifest = Arc::new(
            arm.client(&a.store)?
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

    /// Forgets the manifest of `key` (its state changed).
    pub fn forget(&self, key: &CacheKey) {
        self.manifests.remove(key);
    }
}

/// The source must fit the artifact: Helm chart name and version, and the listed type.
/// A type this client does not know (one a later api-version adds) is not held against
/// the source: the registry decides.
pub fn check_source_fits(
    source: &Source,
    store: &StoreSide,
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
            Source::File(_) | Source::LocalFiles(_) => {
                matches!(t, "ArmTemplate" | "OCIArtifact" | "Unknown")
            }
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
