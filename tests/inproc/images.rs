//! Test content for the in-process tests: images (a config and layers of pseudo-random
//! bytes, an OCI manifest serialised here) and indexes seeded straight into a
//! [`FakeRegistry`], engine endpoints on a fake, and the byte-exact check of a copy.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use aosm_artifact_operator::engine::retry::RetryPolicy;
use aosm_artifact_operator::engine::{
    Credentials, Endpoint, ImageRef, RegistryClient, RegistryOptions,
};

use super::fake_registry::{FakeRegistry, sha256};

/// OCI image manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image seeded into a fake: its manifest's digest and bytes, and its blobs (config
/// first, then the layers) with their bytes.
pub struct Image {
    /// Digest of the manifest.
    pub digest: String,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// (digest, bytes) of the config and each layer.
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Image {
    /// The digest of layer `i` (0 = the first layer, after the config).
    pub fn layer(&self, i: usize) -> &str {
        &self.blobs[i + 1].0
    }
}

/// `n` pseudo-random bytes, different for each `seed` (cheap in debug builds).
pub fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed).wrapping_mul(0xA24B_AED4_963E_E407);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

fn descriptor(digest: &str, size: usize, media_type: &str) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// Seeds an image with layers of `layers` bytes into `repo` of `reg` under `tag` (or
/// only by digest when `tag` is `None`); `seed` varies the content (config included).
pub fn image_seeded(
    reg: &FakeRegistry,
    repo: &str,
    tag: Option<&str>,
    layers: &[usize],
    seed: u8,
) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let mut blobs = vec![(reg.put_blob(repo, &config), config)];
    for (i, size) in layers.iter().enumerate() {
        let data = bytes(*size, seed.wrapping_mul(31).wrapping_add(i as u8 + 1));
        blobs.push((reg.put_blob(repo, &data), data));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(&blobs[0].0, blobs[0].1.len(), "application/vnd.oci.image.config.v1+json"),
        "layers": blobs[1..]
            .iter()
            .map(|(d, b)| descriptor(d, b.len(), "application/vnd.oci.image.layer.v1.tar+gzip"))
            .collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).expect("JSON");
    let digest = sha256(&manifest);
    reg.put_manifest(repo, tag.unwrap_or(&digest), MANIFEST, &manifest);
    Image {
        digest,
        manifest,
        blobs,
    }
}

/// Seeds an image with layers of `layers` bytes as `repo:tag`.
pub fn image(reg: &FakeRegistry, repo: &str, tag: &str, layers: &[usize]) -> Image {
    image_seeded(reg, repo, Some(tag), layers, 0)
}

/// Seeds an index of `children` (stored by digest) as `repo:tag`; returns its digest and
/// bytes.
pub fn index(reg: &FakeRegistry, repo: &str, tag: &str, children: &[&Image]) -> (String, Vec<u8>) {
    let archs = ["amd64", "arm64", "s390x", "ppc64le"];
    let manifests: Vec<_> = children
        .iter()
        .zip(archs.iter().cycle())
        .map(|(child, arch)| {
            let mut d = descriptor(&child.digest, child.manifest.len(), MANIFEST);
            d["platform"] = serde_json::json!({ "architecture": arch, "os": "linux" });
            d
        })
        .collect();
    let index =
        serde_json::json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": manifests });
    let bytes = serde_json::to_vec(&index).expect("JSON");
    (reg.put_manifest(repo, tag, INDEX, &bytes), bytes)
}

/// Fast retries: 4 attempts, 5 ms base delay, `Retry-After` capped at 2 s.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(2),
    }
}

/// An engine endpoint for `reference` (`repo:tag`) on `reg`, anonymous, [`quick_retry`].
pub fn endpoint(reg: &FakeRegistry, reference: &str) -> Endpoint {
    endpoint_with(reg, reference, Credentials::Anonymous, quick_retry())
}

/// An engine endpoint for `reference` on `reg` with these credentials and retry policy.
pub fn endpoint_with(
    reg: &FakeRegistry,
    reference: &str,
    credentials: Credentials,
    retry: RetryPolicy,
) -> Endpoint {
    let options = RegistryOptions {
        plain_http: true,
        credentials,
        retry,
        ..Default::default()
    };
    Endpoint {
        client: Arc::new(RegistryClient::new(&reg.host, &options).expect("a client")),
        reference: ImageRef::parse(&format!("{}/{reference}", reg.host)).expect("a reference"),
    }
}

/// Asserts `dst` holds every blob of `image` byte for byte in `repo`, and `tag` names
/// the image's manifest.
pub fn assert_copied(dst: &FakeRegistry, repo: &str, tag: &str, image: &Image) {
    for (digest, data) in &image.blobs {
        let stored = dst
            .blob(repo, digest)
            .unwrap_or_else(|| panic!("{digest} missing"));
        assert_eq!(sha256(&stored), *digest);
        assert_eq!(&stored[..], &data[..]);
    }
    let manifest = dst.manifest(repo, tag).expect("the tag");
    assert_eq!(sha256(&manifest), image.digest);
}
