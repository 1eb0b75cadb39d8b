//! Streaming blob upload: the source's bytes flow straight into the destination's
//! upload requests, hashed on the way, in chunks of at most `chunk_size` bytes
//! (PATCH with `Content-Length` and `Content-Range`, the last one a PUT with the digest).
//! Nothing is buffered beyond the network's own buffers, so memory stays flat whatever
//! the blob size. A failed chunk resumes from the last committed offset; a digest
//! mismatch aborts the upload before the registry commits it.

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
    /// Opens the blob's bytes from `offset` on.
    pub async fn open(&self, digest: &str, offset: u64) -> Result<ByteStream> {
        match self {
            Self::Registry { client, repository } => {
                let resp = client.get_blob(repository, digest, offset).await?;
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
    failure: Option<EngineError>,
    location: String,
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
        if p.remaining == 0 {
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
                    Poll::Ready(Some(Err(e))) => {
                        p.failure = Some(e);
                        return Poll::Ready(Some(Err(std::io::Error::other("source failed"))));
                    }
                    Poll::Ready(None) => {
                        p.failure = Some(EngineError::Connect {
                            host: p.location.clone(),
                            reason: "source ended before the blob's declared size".into(),
                        });
                        return Poll::Ready(Some(Err(std::io::Error::other("source ended early"))));
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
        if p.remaining == 0
            && let Some(expected) = p.verify.take()
        {
            let actual = p.hasher.digest();
            if actual != expected {
                p.failure = Some(EngineError::DigestMismatch {
                    what: "blob".into(),
                    location: p.location.clone(),
                    expected,
                    actual,
                });
                return Poll::Ready(Some(Err(std::io::Error::other("digest mismatch"))));
            }
        }
        Poll::Ready(Some(Ok(head)))
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
        let mut hasher = Hasher::default();
        let mut offset = 0u64;
        let mut source: Option<ByteStream> = None;
        let mut leftover: Option<Bytes> = None;
        loop {
            let len = chunk_size.min(size - offset);
            let last = offset + len == size;
            let stream = match source.take() {
                Some(s) => s,
                None => match u.source.open(&u.blob.digest, offset).await {
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
                let done = state.remaining == 0;
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
                    failures += 1;
                    if let EngineError::Refused { status: 413, .. } = err
                        && chunk_size > DEFAULT_CHUNK_SIZE
                        && failures < policy.max_attempts
                    {
                        // The registry caps request bodies: continue in chunks it accepts.
                        tracing::debug!(blob = %u.blob.digest, "413: switching to chunked upload");
                        chunk_size = DEFAULT_CHUNK_SIZE;
                        u.dst.cancel_upload(u.repository, &location).await;
                        continue 'session;
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
