//! `/_emulator/*`: health, runtime knobs, counters, credential revocation.

use crate::app::{App, lock};
use crate::config::ConfigPatch;
use crate::resources::ResourceId;
use crate::stats::Stats;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "InvalidRequest", "message": message}})),
    )
        .into_response()
}

/// `GET /_emulator/health`.
pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /_emulator/config`: the current knobs.
pub async fn get_config(State(app): State<Arc<App>>) -> Response {
    Json(app.config()).into_response()
}

/// `POST|PATCH /_emulator/config`: changes the given knobs (JSON, camelCase); answers the
/// new configuration. Setting `armThrottleEvery` / `armErrorRate` restarts their sequence.
pub async fn set_config(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let patch: ConfigPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("invalid configuration patch: {e}")),
    };
    let applied = {
        let mut cfg = lock(&app.config);
        cfg.apply(patch).map(|restarts| (restarts, cfg.clone()))
    };
    match applied {
        Ok((restarts, cfg)) => {
            lock(&app.faults).restart(restarts);
            tracing::info!(config = ?cfg, "runtime configuration changed");
            Json(cfg).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `GET /_emulator/stats`.
pub async fn stats(State(app): State<Arc<App>>) -> Response {
    let s = lock(&app.stats).clone();
    Json(s).into_response()
}

/// `DELETE /_emulator/stats`: zeroes the counters.
pub async fn reset_stats(State(app): State<Arc<App>>) -> Response {
    *lock(&app.stats) = Stats::default();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeBody {
    manifest_id: Option<String>,
}

/// `POST /_emulator/revoke-credentials` (optional body `{"manifestId": "<ARM id>"}`):
/// invalidates acrTokens, so the next registry token request with them gets 401 (registry
/// tokens already issued stay valid until they expire).
pub async fn revoke(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: RevokeBody = if body.iter().all(u8::is_ascii_whitespace) {
        RevokeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad_request(format!("invalid body: {e}")),
        }
    };
    let manifest = match req.manifest_id.as_deref().map(ResourceId::parse) {
        Some(None) => return bad_request("manifestId is not an artifact manifest id".into()),
        Some(Some(id)) => Some(id),
        None => None,
    };
    let revoked = lock(&app.credentials).revoke(manifest.as_ref());
    tracing::info!(revoked, manifest = ?manifest.as_ref().map(ToString::to_string), "credentials revoked");
    Json(json!({"revoked": revoked})).into_response()
}
