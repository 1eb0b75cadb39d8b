//! A registry's failures as typed [`EngineError`]s: transport errors, error statuses
//! (transient or not), and the registry's own error text, bounded and on one line.

use super::*;

pub(super) fn is_transient_status(s: StatusCode) -> bool {
    s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

/// Maps a transport error: TLS problems are permanent, the rest transient.
pub(crate) fn transport_error(host: &str, e: &reqwest::Error) -> EngineError {
    let text = describe_reqwest_error(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return EngineError::Tls {
            host: host.to_string(),
            reason: text,
        };
    }
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return EngineError::UnknownHost {
            host: host.to_string(),
            reason: text,
        };
    }
    EngineError::Connect {
        host: host.to_string(),
        reason: text,
    }
}

/// Reads the registry's error text (distribution `errors[]` or plain text): at most
/// [`MAX_ERROR_BODY_BYTES`] are read, and the text is cut to one line of 200 characters.
pub(super) async fn error_text(resp: Response) -> String {
    let status = resp.status();
    let body = read_up_to(resp, MAX_ERROR_BODY_BYTES).await;
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body)
        && let Some(first) = e.errors.first()
    {
        let text = [first.code.as_deref(), first.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return one_line(&text, 200);
    }
    let text = String::from_utf8_lossy(&body);
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() || line.len() > 200 {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        one_line(line, 200)
    }
}

/// Maps a non-success response to a typed error.
pub(crate) async fn status_error(host: &str, action: &str, resp: Response) -> EngineError {
    let status = resp.status();
    let retry_after = crate::http::retry_after_header(resp.headers());
    if is_transient_status(status) {
        let _ = error_text(resp).await;
        return EngineError::Transient {
            host: host.to_string(),
            status: status.as_u16(),
            action: action.to_string(),
            retry: retry_after
                .map(|d| format!(" (retry after {}s)", d.as_secs()))
                .unwrap_or_default(),
            retry_after,
        };
    }
    let reason = error_text(resp).await;
    match status {
        StatusCode::UNAUTHORIZED => EngineError::Unauthorized {
            registry: host.to_string(),
            reason,
        },
        StatusCode::FORBIDDEN => EngineError::Forbidden {
            registry: host.to_string(),
            action: action.to_string(),
            reason,
        },
        _ => EngineError::Refused {
            host: host.to_string(),
            status: status.as_u16(),
            action: action.to_string(),
            reason,
        },
    }
}
