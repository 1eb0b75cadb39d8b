//! What the ARM operations name and answer: store and manifest paths (every name one
//! percent-encoded segment), manifest entries read one by one, and the scoped registry
//! credential with the repository a transfer uses.

use crate::engine::Secret;
use crate::limits::{
    MAX_ARM_NAME_BYTES as MAX_NAME_BYTES, MAX_ARTIFACT_NAME_BYTES, MAX_ARTIFACT_VERSION_BYTES,
};

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
    pub(super) fn from_json(item: &serde_json::Value) -> Option<Self> {
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
