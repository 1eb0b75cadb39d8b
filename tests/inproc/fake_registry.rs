//! An in-process fake of the OCI distribution API (plain http on a free loopback port),
//! for the edge cases real registries cannot be made to show on demand: faults on the Nth
//! request of a kind, a body-size limit (ACR's 413), tokens revoked mid-transfer. It keeps
//! blobs and manifests in memory, verifies every digest itself, and records every request
//! (method, path, `Content-Range`, whether `Authorization` was sent, when).
//!
//! Small on purpose: blobs (HEAD, GET, monolithic and chunked uploads with status and
//! cancel, cross-repository mount), manifests (HEAD, GET, PUT), `/v2/` and an optional
//! bearer-token realm at `/token`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One request as the registry saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path (no query).
    pub path: String,
    /// Query string, if any.
    pub query: String,
    /// `Content-Range` start, for PATCHes.
    pub range_start: Option<u64>,
    /// Body length.
    pub body_len: usize,
    /// Whether an `Authorization` header came with it.
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// What a fault does to the request it hits.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this status (with `Retry-After` seconds when given), storing nothing.
    Status(u16, Option<u64>),
    /// Revoke every token issued so far, then answer 401 with the bearer challenge.
    RevokeTokens,
}

/// A fault on the `nth` (1-based) request whose method is `method` and whose path
/// contains `path_part`.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Method to match.
    pub method: Method,
    /// Substring of the path to match.
    pub path_part: &'static str,
    /// Which matching request (1 = the first).
    pub nth: usize,
    /// What happens to it.
    pub fault: Fault,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<String, Bytes>,
    /// (repository, digest) pairs: which repositories hold which blob.
    links: std::collections::HashSet<(String, String)>,
    manifests: HashMap<(String, String), (String, Bytes)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
    requests: Vec<Request>,
    rules: Vec<Rule>,
    matched: BTreeMap<usize, usize>,
    max_body: Option<usize>,
    auth: bool,
    tokens: Vec<(String, bool)>,
}

/// A running fake registry; stopped when dropped.
pub struct FakeRegistry {
    inner: Arc<Mutex<Inner>>,
    /// `127.0.0.1:port`.
    pub host: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeRegistry {
    /// Starts one (anonymous, no limit, no fault).
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let host = listener.local_addr().expect("an address").to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            inner,
            host,
            server,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requires bearer tokens from `/token` for everything under `/v2/`.
    pub fn with_token_auth(self) -> Self {
        self.lock().auth = true;
        self
    }

    /// Answers 413 to any upload request whose body is larger than `bytes`.
    pub fn with_max_body(self, bytes: usize) -> Self {
        self.lock().max_body = Some(bytes);
        self
    }

    /// Adds a fault.
    pub fn fault(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Stores a blob in `repo`; returns its digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let mut inner = self.lock();
        inner
            .blobs
            .insert(digest.clone(), Bytes::copy_from_slice(bytes));
        inner.links.insert((repo.to_string(), digest.clone()));
        digest
    }

    /// Stores a manifest under `reference` in `repo`; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = sha256(bytes);
        let mut inner = self.lock();
        let value = (media_type.to_string(), Bytes::copy_from_slice(bytes));
        inner
            .manifests
            .insert((repo.to_string(), reference.to_string()), value.clone());
        inner
            .manifests
            .insert((repo.to_string(), digest.clone()), value);
        digest
    }

    /// The blob `digest` if `repo` holds it.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Bytes> {
        let inner = self.lock();
        inner
            .links
            .contains(&(repo.to_string(), digest.to_string()))
            .then(|| inner.blobs.get(digest).cloned())
            .flatten()
    }

    /// The manifest under `reference` in `repo`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Bytes> {
        self.lock()
            .manifests
            .get(&(repo.to_string(), reference.to_string()))
            .map(|(_, b)| b.clone())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Requests whose method is `method` and whose path contains `part`.
    pub fn requests_to(&self, method: Method, part: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

fn challenge(host: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "Bearer realm=\"http://{host}/token\",service=\"fake\""
    ))
    .expect("a header value")
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let path = uri.path().to_string();
    let query = query.unwrap_or_default();
    let range_start = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse().ok());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let range_from = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<usize>().ok());
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    let response = answer(
        &mut inner,
        &host,
        &method,
        &path,
        &query,
        authorization.as_deref(),
        range_from,
        body.clone(),
    );
    inner.requests.push(Request {
        method,
        path,
        query,
        range_start,
        body_len: body.len(),
        authorized: authorization.is_some(),
        status: response.status().as_u16(),
        at: Instant::now(),
    });
    response
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

fn with_headers(
    code: StatusCode,
    headers: &[(header::HeaderName, String)],
    body: Bytes,
) -> Response {
    let mut resp = (code, body).into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(name.clone(), v);
        }
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn answer(
    inner: &mut Inner,
    host: &str,
    method: &Method,
    path: &str,
    query: &str,
    authorization: Option<&str>,
    range_from: Option<usize>,
    body: Bytes,
) -> Response {
    if path == "/token" {
        let token = format!("token-{}", inner.tokens.len() + 1);
        inner.tokens.push((token.clone(), true));
        return axum::Json(serde_json::json!({ "token": token })).into_response();
    }
    // Faults first: the Nth matching request.
    for (i, rule) in inner.rules.clone().iter().enumerate() {
        if rule.method == *method && path.contains(rule.path_part) {
            let n = inner.matched.entry(i).or_insert(0);
            *n += 1;
            if *n == rule.nth {
                return match &rule.fault {
                    Fault::Status(code, after) => {
                        let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_REQUEST);
                        let mut h = Vec::new();
                        if let Some(s) = after {
                            h.push((header::RETRY_AFTER, s.to_string()));
                        }
                        with_headers(
                            code,
                            &h,
                            Bytes::from_static(
                                b"{\"errors\":[{\"code\":\"FAULT\",\"message\":\"injected\"}]}",
                            ),
                        )
                    }
                    Fault::RevokeTokens => {
                        for t in inner.tokens.iter_mut() {
                            t.1 = false;
                        }
                        let mut resp = status(StatusCode::UNAUTHORIZED);
                        resp.headers_mut()
                            .insert(header::WWW_AUTHENTICATE, challenge(host));
                        resp
                    }
                };
            }
        }
    }
    if inner.auth {
        let valid = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| inner.tokens.iter().any(|(k, ok)| k == t && *ok));
        if !valid {
            let mut resp = status(StatusCode::UNAUTHORIZED);
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge(host));
            return resp;
        }
    }
    if path == "/v2/" || path == "/v2" {
        return status(StatusCode::OK);
    }
    if let Some(max) = inner.max_body
        && body.len() > max
    {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return status(StatusCode::NOT_FOUND);
    };
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| {
                v.replace("%3A", ":")
                    .replace("%3a", ":")
                    .replace("%2F", "/")
            })
    };
    if let Some((repo, upload)) = rest.split_once("/blobs/uploads/") {
        return uploads(
            inner,
            method,
            repo,
            upload,
            param("digest"),
            param("mount"),
            param("from"),
            body,
        );
    }
    if let Some((repo, digest)) = rest.split_once("/blobs/") {
        let found = inner
            .links
            .contains(&(repo.to_string(), digest.to_string()))
            .then(|| inner.blobs.get(digest).cloned())
            .flatten();
        return match (method, found) {
            (&Method::HEAD, Some(b)) => with_headers(
                StatusCode::OK,
                &[
                    (header::CONTENT_LENGTH, b.len().to_string()),
                    (
                        header::HeaderName::from_static("docker-content-digest"),
                        digest.to_string(),
                    ),
                ],
                Bytes::new(),
            ),
            (&Method::GET, Some(b)) => match range_from {
                Some(from) if from < b.len() => with_headers(
                    StatusCode::PARTIAL_CONTENT,
                    &[(
                        header::CONTENT_RANGE,
                        format!("bytes {from}-{}/{}", b.len() - 1, b.len()),
                    )],
                    b.slice(from..),
                ),
                _ => with_headers(
                    StatusCode::OK,
                    &[(
                        header::HeaderName::from_static("docker-content-digest"),
                        digest.to_string(),
                    )],
                    b,
                ),
            },
            _ => status(StatusCode::NOT_FOUND),
        };
    }
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        let key = (repo.to_string(), reference.to_string());
        return match *method {
            Method::PUT => {
                let digest = sha256(&body);
                if reference.starts_with("sha256:") && reference != digest {
                    return status(StatusCode::BAD_REQUEST);
                }
                let value = (
                    "application/vnd.oci.image.manifest.v1+json".to_string(),
                    body,
                );
                inner.manifests.insert(key, value.clone());
                inner
                    .manifests
                    .insert((repo.to_string(), digest.clone()), value);
                with_headers(
                    StatusCode::CREATED,
                    &[(
                        header::HeaderName::from_static("docker-content-digest"),
                        digest,
                    )],
                    Bytes::new(),
                )
            }
            Method::HEAD | Method::GET => match inner.manifests.get(&key).cloned() {
                Some((media_type, bytes)) => with_headers(
                    StatusCode::OK,
                    &[
                        (header::CONTENT_TYPE, media_type),
                        (
                            header::HeaderName::from_static("docker-content-digest"),
                            sha256(&bytes),
                        ),
                        (header::CONTENT_LENGTH, bytes.len().to_string()),
                    ],
                    if *method == Method::GET {
                        bytes
                    } else {
                        Bytes::new()
                    },
                ),
                None => status(StatusCode::NOT_FOUND),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED),
        };
    }
    status(StatusCode::NOT_FOUND)
}

#[allow(clippy::too_many_arguments)]
fn uploads(
    inner: &mut Inner,
    method: &Method,
    repo: &str,
    upload: &str,
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    body: Bytes,
) -> Response {
    let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}");
    let range = |len: usize| format!("0-{}", len.saturating_sub(1));
    let finish = |inner: &mut Inner, bytes: Vec<u8>, digest: Option<String>| {
        let Some(digest) = digest else {
            return status(StatusCode::BAD_REQUEST);
        };
        if sha256(&bytes) != digest {
            return status(StatusCode::BAD_REQUEST);
        }
        inner.blobs.insert(digest.clone(), Bytes::from(bytes));
        inner.links.insert((repo.to_string(), digest.clone()));
        with_headers(
            StatusCode::CREATED,
            &[
                (header::LOCATION, format!("/v2/{repo}/blobs/{digest}")),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    digest,
                ),
            ],
            Bytes::new(),
        )
    };
    if upload.is_empty() && *method == Method::POST {
        if let (Some(m), Some(f)) = (&mount, &from)
            && inner.links.contains(&(f.clone(), m.clone()))
        {
            inner.links.insert((repo.to_string(), m.clone()));
            return with_headers(
                StatusCode::CREATED,
                &[(header::LOCATION, format!("/v2/{repo}/blobs/{m}"))],
                Bytes::new(),
            );
        }
        if digest.is_some() {
            return finish(inner, body.to_vec(), digest);
        }
        inner.next_upload += 1;
        let id = format!("u{}", inner.next_upload);
        inner
            .uploads
            .insert(id.clone(), (repo.to_string(), Vec::new()));
        return with_headers(
            StatusCode::ACCEPTED,
            &[
                (header::LOCATION, location(&id)),
                (header::RANGE, "0-0".into()),
            ],
            Bytes::new(),
        );
    }
    let id = upload.trim_end_matches('/').to_string();
    let Some((_, data)) = inner.uploads.get_mut(&id) else {
        return status(StatusCode::NOT_FOUND);
    };
    match *method {
        Method::PATCH => {
            data.extend_from_slice(&body);
            let len = data.len();
            with_headers(
                StatusCode::ACCEPTED,
                &[
                    (header::LOCATION, location(&id)),
                    (header::RANGE, range(len)),
                ],
                Bytes::new(),
            )
        }
        Method::PUT => {
            data.extend_from_slice(&body);
            let bytes = std::mem::take(data);
            inner.uploads.remove(&id);
            finish(inner, bytes, digest)
        }
        Method::GET => {
            let len = data.len();
            with_headers(
                StatusCode::NO_CONTENT,
                &[
                    (header::LOCATION, location(&id)),
                    (header::RANGE, range(len)),
                ],
                Bytes::new(),
            )
        }
        Method::DELETE => {
            inner.uploads.remove(&id);
            status(StatusCode::NO_CONTENT)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}
