//! One accept loop for the test servers: HTTP/1.1 on a listener, with TLS when an
//! acceptor is given, until the stop signal fires. Stopping is not graceful on purpose:
//! open connections are dropped with the loop, so an endless body cannot keep a server
//! (or a test) alive.

use std::error::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type BoxError = Box<dyn Error + Send + Sync>;

/// Serves `service` on `listener` on the shared test runtime until `stop` fires (or its
/// sender is dropped). A failed TLS handshake ends only that connection.
pub fn spawn_http1<S, B>(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    mut stop: oneshot::Receiver<()>,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    super::rt::runtime().spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = &mut stop => return,
            };
            let (acceptor, service) = (acceptor.clone(), service.clone());
            connections.spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
            // Finished connections are reaped so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
    });
}
