//! An in-process, fault-injecting HTTP/1.1 reverse proxy (hyper) in front of a plain-HTTP
//! registry.
//!
//! It forwards every request unchanged (including the `Host` header, so the registry's
//! absolute `Location` headers point back at the proxy), streams bodies both ways, and
//! rewrites nothing except hop-by-hop headers. On top of that it can, deterministically:
//! - inject a fault on every N-th request (429 / 503 with `Retry-After: 1`, a dropped
//!   connection, or a response body cut off half-way),
//! - serve wrong bytes (same length) for `GET /v2/<name>/blobs/<digest>` of one digest,
//! - stall the body of chosen blob GETs after a few bytes until released.
//!
//! It counts and logs every request it saw.

use super::registry::Registry;
use super::rt;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// A fault the proxy can inject instead of (or into) a normal answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After: 1`; not forwarded.
    TooManyRequests,
    /// `503 Service Unavailable` with `Retry-After: 1`; not forwarded.
    Unavailable,
    /// The connection is closed without any answer; not forwarded.
    DropConnection,
    /// GET: forwarded, and the connection is cut after half of the response body (for a
    /// response without a body it passes). Other methods: like `DropConnection`.
    TruncateBody,
}

/// What the proxy does. Can be changed while it runs ([`FaultProxy::set_config`]).
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// Inject a fault on every `every`-th request (counting all requests from 1); 0 = never.
    pub every: u64,
    /// The faults to inject, used in rotation.
    pub faults: Vec<Fault>,
    /// Serve corrupted bytes (same length) for GETs of this blob digest.
    pub corrupt_blob: Option<String>,
    /// Stall GET bodies of these blob digests after `stall_after` bytes until
    /// [`FaultProxy::release_stalls`] (or the proxy is dropped).
    pub stall_blobs: Vec<String>,
    pub stall_after: u64,
    /// Refuse requests whose `Content-Length` is above this with 413, not forwarded, as
    /// Azure Container Registry does above about 20 MB.
    pub max_request_body: Option<u64>,
}

impl ProxyConfig {
    /// Every `every`-th request gets the next of `faults`.
    pub fn faults(every: u64, faults: &[Fault]) -> Self {
        ProxyConfig {
            every,
            faults: faults.to_vec(),
            ..Default::default()
        }
    }

    /// Blob GETs of `digest` get corrupted bytes.
    pub fn corrupt(digest: &str) -> Self {
        ProxyConfig {
            corrupt_blob: Some(digest.to_string()),
            ..Default::default()
        }
    }

    /// Blob GETs of `digests` stall after `after` bytes.
    pub fn stall(digests: &[String], after: u64) -> Self {
        ProxyConfig {
            stall_blobs: digests.to_vec(),
            stall_after: after,
            ..Default::default()
        }
    }

    fn fault_for(&self, n: u64) -> Option<Fault> {
        if self.every == 0 || self.faults.is_empty() || !n.is_multiple_of(self.every) {
            return None;
        }
        let k = (n / self.every - 1) as usize;
        Some(self.faults[k % self.faults.len()])
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// 1-based arrival number.
    pub n: u64,
    pub method: String,
    pub path: String,
    pub fault: Option<Fault>,
    /// Status sent (the upstream's, or the injected one); `None` for a dropped connection.
    pub status: Option<u16>,
    /// The body was corrupted / stalled / truncated.
    pub body_tampered: bool,
}

struct State {
    upstream: String,
    config: Mutex<ProxyConfig>,
    seen: AtomicU64,
    log: Mutex<Vec<RequestRecord>>,
    stalled: AtomicUsize,
    release: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    client: Client<HttpConnector, Incoming>,
}

/// A running proxy; stops (closing all its connections) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    upstream_credentials: Option<(String, String)>,
}

impl FaultProxy {
    /// A proxy in front of a plain-HTTP `upstream` registry.
    pub fn start(upstream: &Registry, config: ProxyConfig) -> Self {
        assert!(
            !upstream.is_tls(),
            "the fault proxy fronts plain-HTTP registries only"
        );
        let mut proxy = Self::start_for(&upstream.host(), config);
        proxy.upstream_credentials = upstream.credentials().map(|(u, p)| (u.into(), p.into()));
        proxy
    }

    /// A proxy in front of `upstream_host` (`127.0.0.1:PORT`, plain HTTP).
    pub fn start_for(upstream_host: &str, config: ProxyConfig) -> Self {
        let listener =
            rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind fault proxy");
        let addr = listener.local_addr().unwrap();
        let client = {
            let _guard = rt::runtime().enter();
            Client::builder(TokioExecutor::new()).build_http::<Incoming>()
        };
        let state = Arc::new(State {
            upstream: upstream_host.to_string(),
            config: Mutex::new(config),
            seen: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            stalled: AtomicUsize::new(0),
            release: watch::channel(false).0,
            shutdown: watch::channel(false).0,
            client,
        });
        rt::runtime().spawn(accept_loop(listener, state.clone()));
        FaultProxy {
            addr,
            state,
            upstream_credentials: None,
        }
    }

    /// Credentials of the registry behind the proxy (they pass through unchanged).
    pub fn upstream_credentials(&self) -> Option<(String, String)> {
        self.upstream_credentials.clone()
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:PORT/<path>` through the proxy.
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    pub fn set_config(&self, config: ProxyConfig) {
        *self.state.config.lock().unwrap() = config;
    }

    /// Lets all stalled (and future stall-listed) bodies flow.
    pub fn release_stalls(&self) {
        self.state.release.send_replace(true);
    }

    /// Number of response bodies currently held by a stall.
    pub fn stalled_now(&self) -> usize {
        self.state.stalled.load(Ordering::SeqCst)
    }

    /// Number of requests seen so far.
    pub fn request_count(&self) -> u64 {
        self.state.seen.load(Ordering::SeqCst)
    }

    /// All requests seen so far (completed ones; in completion order).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests that got an injected fault.
    pub fn faults_injected(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.fault.is_some())
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut shutdown = state.shutdown.subscribe();
            let svc_state = state.clone();
            let service = hyper::service::service_fn(move |req| handle(svc_state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        });
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The digest in `/v2/<name>/blobs/<digest>` (not upload URLs).
pub fn blob_digest_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    let (name, digest) = rest.rsplit_once("/blobs/")?;
    (!name.is_empty() && digest.starts_with("sha256:") && !digest.contains('/')).then_some(digest)
}

fn injected(status: StatusCode, code: &str) -> Response<ProxyBody> {
    let body = format!(
        "{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"injected by the test proxy\"}}]}}"
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let n = state.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let config = state.config.lock().unwrap().clone();
    let fault = config.fault_for(n);
    let mut record = RequestRecord {
        n,
        method: method.to_string(),
        path: path.clone(),
        fault,
        status: None,
        body_tampered: false,
    };
    let log = |record: RequestRecord| state.log.lock().unwrap().push(record);

    match fault {
        Some(Fault::TooManyRequests) => {
            record.status = Some(429);
            log(record);
            return Ok(injected(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"));
        }
        Some(Fault::Unavailable) => {
            record.status = Some(503);
            log(record);
            return Ok(injected(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"));
        }
        Some(Fault::DropConnection) => {
            log(record);
            return Err("test proxy: injected connection drop".into());
        }
        Some(Fault::TruncateBody) if method != Method::GET => {
            log(record);
            return Err("test proxy: injected connection drop".into());
        }
        _ => {}
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(max), Some(len)) = (config.max_request_body, announced)
        && len > max
    {
        record.status = Some(413);
        log(record);
        let mut resp = injected(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
        resp.headers_mut().remove(header::RETRY_AFTER);
        return Ok(resp);
    }

    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("http://{}{}", state.upstream, path_and_query).parse()?;
    strip_hop_by_hop(&mut parts.headers);
    let upstream = match state.client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp,
        Err(e) => {
            record.status = Some(502);
            log(record);
            let mut resp = injected(StatusCode::BAD_GATEWAY, "BAD_GATEWAY");
            resp.headers_mut().remove(header::RETRY_AFTER);
            eprintln!("test proxy: upstream request failed: {e}");
            return Ok(resp);
        }
    };
    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    record.status = Some(parts.status.as_u16());

    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let blob = (method == Method::GET && parts.status == StatusCode::OK)
        .then(|| blob_digest_of(&path))
        .flatten();
    let mode = if fault == Some(Fault::TruncateBody) {
        match content_length {
            Some(len) if len >= 2 => Some(Tamper::Truncate { after: len / 2 }),
            _ => None,
        }
    } else if blob.is_some() && blob == config.corrupt_blob.as_deref() {
        Some(Tamper::Corrupt)
    } else if blob.is_some_and(|d| config.stall_blobs.iter().any(|s| s == d))
        && !*state.release.borrow()
    {
        let len = content_length.unwrap_or(u64::MAX);
        Some(Tamper::Stall {
            after: config.stall_after.min(len.saturating_sub(1)),
        })
    } else {
        None
    };

    let body: ProxyBody = match mode {
        Some(mode) => {
            record.body_tampered = true;
            tampered(state.clone(), body, mode)
        }
        // HEAD answers keep the upstream's Content-Length: give hyper a body of unknown
        // length so that it does not replace the header with 0.
        None if method == Method::HEAD => {
            StreamBody::new(futures_util::stream::empty::<Result<Frame<Bytes>, BoxError>>()).boxed()
        }
        None => body.map_err(BoxError::from).boxed(),
    };
    if let Some(len) = content_length.filter(|_| method == Method::HEAD) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    log(record);
    Ok(Response::from_parts(parts, body))
}

#[derive(Clone, Copy, Debug)]
enum Tamper {
    Corrupt,
    Truncate { after: u64 },
    Stall { after: u64 },
}

/// Streams `body` through a task that applies `mode`.
fn tampered(state: Arc<State>, mut body: Incoming, mode: Tamper) -> ProxyBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        let threshold = match mode {
            Tamper::Corrupt => None,
            Tamper::Truncate { after } | Tamper::Stall { after } => Some(after),
        };
        let mut sent: u64 = 0;
        let mut crossed = false;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            if let Tamper::Corrupt = mode {
                data = data.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>().into();
            }
            while !data.is_empty() {
                if threshold.is_some_and(|after| !crossed && sent >= after) {
                    crossed = true;
                    match mode {
                        Tamper::Truncate { .. } => {
                            let _ = tx
                                .send(Err("test proxy: injected cut in the body".into()))
                                .await;
                            return;
                        }
                        Tamper::Stall { .. } => {
                            let mut release = state.release.subscribe();
                            let mut shutdown = state.shutdown.subscribe();
                            state.stalled.fetch_add(1, Ordering::SeqCst);
                            let go_on = tokio::select! {
                                _ = release.wait_for(|r| *r) => true,
                                _ = shutdown.wait_for(|s| *s) => false,
                                _ = tx.closed() => false,
                            };
                            state.stalled.fetch_sub(1, Ordering::SeqCst);
                            if !go_on {
                                return;
                            }
                        }
                        Tamper::Corrupt => unreachable!(),
                    }
                }
                let take = match threshold {
                    Some(after) if !crossed => ((after - sent) as usize).min(data.len()),
                    _ => data.len(),
                };
                let chunk = data.split_to(take);
                sent += chunk.len() as u64;
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    StreamBody::new(stream).boxed()
}
