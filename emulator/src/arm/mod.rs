//! Azure Resource Manager for `Microsoft.HybridNetwork`: one handler for every path under
//! `/subscriptions/`, which counts the call, injects configured faults, checks the bearer
//! token and the api-version, and dispatches.

pub mod auth;
pub mod error;
mod handlers;
pub mod route;
pub mod subscriptions;

use crate::app::{App, lock};
use crate::faults::Fault;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use error::ArmError;
use std::sync::Arc;

/// api-versions of `Microsoft.HybridNetwork` the emulator serves.
pub const API_VERSIONS: &[&str] = &["2023-09-01", "2024-04-15", "2025-03-30"];

/// Manifests created with this api-version or a later one keep their artifacts under
/// `<manifestName>/<artifactName>`, untag them when deleted (Microsoft's resource
/// clean-up documentation); the api-version of later requests does not matter.
pub const MANIFEST_SCOPED_REPOSITORIES_FROM: &str = "2025-03-30";

/// Entry point for `/subscriptions/...`.
pub async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut resp =
        dispatch(&app, &method, &uri, &headers, &body).unwrap_or_else(IntoResponse::into_response);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-ms-request-id", v.clone());
        resp.headers_mut().insert("x-ms-correlation-request-id", v);
    }
    resp
}

fn dispatch(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ArmError> {
    lock(&app.stats).arm_calls += 1;
    let cfg = app.config();
    let fault = lock(&app.faults).next(&cfg);
    if let Some(fault) = fault {
        let mut stats = lock(&app.stats);
        let err = match fault {
            Fault::Throttle => {
                stats.arm_throttled += 1;
                ArmError::throttled()
            }
            Fault::InternalError => {
                stats.arm_errors += 1;
                ArmError::internal()
            }
            Fault::Unavailable => {
                stats.arm_errors += 1;
                ArmError::unavailable()
            }
        };
        tracing::info!(method = %method, path = uri.path(), status = err.status, "ARM fault injected");
        return Err(err);
    }
    let principal = auth::authenticate(app, headers)
        .inspect_err(|_| lock(&app.stats).arm_auth_failures += 1)?;
    let route = route::parse(uri.path());
    // Operation URLs carry the api-version of the examples' operation URLs; the
    // subscription routes belong to Microsoft.Resources, with its own versions.
    let versions: &[&str] = match route {
        Some(route::Route::Operation { .. }) => &[crate::operations::OPERATION_API_VERSION],
        Some(route::Route::Subscriptions | route::Route::Subscription { .. }) => {
            subscriptions::API_VERSIONS
        }
        _ => API_VERSIONS,
    };
    let api_version = api_version(uri, versions)?;
    let Some(route) = route else {
        return Err(ArmError::new(
            404,
            "InvalidResourceType",
            format!(
                "The resource type could not be found in the namespace 'Microsoft.HybridNetwork' for api version '{api_version}'."
            ),
        ));
    };
    handlers::serve(app, &cfg, &principal, method, route, &api_version, body)
}

/// The `api-version` query value, one of `versions`.
fn api_version(uri: &Uri, versions: &[&str]) -> Result<String, ArmError> {
    let query = uri.query().unwrap_or("");
    let Some(v) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.into_owned())
    else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            format!(
                "The api-version query parameter (?api-version=) is required for all requests. Supported versions: '{}'.",
                versions.join(",")
            ),
        ));
    };
    if !versions.contains(&v.as_str()) {
        return Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                versions.iter().rev().copied().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    Ok(v)
}
