//! Media types and the parts of manifests the copy graph needs.

use serde::Deserialize;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
/// OCI image index.
pub const OCI_INDEX: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;
/// Docker manifest list.
pub const DOCKER_LIST: &str = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;
/// OCI artifact manifest (image-spec 1.1 release candidates; still found in registries).
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// Empty JSON config of OCI 1.1 artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Default layer media type for pushed files (as `oras push`).
pub const OCI_LAYER_TAR: &str = oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE;
/// Helm chart config.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// Helm chart content layer.
pub const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// `Accept` header for manifest requests: every manifest kind we copy.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

/// A content descriptor (blob or child manifest).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the target.
    pub digest: String,
    /// Size of the target in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// Platform of an index entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant.
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The fields of any manifest kind that name other content.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestLinks {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    blobs: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// What a manifest references.
#[derive(Debug, Default)]
pub struct Links {
    /// Child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// Blobs (config first, then layers).
    pub blobs: Vec<Descriptor>,
}

/// True for index / manifest-list media types.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Parses the references out of a manifest's bytes.
pub fn links(bytes: &[u8]) -> Result<Links, String> {
    let m: ManifestLinks =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let mut blobs = Vec::new();
    blobs.extend(m.config);
    blobs.extend(m.layers);
    blobs.extend(m.blobs);
    Ok(Links {
        manifests: m.manifests.unwrap_or_default(),
        blobs,
    })
}

/// Media type of a manifest: the registry's `Content-Type` when it is a manifest type,
/// else the `mediaType` field, else inferred (Helm charts carry no `mediaType`).
pub fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> String {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| {
            c.starts_with("application/vnd.") && (c.contains("manifest") || c.contains("index"))
        });
    if let Some(ct) = ct {
        return ct.to_string();
    }
    let parsed: ManifestLinks = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(mt) = parsed.media_type {
        return mt;
    }
    if parsed.manifests.is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_manifest_without_media_type_is_oci() {
        let helm = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:aa","size":1},"layers":[]}"#;
        assert_eq!(manifest_media_type(helm, None), OCI_MANIFEST);
        assert_eq!(
            manifest_media_type(helm, Some("application/json")),
            OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type(helm, Some(&format!("{OCI_MANIFEST}; charset=utf-8"))),
            OCI_MANIFEST
        );
        let l = links(helm).unwrap();
        assert_eq!(l.blobs.len(), 1);
        assert!(l.manifests.is_empty());
    }

    #[test]
    fn index_links() {
        let idx = br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:bb","size":3,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}"#;
        assert_eq!(manifest_media_type(idx, None), OCI_INDEX);
        let l = links(idx).unwrap();
        assert_eq!(
            l.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(links(b"nope").is_err());
    }
}
