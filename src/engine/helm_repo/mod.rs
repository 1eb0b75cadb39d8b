//! Helm HTTP repository source: `index.yaml` → the chart's `.tgz` (digest checked) →
//! an OCI manifest built the way `helm push` builds it, so `helm pull oci://` works.
//!
//! Every byte a repository sends is untrusted (one controller serves every tenant), so
//! everything is bounded by [`crate::limits`]:
//!
//! - `index.yaml` is streamed to a temporary file, refused as soon as it passes
//!   `MAX_HELM_INDEX_BYTES` (or up front when its `Content-Length` says so), then parsed
//!   from that file with a YAML budget (no anchors or aliases, `MAX_YAML_DEPTH`,
//!   `MAX_YAML_EVENTS`) straight into the few fields we use: only the requested version's
//!   entry and a short hint list are kept, so memory does not grow with the index.
//! - The chart archive is streamed to a temporary file of at most
//!   `MAX_CHART_ARCHIVE_BYTES` (removed on every error path), then walked entry by entry
//!   without holding any file but `Chart.yaml` in memory, enforcing Helm's own
//!   decompressed limits (`MAX_CHART_FILE_BYTES`, `MAX_CHART_DECOMPRESSED_BYTES`), the
//!   entry count (`MAX_CHART_ENTRIES`) and Go's tar extension-header cap
//!   (`MAX_TAR_EXTENSION_BYTES`, checked from the header before the extension is read).
//!
//! A refusal is an [`EngineError::Protocol`] (the source is at fault: exit code 1, reason
//! `TransferFailed`) whose one line names the limit and what to fix.

mod archive;
mod chart_yaml;
mod index;
mod yaml;

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::StreamExt as _;
use oci_client::manifest::OciImageManifest;
use tokio::io::AsyncWriteExt as _;

pub use archive::read_chart_yaml;
pub use chart_yaml::ChartMetadata;

use super::auth::Credentials;
use super::blob::BlobSource;
use super::copy::Plan;
use super::digest::{Hasher, sha256_digest};
use super::error::{EngineError, Result};
use super::files::{blob_descriptor, now_rfc3339, raw_manifest};
use super::media;
use super::registry::{status_error, transport_error};
pub(crate) use crate::http::one_line;
use crate::http::{RetryPolicy, Step, http_client, human_bytes as human, with_retry};
use crate::limits::{MAX_CHART_ARCHIVE_BYTES, MAX_HELM_INDEX_BYTES};
use archive::inspect_chart_archive;
use index::{IndexLookup, parse_index};

/// Longest chart name, version or path quoted from a repository in a message.
const QUOTE_LEN: usize = 120;

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

/// `host[:port]` of a URL, as errors name it.
fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// A URL as messages show it: no user info, query or fragment (they may carry secrets).
fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// The refusal of what a repository sent for `url`.
fn refused(url: &url::Url, reason: impl Into<String>) -> EngineError {
    EngineError::Protocol {
        host: host_of(url),
        action: format!("GET {}", display_url(url)),
        reason: reason.into(),
    }
}

/// A name, version or path from a repository, safe to put in a one-line message.
fn quote(text: &str) -> String {
    one_line(text, QUOTE_LEN)
}

/// Streams `resp`'s body into `file`, refusing it (with `too_large`) as soon as it grows
/// past `limit` bytes, or before reading when its `Content-Length` already says so; the
/// file never holds more than `limit` bytes. Returns the size and the sha256 digest.
async fn download_capped(
    resp: reqwest::Response,
    file: &tempfile::NamedTempFile,
    limit: u64,
    too_large: impl Fn() -> EngineError,
) -> Result<(u64, String)> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let host = host_of(resp.url());
    let io = |e| EngineError::io(file.path().display(), e);
    let mut writer = tokio::fs::File::from_std(file.reopen().map_err(io)?);
    let mut hasher = Hasher::default();
    let mut size = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_error(&host, &e))?;
        size = size.saturating_add(chunk.len() as u64);
        if size > limit {
            return Err(too_large());
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(io)?;
    }
    writer.flush().await.map_err(io)?;
    Ok((size, hasher.digest()))
}

/// A new temporary file (removed when dropped, whatever happens).
fn temp_file() -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("aosm-helm-")
        .tempfile()
        .map_err(|e| EngineError::io("temporary file", e))
}

impl HelmRepository {
    fn same_origin(&self, other: &url::Url) -> bool {
        self.url.scheme() == other.scheme()
            && self.url.host_str() == other.host_str()
            && self.url.port_or_known_default() == other.port_or_known_default()
    }

    /// GETs `url` (`what` names it in messages), with the shared retry policy for
    /// connection failures, 408, 429 and 5xx; a 404 is [`EngineError::NotFound`]. The
    /// repository's credentials go to its own origin only.
    async fn get(
        &self,
        client: &reqwest::Client,
        url: &url::Url,
        what: &str,
    ) -> Result<reqwest::Response> {
        let host = host_of(url);
        let action = format!("GET {what}");
        let policy = RetryPolicy::default();
        with_retry(&policy, policy.max_attempts, &action, |_| async {
            let mut req = client.get(url.clone());
            if self.same_origin(url)
                && let Credentials::Basic { username, password } = &self.credentials
            // Dynamic credentials are for registries; a Helm repository gets static ones.
            {
                req = req.basic_auth(username, Some(password.expose()));
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => return Step::Failed(transport_error(&host, &e)),
            };
            match resp.status() {
                s if s.is_success() => Step::Done(resp),
                reqwest::StatusCode::NOT_FOUND => Step::Failed(EngineError::NotFound {
                    what: what.to_string(),
                    location: display_url(&self.url),
                    hint: "check the repository URL".into(),
                }),
                // Reads at most a small, capped part of the error body.
                _ => Step::Failed(status_error(&host, &action, resp).await),
            }
        })
        .await
    }

    /// Downloads `index.yaml` (at most [`MAX_HELM_INDEX_BYTES`], to a temporary file) and
    /// looks `chart` at `version` up in it.
    async fn lookup(
        &self,
        client: &reqwest::Client,
        index_url: &url::Url,
        chart: &str,
        version: &str,
    ) -> Result<IndexLookup> {
        let resp = self.get(client, index_url, "index.yaml").await?;
        let index = temp_file()?;
        let limit = MAX_HELM_INDEX_BYTES as u64;
        download_capped(resp, &index, limit, || {
            refused(
                index_url,
                format!(
                    "index.yaml is larger than {} (limit MAX_HELM_INDEX_BYTES, as Flux's \
                     --helm-index-max-size); the repository must serve a smaller index \
                     (drop old versions or split it)",
                    human(limit)
                ),
            )
        })
        .await?;
        let (chart, version) = (chart.to_string(), version.to_string());
        let parsed = tokio::task::spawn_blocking(move || {
            let file = index
                .reopen()
                .map_err(|e| EngineError::io(index.path().display(), e))?;
            Ok::<_, EngineError>(parse_index(std::io::BufReader::new(file), &chart, &version))
            // `index` is dropped (removed) here.
        })
        .await
        .map_err(|e| EngineError::Failed(format!("reading index.yaml failed: {e}")))??;
        parsed.map_err(|reason| {
            refused(
                index_url,
                format!("not a usable Helm repository index: {reason}"),
            )
        })
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
            EngineError::InvalidInput(format!(
                "bad Helm repository URL {}: {e}",
                display_url(&self.url)
            ))
        })?;
        let lookup = self.lookup(&client, &index_url, chart, version).await?;
        if !lookup.chart_listed {
            return Err(EngineError::NotFound {
                what: format!("chart {chart:?}"),
                location: display_url(&self.url),
                hint: format!(
                    "the repository has: {}",
                    lookup
                        .names
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let Some(entry) = lookup.entry else {
            return Err(EngineError::NotFound {
                what: format!("version {version} of chart {chart:?}"),
                location: display_url(&self.url),
                hint: format!("available versions: {}", lookup.versions.join(", ")),
            });
        };
        let chart_url = entry
            .urls
            .first()
            .ok_or_else(|| refused(&index_url, format!("{chart} {version} has no download URL")))
            .and_then(|u| {
                base.join(u)
                    .map_err(|e| refused(&index_url, format!("bad chart URL {:?}: {e}", quote(u))))
                    .and_then(|url| match url.scheme() {
                        "http" | "https" => Ok(url),
                        _ => Err(refused(
                            &index_url,
                            format!("chart URL {:?} is not http(s)", quote(u)),
                        )),
                    })
            })?;
        let archive_name = chart_url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|s| !s.is_empty())
            .map(quote)
            .unwrap_or_else(|| format!("{chart}-{version}.tgz"));
        let in_archive = |reason: String| {
            refused(
                &chart_url,
                format!("chart archive {archive_name}: {reason}"),
            )
        };

        // Stream the archive to a temp file, hashing it; the file is removed if anything
        // below fails (it is dropped with the error).
        let archive = temp_file()?;
        let resp = self
            .get(
                &client,
                &chart_url,
                &format!("chart archive {chart}-{version}"),
            )
            .await?;
        let (size, digest) = download_capped(resp, &archive, MAX_CHART_ARCHIVE_BYTES, || {
            in_archive(format!(
                "larger than {} (limit MAX_CHART_ARCHIVE_BYTES; Helm refuses charts that \
                 decompress to more, so no valid chart is this large); fix the repository",
                human(MAX_CHART_ARCHIVE_BYTES)
            ))
        })
        .await?;
        if let Some(expected) = entry.digest.as_deref().filter(|d| !d.is_empty()) {
            let expected = if expected.contains(':') {
                expected.to_string()
            } else {
                format!("sha256:{expected}")
            };
            if expected != digest {
                return Err(EngineError::DigestMismatch {
                    what: format!("chart archive {chart}-{version}"),
                    location: display_url(&chart_url),
                    expected: quote(&expected),
                    actual: digest,
                });
            }
        }

        let path = archive.path().to_path_buf();
        let metadata = tokio::task::spawn_blocking(move || {
            let file =
                std::fs::File::open(&path).map_err(|e| EngineError::io(path.display(), e))?;
            Ok::<_, EngineError>(inspect_chart_archive(std::io::BufReader::new(file)))
        })
        .await
        .map_err(|e| EngineError::Failed(format!("reading the chart archive failed: {e}")))??
        .map_err(|problem| in_archive(problem.to_string()))?;
        if metadata.name != chart || metadata.version != version {
            return Err(EngineError::ChartMismatch {
                chart: chart.to_string(),
                version: version.to_string(),
                found_name: quote(&metadata.name),
                found_version: quote(&metadata.version),
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
            source_label: display_url(&chart_url),
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
