//! A tiny static HTTP file server (axum, in-process) for Helm HTTP repositories, with
//! optional basic auth. Stopped on drop.

use super::registry::{TlsFiles, make_test_pki};
use super::rt;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One request the file server saw.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

struct Shared {
    root: PathBuf,
    basic_auth: Option<(String, String)>,
    hits: Mutex<Vec<Hit>>,
}

pub struct FileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// PKI of an https server (and the temp dir holding it).
    tls: Option<(TlsFiles, tempfile::TempDir)>,
}

impl FileServer {
    /// Serves the files under `root` at `http://127.0.0.1:PORT/`.
    pub fn start(root: impl Into<PathBuf>, basic_auth: Option<(&str, &str)>) -> Self {
        let shared = Arc::new(Shared {
            root: root.into(),
            basic_auth: basic_auth.map(|(u, p)| (u.to_string(), p.to_string())),
            hits: Mutex::new(Vec::new()),
        });
        let listener =
            rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind file server");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(serve_file)
            .with_state(shared.clone());
        rt::runtime().spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        FileServer {
            addr,
            shared,
            shutdown: Some(tx),
            tls: None,
        }
    }

    /// Like [`FileServer::start`], over https with a certificate from a fresh test CA
    /// (see [`FileServer::ca_file`]).
    pub fn start_tls(root: impl Into<PathBuf>, basic_auth: Option<(&str, &str)>) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls;

        let pki_dir = tempfile::Builder::new()
            .prefix("aosm-fileserver-pki-")
            .tempdir()
            .unwrap();
        let files = make_test_pki(pki_dir.path());
        let pki = files.ca_pem.parent().unwrap();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join("server.pem"))
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
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let shared = Arc::new(Shared {
            root: root.into(),
            basic_auth: basic_auth.map(|(u, p)| (u.to_string(), p.to_string())),
            hits: Mutex::new(Vec::new()),
        });
        let listener =
            rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind file server");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(serve_file)
            .with_state(shared.clone());
        super::serve::spawn_http1(
            listener,
            Some(acceptor),
            hyper_util::service::TowerToHyperService::new(app),
            rx,
        );
        FileServer {
            addr,
            shared,
            shutdown: Some(tx),
            tls: Some((files, pki_dir)),
        }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The test CA of an https file server.
    pub fn ca_file(&self) -> &std::path::Path {
        &self
            .tls
            .as_ref()
            .expect("not an https file server")
            .0
            .ca_pem
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn serve_file(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let method = req.method().clone();
    drop(req);
    let response = respond(&shared, &method, &path, authorization.as_deref()).await;
    shared.hits.lock().unwrap().push(Hit {
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
        authorization,
    });
    response
}

fn status(code: StatusCode, msg: &str) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(msg.to_string()))
        .unwrap()
}

async fn respond(
    shared: &Shared,
    method: &axum::http::Method,
    path: &str,
    authorization: Option<&str>,
) -> Response {
    if let Some((user, password)) = &shared.basic_auth {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if authorization != Some(expected.as_str()) {
            let mut r = status(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"helm-repo\""),
            );
            return r;
        }
    }
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let rel = path.trim_start_matches('/');
    if rel
        .split('/')
        .any(|seg| seg == ".." || seg.starts_with('.'))
    {
        return status(StatusCode::NOT_FOUND, "not found\n");
    }
    let file = shared.root.join(rel);
    match tokio::fs::read(&file).await {
        Ok(bytes) if file.is_file() => {
            let ctype = match file.extension().and_then(|e| e.to_str()) {
                Some("yaml") | Some("yml") => "application/x-yaml",
                Some("tgz") | Some("gz") => "application/x-gzip",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            let len = bytes.len();
            let body = if method == axum::http::Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, ctype)
                .header(header::CONTENT_LENGTH, len)
                .body(body)
                .unwrap()
        }
        _ => status(StatusCode::NOT_FOUND, "not found\n"),
    }
}
