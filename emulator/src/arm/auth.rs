//! Bearer token check of ARM requests: the token must be one the emulator's Entra endpoint
//! issued (signature, issuer, lifetime) for an ARM audience.

use super::error::ArmError;
use crate::app::App;
use crate::config::RuntimeConfig;
use axum::http::{HeaderMap, header};
use serde::Deserialize;

/// The scope clients ask Entra for ARM tokens with (`armScope` in endpoints.json); its
/// resource is the first audience of `/metadata/endpoints`.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// Audiences ARM accepts (compared without a trailing slash), besides the emulator's own
/// base URL.
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.usgovcloudapi.net",
    "https://management.chinacloudapi.cn",
];

/// The caller, from the token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `appid` (client id) of the token.
    pub client_id: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    aud: String,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

/// Whether `aud` names ARM (or the emulator's own endpoint).
pub fn is_arm_audience(app: &App, aud: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    ARM_AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud))
        || app.base_url.eq_ignore_ascii_case(aud)
}

/// Checks the `Authorization: Bearer` header.
pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, ArmError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ArmError::missing_token());
    };
    let value = value
        .to_str()
        .map_err(|_| ArmError::invalid_token("the header is not text"))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ArmError::invalid_token("the scheme must be Bearer")),
    };
    let claims: Claims = app
        .entra_key
        .verify(token, &app.entra_issuer())
        .map_err(|e| ArmError::invalid_token(&e.to_string()))?;
    if !is_arm_audience(app, &claims.aud) {
        return Err(ArmError::wrong_audience(&claims.aud));
    }
    let client_id = claims
        .appid
        .or(claims.azp)
        .or(claims.sub)
        .unwrap_or_default();
    Ok(Principal { client_id })
}

/// Refuses callers or scopes the deny knobs name.
pub fn authorize(
    cfg: &RuntimeConfig,
    who: &Principal,
    action: &str,
    scope: &str,
) -> Result<(), ArmError> {
    let denied_client = cfg
        .deny_clients
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&who.client_id));
    let scope_lower = scope.to_ascii_lowercase();
    let denied_scope = cfg.deny_scopes.iter().any(|s| {
        let s = s.trim_end_matches('/').to_ascii_lowercase();
        scope_lower == s || scope_lower.starts_with(&format!("{s}/"))
    });
    if denied_client || denied_scope {
        return Err(ArmError::forbidden(&who.client_id, action, scope));
    }
    Ok(())
}
