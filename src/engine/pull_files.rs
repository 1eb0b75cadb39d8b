//! `oras pull`: an artifact's layers written as files in a directory, one file per layer
//! named by its `org.opencontainers.image.title` annotation, byte-exact and digest-checked;
//! a Helm chart's archive as `helm pull` writes it (`<name>-<version>.tgz`, from the chart's
//! config).
//!
//! What a registry sends is hostile input: every title is checked before anything is
//! written — not absolute, no `.` or `..` component, no NUL, at most
//! [`MAX_TITLE_BYTES`], no two layers with one name — and no file is written outside the
//! directory: a path that would pass through a symlink is refused (as oras refuses it). An
//! existing file is not replaced without `overwrite`. Each file is downloaded to a
//! temporary file beside it, checked against its digest and size, and only then renamed to
//! its name, so a partial download never stands under the final name. Memory stays bounded
//! whatever the size: bytes stream from the registry to disk.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use futures_util::StreamExt as _;
use serde::Deserialize;

use super::blob::BlobSource;
use super::copy::Endpoint;
use super::digest::{Hasher, quote_untrusted};
use super::error::{EngineError, Result};
use super::media::{is_index, links};
use super::progress::Progress;
use super::registry::RawManifest;

/// The annotation naming a layer's file.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Longest title accepted (as a path, in bytes).
pub const MAX_TITLE_BYTES: usize = 4096;

/// How to pull.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Replace files that already exist (never a symlink or a directory).
    pub overwrite: bool,
}

/// One file written.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PulledFile {
    /// Path relative to the directory (the layer's title).
    pub path: PathBuf,
    /// The layer's digest.
    pub digest: String,
    /// Bytes written.
    pub size: u64,
}

/// What a pull did.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullSummary {
    /// The reference pulled.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// Files written, in layer order.
    pub files: Vec<PulledFile>,
    /// Layers without a title (not written, as oras skips them).
    pub skipped: usize,
}

#[derive(Deserialize)]
pub(super) struct Layer {
    #[serde(default, rename = "mediaType")]
    pub(super) media_type: String,
    pub(super) digest: String,
    pub(super) size: u64,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct Layers {
    #[serde(default)]
    pub(super) config: Option<Layer>,
    #[serde(default)]
    pub(super) layers: Vec<Layer>,
}

/// Media type of a Helm chart's config (`helm push`).
pub(super) const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// Media type of a Helm chart's archive layer.
const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Largest Helm chart config read (it holds Chart.yaml's fields).
const MAX_HELM_CONFIG_BYTES: usize = 1024 * 1024;

/// `<name>-<version>.tgz`, as `helm pull` names a chart, from the chart's config.
pub(super) async fn helm_archive_name(src: &Endpoint, config: &Layer) -> Result<String> {
    #[derive(Deserialize)]
    struct Chart {
        name: String,
        version: String,
    }
    let resp = src
        .client
        .get_blob(&src.reference.repository, &config.digest, 0, config.size)
        .await?;
    let bytes = crate::http::read_capped(resp, MAX_HELM_CONFIG_BYTES)
        .await
        .map_err(|e| EngineError::Protocol {
            host: src.client.host().to_string(),
            action: format!("GET chart config {}", config.digest),
            reason: e.to_string(),
        })?;
    let chart: Chart = serde_json::from_slice(&bytes).map_err(|e| EngineError::Protocol {
        host: src.client.host().to_string(),
        action: format!("GET chart config {}", config.digest),
        reason: format!("not a Helm chart config: {e}"),
    })?;
    Ok(format!("{}-{}.tgz", chart.name, chart.version))
}

/// The manifest `src` names (its tag or digest, else `latest`), digest-checked.
pub(super) async fn fetch_manifest(src: &Endpoint) -> Result<RawManifest> {
    let reference = &src.reference;
    let tag_or_digest = reference.manifest_reference().unwrap_or("latest");
    src.client
        .get_manifest(&reference.repository, tag_or_digest)
        .await
}

/// An unusable answer about the manifest of `src`.
pub(super) fn manifest_protocol(src: &Endpoint, reason: String) -> EngineError {
    EngineError::Protocol {
        host: src.client.host().to_string(),
        action: format!("GET manifest {}", src.reference),
        reason,
    }
}

/// The config and layers of an image manifest; every digest is checked before any of
/// them reaches a URL.
pub(super) fn parse_layers(src: &Endpoint, manifest: &RawManifest) -> Result<Layers> {
    links(&manifest.bytes).map_err(|r| manifest_protocol(src, r))?;
    serde_json::from_slice(&manifest.bytes)
        .map_err(|e| manifest_protocol(src, format!("manifest is not valid JSON: {e}")))
}

/// Streams `layer` from `src` into `sink`, chunk by chunk, refusing a body longer than its
/// descriptor on the way, and checks its size and digest at the end.
pub(super) async fn stream_layer(
    src: &Endpoint,
    layer: &Layer,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let host = src.client.host().to_string();
    let mut hasher = Hasher::for_digest(&layer.digest)
        .map_err(|e| EngineError::InvalidInput(format!("layer {}: {e}", layer.digest)))?;
    let source = BlobSource::Registry {
        client: src.client.clone(),
        repository: src.reference.repository.clone(),
    };
    let mut stream = source.open(&layer.digest, 0, layer.size).await?;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        written += chunk.len() as u64;
        if written > layer.size {
            return Err(EngineError::Protocol {
                host,
                action: format!("GET blob {}", layer.digest),
                reason: format!(
                    "the blob is longer than its descriptor's {} bytes",
                    layer.size
                ),
            });
        }
        hasher.update(&chunk);
        sink(&chunk)?;
    }
    let actual = hasher.digest();
    if written != layer.size || actual != layer.digest {
        return Err(EngineError::DigestMismatch {
            what: format!("layer of {written} bytes (descriptor: {})", layer.size),
            location: format!("{}/{}", host, src.reference.repository),
            expected: layer.digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// Pulls the artifact `src` names into `dir` (created if missing).
pub async fn pull_files(
    src: &Endpoint,
    dir: &Path,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullSummary> {
    let reference = &src.reference;
    let manifest = fetch_manifest(src).await?;
    if is_index(&manifest.media_type) {
        return Err(EngineError::InvalidInput(format!(
            "{reference} is an index ({}); pull one of its manifests by digest",
            manifest.media_type
        )));
    }
    let protocol = |reason: String| manifest_protocol(src, reason);
    let parsed = parse_layers(src, &manifest)?;

    // Every name checked, and every destination, before anything is written.
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir.display(), e))?;
    // A Helm chart's archive has no title: it is written as `helm pull` names it.
    let helm_name = match &parsed.config {
        Some(config) if config.media_type == HELM_CONFIG => {
            Some(helm_archive_name(src, config).await?)
        }
        _ => None,
    };
    let mut planned: Vec<(PathBuf, &Layer)> = Vec::new();
    let mut skipped = 0;
    for (i, layer) in parsed.layers.iter().enumerate() {
        let title = match (layer.annotations.get(TITLE_ANNOTATION), &helm_name) {
            (Some(title), _) => title,
            (None, Some(name)) if layer.media_type == HELM_CHART => name,
            (None, _) => {
                skipped += 1;
                continue;
            }
        };
        let relative = safe_title(title).map_err(|why| {
            protocol(format!(
                "layers[{i}]: title {}: {why}",
                quote_untrusted(title, 80)
            ))
        })?;
        if planned.iter().any(|(p, _)| *p == relative) {
            return Err(protocol(format!(
                "layers[{i}]: two layers are titled {}",
                quote_untrusted(title, 80)
            )));
        }
        check_destination(dir, &relative, opts.overwrite)?;
        planned.push((relative, layer));
    }
    let total: u64 = planned.iter().map(|(_, l)| l.size).sum();
    progress.plan(total, planned.len());

    let mut files = Vec::new();
    for (relative, layer) in planned {
        let target = dir.join(&relative);
        make_parents(dir, &relative)?;
        download(src, layer, &target, opts.overwrite, progress).await?;
        files.push(PulledFile {
            path: relative,
            digest: layer.digest.clone(),
            size: layer.size,
        });
    }
    Ok(PullSummary {
        reference: reference.to_string(),
        digest: manifest.digest,
        files,
        skipped,
    })
}

/// A layer title as a relative path of normal components, or why it cannot be one.
pub fn safe_title(title: &str) -> std::result::Result<PathBuf, String> {
    if title.is_empty() {
        return Err("is empty".into());
    }
    if title.len() > MAX_TITLE_BYTES {
        return Err(format!("is longer than {MAX_TITLE_BYTES} bytes"));
    }
    if title.contains('\0') || title.contains('\\') {
        return Err("holds a NUL or a backslash".into());
    }
    let path = Path::new(title);
    if path.is_absolute() {
        return Err("is an absolute path".into());
    }
    // Checked on the text too: `Path::components` drops an inner `.` and empty segments.
    if title
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("has a `.` or `..` component: it could leave the output directory".into());
    }
    if title.split('/').any(str::is_empty) {
        return Err("has an empty path segment".into());
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::ParentDir => {
                return Err(
                    "has a `.` or `..` component: it could leave the output directory".into(),
                );
            }
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("names no file".into());
    }
    Ok(out)
}

/// Refuses a destination reached through a symlink, a directory in the way, and an
/// existing file unless `overwrite`.
fn check_destination(dir: &Path, relative: &Path, overwrite: bool) -> Result<()> {
    let mut at = dir.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for (i, component) in components.iter().enumerate() {
        at.push(component);
        let last = i + 1 == components.len();
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(EngineError::io(at.display(), e)),
        };
        let shown = at.display();
        if meta.file_type().is_symlink() {
            return Err(EngineError::InvalidInput(format!(
                "{shown} is a symlink: refusing to write through it (remove it, or pull into another directory)"
            )));
        }
        if last {
            if meta.is_dir() {
                return Err(EngineError::InvalidInput(format!(
                    "{shown} is a directory: a layer wants to be a file there"
                )));
            }
            if !overwrite {
                return Err(EngineError::InvalidInput(format!(
                    "{shown} exists: pass --overwrite to replace it"
                )));
            }
        } else if !meta.is_dir() {
            return Err(EngineError::InvalidInput(format!(
                "{shown} is not a directory: a layer's title needs it to be one"
            )));
        }
    }
    Ok(())
}

/// Creates the directories between `dir` and the file, refusing symlinks on the way.
fn make_parents(dir: &Path, relative: &Path) -> Result<()> {
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    let mut at = dir.to_path_buf();
    for component in parent.components() {
        at.push(component);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(EngineError::InvalidInput(format!(
                    "{} is not a plain directory: refusing to write through it",
                    at.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| EngineError::io(at.display(), e))?;
            }
            Err(e) => return Err(EngineError::io(at.display(), e)),
        }
    }
    Ok(())
}

/// Streams one layer into a temporary file beside `target`, checks its size and digest,
/// then gives it its name (without replacing an existing file unless `overwrite`).
async fn download(
    src: &Endpoint,
    layer: &Layer,
    target: &Path,
    overwrite: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".aosm-pull-")
        .tempfile_in(parent)
        .map_err(|e| EngineError::io(parent.display(), e))?;
    stream_layer(src, layer, |chunk| {
        temp.write_all(chunk)
            .map_err(|e| EngineError::io(temp.path().display(), e))?;
        progress.bytes(chunk.len() as u64);
        Ok(())
    })
    .await?;
    temp.as_file()
        .sync_all()
        .map_err(|e| EngineError::io(temp.path().display(), e))?;
    let persisted = if overwrite {
        temp.persist(target).map_err(|e| e.error)
    } else {
        temp.persist_noclobber(target).map_err(|e| e.error)
    };
    persisted.map_err(|e| EngineError::io(target.display(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_that_would_leave_the_directory_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/",
            "../x",
            "a/../../x",
            "./x",
            "a/./b",
            "a\\b",
            "a\0b",
        ] {
            assert!(safe_title(bad).is_err(), "{bad:?}");
        }
        assert!(safe_title(&"a".repeat(MAX_TITLE_BYTES + 1)).is_err());
        assert_eq!(safe_title("a/b.json"), Ok(PathBuf::from("a/b.json")));
        assert_eq!(
            safe_title("template.json"),
            Ok(PathBuf::from("template.json"))
        );
    }

    #[test]
    fn destinations_through_symlinks_or_over_files_are_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let outside = tempfile::tempdir().expect("another temp dir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("a symlink");
        let err = check_destination(dir.path(), Path::new("link/x"), true).expect_err("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
        std::fs::write(dir.path().join("here"), b"x").expect("a file");
        let err = check_destination(dir.path(), Path::new("here"), false).expect_err("refused");
        assert!(err.to_string().contains("--overwrite"), "{err}");
        check_destination(dir.path(), Path::new("here"), true).expect("overwrite allowed");
        let err = check_destination(dir.path(), Path::new("here/x"), true).expect_err("refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
        check_destination(dir.path(), Path::new("new/deep/file"), false).expect("a new path");
    }
}
