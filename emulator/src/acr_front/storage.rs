//! The storage origin blob GETs are redirected to: serves a blob file of the registry's
//! filesystem storage to whoever holds an unexpired signed URL for that digest, with
//! `Range` support, and refuses requests carrying `Authorization` as Azure Storage does
//! for a SAS URL (`400 InvalidAuthenticationInfo`). Errors are Azure Storage's XML shape.

use super::{Front, SIGNED_URL_TTL};
use crate::app::lock;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

/// Most signed URLs kept at once; the oldest go first beyond it.
const MAX_GRANTS: usize = 10_000;

/// One signed URL: which blob it opens, until when.
#[derive(Debug, Clone)]
struct Grant {
    hex: String,
    expires: Instant,
}

/// Signed URLs handed out (signature → grant).
#[derive(Debug, Default)]
pub struct Grants {
    by_sig: HashMap<String, Grant>,
}

impl Grants {
    /// Issues a signature for blob `sha256:<hex>` and returns it.
    fn issue(&mut self, hex: &str, now: Instant) -> String {
        self.by_sig.retain(|_, g| g.expires > now);
        let oldest = (self.by_sig.len() >= MAX_GRANTS)
            .then(|| self.by_sig.iter().min_by_key(|(_, g)| g.expires))
            .flatten()
            .map(|(s, _)| s.clone());
        if let Some(oldest) = oldest {
            self.by_sig.remove(&oldest);
        }
        let sig = crate::secret::Secret::random(32).expose().to_string();
        self.by_sig.insert(
            sig.clone(),
            Grant {
                hex: hex.to_string(),
                expires: now + SIGNED_URL_TTL,
            },
        );
        sig
    }

    /// True when `sig` is an unexpired signature for blob `hex`.
    fn allows(&self, sig: &str, hex: &str, now: Instant) -> bool {
        self.by_sig
            .get(sig)
            .is_some_and(|g| g.hex == hex && g.expires > now)
    }
}

/// The signed URL for blob `sha256:<hex>` (ACR's redirect target has the same path form
/// under its storage account: `/docker/registry/v2/blobs/sha256/<2>/<hex>/data`).
pub fn signed_url(front: &Front, hex: &str) -> String {
    let sig = lock(&front.grants).issue(hex, Instant::now());
    let expiry = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(
            SIGNED_URL_TTL.as_secs() as i64
        ))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    format!(
        "{}/docker/registry/v2/blobs/sha256/{}/{hex}/data?se={expiry}&sp=r&sv=2021-08-06&sr=b&sig={sig}",
        front.storage_origin,
        &hex[..2]
    )
}

/// The blob hex of a storage path, when it is one.
fn blob_hex(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/docker/registry/v2/blobs/sha256/")?;
    let (prefix, rest) = rest.split_once('/')?;
    let hex = rest.strip_suffix("/data")?;
    let ok = hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && hex.starts_with(prefix)
        && prefix.len() == 2;
    ok.then_some(hex)
}

/// Azure Storage's error shape.
fn storage_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// A byte range request: `bytes=N-` or `bytes=N-M`.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let (start, end) = v
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or(())?;
    let start: u64 = start.parse().map_err(|_| ())?;
    let end: u64 = if end.is_empty() {
        size.checked_sub(1).ok_or(())?
    } else {
        end.parse::<u64>()
            .map_err(|_| ())?
            .min(size.saturating_sub(1))
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Serves `GET`/`HEAD` of a signed blob URL.
pub async fn handle(State(front): State<Arc<Front>>, req: Request) -> Response {
    let count = |f: fn(&mut crate::stats::AcrFrontStats)| {
        f(&mut lock(&front.app.stats).acr_front);
    };
    if req.headers().contains_key(header::AUTHORIZATION) {
        count(|s| s.storage_refused_authorization += 1);
        tracing::warn!("storage origin: a request carried an Authorization header (refused)");
        return storage_error(
            StatusCode::BAD_REQUEST,
            "InvalidAuthenticationInfo",
            "Authentication information is not given in the correct format: a signed URL takes no Authorization header.",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return storage_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
        );
    }
    let Some(hex) = blob_hex(req.uri().path()) else {
        return storage_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The specified resource does not exist.",
        );
    };
    let sig = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.into_owned())
    });
    let allowed = sig.is_some_and(|s| lock(&front.grants).allows(&s, hex, Instant::now()));
    if !allowed {
        count(|s| s.storage_refused_signature += 1);
        return storage_error(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            "Server failed to authenticate the request: the signature is missing, expired or for another blob.",
        );
    }
    let path = front
        .storage_root
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => {
            return storage_error(
                StatusCode::NOT_FOUND,
                "BlobNotFound",
                "The specified blob does not exist.",
            );
        }
    };
    let size = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => {
            return storage_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "The server encountered an internal error.",
            );
        }
    };
    let range = match parse_range(req.headers(), size) {
        Ok(r) => r,
        Err(()) => {
            let mut resp = storage_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The range specified is invalid for the current size of the resource.",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return storage_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The server encountered an internal error.",
        );
    }
    count(|s| s.storage_gets += 1);
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if range.is_some()
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_are_parsed_strictly() {
        let hex = "ab".repeat(32);
        let path = format!("/docker/registry/v2/blobs/sha256/ab/{hex}/data");
        assert_eq!(blob_hex(&path), Some(hex.as_str()));
        let wrong_prefix = format!("/docker/registry/v2/blobs/sha256/cd/{hex}/data");
        assert_eq!(blob_hex(&wrong_prefix), None);
        assert_eq!(
            blob_hex("/docker/registry/v2/blobs/sha256/ab/../data"),
            None
        );
        let upper = format!(
            "/docker/registry/v2/blobs/sha256/AB/{}/data",
            "AB".repeat(32)
        );
        assert_eq!(blob_hex(&upper), None);
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_range(&h, 10), Ok(None));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=4-"));
        assert_eq!(parse_range(&h, 10), Ok(Some((4, 9))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-5"));
        assert_eq!(parse_range(&h, 10), Ok(Some((2, 5))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-50"));
        assert_eq!(parse_range(&h, 10), Ok(Some((2, 9))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=10-"));
        assert_eq!(parse_range(&h, 10), Err(()));
        h.insert(header::RANGE, HeaderValue::from_static("items=1-2"));
        assert_eq!(parse_range(&h, 10), Err(()));
    }

    #[test]
    fn a_grant_opens_only_its_blob_until_it_expires() {
        let mut g = Grants::default();
        let now = Instant::now();
        let sig = g.issue("aa", now);
        assert!(g.allows(&sig, "aa", now));
        assert!(!g.allows(&sig, "bb", now));
        assert!(!g.allows("forged", "aa", now));
        assert!(!g.allows(&sig, "aa", now + SIGNED_URL_TTL));
    }
}
