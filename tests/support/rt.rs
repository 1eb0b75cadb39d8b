//! One tokio runtime per test binary for the in-process servers (file server, fault
//! proxy) and for the harness's own HTTP probes. Tests themselves are synchronous.

use std::future::Future;
use std::sync::OnceLock;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-servers")
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs a future to completion from a (synchronous) test thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}
