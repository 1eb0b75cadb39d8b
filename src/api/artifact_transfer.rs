//! `ArtifactTransfer` (namespaced): one artifact moved from a source to a destination,
//! exactly one of which is an AOSM artifact store (push into the store, or pull from it).
//!
//! `spec.source` and `spec.destination` are Rust enums (externally tagged: `{registry:
//! {...}}`), so a spec with two sources does not even deserialize; the schema carries the
//! same one-of as `oneOf` + a CEL rule with a readable message.
//!
//! Printer columns: a column's JSONPath can neither pick "whichever side is the store" nor
//! cut a string, so the status carries display copies: `status.artifact` /
//! `status.version` (the store side, set by [`ArtifactTransferStatus::describe`]) and
//! `status.shortDigest` (12 hex digits, set with `digest` by
//! [`ArtifactTransferStatus::set_digest`]). `kubectl get at` shows Ready, Direction,
//! Artifact, Version, Digest (short), Age; `-o wide` adds the full digest and the Ready
//! message.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{DurationError, parse_duration};
use super::validation::ValidationError;
use super::{SecretRef, patterns};

/// What an ArtifactTransfer moves and where: exactly one of `source` and `destination` is
/// an `artifactStore` (destination: push into the store; source: pull from it).
// `printcolumn(type_ = "string")` repeats by design; clippy reads it as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "artifacts.aosm.dev",
    version = "v1alpha1",
    kind = "ArtifactTransfer",
    namespaced,
    status = "ArtifactTransferStatus",
    derive = "PartialEq",
    doc = "ArtifactTransfer copies one artifact (a container image or index, a Helm chart, an ARM template or other file) between the cluster side (an OCI registry, a Helm HTTP repository, a ConfigMap) and an Azure Operator Service Manager artifact store, byte-exact, using short-lived credentials scoped to the AOSM artifact manifest. Push: destination.artifactStore; pull: source.artifactStore. Deleting it never deletes artifacts.",
    shortname = "at",
    category = "aosm",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the destination holds the artifact for the current generation"
    ),
    printcolumn(
        name = "Direction",
        type_ = "string",
        json_path = ".status.direction",
        description = "Push (into the artifact store) or Pull (from it)"
    ),
    printcolumn(
        name = "Artifact",
        type_ = "string",
        json_path = ".status.artifact",
        description = "Artifact name in the store"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.version",
        description = "Artifact version in the store"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.shortDigest",
        description = "Digest at the destination, shortened to 12 hex digits"
    ),
    printcolumn(
        name = "Full-Digest",
        type_ = "string",
        json_path = ".status.digest",
        priority = 1,
        description = "Digest at the destination"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        priority = 1,
        description = "Message of the Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.source) || !has(self.destination) || has(self.source.artifactStore) != has(self.destination.artifactStore)")
        .message("exactly one side must be an artifactStore: destination.artifactStore to push into the store, or source.artifactStore to pull from it"),
    validation = Rule::new("!has(self.platforms) || size(self.platforms) == 0 || !has(self.source) || has(self.source.registry) || has(self.source.artifactStore)")
        .message("platforms filters multi-arch images: it needs a registry or artifactStore source")
        .field_path(".platforms")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.platforms) || size(self.platforms) == 0 || !has(self.destination) || !has(self.destination.configMap)")
        .message("platforms filters multi-arch images: a configMap destination takes one file, so platforms must be empty")
        .field_path(".platforms")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.referrers) || !self.referrers || !has(self.source) || has(self.source.registry) || has(self.source.artifactStore)")
        .message("referrers copies the signatures and SBOMs of a registry artifact: it needs a registry or artifactStore source")
        .field_path(".referrers")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.referrers) || !self.referrers || !has(self.destination) || !has(self.destination.configMap)")
        .message("referrers copies the signatures and SBOMs of a registry artifact: a configMap destination takes one file, so referrers must be false")
        .field_path(".referrers")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.source) || !has(self.destination) || !has(self.source.helmRepository) || !has(self.destination.artifactStore) || self.source.helmRepository.chart == self.destination.artifactStore.artifact")
        .message("a Helm chart pushed to an artifact store must have its chart name as the artifact name: source.helmRepository.chart must equal destination.artifactStore.artifact"),
    validation = Rule::new("!has(self.source) || !has(self.destination) || !has(self.source.helmRepository) || !has(self.destination.artifactStore) || self.source.helmRepository.version == self.destination.artifactStore.version")
        .message("a Helm chart pushed to an artifact store must have its chart version as the artifact version: source.helmRepository.version must equal destination.artifactStore.version"),
)]
pub struct ArtifactTransferSpec {
    /// Where the artifact comes from: exactly one of `registry`, `helmRepository`,
    /// `configMap` or `artifactStore`.
    #[x_kube(
        validation = Rule::new("(has(self.registry) ? 1 : 0) + (has(self.helmRepository) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.artifactStore) ? 1 : 0) == 1")
            .message("source must set exactly one of registry, helmRepository, configMap or artifactStore"),
        validation = Rule::new(r"!has(self.registry) || self.registry.image.matches('(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[a-f0-9]{64})$')")
            .message("source.registry.image must end with a tag or a digest, e.g. host/repo:1.2.3 or host/repo@sha256:<64 hex>")
    )]
    pub source: TransferSource,

    /// Where the artifact goes: exactly one of `artifactStore` (push), `registry` (pull) or
    /// `configMap` (pull a one-file artifact into a ConfigMap).
    #[x_kube(
        validation = Rule::new("(has(self.registry) ? 1 : 0) + (has(self.artifactStore) ? 1 : 0) + (has(self.configMap) ? 1 : 0) == 1")
            .message("destination must set exactly one of artifactStore, registry or configMap"),
        validation = Rule::new("!has(self.registry) || !self.registry.image.contains('@')")
            .message("destination.registry.image cannot be a digest reference: give a tag (or none: the artifact version is used)"),
        validation = Rule::new(r"!has(self.artifactStore) || self.artifactStore.version.matches('^[0-9]+\\.[0-9]+\\.[0-9]+$')")
            .message("destination.artifactStore.version must be MAJOR.MINOR.PATCH (e.g. 1.0.0) to push into an artifact store: AOSM requires that format for ACR-backed stores")
            .field_path(".artifactStore.version")
    )]
    pub destination: TransferDestination,

    /// Only with a registry or artifactStore source holding a multi-arch index: copy only
    /// these platforms, each `os/arch[/variant]` (e.g. `linux/amd64`, `linux/arm64/v8`);
    /// the index is then rewritten and its new digest reported. Default (empty): copy
    /// everything, byte-exact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = patterns::PLATFORM), length(max = 64)), length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub platforms: Vec<String>,

    /// Only with a registry or artifactStore source: when true, the artifact's referrers
    /// (signatures, SBOMs, attestations: the manifests whose `subject` is the artifact or
    /// one of its platform manifests, and their own referrers) are copied with it,
    /// byte-exact, into the same destination repository, before the tag is written. The
    /// destination's referrers API is used, or its referrers tag schema (`sha256-<hex>`
    /// tags) kept up to date where it has none. `status.referrers` counts them. Default
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub referrers: bool,

    /// How often a Ready transfer re-checks (with one HEAD request) that the destination
    /// still holds the digest, and re-copies when it does not. Go duration syntax with
    /// units `ms`, `s`, `m`, `h`, at least `10s` (a floor that keeps many transfers from
    /// turning the controller into a load generator). Default `1h`. Examples: `10m`,
    /// `1h30m`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = patterns::DURATION), length(max = 32))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self) >= duration('10s')").message("interval must be at least 10s"))]
    pub interval: String,

    /// How long one attempt may take before it is abandoned and retried with backoff.
    /// Go duration syntax (`ms`, `s`, `m`, `h`), from `1s` to `24h`. Default `30m`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = patterns::DURATION), length(max = 32))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))").message("timeout must be between 1s and 24h"))]
    pub timeout: String,

    /// When true, the controller does nothing for this transfer (no copy, no re-check)
    /// until it is set back to false. Default false.
    #[serde(default)]
    pub suspend: bool,
}

/// `spec.interval` when the spec does not say (the schema's default, `1h`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// `spec.timeout` when the spec does not say (the schema's default, `30m`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn default_interval() -> String {
    "1h".to_string()
}

fn default_timeout() -> String {
    "30m".to_string()
}

/// Where the artifact comes from: exactly one of these.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TransferSource {
    /// An image, image index or other OCI artifact in an OCI registry (push into the store).
    /// Example: `{image: registry.registry.svc:5000/contoso/cnf:1.2.3, secretRef: {name:
    /// regcred}}`.
    Registry(RegistryImage),
    /// A chart from a Helm HTTP(S) repository (`index.yaml`), pushed into the store as an
    /// OCI Helm chart usable by `helm pull oci://`. The chart name and version must equal
    /// the destination artifact name and version.
    HelmRepository(HelmRepositorySource),
    /// A key of a ConfigMap in the transfer's namespace (an ARM template or another small
    /// file), pushed into the store as a one-layer OCI artifact like `oras push` makes.
    ConfigMap(ConfigMapSource),
    /// An artifact in an AOSM artifact store (pull from the store into a registry).
    ArtifactStore(StoreArtifact),
}

/// Where the artifact goes: exactly one of these.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TransferDestination {
    /// An artifact in an AOSM artifact store (push). The (artifact, version) must be
    /// listed in the artifact manifest.
    ArtifactStore(StoreArtifact),
    /// An OCI registry (pull from the store). The tag defaults to the artifact version.
    Registry(RegistryImage),
    /// A key of a ConfigMap in the transfer's namespace (pull from the store), for an
    /// artifact of one file of at most 1 MiB, e.g. an ARM template to edit in a debugging
    /// cycle. The controller creates the ConfigMap, owned by the transfer (deleted with it),
    /// and writes it again only when the artifact's digest changes; it never takes over a
    /// ConfigMap it did not create. UTF-8 content goes to `data`, anything else to
    /// `binaryData`.
    ConfigMap(ConfigMapTarget),
}

/// A ConfigMap key a one-file artifact is pulled into.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapTarget {
    /// Name of the ConfigMap, in the transfer's namespace; created by the controller (a
    /// ConfigMap of that name that the transfer does not control is never overwritten).
    /// Example: `nf-arm-template`.
    #[schemars(regex(pattern = patterns::K8S_NAME), length(min = 1, max = 253))]
    pub name: String,

    /// Key the file is written under (in `data`, or `binaryData` when it is not UTF-8).
    /// Example: `template.json`.
    #[schemars(regex(pattern = patterns::CONFIG_MAP_KEY), length(min = 1, max = 253))]
    pub key: String,
}

/// An image reference in an OCI registry and how to connect to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.plainHTTP || (!has(self.caSecretRef) && !self.insecure)")
        .message("caSecretRef and insecure are TLS settings: they cannot be combined with plainHTTP")
)]
pub struct RegistryImage {
    /// Image reference with an explicit registry host:
    /// `host[:port]/repository[:tag][@sha256:<64 hex>]`. The repository path is lowercase.
    /// A source needs a tag or a digest; a destination takes a tag or none (then the
    /// artifact version is used), never a digest. Example:
    /// `registry.registry.svc:5000/contoso/cnf:1.2.3`.
    #[schemars(regex(pattern = patterns::IMAGE), length(min = 1, max = 512))]
    pub image: String,

    /// Secret of type `kubernetes.io/dockerconfigjson` (key `.dockerconfigjson`) in the
    /// transfer's namespace with credentials for this registry. Default: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Secret in the transfer's namespace whose key `ca.crt` holds PEM CA certificates to
    /// trust for this registry, in addition to the system roots and `SSL_CERT_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,

    /// Skip TLS certificate verification (not recommended). Default false.
    #[serde(default)]
    pub insecure: bool,

    /// Talk plain HTTP instead of HTTPS (for in-cluster registries without TLS). Default
    /// false.
    #[serde(default, rename = "plainHTTP")]
    pub plain_http: bool,
}

/// A chart in a Helm HTTP(S) repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.url.matches('^https?://[^/]*@')")
        .message("helmRepository.url must not contain credentials: put them in a basic-auth Secret named by secretRef")
        .field_path(".url"),
    validation = Rule::new("!self.url.startsWith('http://') || (!has(self.caSecretRef) && !self.insecure)")
        .message("caSecretRef and insecure apply to https:// repository URLs only")
)]
pub struct HelmRepositorySource {
    /// Repository URL, `http://` or `https://`, where `index.yaml` is found (no query).
    /// Example: `http://charts.charts.svc:8080`.
    #[schemars(regex(pattern = patterns::HTTP_URL), length(min = 1, max = 2048))]
    pub url: String,

    /// Chart name as listed in the repository's `index.yaml`. Example: `contoso-cnf`.
    #[schemars(regex(pattern = patterns::CHART_NAME), length(min = 1, max = 250))]
    pub chart: String,

    /// Exact chart version (SemVer; no ranges). When pushing into an artifact store it must
    /// be `MAJOR.MINOR.PATCH` and equal the artifact version. Example: `0.1.0`.
    #[schemars(regex(pattern = patterns::CHART_VERSION), length(min = 1, max = 128))]
    pub version: String,

    /// Secret in the transfer's namespace with basic-auth keys `username` and `password`
    /// for the repository. Default: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Secret in the transfer's namespace whose key `ca.crt` holds PEM CA certificates to
    /// trust for the repository (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,

    /// Skip TLS certificate verification (https only; not recommended). Default false.
    #[serde(default)]
    pub insecure: bool,
}

/// A file held in a ConfigMap of the transfer's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap. Example: `nf-arm-template`.
    #[schemars(regex(pattern = patterns::K8S_NAME), length(min = 1, max = 253))]
    pub name: String,

    /// Key in the ConfigMap (`data` or `binaryData`); also the file name recorded in the
    /// artifact (`org.opencontainers.image.title`). Example: `template.json`.
    #[schemars(regex(pattern = patterns::CONFIG_MAP_KEY), length(min = 1, max = 253))]
    pub key: String,

    /// Media type of the layer. Default `application/json` (ARM templates).
    #[serde(default = "default_media_type")]
    #[schemars(regex(pattern = patterns::MEDIA_TYPE), length(max = 255))]
    pub media_type: String,
}

fn default_media_type() -> String {
    "application/json".to_string()
}

/// Which kind of store a `storeRef` names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum StoreKind {
    /// An ArtifactStore in the transfer's namespace (the default).
    #[default]
    ArtifactStore,
    /// A ClusterArtifactStore whose `allowedNamespaces` selects the transfer's namespace.
    ClusterArtifactStore,
}

impl StoreKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::ArtifactStore => "ArtifactStore",
            StoreKind::ClusterArtifactStore => "ClusterArtifactStore",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to an ArtifactStore (same namespace) or a ClusterArtifactStore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// `ArtifactStore` (default; in the transfer's namespace) or `ClusterArtifactStore`.
    #[serde(default)]
    pub kind: StoreKind,
    /// Name of the store object. Example: `contoso`.
    #[schemars(regex(pattern = patterns::K8S_NAME), length(min = 1, max = 253))]
    pub name: String,
}

/// An artifact in an AOSM artifact store: a (name, version) listed in an artifact
/// manifest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreArtifact {
    /// The ArtifactStore or ClusterArtifactStore holding the artifact.
    pub store_ref: StoreRef,

    /// Name of the AOSM artifact manifest that lists the artifact; its `listCredential`
    /// gives the registry credential. Example: `contoso-cnf-manifest`.
    #[schemars(regex(pattern = patterns::MANIFEST_NAME), length(min = 1, max = 64))]
    pub manifest: String,

    /// Artifact name as listed in the manifest; the repository in the store's registry
    /// (lowercase OCI repository path). For a Helm chart: the chart name. Example:
    /// `contoso-cnf-container`.
    #[schemars(regex(pattern = patterns::ARTIFACT_NAME), length(min = 1, max = 256))]
    pub artifact: String,

    /// Artifact version as listed in the manifest; the tag in the store's registry. To
    /// push (`destination.artifactStore`) it must be `MAJOR.MINOR.PATCH`, Microsoft's rule
    /// for ACR-backed stores; a pull takes the version as the manifest lists it (an OCI
    /// tag, e.g. `v1`). Example: `0.1.0`.
    #[schemars(regex(pattern = patterns::ARTIFACT_VERSION), length(min = 1, max = 128))]
    pub version: String,
}

/// `Push` (into the artifact store) or `Pull` (out of it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Direction {
    /// Into the artifact store.
    Push,
    /// Out of the artifact store.
    Pull,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Push => "Push",
            Direction::Pull => "Pull",
        })
    }
}

/// Progress of the current or last copy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferProgress {
    /// Bytes of all blobs to copy (layers and configs).
    #[schemars(range(min = 0))]
    pub bytes_total: i64,
    /// Bytes handled so far (copied, skipped or mounted).
    #[schemars(range(min = 0))]
    pub bytes_done: i64,
    /// Number of blobs to copy.
    #[schemars(range(min = 0))]
    pub blobs_total: i64,
    /// Blobs uploaded.
    #[schemars(range(min = 0))]
    pub blobs_copied: i64,
    /// Blobs the destination already had.
    #[schemars(range(min = 0))]
    pub blobs_skipped: i64,
    /// Blobs mounted from another repository of the same registry.
    #[schemars(range(min = 0))]
    pub blobs_mounted: i64,
}

/// Observed state of an ArtifactTransfer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactTransferStatus {
    /// The metadata.generation the controller last acted on; 0 (a schema default) until
    /// it first acts on the object, so kstatus tools read a new object as in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions (kstatus): `Ready` (True only when the destination holds the digest for
    /// the observed generation), `Reconciling` while work is in progress (reason
    /// Progressing or ProgressingWithRetry), `Stalled` when it cannot succeed without a
    /// change (reason ArtifactNotInManifest, VersionFormat, ChartNameMismatch,
    /// SecretNotFound, ConfigMapNotFound, ConfigMapConflict, NotASingleFile, StoreNotAllowed,
    /// Forbidden, SourceNotFound, UnsupportedStoreType or InvalidSpec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// `Push` (into the artifact store) or `Pull` (from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,

    /// Artifact name on the store side (copied from the spec for display).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,

    /// Artifact version on the store side (copied from the spec for display).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Digest of the source manifest (`sha256:...`). Differs from `digest` only when
    /// `platforms` filtered an index or the source was converted (Helm repository chart,
    /// ConfigMap file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,

    /// Digest of the manifest at the destination (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// `digest` shortened for display: the first 12 hex digits, without the algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_digest: Option<String>,

    /// Full reference of the destination. Example:
    /// `x.azurecr.io/contoso-cnf-container:0.1.0`; for a ConfigMap destination
    /// `configmap/<name>/<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ref: Option<String>,

    /// Artifact type as listed in the AOSM manifest: OCIArtifact, ArmTemplate, ImageFile,
    /// VhdImageFile or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,

    /// With `spec.referrers`: how many referrers (signatures, SBOMs, ...) of the artifact
    /// the destination holds after the last copy, copied then or found there already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrers: Option<i64>,

    /// Progress of the current or last copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TransferProgress>,

    /// When the current or last copy started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When the last successful copy (or re-check) completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,

    /// The value of the `artifacts.aosm.dev/requested-at` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl ArtifactTransferStatus {
    /// A status with `direction`, `artifact` and `version` filled from `spec` (what the
    /// printer columns show), everything else empty.
    pub fn for_spec(spec: &ArtifactTransferSpec) -> Self {
        let mut status = Self::default();
        status.describe(spec);
        status
    }

    /// Sets `direction`, `artifact` and `version` from `spec`.
    pub fn describe(&mut self, spec: &ArtifactTransferSpec) {
        let store = spec.store_side();
        self.direction = Some(spec.direction());
        self.artifact = Some(store.artifact.clone());
        self.version = Some(store.version.clone());
    }

    /// Sets `digest` and `shortDigest`.
    pub fn set_digest(&mut self, digest: impl Into<String>) {
        let digest = digest.into();
        self.short_digest = Some(short_digest(&digest));
        self.digest = Some(digest);
    }
}

/// `sha256:0123456789abcdef...` → `0123456789ab` (the first 12 hex digits).
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

impl ArtifactTransfer {
    /// The value of the `artifacts.aosm.dev/requested-at` annotation, if set: a new value
    /// (different from `status.lastHandledReconcileAt`) asks for a re-run.
    pub fn requested_at(&self) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(super::REQUESTED_AT_ANNOTATION)
            .map(String::as_str)
    }
}

impl ArtifactTransferSpec {
    /// Push (the destination is the store) or Pull (the source is).
    pub fn direction(&self) -> Direction {
        match self.destination {
            TransferDestination::ArtifactStore(_) => Direction::Push,
            TransferDestination::Registry(_) | TransferDestination::ConfigMap(_) => Direction::Pull,
        }
    }

    /// The artifact-store side of the transfer: the destination for a push, the source for
    /// a pull. For a spec breaking the "exactly one side is the store" rule (both or none),
    /// the destination if it is a store, else the source's if any, else an empty
    /// [`StoreArtifact`]; [`Self::validate`] reports such specs.
    pub fn store_side(&self) -> &StoreArtifact {
        static EMPTY: LazyLock<StoreArtifact> = LazyLock::new(StoreArtifact::default);
        match (&self.destination, &self.source) {
            (TransferDestination::ArtifactStore(s), _) => s,
            (_, TransferSource::ArtifactStore(s)) => s,
            _ => &EMPTY,
        }
    }

    /// `interval` as a [`Duration`].
    pub fn interval(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.interval)
    }

    /// `timeout` as a [`Duration`].
    pub fn timeout(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.timeout)
    }

    /// `interval`, or [`DEFAULT_INTERVAL`] when it cannot be read (the schema refuses such
    /// a value; an object from an older CRD may still hold one).
    pub fn interval_or_default(&self) -> Duration {
        self.interval().unwrap_or(DEFAULT_INTERVAL)
    }

    /// `timeout`, or [`DEFAULT_TIMEOUT`] when it cannot be read.
    pub fn timeout_or_default(&self) -> Duration {
        self.timeout().unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Checks the spec against the CRD's schema and CEL rules (see [`super::validation`]),
    /// for specs that did not come through an API server (e.g. the CLI's `transfer -f`).
    /// Returns every broken rule, each naming its field (`spec.…`).
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        super::validation::validate_spec("ArtifactTransfer", self)
    }
}
