//! The checks an ARM answer's fields pass before use. None of them quotes a value that
//! may be a secret; the ones that quote (an `acrServerUrl`) bound what they quote.

use super::AosmError;
use crate::limits::MAX_SERVER_URL_BYTES;

/// `n` bytes for a message: `4 MiB`, `8 KiB` or `N bytes`.
pub(super) fn size(n: usize) -> String {
    crate::http::human_bytes(n as u64)
}

/// At most `max` characters of `s`, control characters dropped, for a one-line message.
pub(super) fn short(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().filter(|c| !c.is_control()).nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Parses an ARM answer. The message says where the JSON went wrong but quotes none of
/// it (a malformed `listCredential` answer must not put its token in an error).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    action: &str,
) -> Result<T, AosmError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let text = e.to_string();
        let what = match e.classify() {
            // Names a field of ours, never a value of theirs.
            Category::Data if text.starts_with("missing field") => {
                short(text.split(" at line").next().unwrap_or_default(), 100)
            }
            Category::Data => "a field has the wrong type or value".into(),
            Category::Syntax => "malformed JSON".into(),
            Category::Eof => "cut short".into(),
            Category::Io => "unreadable".into(),
        };
        AosmError::Protocol {
            action: action.to_string(),
            reason: format!(
                "the answer is not the expected JSON: {what} at line {} column {}",
                e.line(),
                e.column()
            ),
        }
    })
}

/// Refuses an empty `field`.
pub(super) fn required(action: &str, field: &str, value: &str) -> Result<(), AosmError> {
    if value.is_empty() {
        return Err(AosmError::Protocol {
            action: action.to_string(),
            reason: format!("the answer has an empty {field}"),
        });
    }
    Ok(())
}

/// Refuses a `field` longer than `max` bytes or holding control characters. The value
/// itself is never quoted (it may be a secret).
pub(super) fn text_field(
    action: &str,
    field: &str,
    value: &str,
    max: usize,
) -> Result<(), AosmError> {
    let reason = if value.len() > max {
        format!(
            "its {field} is {} bytes long, more than the {max} allowed",
            value.len()
        )
    } else if value.chars().any(char::is_control) {
        format!("its {field} holds control characters")
    } else {
        return Ok(());
    };
    Err(AosmError::Protocol {
        action: action.to_string(),
        reason,
    })
}

/// The registry host of a `listCredential` `acrServerUrl`: `host[:port]`, optionally
/// with `https://` before it and one `/` after it — no other scheme, path, query,
/// fragment or user info. The error is the reason, quoting the value (bounded).
pub(super) fn acr_server(url: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "acrServerUrl {:?} {why}; expected host[:port] or https://host[:port]",
            short(url, 100)
        )
    };
    if url.len() > MAX_SERVER_URL_BYTES {
        return Err(format!(
            "acrServerUrl is {} bytes long, more than the {MAX_SERVER_URL_BYTES} allowed",
            url.len()
        ));
    }
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some(_) => return Err(bad("does not use https")),
        None => url,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority
        .chars()
        .any(|c| matches!(c, '/' | '?' | '#' | '@' | '\\'))
    {
        return Err(bad("has a path, query, fragment or user info"));
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| bad("is not a valid host"))?;
        let (host, after) = authority.split_at(end + 1);
        if host[1..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("is not a valid host"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("is not a valid host"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && (!p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u16>(), Ok(n) if n > 0))
    {
        return Err(bad("has an invalid port"));
    }
    if !host.starts_with('[') && !is_dns_name(host) {
        return Err(bad("is not a valid host"));
    }
    Ok(authority.to_string())
}

/// A DNS name (or dotted IPv4 address): labels of 1-63 letters, digits and `-` (not at
/// either end), 253 bytes at most.
pub(super) fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::super::{CredentialAnswer, LIST_CREDENTIAL};
    use super::*;

    #[test]
    fn acr_server_urls_are_host_and_port_only() {
        for (url, server) in [
            ("localhost:5000", "localhost:5000"),
            ("https://myacr.azurecr.io", "myacr.azurecr.io"),
            ("https://myacr.azurecr.io/", "myacr.azurecr.io"),
            ("HTTPS://127.0.0.1:443", "127.0.0.1:443"),
            ("https://[::1]:5000", "[::1]:5000"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(acr_server(url).as_deref(), Ok(server), "{url}");
        }
        for (url, why) in [
            ("https://evil.example/path?x", "path, query"),
            ("https://evil.example?x", "path, query"),
            ("https://user:pw@evil.example", "user info"),
            ("evil.example#frag", "fragment"),
            ("https://evil.example\\@good.example", "path, query"),
            ("http://myacr.azurecr.io", "https"),
            ("ftp://myacr.azurecr.io", "https"),
            ("myacr.azurecr.io:0", "port"),
            ("myacr.azurecr.io:65536", "port"),
            ("myacr.azurecr.io:", "port"),
            ("myacr.azurecr.io:+1", "port"),
            ("", "valid host"),
            ("https://", "valid host"),
            ("-bad.example", "valid host"),
            ("bad..example", "valid host"),
            ("bad_host.example", "valid host"),
            ("b\u{e4}d.example", "valid host"),
            ("evil example", "valid host"),
            ("[::1", "valid host"),
            ("[nothost]:1", "valid host"),
            ("[::1]x", "valid host"),
        ] {
            let err = acr_server(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let long = format!("{}.example", "a.".repeat(200));
        assert!(acr_server(&long).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn text_fields_are_bounded_and_never_quoted() {
        let err = text_field("a", "acrToken", &"s".repeat(9000), 8192).unwrap_err();
        assert!(err.to_string().contains("9000 bytes long"), "{err}");
        assert!(!err.to_string().contains("sss"), "{err}");
        let err = text_field("a", "acrToken", "sec\nret", 8192).unwrap_err();
        assert!(err.to_string().contains("control characters"), "{err}");
        assert!(!err.to_string().contains("sec"), "{err}");
        assert!(text_field("a", "f", "fine", 4).is_ok());
        assert!(required("a", "f", "").is_err());
    }

    #[test]
    fn json_errors_quote_nothing_of_the_answer() {
        let secret = "s3cr3t-token-value";
        for body in [
            format!(r#"{{"credentialType": 1, "acrToken": "{secret}"}}"#),
            format!(r#"{{"credentialType": "{secret}"#),
            format!(r#"{{"credentialType": ["{secret}"]}}"#),
            secret.to_string(),
        ] {
            let err = parse_json::<CredentialAnswer>(body.as_bytes(), LIST_CREDENTIAL)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("line 1 column"), "{err}");
        }
        let err = parse_json::<CredentialAnswer>(b"{}", LIST_CREDENTIAL)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `credentialType`"), "{err}");
    }

    #[test]
    fn sizes_and_short_texts() {
        assert_eq!(size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(size(8 * 1024), "8 KiB");
        assert_eq!(size(1000), "1000 bytes");
        assert_eq!(short("ab\ncd", 10), "abcd");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
