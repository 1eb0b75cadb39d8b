//! Emulated Entra ID: the v2.0 (and v1) token endpoint for client credentials with a
//! client secret or a client assertion (workload identity), OpenID metadata, and an
//! App Service style managed identity endpoint.

use crate::app::{App, lock};
use crate::stats::EntraGrant;
use crate::time_fmt;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// `client_assertion_type` azure_identity sends.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Also accepted (the grant-type URN some clients put there by mistake).
pub const ASSERTION_TYPE_ALT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An Entra error answer (`error`, `error_description` starting with `AADSTS<code>`,
/// `error_codes`), the shape azure_identity parses.
#[derive(Debug)]
pub struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        EntraError {
            status,
            error,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let trace = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {} Trace ID: {trace}", self.code, self.description),
            "error_codes": [self.code],
            "timestamp": time_fmt::now(),
            "trace_id": trace,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        });
        (self.status, Json(body)).into_response()
    }
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    appid: &'a str,
    azp: &'a str,
    oid: &'a str,
    sub: &'a str,
    tid: &'a str,
    idtyp: &'static str,
    ver: &'static str,
    uti: String,
    jti: String,
}

/// Issues an access token for `client_id` with audience `aud`; returns (token, lifetime s).
fn issue(
    app: &App,
    client_id: &str,
    aud: &str,
    grant: EntraGrant,
) -> Result<(String, u64), EntraError> {
    let ttl = app.config().entra_token_ttl.as_secs().max(1);
    let now = time_fmt::unix(SystemTime::now());
    let iss = app.entra_issuer();
    let id = uuid::Uuid::new_v4().to_string();
    let claims = AccessClaims {
        aud,
        iss: &iss,
        iat: now,
        nbf: now,
        exp: now + ttl,
        appid: client_id,
        azp: client_id,
        oid: client_id,
        sub: client_id,
        tid: &app.identity.tenant_id,
        idtyp: "app",
        ver: "2.0",
        uti: id.clone(),
        jti: id,
    };
    let token = app.entra_key.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign an Entra token");
        EntraError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            90000,
            "token signing failed.",
        )
    })?;
    lock(&app.stats).entra_token(grant);
    Ok((token, ttl))
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `POST /{tenant}/oauth2/v2.0/token` (`scope=<resource>/.default`).
pub async fn token_v2(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    token(&app, &tenant, &form(&body), true)
        .await
        .unwrap_or_else(|e| refuse(&app, e))
}

/// `POST /{tenant}/oauth2/token` (v1: `resource=<resource>`).
pub async fn token_v1(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    token(&app, &tenant, &form(&body), false)
        .await
        .unwrap_or_else(|e| refuse(&app, e))
}

fn refuse(app: &App, e: EntraError) -> Response {
    lock(&app.stats).entra_refusals += 1;
    tracing::warn!(
        status = e.status.as_u16(),
        error = e.error,
        code = e.code,
        "Entra token refused: {}",
        e.description
    );
    e.into_response()
}

async fn token(
    app: &App,
    tenant: &str,
    f: &HashMap<String, String>,
    v2: bool,
) -> Result<Response, EntraError> {
    let bad =
        |code, msg: String| EntraError::new(StatusCode::BAD_REQUEST, "invalid_request", code, msg);
    if !tenant.eq_ignore_ascii_case(&app.identity.tenant_id) {
        return Err(bad(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
            ),
        ));
    }
    let param = |name: &str| f.get(name).map(String::as_str).filter(|v| !v.is_empty());
    match param("grant_type") {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(EntraError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            ));
        }
        None => {
            return Err(bad(
                900144,
                "The request body must contain the following parameter: 'grant_type'.".into(),
            ));
        }
    }
    let Some(client_id) = param("client_id") else {
        return Err(bad(
            900144,
            "The request body must contain the following parameter: 'client_id'.".into(),
        ));
    };
    let audience = if v2 {
        let Some(scope) = param("scope") else {
            return Err(bad(
                900144,
                "The request body must contain the following parameter: 'scope'.".into(),
            ));
        };
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        match scopes.as_slice() {
            [one] if one.ends_with("/.default") => one.trim_end_matches("/.default").to_string(),
            _ => {
                return Err(EntraError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ));
            }
        }
    } else {
        let Some(resource) = param("resource") else {
            return Err(bad(
                900144,
                "The request body must contain the following parameter: 'resource'.".into(),
            ));
        };
        resource.to_string()
    };
    if audience.is_empty() {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The scope names no resource.",
        ));
    }

    let grant = if let Some(secret) = param("client_secret") {
        if !client_id.eq_ignore_ascii_case(&app.identity.client_id) {
            return Err(unknown_app(client_id, &app.identity.tenant_id));
        }
        if !app.identity.client_secret.matches(secret) {
            return Err(EntraError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
        EntraGrant::ClientSecret
    } else if let Some(assertion) = param("client_assertion") {
        let kind = param("client_assertion_type").unwrap_or("");
        if kind != ASSERTION_TYPE && kind != ASSERTION_TYPE_ALT {
            return Err(bad(
                700023,
                format!("client_assertion_type must be '{ASSERTION_TYPE}'."),
            ));
        }
        if !client_id.eq_ignore_ascii_case(&app.identity.client_id)
            && !client_id.eq_ignore_ascii_case(&app.identity.managed_identity_client_id)
        {
            return Err(unknown_app(client_id, &app.identity.tenant_id));
        }
        check_federated_assertion(app, assertion).await?;
        EntraGrant::ClientAssertion
    } else {
        return Err(EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };

    let (token, ttl) = issue(app, client_id, &audience, grant)?;
    tracing::info!(client_id, audience = %audience, grant = ?grant, "Entra token issued");
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": token,
    });
    if !v2 && let Some(obj) = body.as_object_mut() {
        obj.insert("resource".into(), json!(audience));
        obj.insert(
            "expires_on".into(),
            json!((time_fmt::unix(SystemTime::now()) + ttl).to_string()),
        );
    }
    Ok(Json(body).into_response())
}

fn unknown_app(client_id: &str, tenant: &str) -> EntraError {
    EntraError::new(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
        ),
    )
}

/// A federated token (Kubernetes service account token) is accepted as Entra accepts it:
/// see [`crate::federation`].
async fn check_federated_assertion(app: &App, assertion: &str) -> Result<(), EntraError> {
    let config = app.config();
    crate::federation::verify(
        assertion,
        &config.federated_credentials,
        config.oidc_ca_file.as_deref(),
    )
    .await
    .map_err(|r| EntraError::new(StatusCode::BAD_REQUEST, "invalid_client", r.code, r.message))
}

/// `GET /msi/token?api-version=2019-08-01&resource=R[&client_id=..]` with
/// `X-IDENTITY-HEADER` (App Service managed identity; `IDENTITY_ENDPOINT` points here).
pub async fn managed_identity(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let fail = |status: StatusCode, msg: &str| {
        lock(&app.stats).entra_refusals += 1;
        tracing::warn!(
            status = status.as_u16(),
            "managed identity token refused: {msg}"
        );
        (status, Json(json!({"statusCode": status.as_u16(), "message": msg, "correlationId": uuid::Uuid::new_v4().to_string()})))
            .into_response()
    };
    let header_ok = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| app.identity.identity_header.matches(v));
    if !header_ok {
        return fail(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or wrong.",
        );
    }
    if q.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return fail(StatusCode::BAD_REQUEST, "api-version must be 2019-08-01.");
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The resource parameter is required.",
        );
    };
    let known = |id: &String| {
        id.eq_ignore_ascii_case(&app.identity.managed_identity_client_id)
            || id.eq_ignore_ascii_case(&app.identity.client_id)
    };
    let client_id = match (q.get("client_id"), q.get("object_id")) {
        (Some(id), _) | (None, Some(id)) if known(id) => id.clone(),
        (Some(_), _) | (None, Some(_)) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "The requested identity has not been assigned to this resource.",
            );
        }
        (None, None) => app.identity.managed_identity_client_id.clone(),
    };
    let resource = resource.clone();
    let (token, ttl) = match issue(&app, &client_id, &resource, EntraGrant::ManagedIdentity) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    tracing::info!(client_id = %client_id, audience = %resource, "managed identity token issued");
    let expires_on = time_fmt::unix(SystemTime::now()) + ttl;
    Json(json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }))
    .into_response()
}

/// Tenant-independent authorities Entra also serves discovery documents for (MSAL opens
/// one for `organizations` on `az logout`, for example).
const MULTI_TENANT: &[&str] = &["common", "organizations"];

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`, for the emulated tenant and, as
/// Entra does, for `common` and `organizations` (whose issuer names a `{tenantid}`
/// placeholder; tokens are still only issued in the tenant).
pub async fn openid_configuration(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
) -> Response {
    let multi = MULTI_TENANT.iter().any(|t| t.eq_ignore_ascii_case(&tenant));
    if !multi && !tenant.eq_ignore_ascii_case(&app.identity.tenant_id) {
        return EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            format!("Tenant '{tenant}' not found."),
        )
        .into_response();
    }
    let base = &app.base_url;
    let t = if multi {
        tenant.to_ascii_lowercase()
    } else {
        app.identity.tenant_id.clone()
    };
    let issuer = if multi {
        format!("{base}/{{tenantid}}/v2.0")
    } else {
        app.entra_issuer()
    };
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
        "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "response_types_supported": ["code", "id_token", "token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EMU",
        "cloud_instance_name": "aosm-emulator",
    }))
    .into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the key that signs access tokens.
pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    Json(json!({ "keys": [app.entra_key.jwk()] })).into_response()
}

/// `GET /common/discovery/instance` (MSAL instance discovery).
pub async fn instance_discovery(State(app): State<Arc<App>>) -> Response {
    let host = app.base_url.trim_start_matches("https://").to_string();
    Json(json!({
        "tenant_discovery_endpoint": format!("{}/{}/v2.0/.well-known/openid-configuration", app.base_url, app.identity.tenant_id),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}
