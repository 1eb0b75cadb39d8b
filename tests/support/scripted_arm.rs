//! A scripted ARM endpoint for tests: an in-process https (or http) server that plays
//! Entra ID itself (it hands out [`ARM_TOKEN`], or a scripted token answer) and answers
//! every other request with a script, recording what it saw. `tests/hostile_arm.rs`
//! scripts broken and hostile answers; `tests/aosm_spec.rs` scripts the official
//! examples of the REST API specification.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aosm_artifact_operator::aosm::{Cloud, Identity, StoreId};
use aosm_artifact_operator::engine::Secret;
use aosm_artifact_operator::transfer::StoreConfig;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::emulator::test_ca;
use super::rt;

/// The ARM access token the server hands out as Entra ID (JWT-shaped, so the harness's
/// JWT search finds it too).
pub const ARM_TOKEN: &str =
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJob3N0aWxlLWFybS10ZXN0In0.aG9zdGlsZS1hcm0tc2lnbmF0dXJl";
/// The service principal's secret of [`ScriptedArm::store`].
pub const CLIENT_SECRET: &str = "hostile-arm-client-secret-value";
/// Tenant of [`ScriptedArm::store`].
pub const TENANT: &str = "00000000-0000-0000-0000-0000000000ee";
/// Client id of [`ScriptedArm::store`].
pub const CLIENT: &str = "00000000-0000-0000-0000-0000000000cc";

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A body to send.
#[derive(Clone)]
pub enum Payload {
    /// These bytes, with `Content-Length`.
    Fixed(Bytes),
    /// These bytes in 64 KiB pieces, without `Content-Length` (chunked).
    Chunked(Bytes),
    /// `prefix`, then `chunk` again and again, without end.
    Endless { prefix: Bytes, chunk: Bytes },
}

/// What the server answers to one request.
#[derive(Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub payload: Payload,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, v: Value) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            payload: Payload::Fixed(Bytes::from(v.to_string())),
        }
    }

    /// An answer without a body.
    pub fn empty(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Reply {
            status,
            headers,
            payload: Payload::Fixed(Bytes::new()),
        }
    }

    /// `prefix`, then `chunk` without end.
    pub fn endless(status: u16, prefix: &str, chunk: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            payload: Payload::Endless {
                prefix: Bytes::from(prefix.to_string()),
                chunk: Bytes::from(chunk.to_string()),
            },
        }
    }
}

/// Answers one request.
pub type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    /// The answer to Entra token requests instead of a good token, when set.
    token: Option<Reply>,
    seen: Mutex<Vec<Seen>>,
    /// Body bytes handed to hyper, all responses together.
    served: AtomicU64,
}

/// An in-process server (https with the test CA's certificate for 127.0.0.1 and
/// localhost, or plain http) answering Entra token requests itself and everything else
/// with its script; records every request. Stopped on drop.
pub struct ScriptedArm {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ScriptedArm {
    pub fn https(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(true, Box::new(script))
    }

    pub fn plain(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(false, Box::new(script))
    }

    /// An https server whose Entra token endpoint answers `token`.
    pub fn https_with_token(
        token: Reply,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(true, Box::new(script), Some(token))
    }

    pub fn start(tls: bool, script: Box<Script>) -> Self {
        Self::start_with(tls, script, None)
    }

    pub fn start_with(tls: bool, script: Box<Script>, token: Option<Reply>) -> Self {
        let shared = Arc::new(Shared {
            script,
            token,
            seen: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
        });
        let listener = rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the hostile server");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(respond)
            .with_state(shared.clone());
        // An endless body ends with the connection (the client drops it).
        super::serve::spawn_http1(
            listener,
            tls.then(tls_acceptor),
            hyper_util::service::TowerToHyperService::new(app),
            rx,
        );
        ScriptedArm {
            addr,
            tls,
            shared,
            shutdown: Some(tx),
        }
    }

    /// `https://127.0.0.1:PORT` (or `http://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests seen, Entra token requests left out.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| !s.path.contains("/oauth2/"))
            .cloned()
            .collect()
    }

    /// Requests seen whose path (query left out) ends with `suffix`.
    pub fn count(&self, suffix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| {
                s.path
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .ends_with(suffix)
            })
            .count()
    }

    /// Entra ID token requests seen (each fresh ARM token is one).
    pub fn token_requests(&self) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.path.contains("/oauth2/"))
            .count()
    }

    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// A store `id` whose ARM endpoint and authority host are this server, with api-version
    /// `api_version` and a client secret identity.
    pub fn store_at(&self, id: StoreId, api_version: &str) -> StoreConfig {
        StoreConfig {
            id,
            cloud: Cloud::AzurePublic,
            arm_endpoint: Some(self.url()),
            authority_host: Some(self.url()),
            api_version: api_version.into(),
            identity: Identity::ClientSecret {
                tenant_id: TENANT.into(),
                client_id: CLIENT.into(),
                client_secret: Secret::new(CLIENT_SECRET),
            },
        }
    }
}

impl Drop for ScriptedArm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let pki = test_ca().ca_pem.parent().expect("the PKI directory");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("server certificates");
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn respond(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let seen = Seen {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(seen.clone());
    let reply = if seen.method == "POST" && seen.path.contains("/oauth2/v2.0/token") {
        shared.token.clone().unwrap_or_else(|| {
            Reply::json(
                200,
                json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                       "access_token": ARM_TOKEN}),
            )
        })
    } else {
        (shared.script)(&seen)
    };
    let mut builder = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        builder = builder.header(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let body = match reply.payload {
        Payload::Fixed(bytes) => {
            shared
                .served
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Body::from(bytes)
        }
        Payload::Chunked(bytes) => {
            let pieces: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
                .step_by(64 * 1024)
                .map(|at| Ok(bytes.slice(at..(at + 64 * 1024).min(bytes.len()))))
                .collect();
            let counter = shared.clone();
            Body::from_stream(futures_util::StreamExt::inspect(
                futures_util::stream::iter(pieces),
                move |piece| {
                    if let Ok(p) = piece {
                        counter.served.fetch_add(p.len() as u64, Ordering::Relaxed);
                    }
                },
            ))
        }
        Payload::Endless { prefix, chunk } => {
            let counter = shared.clone();
            let stream = futures_util::stream::unfold(true, move |first| {
                let next = if first { prefix.clone() } else { chunk.clone() };
                counter
                    .served
                    .fetch_add(next.len() as u64, Ordering::Relaxed);
                async move { Some((Ok::<_, std::io::Error>(next), false)) }
            });
            Body::from_stream(stream)
        }
    };
    builder.body(body).unwrap()
}
