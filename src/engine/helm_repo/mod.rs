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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;

use bytes::Bytes;
use futures_util::StreamExt as _;
use oci_client::manifest::OciImageManifest;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::io::AsyncWriteExt as _;

use super::auth::Credentials;
use super::blob::BlobSource;
use super::copy::Plan;
use super::digest::{Hasher, sha256_digest};
use super::error::{EngineError, Result};
use super::files::{blob_descriptor, now_rfc3339, raw_manifest};
use super::media;
use super::registry::{http_client, status_error, transport_error};
use crate::limits::{
    MAX_CHART_ARCHIVE_BYTES, MAX_CHART_DECOMPRESSED_BYTES, MAX_CHART_ENTRIES, MAX_CHART_FILE_BYTES,
    MAX_CHART_YAML_BYTES, MAX_HELM_INDEX_BYTES, MAX_TAR_EXTENSION_BYTES, MAX_YAML_DEPTH,
    MAX_YAML_EVENTS,
};

/// How many chart names or versions a "not found" hint lists.
const HINT_LEN: usize = 20;
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

// ---------------------------------------------------------------------------------------
// index.yaml
// ---------------------------------------------------------------------------------------

/// One version of the requested chart in `index.yaml`, with only the fields we use
/// (every other field is skipped without being kept).
#[derive(Debug, Deserialize)]
struct IndexEntry {
    #[serde(deserialize_with = "null_as_default")]
    version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// What [`parse_index`] found for one chart and version.
#[derive(Debug, Default)]
struct IndexLookup {
    /// The chart has an `entries` key.
    chart_listed: bool,
    /// The first entry of the chart with the version asked for.
    entry: Option<IndexEntry>,
    /// The alphabetically first [`HINT_LEN`] chart names (for the "not found" hint).
    names: BTreeSet<String>,
    /// The chart's first [`HINT_LEN`] versions, in index order.
    versions: Vec<String>,
}

/// Deserializes an index document into an [`IndexLookup`] for one chart and version:
/// the other charts' entries are skipped as they stream by.
#[derive(Clone, Copy)]
struct IndexQuery<'q> {
    chart: &'q str,
    version: &'q str,
}

impl<'de> DeserializeSeed<'de> for IndexQuery<'_> {
    type Value = IndexLookup;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<IndexLookup, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IndexQuery<'_> {
    type Value = IndexLookup;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Helm repository index (a mapping with `entries`)")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<IndexLookup, A::Error> {
        let mut lookup = IndexLookup::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" {
                map.next_value_seed(Entries {
                    query: self,
                    lookup: &mut lookup,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(lookup)
    }
}

/// The `entries` mapping (chart name → versions).
struct Entries<'q, 'l> {
    query: IndexQuery<'q>,
    lookup: &'l mut IndexLookup,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of chart names to lists of versions")
    }

    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            if name == self.query.chart {
                self.lookup.chart_listed = true;
                map.next_value_seed(Versions {
                    query: self.query,
                    lookup: &mut *self.lookup,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            let names = &mut self.lookup.names;
            names.insert(quote(&name));
            if names.len() > HINT_LEN {
                names.pop_last();
            }
        }
        Ok(())
    }
}

/// The list of versions of the requested chart.
struct Versions<'q, 'l> {
    query: IndexQuery<'q>,
    lookup: &'l mut IndexLookup,
}

impl<'de> DeserializeSeed<'de> for Versions<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Versions<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of chart versions")
    }

    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<IndexEntry>()? {
            if self.lookup.entry.is_none() && entry.version == self.query.version {
                self.lookup.entry = Some(entry);
            } else if self.lookup.versions.len() < HINT_LEN {
                self.lookup.versions.push(quote(&entry.version));
            }
        }
        Ok(())
    }
}

/// Looks `chart` at `version` up in an `index.yaml` read from `reader`, within the YAML
/// budget ([`yaml_options`]); the error is one line naming the limit hit.
fn parse_index(
    reader: impl std::io::Read,
    chart: &str,
    version: &str,
) -> std::result::Result<IndexLookup, String> {
    let query = IndexQuery { chart, version };
    serde_saphyr::with_deserializer_from_reader_with_options(
        reader,
        yaml_options(MAX_HELM_INDEX_BYTES),
        |de| query.deserialize(de),
    )
    .map_err(|e| yaml_problem("index.yaml", "MAX_HELM_INDEX_BYTES", &e))
}

// ---------------------------------------------------------------------------------------
// Chart.yaml
// ---------------------------------------------------------------------------------------

/// Chart metadata in Helm's JSON field order (the OCI config of a chart).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMetadata {
    /// Chart name.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    home: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    sources: Vec<String>,
    /// Chart version.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    description: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    keywords: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    maintainers: Vec<Maintainer>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    icon: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    api_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    condition: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    tags: String,
    /// A plain scalar such as `1.10` stays the text `1.10` (as Helm reads it), not a number.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    app_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    deprecated: bool,
    #[serde(
        default,
        deserialize_with = "string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    annotations: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    kube_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    dependencies: Vec<serde_json::Value>,
    #[serde(
        default,
        rename = "type",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    chart_type: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Maintainer {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    name: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    email: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    url: String,
}

/// An empty or `null` value reads as the type's default, as Go's YAML decoder leaves a
/// field at its zero value (`icon:` with nothing after it is common in Chart.yaml).
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `annotations`: string values, a `null` value read as the empty string.
fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, Option<String>>> = Option::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// Parses a `Chart.yaml` (at most [`MAX_CHART_YAML_BYTES`]) within the YAML budget;
/// `name` is how the file is called in the error.
fn parse_chart_yaml(bytes: &[u8], name: &str) -> std::result::Result<ChartMetadata, String> {
    let limit = usize::try_from(MAX_CHART_YAML_BYTES).unwrap_or(usize::MAX);
    if bytes.len() > limit {
        return Err(format!(
            "{name} is larger than {} (limit MAX_CHART_YAML_BYTES)",
            human(MAX_CHART_YAML_BYTES)
        ));
    }
    serde_saphyr::from_slice_with_options(bytes, yaml_options(limit))
        .map_err(|e| yaml_problem(name, "MAX_CHART_YAML_BYTES", &e))
}

// ---------------------------------------------------------------------------------------
// YAML budget
// ---------------------------------------------------------------------------------------

/// The parser options for a YAML document from a repository: anchors and aliases refused
/// (no alias bomb, nothing retained for replay), at most [`MAX_YAML_DEPTH`] levels and
/// [`MAX_YAML_EVENTS`] events and nodes, at most `max_bytes` of input and of scalars, and
/// no source snippets in errors (one line, no quoted input).
fn yaml_options(max_bytes: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(max_bytes);
    budget.max_total_scalar_bytes = max_bytes;
    budget.max_events = MAX_YAML_EVENTS;
    budget.max_nodes = MAX_YAML_EVENTS;
    budget.max_depth = MAX_YAML_DEPTH;
    budget.flow_nesting_limit = MAX_YAML_DEPTH;
    budget.max_aliases = 0;
    budget.max_anchors = 0;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: 0,
        max_alias_expansions_per_anchor: 0,
    };
    // An ignored field such as `digest: 0000…1e460` must not fail the document: scalars
    // are inferred when skipped, and Go reads such a value without complaint.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    options.with_snippet = false;
    options
}

/// One line saying why the YAML document `doc` was refused, naming the limit and what to
/// fix; `size_limit` names the size cap of that document.
fn yaml_problem(doc: &str, size_limit: &str, e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let aliases = || {
        format!(
            "{doc} uses YAML anchors or aliases (&name, *name), which are refused to rule out \
             alias bombs (\"billion laughs\"); write the values out in full"
        )
    };
    let depth = || {
        format!(
            "{doc} nests deeper than {MAX_YAML_DEPTH} levels (limit MAX_YAML_DEPTH); flatten it"
        )
    };
    let too_large = || format!("{doc} is larger than the limit {size_limit}; make it smaller");
    match e {
        E::WithSnippet { error, .. } => yaml_problem(doc, size_limit, error),
        E::Budget { breach, .. } => match breach {
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::AliasAnchorRatio { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. }
            | B::MergeKeys { .. } => aliases(),
            B::Depth { .. } | B::InclusionDepth { .. } => depth(),
            B::Events { .. } | B::Nodes { .. } => format!(
                "{doc} has more than {MAX_YAML_EVENTS} YAML nodes (limit MAX_YAML_EVENTS); \
                 make it smaller"
            ),
            B::InputBytes { .. } | B::ScalarBytes { .. } => too_large(),
            B::Documents { .. } => format!("{doc} holds more than one YAML document"),
            _ => format!("{doc} exceeds the YAML parser's budget; make it smaller and simpler"),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::UnknownAnchor { .. } => aliases(),
        E::MultipleDocuments { .. } => format!("{doc} holds more than one YAML document"),
        // The scanner's own nesting limit (flow collections) can trip before the budget's.
        E::ExternalMessage { source, .. }
            if matches!(
                &**source,
                serde_saphyr::ExternalMessageSource::Parser(scan)
                    if matches!(scan.kind(), serde_saphyr::granit_parser::ErrorKind::RecursionLimitExceeded)
            ) =>
        {
            depth()
        }
        E::IOError { cause } if cause.kind() == std::io::ErrorKind::FileTooLarge => too_large(),
        other => format!(
            "{doc} is not valid: {}",
            one_line(&other.to_string(), 2 * QUOTE_LEN)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Chart archive
// ---------------------------------------------------------------------------------------

/// Why a chart archive was refused; each message names the limit and what to fix.
#[derive(Debug, thiserror::Error)]
enum ArchiveProblem {
    #[error("not a gzip-compressed tar archive ({0}); is this a chart made by `helm package`?")]
    Corrupt(String),
    #[error(
        "more than {MAX_CHART_ENTRIES} entries (limit MAX_CHART_ENTRIES); a chart holds far fewer files"
    )]
    TooManyEntries,
    #[error(
        "a tar extension header (PAX or GNU long name) of {} bytes, more than {} (limit MAX_TAR_EXTENSION_BYTES, as Go's archive/tar that Helm uses); repackage the chart with `helm package`",
        .size,
        human(MAX_TAR_EXTENSION_BYTES)
    )]
    ExtensionTooLarge { size: u64 },
    #[error(
        "file {path} decompresses to more than {} (limit MAX_CHART_FILE_BYTES, Helm's own limit: Helm refuses this chart too); shrink that file or leave it out of the chart",
        human(MAX_CHART_FILE_BYTES)
    )]
    FileTooLarge { path: String },
    #[error(
        "its files decompress to more than {} in total (limit MAX_CHART_DECOMPRESSED_BYTES, Helm's own limit: Helm refuses this chart too); make the chart smaller",
        human(MAX_CHART_DECOMPRESSED_BYTES)
    )]
    TotalTooLarge,
    #[error("{0}")]
    ChartYaml(String),
    #[error("no Chart.yaml at the top of the archive (CHART/Chart.yaml); is this a Helm chart?")]
    NoChartYaml,
}

/// Extension headers (PAX `x`, GNU `L`/`K`) seen before the entry they describe.
#[derive(Default)]
struct PendingExtensions {
    pax: bool,
    long_name: Option<Vec<u8>>,
    long_link: bool,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl PendingExtensions {
    fn is_empty(&self) -> bool {
        !self.pax && !self.long_link && self.long_name.is_none()
    }

    /// Records one extension header's data (at most [`MAX_TAR_EXTENSION_BYTES`]).
    fn add(
        &mut self,
        kind: tar::EntryType,
        mut data: Vec<u8>,
    ) -> std::result::Result<(), ArchiveProblem> {
        let twice =
            || ArchiveProblem::Corrupt("two extension headers of one kind for one entry".into());
        if kind.is_pax_local_extensions() {
            if std::mem::replace(&mut self.pax, true) {
                return Err(twice());
            }
            for record in tar::PaxExtensions::new(&data) {
                let record = record.map_err(|e| ArchiveProblem::Corrupt(e.to_string()))?;
                match record.key_bytes() {
                    b"path" => self.pax_path = Some(record.value_bytes().to_vec()),
                    b"size" => {
                        let size = record
                            .value()
                            .ok()
                            .and_then(|v| v.parse::<u64>().ok())
                            .ok_or_else(|| {
                                ArchiveProblem::Corrupt("a bad PAX size record".into())
                            })?;
                        self.pax_size = Some(size);
                    }
                    _ => {}
                }
            }
        } else if kind.is_gnu_longname() {
            if self.long_name.is_some() {
                return Err(twice());
            }
            while data.last() == Some(&0) {
                data.pop();
            }
            self.long_name = Some(data);
        } else if std::mem::replace(&mut self.long_link, true) {
            return Err(twice());
        }
        Ok(())
    }
}

/// True for `CHART/Chart.yaml`, the chart's own metadata (not a subchart's).
fn is_top_level_chart_yaml(path: &str) -> bool {
    let path = std::path::Path::new(path);
    path.components().count() == 2 && path.file_name().is_some_and(|n| n == "Chart.yaml")
}

/// Adds `size` to the decompressed total, refusing it past [`MAX_CHART_DECOMPRESSED_BYTES`].
fn add_decompressed(total: &mut u64, size: u64) -> std::result::Result<(), ArchiveProblem> {
    *total = total.saturating_add(size);
    if *total > MAX_CHART_DECOMPRESSED_BYTES {
        return Err(ArchiveProblem::TotalTooLarge);
    }
    Ok(())
}

/// Walks a whole chart archive (`.tgz`) as Helm's loader would, streaming: every entry's
/// declared size is checked against Helm's limits before a byte of it is decompressed,
/// extension headers are checked before they are read, and only the top-level
/// `Chart.yaml` is read into memory (and parsed). Refuses what Helm would refuse for size.
fn inspect_chart_archive(
    reader: impl std::io::Read,
) -> std::result::Result<ChartMetadata, ArchiveProblem> {
    let corrupt = |e: std::io::Error| ArchiveProblem::Corrupt(one_line(&e.to_string(), QUOTE_LEN));
    // Go's gzip reader (Helm's) reads every member of a multi-member gzip file.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(reader));
    // Raw: the tar crate would read every PAX and GNU long-name header fully into memory,
    // whatever its size; here each is checked against MAX_TAR_EXTENSION_BYTES first.
    let entries = archive.entries().map_err(corrupt)?.raw(true);
    let mut members = 0usize;
    let mut decompressed = 0u64;
    let mut pending = PendingExtensions::default();
    let mut metadata = None;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        let extension = kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink();
        if extension {
            if size > MAX_TAR_EXTENSION_BYTES {
                return Err(ArchiveProblem::ExtensionTooLarge { size });
            }
            add_decompressed(&mut decompressed, size)?;
            if kind.is_pax_global_extensions() {
                // Helm skips global headers; they count as entries here (they can repeat).
                members += 1;
                if members > MAX_CHART_ENTRIES {
                    return Err(ArchiveProblem::TooManyEntries);
                }
                continue;
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_TAR_EXTENSION_BYTES)
                .read_to_end(&mut data)
                .map_err(corrupt)?;
            pending.add(kind, data)?;
            continue;
        }
        members += 1;
        if members > MAX_CHART_ENTRIES {
            return Err(ArchiveProblem::TooManyEntries);
        }
        let ext = std::mem::take(&mut pending);
        if kind.is_gnu_sparse() {
            return Err(ArchiveProblem::Corrupt("a GNU sparse file".into()));
        }
        if ext.pax_size.is_some_and(|s| s != size) {
            // Raw reading follows the header's size; refuse rather than read it otherwise
            // than Helm (Go applies the PAX size).
            return Err(ArchiveProblem::Corrupt(
                "a PAX size record that overrides the tar header's size".into(),
            ));
        }
        let path_bytes = match ext.pax_path.or(ext.long_name) {
            Some(p) => p,
            None => entry.path_bytes().into_owned(),
        };
        let path = String::from_utf8_lossy(&path_bytes);
        if size > MAX_CHART_FILE_BYTES {
            return Err(ArchiveProblem::FileTooLarge { path: quote(&path) });
        }
        add_decompressed(&mut decompressed, size)?;
        if metadata.is_none() && kind.is_file() && is_top_level_chart_yaml(&path) {
            let name = quote(&path);
            if size > MAX_CHART_YAML_BYTES {
                return Err(ArchiveProblem::ChartYaml(format!(
                    "{name} is larger than {} (limit MAX_CHART_YAML_BYTES)",
                    human(MAX_CHART_YAML_BYTES)
                )));
            }
            let mut text = Vec::new();
            (&mut entry)
                .take(MAX_CHART_YAML_BYTES)
                .read_to_end(&mut text)
                .map_err(corrupt)?;
            metadata = Some(parse_chart_yaml(&text, &name).map_err(ArchiveProblem::ChartYaml)?);
        }
    }
    if !pending.is_empty() {
        return Err(ArchiveProblem::Corrupt(
            "an extension header at the end, describing no entry".into(),
        ));
    }
    metadata.ok_or(ArchiveProblem::NoChartYaml)
}

/// Reads `<chart>/Chart.yaml` from a local chart archive, checking the whole archive
/// against Helm's size limits on the way (see [`crate::limits`]).
pub fn read_chart_yaml(path: &std::path::Path) -> Result<ChartMetadata> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path.display(), e))?;
    inspect_chart_archive(std::io::BufReader::new(file))
        .map_err(|problem| EngineError::InvalidInput(format!("{}: {problem}", path.display())))
}

// ---------------------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------------------

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

/// `bytes` as `N MiB` / `N KiB` when exact, else `N bytes`.
fn human(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// `text` on one line (control characters as spaces), cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
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
        let host = host_of(url);
        let resp = req.send().await.map_err(|e| transport_error(&host, &e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            reqwest::StatusCode::NOT_FOUND => Err(EngineError::NotFound {
                what: what.to_string(),
                location: display_url(&self.url),
                hint: "check the repository URL".into(),
            }),
            // Reads at most a small, capped part of the error body.
            _ => Err(status_error(&host, &format!("GET {what}"), resp).await),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(yaml: &str) -> ChartMetadata {
        parse_chart_yaml(yaml.as_bytes(), "Chart.yaml").unwrap()
    }

    #[test]
    fn chart_metadata_json_follows_helm_field_order() {
        let yaml = "apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: 1.16\ndescription: A chart\ntype: application\n";
        let m = metadata(yaml);
        let json = String::from_utf8(serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"name":"demo","version":"0.1.0","description":"A chart","apiVersion":"v2","appVersion":"1.16","type":"application"}"#
        );
    }

    #[test]
    fn chart_yaml_scalars_read_as_helm_reads_them() {
        let m = metadata(
            "name: demo\nversion: 1.0\nappVersion: 1.10\nicon:\nkeywords:\ndeprecated: true\n\
             annotations:\n  a: 1\n  b:\nmaintainers:\n  - name: Ann\n    email: ann@example.com\n",
        );
        assert_eq!(m.version, "1.0");
        assert_eq!(m.app_version, "1.10");
        assert_eq!(m.icon, "");
        assert!(m.keywords.is_empty());
        assert!(m.deprecated);
        assert_eq!(m.annotations["a"], "1");
        assert_eq!(m.annotations["b"], "");
        assert_eq!(m.maintainers[0].email, "ann@example.com");
    }

    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn reads_chart_yaml_from_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-0.1.0.tgz");
        std::fs::write(
            &path,
            tgz(&[(
                "demo/Chart.yaml",
                b"apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            )]),
        )
        .unwrap();
        let m = read_chart_yaml(&path).unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "0.1.0"));
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(read_chart_yaml(&path).unwrap_err().is_input_error());
    }

    #[test]
    fn archive_limits_are_enforced_from_the_headers() {
        let chart = b"name: demo\nversion: 0.1.0\n";
        let big = vec![b'a'; (MAX_CHART_FILE_BYTES + 1) as usize];
        let err =
            inspect_chart_archive(&tgz(&[("demo/Chart.yaml", chart), ("demo/big", &big)])[..])
                .unwrap_err();
        assert!(matches!(err, ArchiveProblem::FileTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("MAX_CHART_FILE_BYTES"), "{err}");

        let err = inspect_chart_archive(&tgz(&[("demo/templates/x.yaml", b"x")])[..]).unwrap_err();
        assert!(matches!(err, ArchiveProblem::NoChartYaml), "{err}");

        let err = inspect_chart_archive(&tgz(&[("demo/Chart.yaml", b"a: &x [1]\nb: *x\n")])[..])
            .unwrap_err();
        assert!(err.to_string().contains("aliases"), "{err}");
    }

    #[test]
    fn index_lookup_keeps_only_the_requested_version() {
        let yaml = "apiVersion: v1\nentries:\n  other:\n    - version: 1.0.0\n      urls: [other-1.0.0.tgz]\n  demo:\n    - version: 0.2.0\n      urls: [demo-0.2.0.tgz]\n      digest: abc\n      created: \"2024-01-01T00:00:00Z\"\n    - version: 0.1.0\n      urls: [demo-0.1.0.tgz]\ngenerated: x\n";
        let found = parse_index(yaml.as_bytes(), "demo", "0.2.0").unwrap();
        let entry = found.entry.unwrap();
        assert_eq!(entry.urls, ["demo-0.2.0.tgz"]);
        assert_eq!(entry.digest.as_deref(), Some("abc"));
        assert_eq!(entry.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        let missing = parse_index(yaml.as_bytes(), "demo", "9.9.9").unwrap();
        assert!(missing.chart_listed && missing.entry.is_none());
        assert_eq!(missing.versions, ["0.2.0", "0.1.0"]);
        let absent = parse_index(yaml.as_bytes(), "nope", "1").unwrap();
        assert!(!absent.chart_listed);
        assert_eq!(
            absent.names.into_iter().collect::<Vec<_>>(),
            ["demo", "other"]
        );
    }

    #[test]
    fn index_refuses_aliases_depth_and_duplicates() {
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nentries: {}\n";
        let err = parse_index(bomb.as_bytes(), "demo", "1").unwrap_err();
        assert!(err.contains("aliases"), "{err}");
        let deep = format!(
            "junk: {}{}\nentries: {{}}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = parse_index(deep.as_bytes(), "demo", "1").unwrap_err();
        assert!(err.contains("MAX_YAML_DEPTH"), "{err}");
        let dup = "entries: {}\nentries: {}\n";
        assert!(parse_index(dup.as_bytes(), "demo", "1").is_err());
    }

    /// Property-based tests: whatever a repository sends, the parsers return a value or an
    /// error, never panic; valid indexes look up exactly what they list.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text made of YAML's building blocks (indicators, anchors, aliases, tags, flow
        /// and block collections, the index's own keys), to reach deep into the parser.
        fn yamlish() -> impl Strategy<Value = String> {
            let token = prop_oneof![
                Just("entries:"),
                Just("apiVersion: v1"),
                Just("name: demo"),
                Just("version: "),
                Just("urls:"),
                Just("digest: "),
                Just("created: "),
                Just("demo"),
                Just("1.0.0"),
                Just("\n"),
                Just("  "),
                Just("- "),
                Just(": "),
                Just(", "),
                Just("["),
                Just("]"),
                Just("{"),
                Just("}"),
                Just("&a "),
                Just("*a"),
                Just("? "),
                Just("!!str "),
                Just("!custom "),
                Just("<<: "),
                Just("---\n"),
                Just("...\n"),
                Just("\""),
                Just("'"),
                Just("|\n"),
                Just(">-\n"),
                Just("# c\n"),
                Just("~"),
                Just("null"),
                Just("1e999"),
                Just("0x1F"),
                Just("\t"),
                Just("%YAML 1.2\n"),
                Just("\u{feff}"),
            ];
            prop::collection::vec(token, 0..96).prop_map(|tokens| tokens.concat())
        }

        fn gzip(data: &[u8]) -> Vec<u8> {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(data).unwrap();
            gz.finish().unwrap()
        }

        /// A chart version: SemVer with optional pre-release and build metadata.
        fn version() -> impl Strategy<Value = String> {
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,6})?(\\+[a-z0-9]{1,5})?"
        }

        /// A sha256 hex digest, sometimes one that also reads as a float (`123…e456`).
        fn digest() -> impl Strategy<Value = String> {
            prop_oneof!["[0-9a-f]{64}", "[0-9]{60}e[0-9]{3}"]
        }

        /// `text` as a YAML scalar in one of Helm's or a human's styles.
        fn scalar(text: &str, style: u8) -> String {
            match style % 3 {
                0 => text.to_string(),
                1 => format!("'{text}'"),
                _ => format!("\"{text}\""),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn index_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_index(&bytes[..], "demo", "1.0.0");
            }

            #[test]
            fn index_parser_never_panics_on_yamlish_text(text in yamlish()) {
                let _ = parse_index(text.as_bytes(), "demo", "1.0.0");
            }

            #[test]
            fn chart_yaml_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_chart_yaml(&bytes, "Chart.yaml");
            }

            #[test]
            fn chart_yaml_parser_never_panics_on_yamlish_text(text in yamlish()) {
                let _ = parse_chart_yaml(text.as_bytes(), "Chart.yaml");
            }

            #[test]
            fn archive_walk_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
                let _ = inspect_chart_archive(&bytes[..]);
                // The same bytes as the tar stream inside a valid gzip.
                let _ = inspect_chart_archive(&gzip(&bytes)[..]);
            }

            #[test]
            fn archive_walk_never_panics_on_damaged_tars(
                damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            ) {
                let mut tar = Vec::new();
                {
                    let mut builder = tar::Builder::new(&mut tar);
                    let chart = b"apiVersion: v2\nname: demo\nversion: 0.1.0\n";
                    for (path, data) in [
                        ("demo/Chart.yaml", &chart[..]),
                        ("demo/templates/a-rather-long-name-that-needs-a-gnu-long-name-header-because-it-is-over-one-hundred-bytes.yaml", b"x: 1\n"),
                        ("demo/values.yaml", b"a: b\n"),
                    ] {
                        let mut header = tar::Header::new_gnu();
                        header.set_size(data.len() as u64);
                        header.set_mode(0o644);
                        header.set_cksum();
                        builder.append_data(&mut header, path, data).unwrap();
                    }
                    builder.finish().unwrap();
                }
                for (at, byte) in damage {
                    let i = at.index(tar.len());
                    tar[i] = byte;
                }
                let _ = inspect_chart_archive(&gzip(&tar)[..]);
            }

        }

        proptest! {
            // Each case parses an index of up to ~600 entries three times (debug builds
            // are slow at it): fewer cases than the default 256.
            #![proptest_config(ProptestConfig {
                cases: 64,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn generated_indexes_round_trip_the_version_lookup(
                charts in prop::collection::btree_map(
                    "[a-z][a-z0-9-]{0,15}",
                    prop::collection::vec((version(), digest(), any::<u8>()), 1..25),
                    1..25,
                ),
                pick in any::<prop::sample::Index>(),
                flow in any::<bool>(),
            ) {
                // Render the index as `helm repo index` would (block style), or in flow
                // style, with each version and digest in a random quoting style.
                let mut yaml = String::from("apiVersion: v1\nentries:\n");
                for (name, versions) in &charts {
                    yaml.push_str(&format!("  {name}:\n"));
                    for (v, d, style) in versions {
                        let url = format!("{name}-{v}.tgz");
                        if flow {
                            yaml.push_str(&format!(
                                "  - {{name: {name}, version: {}, digest: {}, urls: [{}]}}\n",
                                scalar(v, *style),
                                scalar(d, style / 3),
                                scalar(&url, style / 9)
                            ));
                        } else {
                            yaml.push_str(&format!(
                                "  - apiVersion: v2\n    created: \"2024-01-01T00:00:00Z\"\n    digest: {}\n    name: {name}\n    urls:\n    - {}\n    version: {}\n",
                                scalar(d, style / 3),
                                scalar(&url, style / 9),
                                scalar(v, *style)
                            ));
                        }
                    }
                }
                yaml.push_str("generated: \"2024-01-01T00:00:00Z\"\n");

                // A listed version: its first entry is found, with its URL and digest.
                let all: Vec<(&String, &(String, String, u8))> = charts
                    .iter()
                    .flat_map(|(name, versions)| versions.iter().map(move |v| (name, v)))
                    .collect();
                let (name, (v, _, _)) = all[pick.index(all.len())];
                let first = charts[name].iter().find(|(x, _, _)| x == v).unwrap();
                let found = parse_index(yaml.as_bytes(), name, v).unwrap();
                prop_assert!(found.chart_listed);
                let entry = found.entry.unwrap();
                prop_assert_eq!(&entry.version, v);
                prop_assert_eq!(entry.urls, vec![format!("{name}-{v}.tgz")]);
                prop_assert_eq!(entry.digest.as_deref(), Some(first.1.as_str()));
                if !flow {
                    prop_assert_eq!(entry.created.as_deref(), Some("2024-01-01T00:00:00Z"));
                }

                // An unlisted version: the chart's first versions as the hint.
                let missing = parse_index(yaml.as_bytes(), name, "not-a-version").unwrap();
                prop_assert!(missing.chart_listed && missing.entry.is_none());
                let expected: Vec<String> =
                    charts[name].iter().take(HINT_LEN).map(|(x, _, _)| x.clone()).collect();
                prop_assert_eq!(missing.versions, expected);

                // An unlisted chart: the alphabetically first names as the hint.
                let absent = parse_index(yaml.as_bytes(), "Not-A-Chart", "1.0.0").unwrap();
                prop_assert!(!absent.chart_listed && absent.entry.is_none());
                let expected: Vec<String> = charts.keys().take(HINT_LEN).cloned().collect();
                prop_assert_eq!(absent.names.into_iter().collect::<Vec<_>>(), expected);
            }
        }
    }
}
