//! What must hold before a name, digest or `Location` from a user or a registry goes
//! into a URL.

use super::*;

/// Checks a repository name by the distribution grammar before it goes into a URL:
/// `/`-separated components of `[a-z0-9]` runs joined by `.`, `_`, `__` or `-`s (so no
/// empty, `.` or `..` component, no `?`, `#` or `%`).
pub(super) fn check_repository(repo: &str) -> Result<()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        !b.is_empty()
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter()
                .all(|x| alnum(x) || *x == b'.' || *x == b'_' || *x == b'-')
            && !c.contains("..")
            && !c.contains("___")
    };
    if repo.len() <= 255 && repo.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "repository name {} is not valid: lowercase letters, digits and . _ - separated by /",
            quote_untrusted(repo, 100)
        )))
    }
}

/// Checks a digest by the OCI grammar before it goes into a URL; see [`parse_digest`].
pub(super) fn check_digest(digest: &str) -> Result<Algorithm> {
    parse_digest(digest).map_err(|e| EngineError::InvalidInput(format!("invalid digest: {e}")))
}

/// Checks a manifest reference before it goes into a URL: a digest (see
/// [`parse_digest`]; returns its algorithm) or a tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub(super) fn check_reference(reference: &str) -> Result<Option<Algorithm>> {
    if reference.contains(':') {
        return check_digest(reference).map(Some);
    }
    let b = reference.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(None)
    } else {
        Err(EngineError::InvalidInput(format!(
            "tag {} is not valid: up to 128 letters, digits, _ . -, not starting with . or -",
            quote_untrusted(reference, 140)
        )))
    }
}

/// Resolves a `Location` header against the registry's origin (`base`): an absolute URL,
/// an absolute path or a relative one (relative to `/`, as registries mean it). Only
/// `http`/`https` URLs are accepted, and a Location that would leave an `https` registry
/// for plain `http` is refused. A Location on another origin is allowed (it gets no
/// credentials: see [`RegistryClient::is_own_origin`]).
pub fn resolve_location(base: &url::Url, location: &str) -> std::result::Result<url::Url, String> {
    let shown = || quote_untrusted(location, 120);
    let location = location.trim();
    if location.is_empty() {
        return Err("its Location header is empty".into());
    }
    let root = base
        .join("/")
        .map_err(|e| format!("cannot resolve Location {}: {e}", shown()))?;
    let url = match url::Url::parse(location) {
        Err(url::ParseError::RelativeUrlWithoutBase) if location.starts_with('/') => {
            root.join(location)
        }
        Err(url::ParseError::RelativeUrlWithoutBase) => root.join(&format!("/{location}")),
        other => other,
    }
    .map_err(|e| format!("its Location {} is not a URL ({e})", shown()))?;
    match url.scheme() {
        "https" => {}
        "http" if base.scheme() == "http" => {}
        "http" => {
            return Err(format!(
                "its Location {} leaves https for plain http; refusing to continue over plain HTTP",
                shown()
            ));
        }
        _ => {
            return Err(format!("its Location {} is not an http(s) URL", shown()));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("its Location {} has no host", shown()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("its Location {} carries user info", shown()));
    }
    Ok(url)
}

/// True when `a` and `b` share scheme, host and port (known defaults filled in), the
/// rule reqwest applies to redirects.
pub(super) fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Bytes an upload session holds, from its `Range: 0-<last>` header (distribution's
/// form; `bytes=0-<last>` too): `last + 1`. `None` for anything else.
pub fn parse_upload_range(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) || start.parse::<u64>().ok()? != 0 {
        return None;
    }
    end.parse::<u64>().ok()?.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }
    #[test]
    fn locations() {
        let https = base("https://reg.example:5000");
        let ok = |b: &url::Url, l: &str| resolve_location(b, l).unwrap().to_string();
        assert_eq!(
            ok(&https, "/v2/a/blobs/uploads/123?_state=x"),
            "https://reg.example:5000/v2/a/blobs/uploads/123?_state=x"
        );
        assert_eq!(
            ok(&https, "v2/a/blobs/uploads/1"),
            "https://reg.example:5000/v2/a/blobs/uploads/1"
        );
        assert_eq!(
            ok(&https, "https://storage.example/upload?sig=1"),
            "https://storage.example/upload?sig=1"
        );
        let http = base("http://127.0.0.1:5000");
        assert_eq!(
            ok(&http, "http://127.0.0.1:6000/u"),
            "http://127.0.0.1:6000/u"
        );
        for bad in [
            "",
            "   ",
            "http://127.0.0.1:6000/u",
            "ftp://h/x",
            "file:///etc/passwd",
            "https://user:pw@h/x",
            "https://",
            "//",
            "javascript:alert(1)",
        ] {
            assert!(resolve_location(&https, bad).is_err(), "{bad:?}");
        }
        let a = resolve_location(&http, "http://127.0.0.1:6000/u").unwrap();
        assert!(!same_origin(&http, &a));
        let b = resolve_location(&http, "/v2/x").unwrap();
        assert!(same_origin(&http, &b));
        assert!(same_origin(&base("https://h"), &base("https://h:443/v2/")));
        assert!(!same_origin(&base("https://h"), &base("http://h:443/")));
    }
    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), Some(1));
        assert_eq!(parse_upload_range("0-1023"), Some(1024));
        assert_eq!(parse_upload_range("bytes=0-9"), Some(10));
        assert_eq!(parse_upload_range("0-18446744073709551615"), None);
        for bad in ["", "-", "0-", "-5", "1-5", "0-x", "0--1", "0-1-2", "0 - 1"] {
            assert_eq!(parse_upload_range(bad), None, "{bad:?}");
        }
    }
    #[test]
    fn references_and_repositories_before_urls() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(check_reference(&d).unwrap(), Some(Algorithm::Sha256));
        assert_eq!(check_reference("v1.2.3_rc-1").unwrap(), None);
        for bad in [
            "sha256:../../x",
            "sha256:abc?x=",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "a?b",
            "a#b",
            "",
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?}");
        }
        assert!(check_reference(&"a".repeat(129)).is_err());
        for ok in ["a", "team/app", "a.b/c_d/e__f/g-h/i--j", "0"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/..", "a/./b", "A", "a?b", "a%2fb", "a..b", "-a",
            "a_", "a___b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?}");
        }
    }
    proptest! {
        #[test]
        fn resolve_location_never_panics(loc in "\\PC{0,200}", https in any::<bool>()) {
            let b = base(if https { "https://reg.example" } else { "http://127.0.0.1:5000" });
            if let Ok(url) = resolve_location(&b, &loc) {
                prop_assert!(url.scheme() == "https" || (!https && url.scheme() == "http"));
                prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()));
                prop_assert!(url.username().is_empty() && url.password().is_none());
            }
        }

        #[test]
        fn relative_locations_stay_on_the_registry(path in "/?[a-zA-Z0-9_.=?&-][a-zA-Z0-9/_.=?&-]{0,100}") {
            let b = base("https://reg.example:5000");
            let url = resolve_location(&b, &path).unwrap();
            prop_assert!(same_origin(&b, &url), "{} left the registry", url);
        }

        #[test]
        fn upload_range_round_trips(end in any::<u64>()) {
            let got = parse_upload_range(&format!("0-{end}"));
            prop_assert_eq!(got, end.checked_add(1));
        }

        #[test]
        fn upload_range_never_panics(s in "\\PC{0,40}") {
            let _ = parse_upload_range(&s);
        }

        #[test]
        fn header_checks_never_panic(r in "\\PC{0,80}") {
            let _ = check_reference(&r);
            let _ = check_repository(&r);
            let _ = super::super::tokens::parse_token_answer(r.as_bytes());
        }
    }
}
