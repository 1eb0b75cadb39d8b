//! `--platform os/arch[/variant]` filters and index rewriting.

use std::fmt;
use std::str::FromStr;

use super::digest::sha256_digest;
use super::error::{EngineError, Result};
use super::media::{self, Platform};
use super::registry::RawManifest;

/// A platform filter: `os/arch` matches every variant; `os/arch/variant` only that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformFilter {
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant, when given.
    pub variant: Option<String>,
}

impl FromStr for PlatformFilter {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm/v7"
            )),
        }
    }
}

impl fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl PlatformFilter {
    /// True when `p` is selected by this filter.
    pub fn matches(&self, p: &Platform) -> bool {
        self.os == p.os
            && self.architecture == p.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant.as_ref() == Some(v))
    }
}

/// Keeps only the entries of `index` whose platform matches one of `filters`, and
/// returns the rewritten index (same fields and order, fewer `manifests`).
pub fn filter_index(index: &RawManifest, filters: &[PlatformFilter]) -> Result<RawManifest> {
    let mut doc: serde_json::Value = serde_json::from_slice(&index.bytes).map_err(|e| {
        EngineError::InvalidInput(format!("index {} is not valid JSON: {e}", index.digest))
    })?;
    let entries = doc
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| {
            EngineError::InvalidInput(format!("index {} has no manifests list", index.digest))
        })?;
    let mut available = Vec::new();
    entries.retain(|entry| {
        let platform: Option<Platform> = entry
            .get("platform")
            .and_then(|p| serde_json::from_value(p.clone()).ok());
        match platform {
            Some(p) => {
                let keep = filters.iter().any(|f| f.matches(&p));
                available.push(p.to_string());
                keep
            }
            None => false,
        }
    });
    if entries.is_empty() {
        let wanted: Vec<String> = filters.iter().map(ToString::to_string).collect();
        return Err(EngineError::InvalidInput(format!(
            "no manifest in the index matches platform {}; the index has: {}",
            wanted.join(", "),
            if available.is_empty() {
                "no platforms".to_string()
            } else {
                available.join(", ")
            }
        )));
    }
    let bytes = serde_json::to_vec(&doc)
        .map_err(|e| EngineError::InvalidInput(format!("cannot re-encode index: {e}")))?;
    Ok(RawManifest {
        digest: sha256_digest(&bytes),
        bytes: bytes.into(),
        media_type: if media::is_index(&index.media_type) {
            index.media_type.clone()
        } else {
            media::OCI_INDEX.into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> RawManifest {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"m","digest":"sha256:1","size":1,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"m","digest":"sha256:2","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},{"mediaType":"m","digest":"sha256:3","size":1,"platform":{"architecture":"arm64","os":"linux"}}],"annotations":{"a":"b"}}"#;
        RawManifest {
            bytes: bytes.to_vec().into(),
            media_type: media::OCI_INDEX.into(),
            digest: sha256_digest(bytes),
        }
    }

    #[test]
    fn parses_filters() {
        assert_eq!(
            "linux/arm/v7"
                .parse::<PlatformFilter>()
                .unwrap()
                .variant
                .as_deref(),
            Some("v7")
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<PlatformFilter>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_and_keeps_field_order() {
        let out = filter_index(
            &index(),
            &["linux/arm".parse().unwrap(), "linux/amd64".parse().unwrap()],
        )
        .unwrap();
        let text = String::from_utf8(out.bytes.to_vec()).unwrap();
        assert!(
            text.starts_with(r#"{"schemaVersion":2,"mediaType""#),
            "{text}"
        );
        assert!(
            text.contains("sha256:1") && text.contains("sha256:2") && !text.contains("sha256:3")
        );
        assert!(text.ends_with(r#""annotations":{"a":"b"}}"#));
        assert_eq!(out.digest, sha256_digest(&out.bytes));
    }

    #[test]
    fn no_match_lists_available() {
        let err = filter_index(&index(), &["windows/amd64".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux/arm/v7") && err.contains("windows/amd64"),
            "{err}"
        );
    }
}
