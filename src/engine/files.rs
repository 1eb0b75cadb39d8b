//! File source: local files pushed as one OCI artifact the way `oras push` makes it —
//! an OCI 1.1 image manifest with the empty config, `artifactType`, and one layer per
//! file annotated with `org.opencontainers.image.title`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use tokio::io::AsyncReadExt as _;

use super::blob::BlobSource;
use super::copy::Plan;
use super::digest::{Hasher, sha256_digest};
use super::error::{EngineError, Result};
use super::media::{self, Descriptor};
use super::registry::RawManifest;

/// Artifact type `oras push` uses when none is given.
pub const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.unknown.artifact.v1";
/// Annotation naming a layer's file.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Annotation with the creation time.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// One file to push and its layer media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Path on disk.
    pub path: PathBuf,
    /// Layer media type.
    pub media_type: String,
}

impl FileSpec {
    /// Parses `FILE[:MEDIATYPE]` (a path that exists as written wins over the split).
    pub fn parse(arg: &str) -> Self {
        if !Path::new(arg).exists()
            && let Some((path, mt)) = arg.rsplit_once(':')
            && mt.contains('/')
        {
            return Self {
                path: PathBuf::from(path),
                media_type: mt.to_string(),
            };
        }
        Self {
            path: PathBuf::from(arg),
            media_type: media::OCI_LAYER_TAR.to_string(),
        }
    }
}

/// In-memory content: one named blob of small data (ConfigMap values, templates).
#[derive(Clone, Debug)]
pub struct InlineFile {
    /// Title annotation (file name).
    pub name: String,
    /// Layer media type.
    pub media_type: String,
    /// Content.
    pub data: Bytes,
}

/// Hashes a file without loading it whole.
async fn digest_file(path: &Path) -> Result<(String, u64)> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| {
        EngineError::InvalidInput(format!(
            "cannot read file {}: {e}; check the path",
            path.display()
        ))
    })?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| EngineError::io(path.display(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.digest(), size))
}

fn descriptor(media_type: &str, digest: &str, size: u64, title: Option<&str>) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: size as i64,
        annotations: title.map(|t| BTreeMap::from([(TITLE_ANNOTATION.to_string(), t.to_string())])),
        ..Default::default()
    }
}

/// Current time as RFC 3339 with seconds, as `oras` writes it.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Builds the plan that pushes `files` and `inline` content as one artifact.
pub async fn plan_files(
    files: &[FileSpec],
    inline: &[InlineFile],
    artifact_type: Option<&str>,
) -> Result<Plan> {
    if files.is_empty() && inline.is_empty() {
        return Err(EngineError::InvalidInput(
            "nothing to push: name at least one FILE".into(),
        ));
    }
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    let mut titles = std::collections::HashSet::new();
    for f in files {
        let meta = tokio::fs::metadata(&f.path).await.map_err(|e| {
            EngineError::InvalidInput(format!(
                "cannot read file {}: {e}; check the path",
                f.path.display()
            ))
        })?;
        if !meta.is_file() {
            return Err(EngineError::InvalidInput(format!(
                "{} is not a regular file; push files one by one",
                f.path.display()
            )));
        }
        let title = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| {
                EngineError::InvalidInput(format!("{} has no file name", f.path.display()))
            })?;
        if !titles.insert(title.clone()) {
            return Err(EngineError::InvalidInput(format!(
                "two files are named {title}; file names must be unique"
            )));
        }
        let (digest, size) = digest_file(&f.path).await?;
        layers.push(descriptor(&f.media_type, &digest, size, Some(&title)));
        blobs.push((
            blob_descriptor(&f.media_type, &digest, size),
            BlobSource::File(f.path.clone()),
        ));
    }
    for f in inline {
        if !titles.insert(f.name.clone()) {
            return Err(EngineError::InvalidInput(format!(
                "two files are named {}; names must be unique",
                f.name
            )));
        }
        let digest = sha256_digest(&f.data);
        layers.push(descriptor(
            &f.media_type,
            &digest,
            f.data.len() as u64,
            Some(&f.name),
        ));
        blobs.push((
            blob_descriptor(&f.media_type, &digest, f.data.len() as u64),
            BlobSource::Memory(f.data.clone()),
        ));
    }
    let empty = Bytes::from_static(b"{}");
    let empty_digest = sha256_digest(&empty);
    blobs.insert(
        0,
        (
            blob_descriptor(media::OCI_EMPTY, &empty_digest, 2),
            BlobSource::Memory(empty),
        ),
    );
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_string()),
        artifact_type: Some(artifact_type.unwrap_or(DEFAULT_ARTIFACT_TYPE).to_string()),
        config: descriptor(media::OCI_EMPTY, &empty_digest, 2, None),
        layers,
        subject: None,
        annotations: Some(BTreeMap::from([(
            CREATED_ANNOTATION.to_string(),
            now_rfc3339(),
        )])),
    };
    let root = raw_manifest(&manifest, media::OCI_MANIFEST)?;
    Ok(Plan {
        blobs,
        children: Vec::new(),
        source_digest: root.digest.clone(),
        root,
        mount_from: None,
        source_label: "local files".into(),
    })
}

/// Descriptor for the blob list of a plan.
pub(crate) fn blob_descriptor(media_type: &str, digest: &str, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size,
        platform: None,
    }
}

/// Serialises a manifest we built.
pub(crate) fn raw_manifest(manifest: &OciImageManifest, media_type: &str) -> Result<RawManifest> {
    let bytes = serde_json::to_vec(manifest)
        .map_err(|e| EngineError::InvalidInput(format!("cannot encode manifest: {e}")))?;
    Ok(RawManifest {
        digest: sha256_digest(&bytes),
        bytes: bytes.into(),
        media_type: media_type.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_media_type_suffix() {
        assert_eq!(
            FileSpec::parse("a.json:application/json").media_type,
            "application/json"
        );
        assert_eq!(FileSpec::parse("a.json").media_type, media::OCI_LAYER_TAR);
        assert_eq!(FileSpec::parse("dir/a:b").path, PathBuf::from("dir/a:b"));
    }

    #[tokio::test]
    async fn builds_an_oras_style_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("template.json");
        std::fs::write(&path, b"{\"a\":1}").unwrap();
        let plan = plan_files(
            &[FileSpec {
                path,
                media_type: "application/json".into(),
            }],
            &[],
            Some("application/vnd.example+json"),
        )
        .await
        .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&plan.root.bytes).unwrap();
        assert_eq!(m["artifactType"], "application/vnd.example+json");
        assert_eq!(m["config"]["mediaType"], media::OCI_EMPTY);
        assert_eq!(
            m["layers"][0]["annotations"][TITLE_ANNOTATION],
            "template.json"
        );
        assert_eq!(m["layers"][0]["digest"], sha256_digest(b"{\"a\":1}"));
        assert_eq!(plan.blobs.len(), 2);
        let err = plan_files(&[FileSpec::parse("/nonexistent/x")], &[], None)
            .await
            .err()
            .unwrap();
        assert!(err.is_input_error());
    }
}
