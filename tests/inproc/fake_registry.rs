//! An in-process fake of the OCI distribution API (plain http on a free loopback port),
//! for the edge cases real registries cannot be made to show on demand: faults on the Nth
//! request of a kind (a status with `Retry-After`, a connection dropped before the answer
//! or in the middle of a request body, a response body cut short), a body-size limit
//! (ACR's 413), tokens revoked and credentials rotated mid-transfer. It keeps blobs and
//! manifests in memory, verifies every digest itself, and records every request (method,
//! path, `Content-Range`, `Range`, the `Authorization` sent, when it arrived, the status).
//!
//! Small on purpose: blobs (HEAD, GET with `Range`, monolithic and chunked uploads with
//! `Content-Range` checked against the session's size, status and cancel,
//! cross-repository mount), manifests (HEAD, GET, PUT, refused while they reference
//! content the repository lacks), `/v2/`, and optional bearer tokens: a `/token` realm on
//! the registry's own origin (anonymous) or a token server on another origin that wants
//! basic credentials; tokens carry the scopes asked for and are checked per repository
//! and action. Served with hyper directly, one task per connection, so a fault can drop a
//! connection the way a network does.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use base64::Engine as _;
use futures_util::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Which listener a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The registry itself.
    Registry,
    /// The token server on its own origin ([`FakeRegistry::with_token_server`]).
    TokenServer,
}

/// One request as the registry saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Which listener it reached.
    pub server: Server,
    /// HTTP method.
    pub method: Method,
    /// Path (no query).
    pub path: String,
    /// Query string, if any.
    pub query: String,
    /// `Content-Range` start, for PATCHes.
    pub range_start: Option<u64>,
    /// The `Range` header (blob GETs).
    pub range: Option<String>,
    /// Body bytes received (up to the failure, for a request cut by a fault).
    pub body_len: usize,
    /// Whether an `Authorization` header came with it.
    pub authorized: bool,
    /// The `Authorization` header itself.
    pub authorization: Option<String>,
    /// The status answered; 0 when the connection was dropped without an answer (by a
    /// fault, or because the client's body broke off).
    pub status: u16,
    /// When it arrived (before its body was read).
    pub at: Instant,
}

impl Request {
    /// `Bearer` or `Basic`, the scheme of its `Authorization`.
    pub fn auth_scheme(&self) -> Option<&str> {
        self.authorization
            .as_deref()
            .and_then(|a| a.split_whitespace().next())
    }
}

/// What a fault does to the request it hits.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this status (with `Retry-After` seconds when given), storing nothing.
    Status(u16, Option<u64>),
    /// Revoke every token issued so far, then answer 401 with the bearer challenge.
    RevokeTokens,
    /// Revoke every token and change the password the token server wants to this one
    /// (a credential rotated mid-transfer), then answer 401 with the bearer challenge.
    RotatePassword(&'static str),
    /// Close the connection without an answer, before reading the body.
    Drop,
    /// Read this many bytes of the request body (at least), then close the connection
    /// without an answer; nothing of the request is stored (a chunk lost in transit),
    /// unless [`FakeRegistry::with_partial_chunks`].
    DropAfterBody(usize),
    /// Answer as usual, but close the connection after this many bytes of the response
    /// body (its `Content-Length` announces all of it).
    CutBody(usize),
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

/// A token the fake issued.
struct Token {
    value: String,
    valid: bool,
    /// `repository:NAME:ACTIONS` entries granted (everything asked for).
    scopes: Vec<String>,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<String, Bytes>,
    /// (repository, digest) pairs: which repositories hold which blob.
    links: HashSet<(String, String)>,
    /// (repository, tag or digest) → (media type, bytes).
    manifests: HashMap<(String, String), (String, Bytes)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
    requests: Vec<Request>,
    /// Rules and whether each fires on every match (else on its `nth`).
    rules: Vec<(Rule, bool)>,
    matched: BTreeMap<usize, usize>,
    max_body: Option<usize>,
    auth: bool,
    /// `http://HOST:PORT/token` of a token server on another origin.
    realm: Option<String>,
    /// Basic credentials the token server wants (none: anonymous tokens).
    token_credentials: Option<(String, String)>,
    tokens: Vec<Token>,
    /// Blob GETs answered 307 to this `host:port` (a storage origin).
    blob_redirect: Option<String>,
    /// Whether a PATCH broken by [`Fault::DropAfterBody`] keeps what arrived.
    partial_chunks: bool,
    /// The referrers API, with pages of this many descriptors (`None`: no API, 404).
    referrers_page: Option<usize>,
    /// A `Link` sent with every referrers page instead of the right one (hostile).
    referrers_link: Option<String>,
}

/// A running fake registry; stopped (with its open connections) when dropped.
pub struct FakeRegistry {
    inner: Arc<Mutex<Inner>>,
    /// `127.0.0.1:port`.
    pub host: String,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// Binds a free loopback port and serves `server` on it: one task per connection, all
/// dropped with the returned task. Each request carries its connection's [`Notify`],
/// which a fault fires to drop the connection.
async fn serve(inner: Arc<Mutex<Inner>>, server: Server) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let host = listener.local_addr().expect("an address").to_string();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let kill = Arc::new(Notify::new());
            let service = {
                let (inner, kill) = (inner.clone(), kill.clone());
                hyper::service::service_fn(move |req| {
                    let (inner, kill) = (inner.clone(), kill.clone());
                    async move { Ok::<_, Infallible>(handle(inner, kill, server, req).await) }
                })
            };
            connections.spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    _ = kill.notified() => {}
                }
            });
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
    });
    (host, task)
}

impl FakeRegistry {
    /// Starts one (anonymous, no limit, no fault).
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let (host, server) = serve(inner.clone(), Server::Registry).await;
        Self {
            inner,
            host,
            servers: vec![server],
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requires bearer tokens for everything under `/v2/`, issued to anyone by `/token`
    /// on the registry's own origin.
    pub fn with_token_auth(self) -> Self {
        self.lock().auth = true;
        self
    }

    /// Requires bearer tokens for everything under `/v2/`, issued by a token server on
    /// another origin (its own port) only against basic `username:password`.
    pub async fn with_token_server(mut self, username: &str, password: &str) -> Self {
        let (host, server) = serve(self.inner.clone(), Server::TokenServer).await;
        self.servers.push(server);
        let mut inner = self.lock();
        inner.auth = true;
        inner.realm = Some(format!("http://{host}/token"));
        inner.token_credentials = Some((username.to_string(), password.to_string()));
        drop(inner);
        self
    }

    /// Answers 413 to any upload request whose body is larger than `bytes`.
    pub fn with_max_body(self, bytes: usize) -> Self {
        self.lock().max_body = Some(bytes);
        self
    }

    /// Answers blob GETs with a 307 to the same path at `storage` (`host:port`, plain
    /// http), as ACR redirects blob reads to its storage.
    pub fn with_blob_redirect(self, storage: &str) -> Self {
        self.lock().blob_redirect = Some(storage.to_string());
        self
    }

    /// Keeps what arrived of a PATCH that [`Fault::DropAfterBody`] breaks, as
    /// distribution does (by default a chunk is all or nothing).
    pub fn with_partial_chunks(self) -> Self {
        self.lock().partial_chunks = true;
        self
    }

    /// Serves the referrers API (`GET /v2/<repo>/referrers/<digest>`, the manifests whose
    /// `subject` is the digest, `artifactType` filtered and `OCI-Filters-Applied` set), in
    /// pages of `page` descriptors linked by `Link`. Without it the path answers 404.
    pub fn with_referrers_api(self, page: usize) -> Self {
        self.lock().referrers_page = Some(page.max(1));
        self
    }

    /// Sends `link` as the `Link` of every referrers page (a hostile registry).
    pub fn with_referrers_link(self, link: &str) -> Self {
        self.lock().referrers_link = Some(link.to_string());
        self
    }

    /// Adds a fault on the rule's `nth` matching request.
    pub fn fault(&self, rule: Rule) {
        self.lock().rules.push((rule, false));
    }

    /// Adds a fault on every request matching `method` and `path_part`.
    pub fn fault_every(&self, method: Method, path_part: &'static str, fault: Fault) {
        let rule = Rule {
            method,
            path_part,
            nth: 0,
            fault,
        };
        self.lock().rules.push((rule, true));
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

    /// Stores a manifest under `reference` in `repo`, unchecked; returns its digest.
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
        self.manifest_with_type(repo, reference).map(|(_, b)| b)
    }

    /// The manifest under `reference` in `repo` and the media type it was stored with.
    pub fn manifest_with_type(&self, repo: &str, reference: &str) -> Option<(String, Bytes)> {
        self.lock()
            .manifests
            .get(&(repo.to_string(), reference.to_string()))
            .cloned()
    }

    /// Upload sessions still open.
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Every request so far (both listeners).
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

type Body = BoxBody<Bytes, std::io::Error>;
type Response = hyper::Response<Body>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn status(code: StatusCode) -> Response {
    respond(code, &[], Bytes::new())
}

fn respond(code: StatusCode, headers: &[(&str, String)], body: Bytes) -> Response {
    let mut resp = hyper::Response::new(full(body));
    *resp.status_mut() = code;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

/// A distribution error answer.
fn error(code: StatusCode, name: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": name, "message": message }] });
    respond(
        code,
        &[("content-type", "application/json".into())],
        Bytes::from(body.to_string()),
    )
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a request body whole; `Err` with the bytes received when the client broke off.
async fn read_body(body: Incoming) -> Result<Bytes, usize> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    out.extend_from_slice(data);
                }
            }
            Err(_) => return Err(out.len()),
        }
    }
    Ok(Bytes::from(out))
}

/// Reads at least `limit` bytes of a body (or all of it, if shorter).
async fn read_some(body: Incoming, limit: usize) -> Vec<u8> {
    let mut body = body;
    let mut got = Vec::new();
    while got.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => got.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
            _ => break,
        }
    }
    got
}

async fn handle(
    inner: Arc<Mutex<Inner>>,
    kill: Arc<Notify>,
    server: Server,
    req: hyper::Request<Incoming>,
) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method;
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let headers = parts.headers;
    let host = header_text(&headers, header::HOST).unwrap_or_else(|| "127.0.0.1".into());
    let authorization = header_text(&headers, header::AUTHORIZATION);
    let range_start = header_text(&headers, header::CONTENT_RANGE)
        .and_then(|v| v.split('-').next().and_then(|s| s.trim().parse().ok()));
    let range = header_text(&headers, header::RANGE);
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let lock = || inner.lock().unwrap_or_else(|p| p.into_inner());
    let record = |status: u16, body_len: usize| {
        lock().requests.push(Request {
            server,
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            range_start,
            range: range.clone(),
            body_len,
            authorized: authorization.is_some(),
            authorization: authorization.clone(),
            status,
            at,
        });
    };

    // Faults first: the Nth matching request (token requests included).
    let fault = {
        let mut inner = lock();
        let mut hit = None;
        for (i, (rule, every)) in inner.rules.clone().iter().enumerate() {
            if rule.method == method && path.contains(rule.path_part) {
                let n = inner.matched.entry(i).or_insert(0);
                *n += 1;
                if hit.is_none() && (*every || *n == rule.nth) {
                    hit = Some(rule.fault.clone());
                }
            }
        }
        hit
    };
    let mut cut = None;
    match fault {
        Some(Fault::Drop) => {
            record(0, 0);
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::DropAfterBody(limit)) => {
            let got = read_some(body, limit).await;
            keep_partial_chunk(&mut lock(), &method, &path, range_start, &got);
            record(0, got.len());
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::CutBody(after)) => cut = Some(after),
        _ => {}
    }
    // Every other answer comes after the whole body, so the client sees it.
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(got) => {
            // The client broke off mid-body (its source failed): nothing is stored.
            record(0, got);
            return status(StatusCode::BAD_REQUEST);
        }
    };
    let response = {
        let mut inner = lock();
        match fault {
            Some(Fault::Status(code, after)) => {
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                let mut resp = error(code, "FAULT", "injected");
                if let Some(s) = after
                    && let Ok(v) = HeaderValue::from_str(&s.to_string())
                {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                resp
            }
            Some(Fault::RevokeTokens) => {
                for t in inner.tokens.iter_mut() {
                    t.valid = false;
                }
                unauthorized(&inner, &host, None)
            }
            Some(Fault::RotatePassword(new)) => {
                for t in inner.tokens.iter_mut() {
                    t.valid = false;
                }
                if let Some((_, password)) = inner.token_credentials.as_mut() {
                    *password = new.to_string();
                }
                unauthorized(&inner, &host, None)
            }
            _ => answer(
                &mut inner,
                server,
                &host,
                &method,
                &path,
                &query,
                authorization.as_deref(),
                range.as_deref(),
                range_start,
                content_type.as_deref(),
                body.clone(),
            ),
        }
    };
    record(response.status().as_u16(), body.len());
    match cut {
        Some(after) => cut_body(response, after).await,
        None => response,
    }
}

/// With [`FakeRegistry::with_partial_chunks`], appends what arrived of a broken upload
/// PATCH to its session, as distribution does (it streams a PATCH into the upload file).
fn keep_partial_chunk(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    range_start: Option<u64>,
    got: &[u8],
) {
    if !inner.partial_chunks || *method != Method::PATCH {
        return;
    }
    let Some((_, id)) = path.split_once("/blobs/uploads/") else {
        return;
    };
    if let Some((_, data)) = inner.uploads.get_mut(id.trim_end_matches('/'))
        && range_start.is_none_or(|start| start == data.len() as u64)
    {
        data.extend_from_slice(got);
    }
}

/// `response` with its body cut after `after` bytes (the connection then breaks).
async fn cut_body(response: Response, after: usize) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&bytes.len().to_string()) {
        parts.headers.insert(header::CONTENT_LENGTH, v);
    }
    let head = bytes.slice(..after.min(bytes.len()));
    // The head, then a few turns of Pending (on each, hyper flushes what it buffered to
    // the socket, so the client gets the head), then the error that breaks the connection.
    let head = futures_util::stream::iter([Ok(Frame::data(head))]);
    let error = futures_util::stream::once(async {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        Err(std::io::Error::other("body cut by a fault"))
    });
    let stream = StreamBody::new(head.chain(error));
    hyper::Response::from_parts(parts, BodyExt::boxed(stream))
}

/// 401 with the bearer challenge (for `scope`, when a request lacked it).
fn unauthorized(inner: &Inner, host: &str, scope: Option<&str>) -> Response {
    let realm = inner
        .realm
        .clone()
        .unwrap_or_else(|| format!("http://{host}/token"));
    let mut challenge = format!("Bearer realm=\"{realm}\",service=\"fake\"");
    if let Some(scope) = scope {
        challenge.push_str(&format!(",scope=\"{scope}\""));
    }
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// A query parameter's values, percent-decoded.
fn params(query: &str, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Answers the token endpoint: a token for every scope asked for, if the credentials
/// (when the server wants some) match.
fn token(inner: &mut Inner, query: &str, authorization: Option<&str>) -> Response {
    if let Some((username, password)) = &inner.token_credentials {
        let given = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        if given.as_deref() != Some(&format!("{username}:{password}")) {
            return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials");
        }
    }
    let value = format!("token-{}", inner.tokens.len() + 1);
    inner.tokens.push(Token {
        value: value.clone(),
        valid: true,
        scopes: params(query, "scope"),
    });
    respond(
        StatusCode::OK,
        &[("content-type", "application/json".into())],
        Bytes::from(serde_json::json!({ "token": value }).to_string()),
    )
}

/// Whether the bearer token in `authorization` is valid and grants `action` on `repo`
/// (any token will do when `repo` is `None`).
fn granted(inner: &Inner, authorization: Option<&str>, repo: Option<&str>, action: &str) -> bool {
    let Some(token) = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| inner.tokens.iter().find(|k| k.value == t && k.valid))
    else {
        return false;
    };
    let Some(repo) = repo else {
        return true;
    };
    token.scopes.iter().any(|scope| {
        scope.strip_prefix("repository:").is_some_and(|rest| {
            rest.rsplit_once(':').is_some_and(|(name, actions)| {
                name == repo && actions.split(',').any(|a| a == action)
            })
        })
    })
}

/// The repository a `/v2/` path names (before `/blobs/` or `/manifests/`).
fn repository(rest: &str) -> Option<&str> {
    ["/blobs/", "/manifests/", "/referrers/"]
        .iter()
        .find_map(|sep| rest.split_once(sep).map(|(repo, _)| repo))
}

#[allow(clippy::too_many_arguments)]
fn answer(
    inner: &mut Inner,
    server: Server,
    host: &str,
    method: &Method,
    path: &str,
    query: &str,
    authorization: Option<&str>,
    range: Option<&str>,
    range_start: Option<u64>,
    content_type: Option<&str>,
    body: Bytes,
) -> Response {
    if path == "/token" && (server == Server::TokenServer || inner.realm.is_none()) {
        return token(inner, query, authorization);
    }
    if server == Server::TokenServer {
        return status(StatusCode::NOT_FOUND);
    }
    let rest = path.strip_prefix("/v2/");
    if inner.auth {
        let repo = rest.and_then(repository);
        let action = if matches!(*method, Method::GET | Method::HEAD) {
            "pull"
        } else {
            "push"
        };
        if !granted(inner, authorization, repo, action) {
            let scope = repo.map(|r| format!("repository:{r}:{action}"));
            return unauthorized(inner, host, scope.as_deref());
        }
    }
    if path == "/v2/" || path == "/v2" {
        return status(StatusCode::OK);
    }
    if let Some(max) = inner.max_body
        && body.len() > max
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            "body too large",
        );
    }
    let Some(rest) = rest else {
        return status(StatusCode::NOT_FOUND);
    };
    let param = |name: &str| params(query, name).into_iter().next();
    if let Some((repo, upload)) = rest.split_once("/blobs/uploads/") {
        // A mount needs pull on the source repository too.
        let from = param("from").filter(|from| {
            !inner.auth || granted(inner, authorization, Some(from.as_str()), "pull")
        });
        return uploads(
            inner,
            method,
            repo,
            upload,
            param("digest"),
            param("mount"),
            from,
            range_start,
            body,
        );
    }
    if let Some((repo, digest)) = rest.split_once("/blobs/") {
        return blobs(inner, method, repo, digest, range);
    }
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        return manifests(inner, method, repo, reference, content_type, body);
    }
    if let Some((repo, digest)) = rest.split_once("/referrers/")
        && let Some(page) = inner.referrers_page
    {
        let artifact_type = param("artifactType");
        let from: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        return referrers(inner, repo, digest, artifact_type.as_deref(), page, from);
    }
    status(StatusCode::NOT_FOUND)
}

/// A page of the manifests of `repo` whose `subject` is `digest`, by digest order.
fn referrers(
    inner: &Inner,
    repo: &str,
    digest: &str,
    artifact_type: Option<&str>,
    page: usize,
    from: usize,
) -> Response {
    let mut all: Vec<serde_json::Value> = inner
        .manifests
        .iter()
        .filter(|((r, reference), _)| r == repo && reference.starts_with("sha256:"))
        .filter_map(|((_, reference), (media_type, bytes))| {
            let m: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            (m["subject"]["digest"] == digest).then(|| {
                let kind = m["artifactType"]
                    .as_str()
                    .or_else(|| m["config"]["mediaType"].as_str())
                    .unwrap_or_default()
                    .to_string();
                serde_json::json!({"mediaType": media_type, "digest": reference,
                    "size": bytes.len(), "artifactType": kind})
            })
        })
        .filter(|d| artifact_type.is_none_or(|t| d["artifactType"] == t))
        .collect();
    all.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    let shown: Vec<_> = all.iter().skip(from).take(page).cloned().collect();
    let index = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": shown});
    let mut headers = vec![(
        "content-type",
        "application/vnd.oci.image.index.v1+json".to_string(),
    )];
    if artifact_type.is_some() {
        headers.push(("oci-filters-applied", "artifactType".to_string()));
    }
    if let Some(link) = &inner.referrers_link {
        headers.push(("link", format!("<{link}>; rel=\"next\"")));
    } else if from + page < all.len() {
        let mut link = format!("/v2/{repo}/referrers/{digest}?page={}", from + page);
        if let Some(t) = artifact_type {
            link += &format!(
                "&artifactType={}",
                url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
            );
        }
        headers.push(("link", format!("<{link}>; rel=\"next\"")));
    }
    respond(
        StatusCode::OK,
        &headers,
        Bytes::from(serde_json::to_vec(&index).unwrap_or_default()),
    )
}

fn blobs(
    inner: &Inner,
    method: &Method,
    repo: &str,
    digest: &str,
    range: Option<&str>,
) -> Response {
    let found = inner
        .links
        .contains(&(repo.to_string(), digest.to_string()))
        .then(|| inner.blobs.get(digest).cloned())
        .flatten();
    let Some(b) = found else {
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
    };
    let digest_header = ("docker-content-digest", digest.to_string());
    if *method == Method::HEAD {
        return respond(
            StatusCode::OK,
            &[("content-length", b.len().to_string()), digest_header],
            Bytes::new(),
        );
    }
    if *method != Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    if let Some(storage) = &inner.blob_redirect {
        return respond(
            StatusCode::TEMPORARY_REDIRECT,
            &[(
                "location",
                format!("http://{storage}/v2/{repo}/blobs/{digest}?sig=fake"),
            )],
            Bytes::new(),
        );
    }
    let from = range
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    match from {
        Some(from) if from < b.len() => respond(
            StatusCode::PARTIAL_CONTENT,
            &[
                (
                    "content-range",
                    format!("bytes {from}-{}/{}", b.len() - 1, b.len()),
                ),
                digest_header,
            ],
            b.slice(from..),
        ),
        Some(_) => status(StatusCode::RANGE_NOT_SATISFIABLE),
        None => respond(StatusCode::OK, &[digest_header], b),
    }
}

/// The digests a manifest references: (blobs, manifests). `None` when it is not JSON.
fn references(bytes: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let digests = |list: Option<&serde_json::Value>| -> Vec<String> {
        list.and_then(|l| l.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|d| d.get("digest")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut blobs = digests(value.get("layers"));
    blobs.extend(digests(value.get("blobs")));
    if let Some(config) = value
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(|d| d.as_str())
    {
        blobs.push(config.to_string());
    }
    Some((blobs, digests(value.get("manifests"))))
}

fn manifests(
    inner: &mut Inner,
    method: &Method,
    repo: &str,
    reference: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Response {
    let key = (repo.to_string(), reference.to_string());
    match *method {
        Method::PUT => {
            let digest = sha256(&body);
            if reference.starts_with("sha256:") && reference != digest {
                return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest mismatch");
            }
            let Some((blobs, children)) = references(&body) else {
                return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "not JSON");
            };
            // A registry tags only content it holds.
            let missing = blobs
                .iter()
                .any(|d| !inner.links.contains(&(repo.to_string(), d.clone())))
                || children
                    .iter()
                    .any(|d| !inner.manifests.contains_key(&(repo.to_string(), d.clone())));
            if missing {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    "the manifest references content the repository lacks",
                );
            }
            let media_type = content_type
                .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                .to_string();
            let value = (media_type, body);
            inner.manifests.insert(key, value.clone());
            inner
                .manifests
                .insert((repo.to_string(), digest.clone()), value);
            respond(
                StatusCode::CREATED,
                &[
                    ("location", format!("/v2/{repo}/manifests/{digest}")),
                    ("docker-content-digest", digest),
                ],
                Bytes::new(),
            )
        }
        Method::HEAD | Method::GET => match inner.manifests.get(&key).cloned() {
            Some((media_type, bytes)) => respond(
                StatusCode::OK,
                &[
                    ("content-type", media_type),
                    ("docker-content-digest", sha256(&bytes)),
                    ("content-length", bytes.len().to_string()),
                ],
                if *method == Method::GET {
                    bytes
                } else {
                    Bytes::new()
                },
            ),
            None => error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            ),
        },
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
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
    range_start: Option<u64>,
    body: Bytes,
) -> Response {
    let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}?_state={id}");
    // As distribution words it: `0-0` for an empty session too.
    let range = |len: usize| format!("0-{}", len.saturating_sub(1));
    let finish = |inner: &mut Inner, bytes: Vec<u8>, digest: Option<String>| {
        let Some(digest) = digest else {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest");
        };
        if sha256(&bytes) != digest {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest mismatch");
        }
        inner.blobs.insert(digest.clone(), Bytes::from(bytes));
        inner.links.insert((repo.to_string(), digest.clone()));
        respond(
            StatusCode::CREATED,
            &[
                ("location", format!("/v2/{repo}/blobs/{digest}")),
                ("docker-content-digest", digest),
            ],
            Bytes::new(),
        )
    };
    if upload.is_empty() && *method == Method::POST {
        if let (Some(m), Some(f)) = (&mount, &from)
            && inner.links.contains(&(f.clone(), m.clone()))
        {
            inner.links.insert((repo.to_string(), m.clone()));
            return respond(
                StatusCode::CREATED,
                &[
                    ("location", format!("/v2/{repo}/blobs/{m}")),
                    ("docker-content-digest", m.clone()),
                ],
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
        return respond(
            StatusCode::ACCEPTED,
            &[("location", location(&id)), ("range", "0-0".into())],
            Bytes::new(),
        );
    }
    let id = upload.trim_end_matches('/').to_string();
    let Some((_, data)) = inner.uploads.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "no such upload",
        );
    };
    let session = |len: usize| [("location", location(&id)), ("range", range(len))];
    match *method {
        Method::PATCH => {
            // A chunk must continue where the session stands (distribution answers 416).
            if range_start.is_some_and(|start| start != data.len() as u64) {
                let len = data.len();
                let mut resp = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    "Content-Range does not continue the upload",
                );
                if let Ok(v) = HeaderValue::from_str(&range(len)) {
                    resp.headers_mut().insert(header::RANGE, v);
                }
                return resp;
            }
            data.extend_from_slice(&body);
            let len = data.len();
            respond(StatusCode::ACCEPTED, &session(len), Bytes::new())
        }
        Method::PUT => {
            data.extend_from_slice(&body);
            let bytes = std::mem::take(data);
            inner.uploads.remove(&id);
            finish(inner, bytes, digest)
        }
        Method::GET => {
            let len = data.len();
            respond(StatusCode::NO_CONTENT, &session(len), Bytes::new())
        }
        Method::DELETE => {
            inner.uploads.remove(&id);
            status(StatusCode::NO_CONTENT)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}
