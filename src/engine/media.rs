//! Media types and the parts of manifests the copy graph needs.

use serde::{Deserialize, Deserializer};

use super::digest::parse_digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
/// OCI image index.
pub const OCI_INDEX: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;
/// Docker manifest list.
pub const DOCKER_LIST: &str = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;
/// OCI artifact manifest (image-spec 1.1 release candidates; still found in registries).
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// Empty JSON config of OCI 1.1 artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Default layer media type for pushed files (as `oras push`).
pub const OCI_LAYER_TAR: &str = oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE;
/// Helm chart config.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// Helm chart content layer.
pub const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// `Accept` header for manifest requests: every manifest kind we copy.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

/// A content descriptor (blob or child manifest).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the target.
    pub digest: String,
    /// Size of the target in bytes: 0 to `i64::MAX` (the OCI image spec's `int64`; a
    /// negative, fractional or larger size is refused when the descriptor is read).
    #[serde(deserialize_with = "descriptor_size")]
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// Platform of an index entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant.
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The fields of any manifest kind that name other content.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestLinks {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    blobs: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// What a manifest references.
#[derive(Debug, Default)]
pub struct Links {
    /// Child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// Blobs (config first, then layers).
    pub blobs: Vec<Descriptor>,
}

/// True for index / manifest-list media types.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Largest size a descriptor may state: the OCI image spec's `size` is an `int64`.
pub const MAX_DESCRIPTOR_SIZE: u64 = i64::MAX as u64;

/// Reads a descriptor's `size`, refusing negative, fractional and too large values with a
/// message that says which.
fn descriptor_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct Size;
    impl serde::de::Visitor<'_> for Size {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a descriptor size: an integer from 0 to 2^63-1")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            if v > MAX_DESCRIPTOR_SIZE {
                Err(E::custom(format!(
                    "descriptor size {v} is above 2^63-1, the largest size a descriptor may state"
                )))
            } else {
                Ok(v)
            }
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| {
                E::custom(format!(
                    "descriptor size {v} is negative; a size is an integer from 0 to 2^63-1"
                ))
            })
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<u64, E> {
            self.visit_u64(u64::try_from(v).unwrap_or(u64::MAX))
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<u64, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) if v < 0 => self.visit_i64(i64::try_from(v).unwrap_or(i64::MIN)),
                Err(_) => self.visit_u64(u64::MAX),
            }
        }
    }
    deserializer.deserialize_any(Size)
}

/// Parses the references out of a manifest's bytes, and checks every descriptor: its
/// digest must be a valid `sha256`/`sha512` digest (see [`parse_digest`]) before it is
/// ever put in a URL, and its size within 0..=2^63-1 (checked while parsing). The error
/// names the descriptor (`config`, `layers[3]`, `manifests[0]`, ...).
pub fn links(bytes: &[u8]) -> Result<Links, String> {
    let m: ManifestLinks =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let manifests = m.manifests.unwrap_or_default();
    let check = |field: &str, list: &[Descriptor]| -> Result<(), String> {
        for (i, d) in list.iter().enumerate() {
            parse_digest(&d.digest).map_err(|e| format!("{field}[{i}]: {e}"))?;
        }
        Ok(())
    };
    if let Some(config) = &m.config {
        parse_digest(&config.digest).map_err(|e| format!("config: {e}"))?;
    }
    check("layers", &m.layers)?;
    check("blobs", &m.blobs)?;
    check("manifests", &manifests)?;
    let mut blobs = Vec::new();
    blobs.extend(m.config);
    blobs.extend(m.layers);
    blobs.extend(m.blobs);
    Ok(Links { manifests, blobs })
}

/// What a referrers index lists about a manifest, and the manifest it refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReferrerFacts {
    /// Digest of the manifest's `subject`, when it has one (checked by the digest grammar).
    pub subject: Option<String>,
    /// Its `artifactType`, else its config's media type (distribution spec 1.1).
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// Reads the [`ReferrerFacts`] of a manifest's bytes.
pub fn referrer_facts(bytes: &[u8]) -> Result<ReferrerFacts, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Facts {
        #[serde(default)]
        subject: Option<Descriptor>,
        #[serde(default)]
        artifact_type: Option<String>,
        #[serde(default)]
        config: Option<Descriptor>,
        #[serde(default)]
        annotations: Option<std::collections::BTreeMap<String, String>>,
    }
    let f: Facts =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if let Some(s) = &f.subject {
        parse_digest(&s.digest).map_err(|e| format!("subject: {e}"))?;
    }
    Ok(ReferrerFacts {
        subject: f.subject.map(|s| s.digest),
        artifact_type: f.artifact_type.or(f.config.map(|c| c.media_type)),
        annotations: f.annotations,
    })
}

/// Media type of a manifest: the registry's `Content-Type` when it is a manifest type,
/// else the `mediaType` field, else inferred (Helm charts carry no `mediaType`).
pub fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> String {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| {
            c.starts_with("application/vnd.") && (c.contains("manifest") || c.contains("index"))
        });
    if let Some(ct) = ct {
        return ct.to_string();
    }
    /// Just what names the kind: the lists are skipped, not parsed into memory.
    #[derive(Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    let parsed: Kind = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(mt) = parsed.media_type {
        return mt;
    }
    if parsed.manifests.is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn helm_manifest_without_media_type_is_oci() {
        let helm = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":1}},"layers":[]}}"#,
            d('a')
        );
        let helm = helm.as_bytes();
        assert_eq!(manifest_media_type(helm, None), OCI_MANIFEST);
        assert_eq!(
            manifest_media_type(helm, Some("application/json")),
            OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type(helm, Some(&format!("{OCI_MANIFEST}; charset=utf-8"))),
            OCI_MANIFEST
        );
        let l = links(helm).unwrap();
        assert_eq!(l.blobs.len(), 1);
        assert!(l.manifests.is_empty());
    }

    #[test]
    fn index_links() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{}","size":3,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#,
            d('b')
        );
        let idx = idx.as_bytes();
        assert_eq!(manifest_media_type(idx, None), OCI_INDEX);
        let l = links(idx).unwrap();
        assert_eq!(
            l.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(links(b"nope").is_err());
    }

    fn layer(digest: &str, size: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":1}},{{"digest":{digest},"size":{size}}}]}}"#,
            d('c'),
            d('d')
        )
        .into_bytes()
    }

    #[test]
    fn refuses_bad_digests_and_sizes() {
        let sha512 = format!("\"sha512:{}\"", "e".repeat(128));
        assert_eq!(links(&layer(&sha512, "5")).unwrap().blobs.len(), 3);
        let max = MAX_DESCRIPTOR_SIZE.to_string();
        assert_eq!(
            links(&layer(&sha512, &max)).unwrap().blobs[2].size,
            MAX_DESCRIPTOR_SIZE
        );
        for (digest, size, needle) in [
            ("\"sha256:../../../v2/x\"", "1", "layers[1]"),
            (
                "\"md5:d41d8cd98f00b204e9800998ecf8427e\"",
                "1",
                "only sha256 and sha512",
            ),
            ("\"sha256:abc?x=\"", "1", "not a digest"),
            ("\"\"", "1", "not a digest"),
            ("5", "1", "invalid type"),
            (&sha512, "9223372036854775808", "above 2^63-1"),
            (&sha512, "18446744073709551615", "above 2^63-1"),
            (&sha512, "18446744073709551616", "size"),
            (&sha512, "-1", "negative"),
            (&sha512, "1.5", "size"),
            (&sha512, "\"1\"", "size"),
        ] {
            let err = links(&layer(digest, size)).unwrap_err();
            assert!(err.contains(needle), "{digest} {size}: {err}");
            assert!(!err.contains('\n') && err.len() < 400, "{err}");
        }
        let child = format!(
            r#"{{"manifests":[{{"digest":"{}","size":1}},{{"digest":"sha256:x/../y","size":1}}]}}"#,
            d('f')
        );
        assert!(
            links(child.as_bytes())
                .unwrap_err()
                .contains("manifests[1]")
        );
    }

    /// A JSON value of bounded depth and size, for the parser's never-panic property.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "\\PC{0,20}".prop_map(serde_json::Value::from),
            "sha(256|512):[0-9a-f]{0,130}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("mediaType".to_string()),
                        Just("digest".to_string()),
                        Just("size".to_string()),
                        Just("config".to_string()),
                        Just("layers".to_string()),
                        Just("blobs".to_string()),
                        Just("manifests".to_string()),
                        Just("platform".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn descriptor() -> impl Strategy<Value = (bool, String, u64)> {
        (any::<bool>(), any::<u64>()).prop_map(|(sha512, seed)| {
            let hex: String = format!("{seed:016x}");
            let digest = if sha512 {
                format!("sha512:{}", hex.repeat(8))
            } else {
                format!("sha256:{}", hex.repeat(4))
            };
            (sha512, digest, seed >> 1)
        })
    }

    proptest! {
        #[test]
        fn links_never_panic_on_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = links(&raw);
            let _ = manifest_media_type(&raw, None);
        }

        #[test]
        fn links_never_panic_on_json(v in json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(l) = links(&bytes) {
                for d in l.blobs.iter().chain(&l.manifests) {
                    prop_assert!(crate::engine::digest::parse_digest(&d.digest).is_ok());
                    prop_assert!(d.size <= MAX_DESCRIPTOR_SIZE);
                }
            }
            let _ = manifest_media_type(&bytes, Some("text/plain"));
        }

        #[test]
        fn valid_descriptors_round_trip(
            layers in proptest::collection::vec(descriptor(), 0..8),
            children in proptest::collection::vec(descriptor(), 0..8),
        ) {
            let entry = |(_, digest, size): &(bool, String, u64)| {
                serde_json::json!({"mediaType": "m", "digest": digest, "size": size})
            };
            let doc = serde_json::json!({
                "schemaVersion": 2,
                "layers": layers.iter().map(entry).collect::<Vec<_>>(),
                "manifests": children.iter().map(entry).collect::<Vec<_>>(),
            });
            let l = links(&serde_json::to_vec(&doc).unwrap()).unwrap();
            let got: Vec<(String, u64)> = l.blobs.iter().map(|d| (d.digest.clone(), d.size)).collect();
            let want: Vec<(String, u64)> = layers.iter().map(|(_, d, s)| (d.clone(), *s)).collect();
            prop_assert_eq!(got, want);
            let got: Vec<(String, u64)> = l.manifests.iter().map(|d| (d.digest.clone(), d.size)).collect();
            let want: Vec<(String, u64)> = children.iter().map(|(_, d, s)| (d.clone(), *s)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
