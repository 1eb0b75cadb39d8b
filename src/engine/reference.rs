//! Image references: `HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]`, parsed by the grammar of
//! `oci-spec` (re-exported by oci-client; its [`Reference`] and [`ParseError`] are used),
//! plus whether the tag was written by the user.
//!
//! The grammar is matched here rather than by `Reference::try_from`: oci-spec compiles its
//! pattern with Unicode `\w` (the Go original, distribution's `reference` package, is ASCII
//! only), and 128 bounded copies of the Unicode word class take ~40 ms of CPU to compile —
//! most of a no-op copy's run time. The pattern below is the same one with ASCII `\w`;
//! a tag with non-ASCII letters, which the registry client refused anyway, is now refused
//! when the reference is parsed.

use std::fmt;
use std::sync::LazyLock;

use oci_client::{ParseError, Reference};
use regex::Regex;

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
        let parsed = parse_reference(trimmed).map_err(|e| invalid(&e.to_string()))?;
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

/// oci-spec's `REFERENCE_REGEXP` (name, tag, digest captures) with `\w` spelled out as
/// ASCII `[A-Za-z0-9_]`, as in distribution's Go grammar.
const REFERENCE_PATTERN: &str = r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$";

/// What oci-spec's `Reference::try_from` does, with [`REFERENCE_PATTERN`]: the same
/// captures, default tag, Docker Hub normalisation, length and digest-length checks, and
/// the same errors.
fn parse_reference(s: &str) -> std::result::Result<Reference, ParseError> {
    static PATTERN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(REFERENCE_PATTERN).ok());
    if s.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let captures = PATTERN
        .as_ref()
        .and_then(|re| re.captures(s))
        .ok_or(ParseError::ReferenceInvalidFormat)?;
    let name = captures.get(1).map_or("", |m| m.as_str());
    let tag = captures.get(2).map(|m| m.as_str().to_owned());
    let digest = captures.get(3).map(|m| m.as_str().to_owned());
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(digest) = &digest {
        let hex_len = match digest.split_once(':') {
            None => return Err(ParseError::DigestInvalidFormat),
            Some(("sha256", hex)) => (hex.len(), 64),
            Some(("sha384", hex)) => (hex.len(), 96),
            Some(("sha512", hex)) => (hex.len(), 128),
            Some(_) => return Err(ParseError::DigestUnsupported),
        };
        if hex_len.0 != hex_len.1 {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into()))
        }
    })
}

/// oci-spec's limit on a repository name.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Registry and repository of a matched name, normalised as distribution's
/// `splitDockerDomain` (and oci-spec's `split_domain`) do.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains('.') || left.contains(':') || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
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

    /// Same answer as oci-spec's parser (registry, repository, tag, digest, error) on
    /// references from its own test table and on ASCII text shaped like references.
    fn same_as_oci_spec(input: &str) {
        let ours = parse_reference(input);
        let theirs = Reference::try_from(input);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(
                (a.resolve_registry(), a.repository(), a.tag(), a.digest()),
                (b.resolve_registry(), b.repository(), b.tag(), b.digest()),
                "{input}"
            ),
            _ => assert_eq!(ours.err(), theirs.err(), "{input}"),
        }
    }

    #[test]
    fn parses_as_oci_spec_does() {
        let sha256 = "a".repeat(64);
        for input in [
            "busybox".to_string(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "test.com/repo:tag".into(),
            "test:5000/repo".into(),
            "test:5000/repo:tag".into(),
            format!("test:5000/repo@sha256:{sha256}"),
            format!("test:5000/repo:tag@sha256:{sha256}"),
            "lowercase:Uppercase".into(),
            "Uppercase:tag".into(),
            "localhost/x".into(),
            "localhost:5000/a/b/c:v_1.2-3".into(),
            "index.docker.io/x".into(),
            "docker.io/library/x:1".into(),
            "a.b/c__d/e--f/g.h:1".into(),
            format!("h/x@sha384:{}", "b".repeat(96)),
            format!("h/x@sha512:{}", "c".repeat(128)),
            format!("h/x@sha256:{}", "d".repeat(63)),
            format!("h/x@md5:{}", "e".repeat(32)),
            format!("h/x:{}", "t".repeat(128)),
            format!("h/x:{}", "t".repeat(129)),
            format!("h/{}", "r".repeat(256)),
            "h/x:.tag".into(),
            "h/x:-tag".into(),
            "h/x:".into(),
            "h//x".into(),
            "h/x/".into(),
            "".into(),
            ":tag".into(),
            "@sha256:x".into(),
        ] {
            same_as_oci_spec(&input);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_ascii_reference_parses_as_oci_spec_does(
            input in "[a-zA-Z0-9._:/@-]{0,40}(:[a-zA-Z0-9_.-]{0,10})?(@sha(256|512):[0-9a-f]{0,130})?",
        ) {
            same_as_oci_spec(&input);
        }
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
