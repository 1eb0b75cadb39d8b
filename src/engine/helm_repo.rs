//! Helm HTTP repository source: `index.yaml` → the chart's `.tgz` (digest checked) →
//! an OCI manifest built the way `helm push` builds it, so `helm pull oci://` works.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};

use bytes::Bytes;
use futures_util::StreamExt as _;
use oci_client::manifest::OciImageManifest;
use serde::{Deserialize, Serialize};

use super::auth::Credentials;
use super::blob::BlobSource;
use super::copy::Plan;
use super::digest::{Hasher, sha256_digest};
use super::error::{EngineError, Result};
use super::files::{blob_descriptor, now_rfc3339, raw_manifest};
use super::media;
use super::registry::{http_client, status_error, transport_error};

/// Largest `index.yaml` we read.
const MAX_INDEX_BYTES: usize = 64 * 1024 * 1024;
/// Largest Chart.yaml we read.
const MAX_CHART_YAML_BYTES: u64 = 1024 * 1024;

/// Where a Helm chart repository is and how to reach it.
#[derive(Clone, Debug)]
pub struct HelmRepository {
    /// Repository URL (the folder holding `index.yaml`).
    pub url: url::Url,
    /// Basic-auth credentials, sent only to the repository's own host.
    pub credentials: Credentials,
    /// Extra PEM CA bundle.
    pub ca_file: Option<std::path::PathBuf>,
    /// Extra PEM CA bundle as bytes.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip TLS verification.
    pub insecure: bool,
}

#[derive(Deserialize)]
struct RepoIndex {
    #[serde(default)]
    entries: HashMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// Chart metadata in Helm's JSON field order (the OCI config of a chart).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMetadata {
    /// Chart name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    home: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<String>,
    /// Chart version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    maintainers: Vec<Maintainer>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    icon: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    condition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tags: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "string_or_number"
    )]
    app_version: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deprecated: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kube_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dependencies: Vec<serde_json::Value>,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    chart_type: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Maintainer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    url: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<String, D::Error> {
    let v = serde_yaml::Value::deserialize(d)?;
    Ok(match v {
        serde_yaml::Value::String(s) => s,
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    })
}

/// A chart downloaded from a repository, ready to push.
pub struct FetchedChart {
    /// Metadata from the chart's Chart.yaml.
    pub metadata: ChartMetadata,
    /// The plan that pushes it.
    pub plan: Plan,
    /// OCI tag for it (the version, `+` replaced by `_` as Helm does).
    pub tag: String,
    /// Temp file holding the `.tgz`; dropped after the push.
    pub _archive: tempfile::NamedTempFile,
}

impl HelmRepository {
    fn same_origin(&self, other: &url::Url) -> bool {
        self.url.scheme() == other.scheme()
            && self.url.host_str() == other.host_str()
            && self.url.port_or_known_default() == other.port_or_known_default()
    }

    fn host(&self) -> String {
        let mut h = self.url.host_str().unwrap_or_default().to_string();
        if let Some(p) = self.url.port() {
            h = format!("{h}:{p}");
        }
        h
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        url: &url::Url,
        what: &str,
    ) -> Result<reqwest::Response> {
        let mut req = client.get(url.clone());
        if self.same_origin(url)
            && let Credentials::Basic { username, password } = &self.credentials
        // Dynamic credentials are for registries; a Helm repository gets static ones.
        {
            req = req.basic_auth(username, Some(password.expose()));
        }
        let host = self.host();
        let resp = req.send().await.map_err(|e| transport_error(&host, &e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            reqwest::StatusCode::NOT_FOUND => Err(EngineError::NotFound {
                what: what.to_string(),
                location: self.url.to_string(),
                hint: "check the repository URL".into(),
            }),
            _ => Err(status_error(&host, &format!("GET {what}"), resp).await),
        }
    }

    /// Downloads `chart` at exactly `version` and builds the OCI plan for it.
    pub async fn fetch(&self, chart: &str, version: &str) -> Result<FetchedChart> {
        let client = http_client(
            self.insecure,
            self.ca_file.as_deref(),
            self.ca_pem.as_deref(),
        )?;
        let mut base = self.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let index_url = base.join("index.yaml").map_err(|e| {
            EngineError::InvalidInput(format!("bad Helm repository URL {}: {e}", self.url))
        })?;
        let resp = self.get(&client, &index_url, "index.yaml").await?;
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_error(&self.host(), &e))?;
            if body.len() + chunk.len() > MAX_INDEX_BYTES {
                return Err(EngineError::InvalidInput(format!(
                    "{index_url} is larger than {MAX_INDEX_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let index: RepoIndex =
            serde_yaml::from_slice(&body).map_err(|e| EngineError::Protocol {
                host: self.host(),
                action: "read index.yaml".into(),
                reason: format!("not a Helm repository index: {e}"),
            })?;
        let versions = index.entries.get(chart).ok_or_else(|| {
            let mut names: Vec<&String> = index.entries.keys().collect();
            names.sort();
            EngineError::NotFound {
                what: format!("chart {chart:?}"),
                location: self.url.to_string(),
                hint: format!(
                    "the repository has: {}",
                    names
                        .iter()
                        .take(20)
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        })?;
        let entry = versions
            .iter()
            .find(|e| e.version == version)
            .ok_or_else(|| EngineError::NotFound {
                what: format!("version {version} of chart {chart:?}"),
                location: self.url.to_string(),
                hint: format!(
                    "available versions: {}",
                    versions
                        .iter()
                        .take(20)
                        .map(|e| e.version.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let chart_url = entry
            .urls
            .first()
            .ok_or_else(|| EngineError::Protocol {
                host: self.host(),
                action: "read index.yaml".into(),
                reason: format!("{chart} {version} has no download URL"),
            })
            .and_then(|u| {
                base.join(u).map_err(|e| EngineError::Protocol {
                    host: self.host(),
                    action: "read index.yaml".into(),
                    reason: format!("bad chart URL {u:?}: {e}"),
                })
            })?;

        // Stream the archive to a temp file, hashing it.
        let archive =
            tempfile::NamedTempFile::new().map_err(|e| EngineError::io("temporary file", e))?;
        let mut writer = archive
            .reopen()
            .map_err(|e| EngineError::io(archive.path().display(), e))?;
        let resp = self
            .get(
                &client,
                &chart_url,
                &format!("chart archive {chart}-{version}"),
            )
            .await?;
        let mut hasher = Hasher::default();
        let mut size = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_error(&self.host(), &e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            writer
                .write_all(&chunk)
                .map_err(|e| EngineError::io(archive.path().display(), e))?;
        }
        writer
            .flush()
            .map_err(|e| EngineError::io(archive.path().display(), e))?;
        let digest = hasher.digest();
        if let Some(expected) = entry.digest.as_deref().filter(|d| !d.is_empty()) {
            let expected = if expected.contains(':') {
                expected.to_string()
            } else {
                format!("sha256:{expected}")
            };
            if expected != digest {
                return Err(EngineError::DigestMismatch {
                    what: format!("chart archive {chart}-{version}"),
                    location: chart_url.to_string(),
                    expected,
                    actual: digest,
                });
            }
        }

        let path = archive.path().to_path_buf();
        let metadata = tokio::task::spawn_blocking(move || read_chart_yaml(&path))
            .await
            .map_err(|e| {
                EngineError::InvalidInput(format!("reading the chart archive failed: {e}"))
            })??;
        if metadata.name != chart || metadata.version != version {
            return Err(EngineError::ChartMismatch {
                chart: chart.to_string(),
                version: version.to_string(),
                found_name: metadata.name.clone(),
                found_version: metadata.version.clone(),
            });
        }
        let config = Bytes::from(serde_json::to_vec(&metadata).map_err(|e| {
            EngineError::InvalidInput(format!("cannot encode chart metadata: {e}"))
        })?);
        let config_digest = sha256_digest(&config);
        let mut annotations = BTreeMap::new();
        for (k, v) in &metadata.annotations {
            annotations.insert(k.clone(), v.clone());
        }
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                annotations.insert(k.to_string(), v.to_string());
            }
        };
        put("org.opencontainers.image.title", &metadata.name);
        put("org.opencontainers.image.version", &metadata.version);
        put(
            "org.opencontainers.image.description",
            &metadata.description,
        );
        put("org.opencontainers.image.url", &metadata.home);
        put(
            "org.opencontainers.image.source",
            metadata
                .sources
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
        );
        let authors: Vec<String> = metadata
            .maintainers
            .iter()
            .map(|m| {
                if m.email.is_empty() {
                    m.name.clone()
                } else {
                    format!("{} ({})", m.name, m.email)
                }
            })
            .collect();
        put("org.opencontainers.image.authors", &authors.join(", "));
        put(
            "org.opencontainers.image.created",
            &entry.created.clone().unwrap_or_else(now_rfc3339),
        );
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: None,
            config: oci_descriptor(media::HELM_CONFIG, &config_digest, config.len() as u64),
            layers: vec![oci_descriptor(media::HELM_CHART_LAYER, &digest, size)],
            subject: None,
            artifact_type: None,
            annotations: Some(annotations),
        };
        let root = raw_manifest(&manifest, media::OCI_MANIFEST)?;
        let plan = Plan {
            blobs: vec![
                (
                    blob_descriptor(media::HELM_CONFIG, &config_digest, config.len() as u64),
                    BlobSource::Memory(config),
                ),
                (
                    blob_descriptor(media::HELM_CHART_LAYER, &digest, size),
                    BlobSource::File(archive.path().to_path_buf()),
                ),
            ],
            children: Vec::new(),
            source_digest: root.digest.clone(),
            root,
            mount_from: None,
            source_label: chart_url.to_string(),
        };
        Ok(FetchedChart {
            tag: metadata.version.replace('+', "_"),
            metadata,
            plan,
            _archive: archive,
        })
    }
}

fn oci_descriptor(
    media_type: &str,
    digest: &str,
    size: u64,
) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: size as i64,
        ..Default::default()
    }
}

/// Reads `<chart>/Chart.yaml` from a chart archive.
pub fn read_chart_yaml(path: &std::path::Path) -> Result<ChartMetadata> {
    let bad = |reason: String| {
        EngineError::InvalidInput(format!(
            "{} is not a Helm chart archive: {reason}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path.display(), e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let entry_path = entry.path().map_err(|e| bad(e.to_string()))?.to_path_buf();
        let parts: Vec<_> = entry_path.components().collect();
        if parts.len() == 2 && entry_path.file_name().is_some_and(|n| n == "Chart.yaml") {
            let mut text = String::new();
            entry
                .take(MAX_CHART_YAML_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| bad(e.to_string()))?;
            return serde_yaml::from_str(&text).map_err(|e| bad(format!("Chart.yaml: {e}")));
        }
    }
    Err(bad("no Chart.yaml at the top of the archive".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_metadata_json_follows_helm_field_order() {
        let yaml = "apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: 1.16\ndescription: A chart\ntype: application\n";
        let m: ChartMetadata = serde_yaml::from_str(yaml).unwrap();
        let json = String::from_utf8(serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"name":"demo","version":"0.1.0","description":"A chart","apiVersion":"v2","appVersion":"1.16","type":"application"}"#
        );
    }

    #[test]
    fn reads_chart_yaml_from_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-0.1.0.tgz");
        let file = std::fs::File::create(&path).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        let data = b"apiVersion: v2\nname: demo\nversion: 0.1.0\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "demo/Chart.yaml", &data[..])
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let m = read_chart_yaml(&path).unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "0.1.0"));
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(read_chart_yaml(&path).unwrap_err().is_input_error());
    }
}
