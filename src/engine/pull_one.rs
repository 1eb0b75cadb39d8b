//! An artifact of one file read into memory (what a ConfigMap can hold): a manifest with
//! exactly one layer of at most a given size, its bytes checked against the layer's
//! digest. Named like [`super::pull_files`] names files: the layer's
//! `org.opencontainers.image.title`, or `<name>-<version>.tgz` for a Helm chart.
//!
//! Nothing is fetched beyond the manifest when the caller already holds its digest, and
//! the layer's descriptor is checked against the limit before any of its bytes are read.

use super::copy::Endpoint;
use super::error::{EngineError, Result};
use super::media::is_index;
use super::pull_files::{
    HELM_CONFIG, TITLE_ANNOTATION, fetch_manifest, helm_archive_name, parse_layers, stream_layer,
};

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
    let manifest = fetch_manifest(src).await?;
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
    let parsed = parse_layers(src, &manifest)?;
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
    // The size was checked against `max_bytes`, and a body longer than stated is refused
    // on the way: memory never holds more than the limit.
    let mut data = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
    stream_layer(src, layer, |chunk| {
        data.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
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
