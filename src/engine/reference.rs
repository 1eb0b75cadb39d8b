//! Image references: `HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]`, parsed by `oci-spec`
//! (re-exported by oci-client), plus whether the tag was written by the user.

use std::fmt;

use oci_client::Reference;

use super::error::{EngineError, Result};

/// A parsed reference to a manifest in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), as resolved for HTTP (docker.io → index.docker.io).
    pub registry: String,
    /// Repository path inside the registry.
    pub repository: String,
    /// Tag, when the user wrote one.
    pub tag: Option<String>,
    /// Digest, when the user wrote one.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference. A reference without tag or digest keeps both empty
    /// (callers decide what that means, e.g. "use the source's tag").
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| EngineError::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        if trimmed.contains("://") {
            return Err(invalid(
                "a reference has no scheme; drop the http:// or https:// prefix",
            ));
        }
        let parsed = Reference::try_from(trimmed).map_err(|e| invalid(&e.to_string()))?;
        let last_segment = trimmed
            .split('@')
            .next()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let tag_written = last_segment.contains(':');
        if !trimmed.contains('/') {
            return Err(invalid("the registry host is missing"));
        }
        if let Some(d) = parsed.digest() {
            validate_digest(d).map_err(|reason| invalid(&reason))?;
        }
        Ok(Self {
            registry: parsed.resolve_registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: if tag_written {
                parsed.tag().map(str::to_string)
            } else {
                None
            },
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// The reference used to fetch or push the manifest: digest when present, else tag.
    pub fn manifest_reference(&self) -> Option<&str> {
        self.digest.as_deref().or(self.tag.as_deref())
    }

    /// Same repository, pointing at `digest`.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Checks a digest by the OCI grammar: `sha256:` + 64 or `sha512:` + 128 lowercase hex
/// (the one rule, [`super::digest::parse_digest`]).
pub fn validate_digest(d: &str) -> Result<(), String> {
    super::digest::parse_digest(d)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tag_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/a/b:1.0@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.manifest_reference(), Some(d.as_str()));
    }

    #[test]
    fn no_tag_written_means_none() {
        let r = ImageRef::parse("localhost:5000/x").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), "localhost:5000/x");
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "http://h/x:1",
            "UPPER/Case:1",
            "h:5000/x:bad tag",
            "h/x@sha256:zz",
            "justname",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                matches!(err, EngineError::InvalidReference { .. }),
                "{bad}: {err}"
            );
        }
    }
}
