//! A hostile OCI registry (axum, in-process, http or https): every `(method, path)` gets
//! a fixed reply — any status, headers and body, including bodies generated lazily as
//! they are sent, of a given length or endless — and every request is recorded (method,
//! path with query, `Authorization`), so a test can check what reached the server and
//! which credentials came with it. Fixed bytes are served with `Content-Length`;
//! generated ones only announce it when asked. Stopped on drop.
//!
//! [`HostileRegistry::blob`] and [`HostileRegistry::manifest`] serve content at its
//! digest the way a registry would, so that a test builds an artifact and then breaks
//! the one part it is about.

use super::endpoint::Endpoint;
use super::registry::{TlsFiles, make_test_pki};
use super::rt;
use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A response body.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes, with `Content-Length` (unless the reply sets its own).
    Bytes(Bytes),
    /// `prefix`, then `chunk` again and again: `total` bytes in all (cut in the last
    /// chunk), or without end when `total` is `None`. `Content-Length` is sent only when
    /// `announce` is set (and `total` is known).
    Generated {
        prefix: Bytes,
        chunk: Bytes,
        total: Option<u64>,
        announce: bool,
    },
}

/// What the server answers to one `(method, path)`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    /// `status` with `bytes` as the body.
    pub fn bytes(status: u16, bytes: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(bytes.into()),
        }
    }

    /// `200` with `bytes`.
    pub fn ok(bytes: impl Into<Bytes>) -> Self {
        Self::bytes(200, bytes)
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self::bytes(status, Bytes::new())
    }

    /// `status` with `prefix` then `chunk` repeated without end, no `Content-Length`.
    pub fn endless(status: u16, prefix: impl Into<Bytes>, chunk: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Generated {
                prefix: prefix.into(),
                chunk: chunk.into(),
                total: None,
                announce: false,
            },
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

struct Shared {
    routes: Mutex<HashMap<(String, String), Reply>>,
    hits: Mutex<Vec<Hit>>,
    /// Body bytes handed to hyper so far, all responses together.
    served: AtomicU64,
}

pub struct HostileRegistry {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// PKI of an https server (and the temp dir holding it).
    tls: Option<(TlsFiles, tempfile::TempDir)>,
}

impl HostileRegistry {
    /// A plain-HTTP hostile registry at `http://127.0.0.1:PORT`. `GET /v2/` answers 200;
    /// anything without a route answers 404 with a distribution error.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// The same over https, with a certificate from a fresh test CA ([`Self::ca_file`]).
    pub fn start_tls() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> Self {
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            hits: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
        });
        let listener = rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind hostile registry");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(respond)
            .with_state(shared.clone());
        let pki = tls.then(|| {
            let dir = tempfile::Builder::new()
                .prefix("aosm-hostile-registry-pki-")
                .tempdir()
                .unwrap();
            let files = make_test_pki(dir.path());
            (files, dir)
        });
        // Not a graceful shutdown: an endless body must not keep it alive.
        super::serve::spawn_http1(
            listener,
            pki.as_ref()
                .map(|(files, _)| tls_acceptor(files.ca_pem.parent().unwrap())),
            hyper_util::service::TowerToHyperService::new(app),
            rx,
        );
        let reg = HostileRegistry {
            addr,
            shared,
            shutdown: Some(tx),
            tls: pki,
        };
        reg.route("GET", "/v2/", Reply::ok("{}"));
        reg
    }

    /// Answers `method path` (path without query) with `reply`, replacing any route.
    pub fn route(&self, method: &str, path: &str, reply: Reply) {
        self.shared
            .routes
            .lock()
            .unwrap()
            .insert((method.to_string(), path.to_string()), reply);
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http(s)://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `HOST/<path>`
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// The test CA of an https server.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|(files, _)| files.ca_pem.as_path())
    }

    /// How the binary under test reaches it (`--from-*`/`--to-*` flags).
    pub fn endpoint(&self, credentials: Option<(&str, &str)>) -> Endpoint {
        Endpoint {
            host: self.host(),
            plain_http: self.tls.is_none(),
            ca_file: self.ca_file().map(Path::to_path_buf),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    /// Every request seen so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// Body bytes handed to the connections so far (all responses).
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Serves `bytes` as blob `sha256:<hex>` of `repo` and returns its descriptor.
    pub fn blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = super::sha256_digest(bytes);
        self.route(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            Reply::ok(bytes.to_vec()),
        );
        serde_json::json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }

    /// Serves `bytes` as manifest `reference` (a tag) and at its sha256 digest, with
    /// `Content-Type: media_type`; returns its descriptor.
    pub fn manifest(
        &self,
        repo: &str,
        reference: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> serde_json::Value {
        let digest = super::sha256_digest(bytes);
        let reply = Reply::ok(bytes.to_vec()).header("Content-Type", media_type);
        self.route(
            "GET",
            &format!("/v2/{repo}/manifests/{digest}"),
            reply.clone(),
        );
        if let Some(tag) = reference {
            self.route("GET", &format!("/v2/{repo}/manifests/{tag}"), reply);
        }
        serde_json::json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn tls_acceptor(pki: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The most of a request body [`respond`] reads before answering (test images are small).
const MAX_REQUEST_BODY: usize = 64 << 20;

async fn respond(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    shared.hits.lock().unwrap().push(Hit {
        method: method.clone(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| path.clone()),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    });
    // Read the request body before answering, as a registry does: a client may take an
    // answer that comes before its upload was sent for a broken server (the engine does).
    let _ = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BODY).await;
    let reply = shared
        .routes
        .lock()
        .unwrap()
        .get(&(method.clone(), path))
        .cloned();
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("Content-Type", "application/json")
            .body(AxumBody::from(
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}"#,
            ))
            .unwrap();
    };
    let mut builder = Response::builder().status(reply.status);
    let mut has_length = false;
    for (name, value) in &reply.headers {
        has_length |= name.eq_ignore_ascii_case("content-length");
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match reply.body {
        Body::Bytes(bytes) => {
            if !has_length {
                builder = builder.header("Content-Length", bytes.len());
            }
            shared
                .served
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let body = if method == "HEAD" {
                AxumBody::empty()
            } else {
                AxumBody::from(bytes)
            };
            builder.body(body).unwrap()
        }
        Body::Generated {
            prefix,
            chunk,
            total,
            announce,
        } => {
            if let (true, Some(total)) = (announce, total) {
                builder = builder.header("Content-Length", total);
            }
            assert!(!chunk.is_empty(), "an empty chunk would never end");
            let stream = futures_util::stream::unfold(0u64, move |sent| {
                let (prefix, chunk, shared) = (prefix.clone(), chunk.clone(), shared.clone());
                async move {
                    let remaining = total.map(|t| t.saturating_sub(sent));
                    if remaining == Some(0) {
                        return None;
                    }
                    let mut next = if sent == 0 && !prefix.is_empty() {
                        prefix
                    } else {
                        chunk
                    };
                    if let Some(remaining) = remaining
                        && (next.len() as u64) > remaining
                    {
                        next.truncate(remaining as usize);
                    }
                    let n = next.len() as u64;
                    shared.served.fetch_add(n, Ordering::Relaxed);
                    Some((Ok::<_, std::io::Error>(next), sent + n))
                }
            });
            builder.body(AxumBody::from_stream(stream)).unwrap()
        }
    }
}
