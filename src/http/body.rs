//! Reading what an untrusted server sends, bounded: whole bodies up to a limit
//! ([`read_capped`]), the head of an error body ([`read_up_to`]), header values
//! ([`bounded_header`]), and error text that never shows a URL ([`describe_reqwest_error`]).

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::Response;
use reqwest::header::{self, HeaderMap};

use crate::limits::MAX_HEADER_VALUE_BYTES;

/// A header's value as text, refused (with the reason) when it is longer than
/// [`MAX_HEADER_VALUE_BYTES`]; `None` when absent or not visible ASCII.
pub fn bounded_header(
    headers: &HeaderMap,
    name: &str,
) -> std::result::Result<Option<String>, String> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(format!(
            "its {name} header is {} bytes, more than {} (MAX_HEADER_VALUE_BYTES)",
            value.len(),
            human_bytes(MAX_HEADER_VALUE_BYTES as u64)
        ));
    }
    Ok(value.to_str().ok().map(str::to_string))
}

/// Why [`read_capped`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    /// The body is larger than the limit (or announced so by `Content-Length`, in which
    /// case nothing was read).
    #[error("the body is larger than {} bytes{}", limit, announced.map(|n| format!(" (Content-Length {n})")).unwrap_or_default())]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// The `Content-Length` the server announced, when that alone was over the limit.
        announced: Option<u64>,
    },
    /// The connection failed (or the request timed out) while reading; shown without
    /// the URL.
    #[error("connection lost while reading the body: {}", describe_reqwest_error(.0))]
    Transport(#[source] reqwest::Error),
}

/// Reads a whole response body, failing as soon as it exceeds `limit` bytes: at once when
/// `Content-Length` announces more, else when the streamed bytes pass the limit (so an
/// endless body costs at most `limit` bytes of memory). The one way this crate reads a
/// body into memory from an untrusted server (registries, token servers, ARM).
pub async fn read_capped(
    resp: Response,
    limit: usize,
) -> std::result::Result<Bytes, CappedReadError> {
    // hyper's exact size hint comes from Content-Length; the header is read as well for
    // bodies that carry no hint.
    let announced = resp.content_length().or_else(|| {
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    if let Some(announced) = announced
        && announced > limit as u64
    {
        return Err(CappedReadError::TooLarge {
            limit,
            announced: Some(announced),
        });
    }
    let reserve = announced.map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    let mut out = Vec::with_capacity(reserve);
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CappedReadError::Transport)?;
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(CappedReadError::TooLarge {
                limit,
                announced: None,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// Reads at most the first `limit` bytes of a body and drops the rest unread (for error
/// bodies, which only feed a message); a failed read returns what arrived.
pub async fn read_up_to(resp: Response, limit: usize) -> Bytes {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while out.len() < limit {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let take = chunk.len().min(limit - out.len());
                out.extend_from_slice(&chunk[..take]);
            }
            Some(Err(_)) | None => break,
        }
    }
    Bytes::from(out)
}

/// `n` bytes for a message: `4 MiB`, `128 KiB`, else `n bytes`.
pub fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// A reqwest error's text without the URL (URLs may carry upload-session state).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut msg = e.without_url_ref_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        if self.is_connect() {
            "connection failed".into()
        } else if self.is_timeout() {
            "timed out".into()
        } else if self.is_body() || self.is_decode() {
            "error reading the response body".into()
        } else if self.is_request() {
            "request failed".into()
        } else {
            "HTTP error".into()
        }
    }
}

/// `text` on one line (control characters as spaces), cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_headers() {
        let mut h = HeaderMap::new();
        h.insert("location", "/v2/x".parse().unwrap());
        h.insert(
            "www-authenticate",
            "x".repeat(MAX_HEADER_VALUE_BYTES + 1).parse().unwrap(),
        );
        assert_eq!(
            bounded_header(&h, "Location").unwrap().as_deref(),
            Some("/v2/x")
        );
        assert_eq!(bounded_header(&h, "Range").unwrap(), None);
        let err = bounded_header(&h, "WWW-Authenticate").unwrap_err();
        assert!(err.contains("MAX_HEADER_VALUE_BYTES"), "{err}");
    }

    /// Serves one raw HTTP/1.1 answer: `head` then `body_chunk` `repeat` times (or
    /// forever with `None`), on a fresh port; returns the URL.
    async fn raw_server(
        head: &'static str,
        body_chunk: &'static [u8],
        repeat: Option<usize>,
    ) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut sent = 0;
            while repeat.is_none_or(|n| sent < n) {
                if sock.write_all(body_chunk).await.is_err() {
                    return;
                }
                sent += 1;
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn capped_reads() {
        let client = reqwest::Client::new();
        // Endless body without Content-Length: cut at the limit.
        let url = raw_server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            &[b'x'; 1024],
            None,
        )
        .await;
        let resp = client.get(&url).send().await.unwrap();
        match read_capped(resp, 64 * 1024).await {
            Err(CappedReadError::TooLarge {
                limit: 65536,
                announced: None,
            }) => {}
            other => panic!("{other:?}"),
        }
        // Announced too large: refused before reading.
        let url = raw_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"x",
            Some(1),
        )
        .await;
        let resp = client.get(&url).send().await.unwrap();
        match read_capped(resp, 1024).await {
            Err(CappedReadError::TooLarge {
                announced: Some(99_999_999_999),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // Within the limit.
        let url = raw_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            b"abc",
            Some(1),
        )
        .await;
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(&read_capped(resp, 3).await.unwrap()[..], b"abc");
        // Error bodies: the first bytes only, on one line.
        let url = raw_server(
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
            b"evil\x1b[31m text ",
            None,
        )
        .await;
        let resp = client.get(&url).send().await.unwrap();
        let head = read_up_to(resp, 64).await;
        assert!(head.len() <= 64);
        let text = one_line(&String::from_utf8_lossy(&head), 200);
        assert!(text.len() <= 200 * 4 + 3, "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
}
