//! Progress of a running transfer, counted from the engine's hooks and read by the
//! status writer (at most once per progress interval).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::TransferProgress;
use crate::engine::Progress;
use crate::engine::blob::BlobOutcome;
use crate::engine::media::Descriptor;

/// Counters updated by the engine while a transfer runs.
#[derive(Debug, Default)]
pub struct Counters {
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    blobs_total: AtomicU64,
    copied: AtomicU64,
    skipped: AtomicU64,
    mounted: AtomicU64,
}

impl Counters {
    /// A snapshot in the status' shape.
    pub fn snapshot(&self) -> TransferProgress {
        let get = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        TransferProgress {
            bytes_total: get(&self.bytes_total),
            bytes_done: get(&self.bytes_done).min(get(&self.bytes_total).max(0)),
            blobs_total: get(&self.blobs_total),
            blobs_copied: get(&self.copied),
            blobs_skipped: get(&self.skipped),
            blobs_mounted: get(&self.mounted),
        }
    }
}

impl Progress for Counters {
    fn plan(&self, bytes: u64, blobs: usize) {
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.blobs_total.store(blobs as u64, Ordering::Relaxed);
    }

    fn bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    fn blob_done(&self, blob: &Descriptor, outcome: BlobOutcome) {
        let counter = match outcome {
            BlobOutcome::Copied => &self.copied,
            BlobOutcome::Skipped | BlobOutcome::Mounted => {
                // Nothing was streamed for it, but it is done.
                self.bytes_done.fetch_add(blob.size, Ordering::Relaxed);
                if matches!(outcome, BlobOutcome::Skipped) {
                    &self.skipped
                } else {
                    &self.mounted
                }
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(size: i64) -> Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/octet-stream",
            "digest": format!("sha256:{}", "0".repeat(64)),
            "size": size
        }))
        .expect("descriptor")
    }

    #[test]
    fn counts_bytes_and_blobs() {
        let c = Counters::default();
        c.plan(300, 3);
        c.bytes(100);
        c.blob_done(&blob(100), BlobOutcome::Copied);
        c.blob_done(&blob(150), BlobOutcome::Skipped);
        c.blob_done(&blob(50), BlobOutcome::Mounted);
        let p = c.snapshot();
        assert_eq!(
            (
                p.bytes_total,
                p.bytes_done,
                p.blobs_total,
                p.blobs_copied,
                p.blobs_skipped,
                p.blobs_mounted
            ),
            (300, 300, 3, 1, 1, 1)
        );
    }
}
