//! ARM error responses: `{"error":{"code","message"}}` with the status ARM uses.

use crate::resources::ResourceId;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An ARM error.
#[derive(Debug, Clone)]
pub struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
}

impl ArmError {
    /// Any error.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        ArmError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 404 ResourceNotFound.
    pub fn not_found(id: &ResourceId) -> Self {
        Self::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{}/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                id.kind().arm_type(),
                id.name(),
                id.resource_group
            ),
        )
    }

    /// 404 ParentResourceNotFound.
    pub fn parent_not_found(parent: &ResourceId) -> Self {
        Self::new(
            404,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                parent.name()
            ),
        )
    }

    /// 401 for a missing `Authorization` header.
    pub fn missing_token() -> Self {
        Self::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    }

    /// 401 for a token that does not verify.
    pub fn invalid_token(why: &str) -> Self {
        Self::new(
            401,
            "InvalidAuthenticationToken",
            format!("The access token is invalid: {why}."),
        )
    }

    /// 401 for a token with another audience.
    pub fn wrong_audience(aud: &str) -> Self {
        Self::new(
            401,
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.azure.com/'."
            ),
        )
    }

    /// 403 AuthorizationFailed.
    pub fn forbidden(client_id: &str, action: &str, scope: &str) -> Self {
        Self::new(
            403,
            "AuthorizationFailed",
            format!(
                "The client '{client_id}' with object id '{client_id}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        )
    }

    /// 429 TooManyRequests with Retry-After.
    pub fn throttled() -> Self {
        ArmError {
            retry_after: Some(1),
            ..Self::new(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00. Please retry after 1 second(s).",
            )
        }
    }

    /// 500 InternalServerError.
    pub fn internal() -> Self {
        Self::new(
            500,
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: emulated fault.",
        )
    }

    /// 503 ServiceUnavailable with Retry-After.
    pub fn unavailable() -> Self {
        ArmError {
            retry_after: Some(1),
            ..Self::new(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable (emulated fault). Please retry.",
            )
        }
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        resp
    }
}
