//! Every hard limit on untrusted input, in one place.
//!
//! One controller serves every tenant of a cluster, so whatever a registry, a Helm
//! repository, a token server or a tenant's object sends is bounded here in memory, disk
//! and time before it is used. Each limit names the peers' figure it was chosen against;
//! `docs/security.md` lists them all with their values. This module depends on nothing:
//! the engine, the AOSM client, the controller and the CLI all read their bounds from it.
//!
//! Limits that an administrator may want to change per installation are controller flags
//! (their defaults live here too): the per-namespace cap on concurrent transfers.

use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Registries (distribution API)
// ---------------------------------------------------------------------------------------

/// Largest manifest or index read from a registry. containerd and oras-go refuse
/// manifests above 4 MiB; the OCI distribution spec asks registries to accept at least
/// 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest total of manifest bytes (root, indexes, child manifests) one transfer holds
/// while it plans a copy. An index of many children can otherwise make one transfer hold
/// `children × 4 MiB`. regclient and oras-go have no such budget; containerd bounds it
/// by its content store. 32 MiB is eight maximal manifests.
pub const MAX_METADATA_BYTES_PER_TRANSFER: usize = 32 * 1024 * 1024;

/// Most manifests (root, indexes and children, recursively) one transfer copies.
pub const MAX_MANIFESTS_PER_TRANSFER: usize = 1024;

/// Deepest nesting of indexes (an index of indexes of ...). The OCI image spec sets
/// none; containerd's and oras-go's walkers recurse without bound.
pub const MAX_INDEX_DEPTH: usize = 8;

/// Most distinct blobs (configs and layers) one transfer copies. Planning holds ~600
/// bytes per blob (descriptor, digest, dedup set), and the metadata budget alone would let
/// 32 MiB of minimal descriptors (~110 bytes of JSON each) stand for ~300,000 blobs. This
/// keeps the plan within ~10 MiB: a 16,385-blob manifest is refused ~6 MiB above a failed
/// copy's peak RSS (32,768 cost ~20 MiB). Overlay-based runtimes (Docker, containerd)
/// limit an image to 127 layers, so this is 128 such images, and an index's images share
/// most of their layers. oras-go, regclient and containerd set no such limit.
pub const MAX_BLOBS_PER_TRANSFER: usize = 16 * 1024;

/// Most referrers (signatures, SBOMs, ... and their own referrers) one transfer copies
/// with the artifact. oras-go and regclient set none.
pub const MAX_REFERRERS_PER_TRANSFER: usize = 1024;

/// Longest chain of referrers copied: a signature (1) of an SBOM (2) of an image is
/// two. Deeper chains are refused rather than cut, so nothing is silently left behind.
pub const MAX_REFERRER_DEPTH: usize = 4;

/// Child manifests of an index fetched at once while planning a copy.
pub const MANIFEST_FETCH_CONCURRENCY: usize = 4;

/// Largest token answer: a registry token server's (`{"token": ...}`), and Entra ID's or
/// a managed identity endpoint's (read by `azure_identity` through our capped transport).
/// oras-go's auth client reads at most 128 KiB (`maxResponseBytes`).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 128 * 1024;

/// Largest error body read from a registry, a Helm repository or ARM to build a message.
/// oras-go's errcode reader keeps 8 KiB (`maxErrorBytes`).
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

/// Largest `WWW-Authenticate`, `Location` or other header value we parse.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// Largest file pulled into a ConfigMap (`destination.configMap`): what the API server
/// accepts as a ConfigMap's data (1 MiB). Checked against the layer's descriptor before
/// any of its bytes are read.
pub const MAX_CONFIG_MAP_FILE_BYTES: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helm repositories
// ---------------------------------------------------------------------------------------

/// Largest `index.yaml` downloaded. Flux's source-controller defaults
/// `--helm-index-max-size` to 50 MiB; Helm itself sets none.
pub const MAX_HELM_INDEX_BYTES: usize = 50 * 1024 * 1024;

/// Largest chart archive (`.tgz`) downloaded to disk. Flux's `--helm-chart-max-size`
/// defaults to 10 MiB; charts of network functions are larger, Helm's decompressed cap is
/// 100 MiB, so the download cap is the same 100 MiB (a gzip never shrinks that content).
pub const MAX_CHART_ARCHIVE_BYTES: u64 = 100 * 1024 * 1024;

/// Largest total of a chart's files once decompressed. Helm: `MaxDecompressedChartSize`
/// (100 MiB).
pub const MAX_CHART_DECOMPRESSED_BYTES: u64 = 100 * 1024 * 1024;

/// Largest single file inside a chart archive once decompressed. Helm:
/// `MaxDecompressedFileSize` (5 MiB); Flux's `--helm-chart-file-max-size` (5 MiB).
pub const MAX_CHART_FILE_BYTES: u64 = 5 * 1024 * 1024;

/// Most entries in a chart archive.
pub const MAX_CHART_ENTRIES: usize = 10_000;

/// Largest `Chart.yaml`.
pub const MAX_CHART_YAML_BYTES: u64 = 1024 * 1024;

/// Largest tar extension header (PAX or GNU long name) in a chart archive. Go's
/// `archive/tar` (which Helm uses) refuses special headers above 1 MiB
/// (`maxSpecialFileSize`).
pub const MAX_TAR_EXTENSION_BYTES: u64 = 1024 * 1024;

/// YAML budget: most parser events in one document (`index.yaml`, `Chart.yaml`). With
/// aliases refused, memory stays near the document's size.
pub const MAX_YAML_EVENTS: usize = 5_000_000;

/// YAML budget: deepest nesting of one document.
pub const MAX_YAML_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------
// Azure Resource Manager and Entra ID answers
// ---------------------------------------------------------------------------------------

/// Largest ARM answer read (an artifact manifest lists at most a few hundred artifacts).
pub const MAX_ARM_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Longest one ARM request may take, the answer's body included. The shared HTTP client
/// bounds only connecting (30 s) and each single read (300 s), so an endpoint trickling
/// its answer a byte at a time would otherwise hold a transfer for as long as it likes.
/// ARM answers these calls in well under a second.
pub const ARM_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Shortest wait between two polls of a long-running operation (a `Retry-After: 0` does
/// not turn the poll into a busy loop).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait between two polls of a long-running operation.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Longest short name accepted from ARM (`storeType`, `credentialType`, an artifact
/// type, a manifest state, an expiry timestamp).
pub const MAX_ARM_NAME_BYTES: usize = 64;

/// Longest artifact or repository name accepted from ARM (ACR repository names are at
/// most 256 characters).
pub const MAX_ARTIFACT_NAME_BYTES: usize = 256;

/// Longest artifact version accepted from ARM (an OCI tag is at most 128 characters).
pub const MAX_ARTIFACT_VERSION_BYTES: usize = 128;

/// Longest `listCredential` user name accepted (ACR token names are at most 50).
pub const MAX_CREDENTIAL_USERNAME_BYTES: usize = 256;

/// Longest `listCredential` token accepted: it is sent in an `Authorization` header.
pub const MAX_CREDENTIAL_TOKEN_BYTES: usize = MAX_HEADER_VALUE_BYTES;

/// Longest `acrServerUrl` accepted: `https://`, a 253-byte DNS name and a port.
pub const MAX_SERVER_URL_BYTES: usize = 272;

/// Longest ARM error code kept in a message.
pub const MAX_ARM_ERROR_CODE_CHARS: usize = 64;

// ---------------------------------------------------------------------------------------
// Time and concurrency (ArtifactTransfer spec and the controller)
// ---------------------------------------------------------------------------------------

/// Longest `spec.timeout` of an ArtifactTransfer (also enforced by the CRD's CEL rule).
pub const MAX_TRANSFER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Shortest `spec.interval` of an ArtifactTransfer (also enforced by the CRD's CEL rule):
/// a re-check is one HEAD, and a tenant's many transfers must not turn the controller
/// into a load generator against a registry.
pub const MIN_TRANSFER_INTERVAL: Duration = Duration::from_secs(10);

/// Default of `run --max-concurrent-per-namespace`: transfers of one namespace running at
/// once, so one namespace cannot hold every worker (`--concurrency`, default 4).
pub const DEFAULT_MAX_CONCURRENT_PER_NAMESPACE: usize = 2;

// ---------------------------------------------------------------------------------------
// What the transfer core remembers between transfers (tenants choose how many stores,
// identities and manifests exist, so every cache is bounded; the least recently used
// entry goes first).

/// ARM clients kept (one per store configuration and identity).
pub const MAX_CACHED_ARM_CLIENTS: usize = 256;
/// Store types, manifests and scoped credentials kept (one per store or manifest and
/// identity).
pub const MAX_CACHED_MANIFESTS: usize = 1024;
/// Registry clients of store registries kept (one per registry, manifest and identity:
/// their tokens outlive one transfer).
pub const MAX_CACHED_STORE_CLIENTS: usize = 256;
