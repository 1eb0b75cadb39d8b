//! A transfer request with everything resolved: no Kubernetes objects, no lookups left.

use crate::aosm::{Cloud, Identity, StoreId};
use crate::engine::{Credentials, PlatformFilter};

/// A registry side (source or destination) outside the store.
#[derive(Clone, Debug)]
pub struct RegistrySide {
    /// Reference `host[:port]/repo[:tag][@digest]`.
    pub image: String,
    /// Credentials (from a dockerconfigjson Secret, or anonymous).
    pub credentials: Credentials,
    /// Extra CA bundle (PEM), from a Secret's `ca.crt`.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip TLS verification.
    pub insecure: bool,
    /// Use plain HTTP.
    pub plain_http: bool,
}

/// A Helm HTTP repository source.
#[derive(Clone, Debug)]
pub struct HelmSource {
    /// Repository URL.
    pub url: String,
    /// Chart name.
    pub chart: String,
    /// Exact chart version.
    pub version: String,
    /// Basic-auth credentials.
    pub credentials: Credentials,
    /// Extra CA bundle (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Skip TLS verification.
    pub insecure: bool,
}

/// Small content pushed as a file (e.g. an ARM template from a ConfigMap).
#[derive(Clone, Debug)]
pub struct FileSource {
    /// File name (the layer's title).
    pub name: String,
    /// Layer media type.
    pub media_type: String,
    /// Content.
    pub data: Vec<u8>,
}

/// An AOSM artifact store and how to reach it.
/// A store configuration and its identity; it keys everything the transfer core caches
/// per store, so a wrong or rotated secret never rides on what another identity was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    /// Which store.
    pub id: StoreId,
    /// Its cloud.
    pub cloud: Cloud,
    /// ARM endpoint override.
    pub arm_endpoint: Option<String>,
    /// Authority host override.
    pub authority_host: Option<String>,
    /// ARM api-version.
    pub api_version: String,
    /// Identity for ARM.
    pub identity: Identity,
}

/// An artifact in a store's manifest.
#[derive(Clone, Debug)]
pub struct StoreSide {
    /// The store.
    pub store: StoreConfig,
    /// Artifact manifest name.
    pub manifest: String,
    /// Artifact name.
    pub artifact: String,
    /// Artifact version (tag).
    pub version: String,
}

/// Where the content comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// An image or artifact in a registry.
    Registry(RegistrySide),
    /// A chart in a Helm HTTP repository.
    HelmRepository(HelmSource),
    /// In-memory file content.
    File(FileSource),
    /// Files on disk, one layer each (`oras push`-style; the CLI's `store push`).
    LocalFiles(Vec<crate::engine::files::FileSpec>),
    /// An artifact in the store (pull).
    Store(Box<StoreSide>),
}

/// Where the content goes.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Into the store (push).
    Store(Box<StoreSide>),
    /// Into a registry (pull).
    Registry(RegistrySide),
    /// Into a ConfigMap key (pull of a one-file artifact): the executor reads the file
    /// into memory ([`super::TransferOutcome::file`]); the caller writes the ConfigMap.
    ConfigMap(ConfigMapSide),
}

/// A ConfigMap key a one-file artifact goes into, and what it holds now.
#[derive(Clone, Debug)]
pub struct ConfigMapSide {
    /// The ConfigMap's name (in the transfer's namespace).
    pub name: String,
    /// The key.
    pub key: String,
    /// The artifact digest the ConfigMap was last written from (its
    /// [`crate::api::CONFIG_MAP_DIGEST_ANNOTATION`]), when it exists, is controlled by the
    /// transfer and still has the key: the file is not read again while the store holds
    /// that digest.
    pub held_digest: Option<String>,
    /// The `resourceVersion` of the ConfigMap as found; `None` when it does not exist yet.
    /// A write must not take over one created, or changed, since.
    pub found_version: Option<String>,
}

impl ConfigMapSide {
    /// How the status names it: `configmap/<name>/<key>`.
    pub fn reference(&self) -> String {
        format!("configmap/{}/{}", self.name, self.key)
    }
}

/// One transfer.
#[derive(Clone, Debug)]
pub struct TransferRequest {
    /// Source.
    pub source: Source,
    /// Destination.
    pub destination: Destination,
    /// Platforms to keep from a multi-arch index.
    pub platforms: Vec<PlatformFilter>,
    /// Copy the artifact's referrers too (registry and store sources only).
    pub referrers: bool,
}
