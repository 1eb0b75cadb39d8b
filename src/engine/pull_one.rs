//! An artifact of one file read into memory (what a ConfigMap can hold): a manifest with
//! exactly one layer of at most a given size, its bytes checked against the layer's
//! digest. Named like [`super::pull_files`] names files: the layer's
//! `org.opencontainers.image.title`, or `<name>-<version>.tgz` for a Helm chart.
//!
//! Nothing is fetched beyond the manifest when the caller already holds its digest, and
//! the layer's descriptor is checked against the limit before any of its bytes are read.

use futures_util::StreamExt as _;

use super::blob::BlobSource;
use super::copy::Endpoint;
use super::digest::{Hasher, quote_untrusted};
use super::error::{EngineError, Result};
use super::media::{is_index, links};
use super::pull_files::{HELM_CONFIG, Layers, TITLE_ANNOTATION, helm_archive_name};

/// The one file of an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneFile {
    /// The layer's digest.
    pub layer_digest: String,
    /// The layer's media type.
    pub media_type: String,
    /// Its title (or the Helm archive name); `None` when the layer has neither.
    pub name: Option<String>,
    /// Its bytes (digest-checked).
    pub data: Vec<u8>,
}

/// What [`read_one_file`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRead {
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The file; `None` when the digest is the one the caller holds (nothing else was
    /// fetched).
    pub file: Option<OneFile>,
}

/// Reads the artifact `src` names as one file of at most `max_bytes`, unless its manifest
/// digest is `known` (then only the manifest is fetched).
pub async fn read_one_file(
    src: &Endpoint,
    max_bytes: u64,
    known: Option<&str>,
) -> Result<FileRead> {
    let reference = &src.reference;
    let tag_or_digest = reference
        .manifest_reference()
        .unwrap_or("latest")
        .to_string();
    let manifest = src
        .client
        .get_manifest(&reference.repository, &tag_or_digest)
        .await?;
    if known == Some(manifest.digest.as_str()) {
        return Ok(FileRead {
            digest: manifest.digest,
            media_type: manifest.media_type,
            file: None,
        });
    }
    let not_one = |problem: String| EngineError::NotOneFile {
        reference: reference.to_string(),
        problem,
    };
    if is_index(&manifest.media_type) {
        return Err(not_one(format!(
            "it is an index ({}), not a single-layer artifact",
            manifest.media_type
        )));
    }
    let protocol = |reason: String| EngineError::Protocol {
        host: src.client.host().to_string(),
        action: format!("GET manifest {reference}"),
        reason,
    };
    links(&manifest.bytes).map_err(protocol)?;
    let parsed: Layers = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| protocol(format!("manifest is not valid JSON: {e}")))?;
    let [layer] = parsed.layers.as_slice() else {
        return Err(not_one(format!(
            "it has {} layers, and one file is one layer; pull it into a directory instead",
            parsed.layers.len()
        )));
    };
    if layer.size > max_bytes {
        return Err(not_one(format!(
            "its layer is {} bytes, more than the {max_bytes} allowed here",
            layer.size
        )));
    }
    let name = match (layer.annotations.get(TITLE_ANNOTATION), &parsed.config) {
        (Some(title), _) => Some(title.clone()),
        (None, Some(config)) if config.media_type == HELM_CONFIG => {
            Some(helm_archive_name(src, config).await?)
        }
        (None, _) => None,
    };
    let source = BlobSource::Registry {
        client: src.client.clone(),
        repository: reference.repository.clone(),
    };
    let mut hasher = Hasher::for_digest(&layer.digest)
        .map_err(|e| protocol(format!("layer {}: {e}", quote_untrusted(&layer.digest, 80))))?;
    let mut stream = source.open(&layer.digest, 0, layer.size).await?;
    // The size was checked against `max_bytes`: a body longer than stated is refused on the
    // way, so memory never holds more than the limit.
    let mut data = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (data.len() + chunk.len()) as u64 > layer.size {
            return Err(protocol(format!(
                "blob {} is longer than its descriptor's {} bytes",
                layer.digest, layer.size
            )));
        }
        hasher.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    let actual = hasher.digest();
    if data.len() as u64 != layer.size || actual != layer.digest {
        return Err(EngineError::DigestMismatch {
            what: format!("layer of {} bytes (descriptor: {})", data.len(), layer.size),
            location: format!("{}/{}", src.client.host(), reference.repository),
            expected: layer.digest.clone(),
            actual,
        });
    }
    Ok(FileRead {
        digest: manifest.digest,
        media_type: manifest.media_type,
        file: Some(OneFile {
            layer_digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            name,
            data,
        }),
    })
}
