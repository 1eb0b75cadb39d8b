//! The ACR data plane in front of the docker-registry, doing the two things Azure
//! Container Registry does that distribution 2.8 does not:
//!
//! - a request body above [`MAX_REQUEST_BODY`] is refused with `413` before it reaches the
//!   registry (ACR's front end caps one request at about 20 MB; clients must upload in
//!   chunks);
//! - a blob `GET` the registry would answer `200` is answered `307 Temporary Redirect` to a
//!   signed URL on a separate storage origin ([`storage`]), as ACR redirects to Azure Blob
//!   Storage. The storage origin refuses any request that carries an `Authorization`
//!   header, as Azure Storage does with a SAS URL, so a client that sends its registry
//!   credential there fails the test that meets it;
//! - the OCI referrers API, `GET /v2/<name>/referrers/<digest>`, read from the registry's
//!   storage ([`referrers`]), and `OCI-Subject` on the answer to a manifest `PUT` with a
//!   `subject` (manifest bodies are capped at 4 MiB, as ACR's).
//!
//! The registry behind it still decides every authorization itself (the front forwards
//! the client's token unchanged, and redirects or lists referrers only after the registry
//! said yes to a request needing the same permission).

pub mod proxy;
pub mod referrers;
pub mod storage;

use crate::app::App;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body the front forwards (ACR's documented ~20 MB).
pub const MAX_REQUEST_BODY: u64 = 20_000_000;

/// Lifetime of a signed storage URL.
pub const SIGNED_URL_TTL: Duration = Duration::from_secs(10 * 60);

/// What the front and the storage origin share.
pub struct Front {
    /// The emulator's shared state (counters).
    pub app: Arc<App>,
    /// `http://127.0.0.1:PORT` of the registry behind the front.
    pub backend: String,
    /// `https://HOST:PORT` of the storage origin blob GETs are redirected to.
    pub storage_origin: String,
    /// The registry's filesystem storage root, which the storage origin serves blobs from.
    pub storage_root: std::path::PathBuf,
    /// Client for the registry behind the front (no redirects, no proxy).
    pub client: reqwest::Client,
    /// Signed URLs handed out and not yet expired.
    pub grants: std::sync::Mutex<storage::Grants>,
    /// Turns for referrers scans ([`referrers::MAX_CONCURRENT_SCANS`] at once).
    pub scans: tokio::sync::Semaphore,
}

impl Front {
    /// A front for the registry at `backend`.
    pub fn new(
        app: Arc<App>,
        backend: String,
        storage_origin: String,
        storage_root: std::path::PathBuf,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            app,
            backend,
            storage_origin,
            storage_root,
            client,
            grants: std::sync::Mutex::default(),
            scans: tokio::sync::Semaphore::new(referrers::MAX_CONCURRENT_SCANS),
        })
    }
}

/// The registry's public router: everything is forwarded by [`proxy::handle`].
pub fn registry_router(front: Arc<Front>) -> Router {
    Router::new().fallback(proxy::handle).with_state(front)
}

/// The storage origin's router.
pub fn storage_router(front: Arc<Front>) -> Router {
    Router::new().fallback(storage::handle).with_state(front)
}
