//! Forwards every request to the registry behind the front, except what ACR answers
//! itself: a body above [`MAX_REQUEST_BODY`] gets `413` (announced by `Content-Length`
//! before anything is forwarded; counted while streaming otherwise), a blob `GET` the
//! registry allows gets `307` to a signed storage URL, and a referrers API `GET` is
//! answered by [`referrers::serve`]. A manifest `PUT` is buffered (at most
//! [`referrers::MAX_MANIFEST_BYTES`], `413` above) so that a stored manifest with a
//! `subject` is answered with `OCI-Subject`.

use super::{Front, MAX_REQUEST_BODY, referrers, storage};
use crate::app::lock;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), and
/// `Host`, which the client sets for the registry behind the front.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `headers` without the hop-by-hop ones and `Host`.
pub(super) fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for h in HOP_BY_HOP.iter().chain([&header::HOST]) {
        out.remove(h);
    }
    out
}

/// The digest hex of `GET /v2/<name>/blobs/sha256:<hex>`, when the request is one.
fn blob_get_hex(method: &Method, path: &str) -> Option<String> {
    if method != Method::GET {
        return None;
    }
    let rest = path.strip_prefix("/v2/")?;
    let (name, digest) = rest.rsplit_once("/blobs/")?;
    let hex = digest.strip_prefix("sha256:")?;
    let ok = !name.is_empty()
        && !name.ends_with("/blobs")
        && hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| hex.to_string())
}

/// The `PUT /v2/<name>/manifests/<reference>` requests.
fn is_manifest_put(method: &Method, path: &str) -> bool {
    *method == Method::PUT
        && path
            .strip_prefix("/v2/")
            .and_then(|rest| rest.rsplit_once("/manifests/"))
            .is_some_and(|(name, reference)| {
                !name.is_empty() && !reference.is_empty() && !reference.contains('/')
            })
}

fn too_large(front: &Front, size: Option<u64>) -> Response {
    lock(&front.app.stats).acr_front.too_large += 1;
    let what = size.map_or("the request body".to_string(), |n| {
        format!("a request body of {n} bytes")
    });
    tracing::info!(
        size,
        "registry front: 413 for a body above {MAX_REQUEST_BODY} bytes"
    );
    let body = serde_json::json!({"errors": [{
        "code": "SIZE_INVALID",
        "message": format!("{what} is above the limit of {MAX_REQUEST_BODY} bytes for one request; upload in chunks"),
    }]});
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}

fn manifest_too_large(front: &Front, size: Option<u64>) -> Response {
    lock(&front.app.stats).acr_front.too_large += 1;
    let limit = referrers::MAX_MANIFEST_BYTES;
    let what = size.map_or("the manifest".to_string(), |n| {
        format!("a manifest of {n} bytes")
    });
    tracing::info!(
        size,
        "registry front: 413 for a manifest above {limit} bytes"
    );
    referrers::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        &format!("{what} is above the limit of {limit} bytes for a manifest"),
    )
}

/// Why a manifest body was not buffered.
enum Unbuffered {
    /// It is longer than the cap (the rest was drained).
    TooLarge,
    /// The client's body broke off.
    Broken,
}

/// The whole of `body` when it holds at most `cap` bytes.
async fn buffer(body: Body, cap: u64) -> Result<axum::body::Bytes, Unbuffered> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Unbuffered::Broken)?;
        if (out.len() + chunk.len()) as u64 > cap {
            drain_stream(stream).await;
            return Err(Unbuffered::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// Most bytes of a refused body read and discarded before the 413 goes out, so a client
/// still writing its body reads the answer instead of a broken pipe.
const MAX_DRAIN: u64 = 64 * 1024 * 1024;

/// Reads and discards up to [`MAX_DRAIN`] bytes of `body`.
async fn drain(body: Body) {
    drain_stream(body.into_data_stream()).await;
}

/// Reads and discards up to [`MAX_DRAIN`] bytes of `stream`.
async fn drain_stream(mut stream: axum::body::BodyDataStream) {
    let mut read: u64 = 0;
    while read <= MAX_DRAIN {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

fn bad_gateway(what: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "UNAVAILABLE", "message": what}]});
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// Every request to the registry's public address.
pub async fn handle(State(front): State<Arc<Front>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_REQUEST_BODY) {
        drain(body).await;
        return too_large(&front, announced);
    }
    if parts.method == Method::GET
        && let Some(parsed) = referrers::parse(parts.uri.path(), parts.uri.query())
    {
        return match parsed {
            Ok(query) => referrers::serve(&front, query, &parts.headers).await,
            Err(why) => referrers::invalid(why),
        };
    }
    let manifest_put = is_manifest_put(&parts.method, parts.uri.path());
    if manifest_put && announced.is_some_and(|n| n > referrers::MAX_MANIFEST_BYTES) {
        drain(body).await;
        return manifest_too_large(&front, announced);
    }
    let path_and_query = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let url = format!("{}{path_and_query}", front.backend);
    let mut headers = forwardable(&parts.headers);

    if let Some(hex) = blob_get_hex(&parts.method, parts.uri.path()) {
        // Ask the registry whether this client may read the blob; redirect only on yes.
        let head = front
            .client
            .head(&url)
            .headers(headers.clone())
            .send()
            .await;
        if let Ok(head) = head
            && head.status() == reqwest::StatusCode::OK
        {
            lock(&front.app.stats).acr_front.blob_redirects += 1;
            let location = storage::signed_url(&front, &hex);
            let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("sha256:{hex}")) {
                resp.headers_mut()
                    .insert(HeaderName::from_static("docker-content-digest"), v);
            }
            return resp;
        }
        // Anything else (401 challenge, 404, ...) is the registry's own GET answer.
    }

    let exceeded = Arc::new(AtomicBool::new(false));
    // The subject of a manifest PUT's body, answered with `OCI-Subject` once stored.
    let mut subject = None;
    let request_body = if manifest_put {
        match buffer(body, referrers::MAX_MANIFEST_BYTES).await {
            Ok(bytes) => {
                subject = referrers::subject_of(&bytes);
                // The client may have sent it chunked: the length is the buffer's.
                headers.remove(header::CONTENT_LENGTH);
                Some(reqwest::Body::from(bytes))
            }
            Err(Unbuffered::TooLarge) => return manifest_too_large(&front, None),
            Err(Unbuffered::Broken) => {
                return referrers::error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_INVALID",
                    "the manifest body broke off",
                );
            }
        }
    } else if parts.method != Method::GET && parts.method != Method::HEAD {
        let flag = exceeded.clone();
        let mut seen: u64 = 0;
        let stream = body.into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > MAX_REQUEST_BODY {
                flag.store(true, Ordering::SeqCst);
                return Err(std::io::Error::other(
                    "request body above the front's limit",
                ));
            }
            Ok(chunk)
        });
        Some(reqwest::Body::wrap_stream(stream))
    } else {
        None
    };
    let mut request = front
        .client
        .request(parts.method.clone(), &url)
        .headers(headers);
    if let Some(b) = request_body {
        request = request.body(b);
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(_) if exceeded.load(Ordering::SeqCst) => return too_large(&front, None),
        Err(e) => {
            tracing::warn!(error = %e, "registry front: the registry behind it did not answer");
            return bad_gateway("the registry behind the front did not answer");
        }
    };
    let status = upstream.status();
    let mut out_headers = forwardable(upstream.headers());
    let body = if parts.method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(upstream.bytes_stream())
    };
    if status == reqwest::StatusCode::CREATED
        && let Some(subject) = subject
        && let Ok(v) = HeaderValue::from_str(&subject)
    {
        lock(&front.app.stats).acr_front.subject_manifests += 1;
        out_headers.insert(HeaderName::from_static("oci-subject"), v);
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    std::mem::swap(resp.headers_mut(), &mut out_headers);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blob_gets_by_sha256_digest_are_redirected() {
        let hex = "0a".repeat(32);
        let get = Method::GET;
        assert_eq!(
            blob_get_hex(&get, &format!("/v2/a/b/blobs/sha256:{hex}")),
            Some(hex.clone())
        );
        assert_eq!(
            blob_get_hex(&Method::HEAD, &format!("/v2/a/blobs/sha256:{hex}")),
            None
        );
        assert_eq!(blob_get_hex(&get, "/v2/a/blobs/uploads/"), None);
        assert_eq!(
            blob_get_hex(&get, &format!("/v2/a/manifests/sha256:{hex}")),
            None
        );
        assert_eq!(blob_get_hex(&get, "/v2/a/blobs/sha256:0A"), None);
    }

    #[test]
    fn only_manifest_puts_are_buffered() {
        let d = format!("sha256:{}", "0a".repeat(32));
        assert!(is_manifest_put(&Method::PUT, "/v2/a/b/manifests/1.0.0"));
        assert!(is_manifest_put(
            &Method::PUT,
            &format!("/v2/a/manifests/{d}")
        ));
        assert!(!is_manifest_put(&Method::GET, "/v2/a/manifests/1.0.0"));
        assert!(!is_manifest_put(&Method::PUT, "/v2/a/blobs/uploads/x"));
        assert!(!is_manifest_put(&Method::PUT, "/v2/manifests/1"));
        assert!(!is_manifest_put(&Method::PUT, "/v2/a/manifests/"));
    }

    #[tokio::test]
    async fn manifest_bodies_are_buffered_up_to_their_cap() {
        let body = Body::from(vec![b'x'; 10]);
        assert!(matches!(buffer(body, 10).await, Ok(b) if b.len() == 10));
        let body = Body::from(vec![b'x'; 11]);
        assert!(matches!(buffer(body, 10).await, Err(Unbuffered::TooLarge)));
    }

    #[test]
    fn hop_by_hop_headers_and_host_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("front:1"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let out = forwardable(&h);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key(header::AUTHORIZATION));
    }
}
