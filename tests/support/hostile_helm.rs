//! A hostile Helm HTTP repository (axum, in-process): fixed files, and bodies generated
//! lazily as they are sent — of a given length (optionally announced by
//! `Content-Length`) or endless — so that a test can serve gigabytes without holding
//! them. It counts the bytes it handed to each response. Stopped on drop.

use super::rt;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the server sends for one path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// These bytes, with `Content-Length`.
    File(Bytes),
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

struct Route {
    reply: Reply,
    /// Bytes handed to hyper for this path so far.
    served: AtomicU64,
}

pub struct HostileRepo {
    addr: SocketAddr,
    routes: Arc<HashMap<String, Route>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HostileRepo {
    /// Serves `routes` (absolute paths such as `/charts/index.yaml`) at
    /// `http://127.0.0.1:PORT`; anything else is a 404.
    pub fn start(routes: Vec<(&str, Reply)>) -> Self {
        let routes: Arc<HashMap<String, Route>> = Arc::new(
            routes
                .into_iter()
                .map(|(path, reply)| {
                    (
                        path.to_string(),
                        Route {
                            reply,
                            served: AtomicU64::new(0),
                        },
                    )
                })
                .collect(),
        );
        let listener = rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind hostile repository");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(respond)
            .with_state(routes.clone());
        rt::runtime().spawn(async move {
            // Not a graceful shutdown: an endless body must not keep the server alive.
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = rx => {}
            }
        });
        HostileRepo {
            addr,
            routes,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes of `path`'s body handed to the connection so far (what the client read,
    /// plus what sits in socket buffers).
    pub fn served(&self, path: &str) -> u64 {
        self.routes
            .get(path)
            .map(|r| r.served.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

impl Drop for HostileRepo {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn respond(State(routes): State<Arc<HashMap<String, Route>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(route) = routes.get(&path) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("not found\n"))
            .unwrap();
    };
    let builder = Response::builder().status(StatusCode::OK);
    match &route.reply {
        Reply::File(bytes) => {
            route
                .served
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            builder
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from(bytes.clone()))
                .unwrap()
        }
        Reply::Generated {
            prefix,
            chunk,
            total,
            announce,
        } => {
            let builder = match (announce, total) {
                (true, Some(total)) => builder.header(header::CONTENT_LENGTH, *total),
                _ => builder,
            };
            let routes = routes.clone();
            let (prefix, chunk, total) = (prefix.clone(), chunk.clone(), *total);
            assert!(!chunk.is_empty(), "an empty chunk would never end");
            // State: bytes sent so far.
            let stream = futures_util::stream::unfold(0u64, move |sent| {
                let (prefix, chunk, routes, path) =
                    (prefix.clone(), chunk.clone(), routes.clone(), path.clone());
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
                    if let Some(route) = routes.get(&path) {
                        route.served.fetch_add(n, Ordering::Relaxed);
                    }
                    Some((Ok::<_, std::io::Error>(next), sent + n))
                }
            });
            builder.body(Body::from_stream(stream)).unwrap()
        }
    }
}
