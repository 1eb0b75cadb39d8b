//! Progress reporting hooks (the CLI draws a bar or lines; the controller writes status).

use super::blob::BlobOutcome;
use super::media::Descriptor;

/// Receives progress events of one transfer. All methods default to doing nothing.
pub trait Progress: Send + Sync {
    /// The transfer's plan is known: `blobs` blobs totalling `bytes` bytes.
    fn plan(&self, _bytes: u64, _blobs: usize) {}
    /// `n` more bytes reached the destination.
    fn bytes(&self, _n: u64) {}
    /// One blob is done.
    fn blob_done(&self, _blob: &Descriptor, _outcome: BlobOutcome) {}
    /// A manifest was written at the destination under `reference`.
    fn manifest_pushed(&self, _reference: &str) {}
}

/// Discards all progress.
pub struct NoProgress;

impl Progress for NoProgress {}
