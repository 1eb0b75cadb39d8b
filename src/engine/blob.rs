//! Streaming blob upload: the source's bytes flow straight into the destination's
//! upload requests, hashed on the way, in chunks of at most `chunk_size` bytes
//! (PATCH with `Content-Length` and `Content-Range`, the last one a PUT with the digest).
//! Nothing is buffered beyond the network's own buffers, so memory stays flat whatever
//! the blob size. A failed chunk resumes from the last committed offset; a digest
//! mismatch (checked with the algorithm the digest names: sha256 or sha512), or a source
//! that sends more bytes than the descriptor's size, aborts the upload before the
//! registry commits it: the last bytes are held back until both checks pass.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncSeekExt as _;

use super::copy::DEFAULT_CHUNK_SIZE;
use super::digest::Hasher;
use super::error::{EngineError, Result};
use super::media::Descriptor;
use super::registry::{RegistryClient, UploadStart, describe_reqwest_error};

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Where the bytes of a blob come from.
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// A blob in a registry repository.
    Registry {
        /// Source registry.
        client: Arc<RegistryClient>,
        /// Source repository.
        repository: String,
    },
    /// A local file.
    File(PathBuf),
    /// Bytes in memory (small: configs, manifests).
    Memory(Bytes),
}

impl BlobSource {
    /// Opens the bytes of a blob of `size` bytes from `offset` on.
    pub async fn open(&self, digest: &str, offset: u64, size: u64) -> Result<ByteStream> {
        match self {
            Self::Registry { client, repository } => {
                let resp = client.get_blob(repository, digest, offset, size).await?;
                let host = client.host().to_string();
                Ok(resp
                    .bytes_stream()
                    .map_err(move |e| EngineError::Connect {
                        host: host.clone(),
                        reason: format!(
                            "connection lost while reading blob: {}",
                            describe_reqwest_error(&e)
                        ),
                    })
                    .boxed())
            }
            Self::File(path) => {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| EngineError::io(path.display(), e))?;
                if offset > 0 {
                    file.seek(std::io::SeekFrom::Start(offset))
                        .await
                        .map_err(|e| EngineError::io(path.display(), e))?;
                }
                let shown = path.display().to_string();
                Ok(
                    tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                        .map_err(move |e| EngineError::io(&shown, e))
                        .boxed(),
                )
            }
            Self::Memory(bytes) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let rest = bytes.slice(start..);
                Ok(futures_util::stream::once(async move { Ok(rest) }).boxed())
            }
        }
    }
}

/// How a blob reached the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Bytes were uploaded.
    Copied,
    /// The destination already had it.
    Skipped,
    /// Mounted from another repository of the destination registry.
    Mounted,
}

/// State shared between the uploader and the request body it hands to reqwest.
struct Pump {
    source: Option<ByteStream>,
    leftover: Option<Bytes>,
    hasher: Hasher,
    remaining: u64,
    /// Digest to check when the last byte of the blob passes (last chunk only).
    verify: Option<String>,
    /// The blob's last bytes, verified, held back until the source is seen to end.
    tail: Option<Bytes>,
    /// Declared size and digest of the blob (for messages).
    size: u64,
    digest: String,
    failure: Option<EngineError>,
    location: String,
}

impl Pump {
    /// Fails the body with `failure` (the uploader reports it).
    fn fail(&mut self, failure: EngineError, what: &str) -> Poll<Option<std::io::Result<Bytes>>> {
        self.failure = Some(failure);
        Poll::Ready(Some(Err(std::io::Error::other(what.to_string()))))
    }

    /// Compares the digest of everything hashed with the one to verify (taken); `Some`
    /// with the failure to return on a mismatch.
    fn verify_now(&mut self) -> Option<Poll<Option<std::io::Result<Bytes>>>> {
        let expected = self.verify.take()?;
        let actual = self.hasher.digest();
        if actual == expected {
            return None;
        }
        let failure = EngineError::DigestMismatch {
            what: "blob".into(),
            location: self.location.clone(),
            expected,
            actual,
        };
        Some(self.fail(failure, "digest mismatch"))
    }

    /// After the blob's last byte: `Ready(Ok)` when the source ends there, an error when
    /// it sends more (a body longer than the descriptor's size is refused, not cut).
    fn poll_source_end(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::result::Result<(), EngineError>> {
        let too_long = |p: &Pump| EngineError::LimitExceeded {
            host: p.location.clone(),
            what: format!("blob {}", p.digest),
            problem: format!(
                "the source sent more than the {} bytes its descriptor states",
                p.size
            ),
            hint: "the source serves content that does not match its manifest; nothing was tagged"
                .into(),
        };
        if self.leftover.as_ref().is_some_and(|b| !b.is_empty()) {
            return Poll::Ready(Err(too_long(self)));
        }
        loop {
            let Some(source) = self.source.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match source.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(b))) if b.is_empty() => {}
                Poll::Ready(Some(Ok(_))) => return Poll::Ready(Err(too_long(self))),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            }
        }
    }
}

fn lock(p: &Mutex<Pump>) -> MutexGuard<'_, Pump> {
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The body of one chunk request: takes exactly `remaining` bytes from the source.
struct ChunkBody(Arc<Mutex<Pump>>);

impl Stream for ChunkBody {
    type Item = std::result::Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut p = lock(&self.0);
        loop {
            if let Some(tail) = p.tail.take() {
                return match p.poll_source_end(cx) {
                    Poll::Pending => {
                        p.tail = Some(tail);
                        Poll::Pending
                    }
                    Poll::Ready(Ok(())) if tail.is_empty() => Poll::Ready(None),
                    Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(tail))),
                    Poll::Ready(Err(e)) => p.fail(e, "source sent more than the blob's size"),
                };
            }
            if p.remaining == 0 {
                if p.verify.is_some() {
                    // An empty blob: verify it and check that the source ends now.
                    if let Some(failed) = p.verify_now() {
                        return failed;
                    }
                    p.tail = Some(Bytes::new());
                    continue;
                }
                return Poll::Ready(None);
            }
            let chunk = match p.leftover.take() {
                Some(b) => b,
                None => {
                    let Some(source) = p.source.as_mut() else {
                        return Poll::Ready(Some(Err(std::io::Error::other("source closed"))));
                    };
                    match source.poll_next_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(b))) => b,
                        Poll::Ready(Some(Err(e))) => return p.fail(e, "source failed"),
                        Poll::Ready(None) => {
                            let failure = EngineError::Connect {
                                host: p.location.clone(),
                                reason: "source ended before the blob's declared size".into(),
                            };
                            return p.fail(failure, "source ended early");
                        }
                    }
                }
            };
            let take = chunk
                .len()
                .min(usize::try_from(p.remaining).unwrap_or(usize::MAX));
            let mut head = chunk;
            let rest = head.split_off(take);
            if !rest.is_empty() {
                p.leftover = Some(rest);
            }
            p.hasher.update(&head);
            p.remaining -= take as u64;
            if p.remaining == 0 && p.verify.is_some() {
                if let Some(failed) = p.verify_now() {
                    return failed;
                }
                // The last bytes go out only once the source has ended: a body longer
                // than the descriptor's size must fail the request before it completes.
                p.tail = Some(head);
                continue;
            }
            return Poll::Ready(Some(Ok(head)));
        }
    }
}

/// Parameters of one blob upload.
pub struct Upload<'a> {
    /// Destination registry.
    pub dst: &'a RegistryClient,
    /// Destination repository.
    pub repository: &'a str,
    /// The blob.
    pub blob: &'a Descriptor,
    /// Where its bytes come from (and a description for errors).
    pub source: &'a BlobSource,
    /// Source label for error messages.
    pub source_label: &'a str,
    /// Repository of the destination registry to mount from, when it is the same registry.
    pub mount_from: Option<&'a str>,
    /// Largest request body.
    pub chunk_size: u64,
    /// Called with the number of bytes each finished chunk committed.
    pub on_bytes: &'a (dyn Fn(u64) + Send + Sync),
}

/// Uploads one blob (the caller has checked the destination lacks it).
pub async fn upload(u: Upload<'_>) -> Result<BlobOutcome> {
    let policy = u.dst.retry_policy();
    let size = u.blob.size;
    let mut chunk_size = u.chunk_size.max(1);
    let mut failures = 0u32;
    let mut mount_from = u.mount_from;
    'session: loop {
        let mut location = match u
            .dst
            .start_upload(u.repository, &u.blob.digest, mount_from.take())
            .await?
        {
            UploadStart::Mounted => return Ok(BlobOutcome::Mounted),
            UploadStart::Session(l) => l,
        };
        let mut hasher = Hasher::for_digest(&u.blob.digest)
            .map_err(|e| EngineError::InvalidInput(format!("cannot upload blob: {e}")))?;
        let mut offset = 0u64;
        let mut source: Option<ByteStream> = None;
        let mut leftover: Option<Bytes> = None;
        loop {
            let len = chunk_size.min(size - offset);
            let last = offset + len == size;
            let stream = match source.take() {
                Some(s) => s,
                None => match u.source.open(&u.blob.digest, offset, size).await {
                    Ok(s) => s,
                    Err(e) if e.is_transient() && failures + 1 < policy.max_attempts => {
                        failures += 1;
                        tokio::time::sleep(policy.delay(failures, e.retry_after())).await;
                        continue;
                    }
                    Err(e) => {
                        u.dst.cancel_upload(u.repository, &location).await;
                        return Err(e);
                    }
                },
            };
            let checkpoint = hasher.clone();
            let pump = Arc::new(Mutex::new(Pump {
                source: Some(stream),
                leftover: leftover.take(),
                hasher,
                remaining: len,
                verify: last.then(|| u.blob.digest.clone()),
                tail: None,
                size,
                digest: u.blob.digest.clone(),
                failure: None,
                location: u.source_label.to_string(),
            }));
            let body = reqwest::Body::wrap_stream(ChunkBody(pump.clone()));
            let result = u
                .dst
                .send_chunk(
                    u.repository,
                    &location,
                    (offset, len),
                    body,
                    last.then_some(u.blob.digest.as_str()),
                )
                .await;
            let (done, failure, next_state) = {
                let mut state = lock(&pump);
                let failure = state.failure.take();
                let done = state.remaining == 0 && state.tail.is_none() && state.verify.is_none();
                let next_state = (
                    state.hasher.clone(),
                    state.source.take(),
                    state.leftover.take(),
                );
                (done, failure, next_state)
            };
            match (result, failure) {
                (Ok(next), None) if done => {
                    (u.on_bytes)(len);
                    if last {
                        return Ok(BlobOutcome::Copied);
                    }
                    offset += len;
                    (hasher, source, leftover) = next_state;
                    if let Some(next) = next {
                        location = next;
                    }
                }
                (result, failure) => {
                    let err = match (failure, result) {
                        (Some(f), _) => f,
                        (None, Err(e)) => e,
                        (None, Ok(_)) => EngineError::Protocol {
                            host: u.dst.host().to_string(),
                            action: format!("upload of {}", u.blob.digest),
                            reason: "registry accepted a chunk before its body was sent".into(),
                        },
                    };
                    if let EngineError::Refused { status: 413, .. } = err
                        && chunk_size > DEFAULT_CHUNK_SIZE
                    {
                        // The registry caps request bodies: continue in chunks it accepts.
                        // Not a failure, and it happens once: the chunk size only shrinks.
                        tracing::debug!(blob = %u.blob.digest, "413: switching to chunked upload");
                        chunk_size = DEFAULT_CHUNK_SIZE;
                        u.dst.cancel_upload(u.repository, &location).await;
                        continue 'session;
                    }
                    failures += 1;
                    if err.is_transient() && chunk_size > DEFAULT_CHUNK_SIZE {
                        // A server that caps bodies may answer 413 and close the connection
                        // before reading the rest, which the client sees as a broken pipe;
                        // either way, less is re-sent after a failure in smaller chunks.
                        chunk_size = DEFAULT_CHUNK_SIZE;
                    }
                    if !err.is_transient() || failures >= policy.max_attempts {
                        u.dst.cancel_upload(u.repository, &location).await;
                        return Err(err);
                    }
                    tracing::debug!(blob = %u.blob.digest, offset, error = %err, "chunk failed; resuming");
                    tokio::time::sleep(policy.delay(failures, err.retry_after())).await;
                    match u.dst.upload_offset(u.repository, &location).await {
                        Ok(committed) if committed == offset => {
                            hasher = checkpoint;
                            source = None;
                            leftover = None;
                        }
                        _ => {
                            u.dst.cancel_upload(u.repository, &location).await;
                            continue 'session;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::digest::{Algorithm, digest_with};

    /// Drains one chunk body fed by `parts`, for a blob of `size` bytes named `digest`
    /// (all of it in this one, last, chunk); returns the bytes sent and the failure.
    async fn drain(parts: &[&[u8]], size: u64, digest: &str) -> (Vec<u8>, Option<EngineError>) {
        let parts: Vec<Result<Bytes>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let pump = Arc::new(Mutex::new(Pump {
            source: Some(futures_util::stream::iter(parts).boxed()),
            leftover: None,
            hasher: Hasher::for_digest(digest).unwrap(),
            remaining: size,
            verify: Some(digest.to_string()),
            tail: None,
            size,
            digest: digest.to_string(),
            failure: None,
            location: "src/repo:1".into(),
        }));
        let mut body = ChunkBody(pump.clone());
        let mut sent = Vec::new();
        while let Some(item) = body.next().await {
            match item {
                Ok(b) => sent.extend_from_slice(&b),
                Err(_) => break,
            }
        }
        let failure = lock(&pump).failure.take();
        (sent, failure)
    }

    #[tokio::test]
    async fn exact_body_passes_with_either_algorithm() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let d = digest_with(alg, b"hello world");
            let (sent, failure) = drain(&[b"hello ", b"world"], 11, &d).await;
            assert!(failure.is_none(), "{failure:?}");
            assert_eq!(sent, b"hello world");
        }
        let empty = digest_with(Algorithm::Sha512, b"");
        let (sent, failure) = drain(&[b""], 0, &empty).await;
        assert!(failure.is_none() && sent.is_empty(), "{failure:?}");
    }

    #[tokio::test]
    async fn longer_body_is_refused_before_its_last_bytes() {
        let d = digest_with(Algorithm::Sha256, b"hello world");
        for parts in [&[&b"hello world!"[..]][..], &[b"hello ", b"world", b"!"]] {
            let (sent, failure) = drain(parts, 11, &d).await;
            assert!(
                matches!(failure, Some(EngineError::LimitExceeded { .. })),
                "{failure:?}"
            );
            assert!(
                sent.len() < 11,
                "the last bytes must be held back: {sent:?}"
            );
        }
        let empty = digest_with(Algorithm::Sha256, b"");
        let (_, failure) = drain(&[b"x"], 0, &empty).await;
        assert!(matches!(failure, Some(EngineError::LimitExceeded { .. })));
    }

    #[tokio::test]
    async fn wrong_content_is_refused() {
        let d = digest_with(Algorithm::Sha512, b"hello world");
        let (sent, failure) = drain(&[b"hello there"], 11, &d).await;
        assert!(
            matches!(&failure, Some(EngineError::DigestMismatch { actual, .. }) if actual.starts_with("sha512:")),
            "{failure:?}"
        );
        assert!(sent.is_empty());
        let (_, failure) = drain(&[b"hello"], 11, &d).await;
        assert!(
            matches!(failure, Some(EngineError::Connect { .. })),
            "{failure:?}"
        );
    }
}
