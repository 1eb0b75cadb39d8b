//! ACR-style token server for the registry: `GET /oauth2/token?service=..&scope=..` with
//! HTTP Basic (manifest name, acrToken), or `POST /oauth2/token` with a form
//! (`grant_type=password`). Answers a docker-distribution JWT (ES256, `x5c`) whose `access`
//! is the requested scope cut down to the manifest's repositories, and to `pull` once the
//! manifest is `Uploaded`.

use crate::app::{App, REGISTRY_TOKEN_ISSUER, lock};
use crate::resources::PUSHABLE_STATES;
use crate::time_fmt;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::SystemTime;

/// One `access` entry of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Always `repository` here.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name.
    pub name: String,
    /// Granted actions (`pull`, `push`).
    pub actions: Vec<String>,
}

/// The clock skew docker-registry allows on a token's `exp` and `nbf` (distribution 2.8
/// and v3: `token.Leeway`, 60 s). Tokens are dated that much earlier than their issue, so
/// the registry refuses one when `--registry-token-ttl` has passed since it was issued, as
/// ACR refuses an expired token, instead of a minute later. The answer's `expires_in` is
/// the TTL itself.
const REGISTRY_LEEWAY_SECS: u64 = 60;

#[derive(Serialize)]
struct RegistryClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

/// A requested scope `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Resource type (`repository`, `registry`, ...), without a `(class)`.
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Requested actions.
    pub actions: Vec<String>,
}

/// Parses every scope in the `scope` parameters (repeatable, each possibly holding several
/// space-separated scopes). Malformed scopes are skipped.
pub fn parse_scopes<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Requested> {
    let mut out = Vec::new();
    for p in params {
        for scope in p.split_whitespace() {
            let Some((kind, rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let kind = kind.split('(').next().unwrap_or(kind);
            if name.is_empty() {
                continue;
            }
            out.push(Requested {
                kind: kind.to_string(),
                name: name.to_string(),
                actions: actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    out
}

/// The access a grant allows for the requested scopes.
pub fn grant_access(
    requested: &[Requested],
    repositories: &[String],
    may_push: bool,
) -> Vec<Access> {
    let allowed: &[&str] = if may_push {
        &["pull", "push"]
    } else {
        &["pull"]
    };
    let mut out: Vec<Access> = Vec::new();
    for r in requested {
        if r.kind != "repository" || !repositories.iter().any(|repo| repo == &r.name) {
            continue;
        }
        let mut actions: Vec<String> = Vec::new();
        for a in &r.actions {
            let grants: Vec<&str> = if a == "*" {
                allowed.to_vec()
            } else {
                allowed.iter().copied().filter(|x| x == a).collect()
            };
            for g in grants {
                if !actions.iter().any(|x| x == g) {
                    actions.push(g.to_string());
                }
            }
        }
        if actions.is_empty() {
            continue;
        }
        match out.iter_mut().find(|e| e.name == r.name) {
            Some(e) => {
                for a in actions {
                    if !e.actions.contains(&a) {
                        e.actions.push(a);
                    }
                }
            }
            None => out.push(Access {
                kind: "repository".into(),
                name: r.name.clone(),
                actions,
            }),
        }
    }
    out
}

fn unauthorized(app: &App, why: &str) -> Response {
    lock(&app.stats).acr_token_refusals += 1;
    tracing::warn!("registry token refused: {why}");
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required, visit https://aka.ms/acr/authorization for more information."}]})),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"aosm-emulator\""),
    );
    resp
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// `GET /oauth2/token`.
pub async fn token_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    match basic_credentials(&headers) {
        Some((user, pass)) => issue(&app, &user, &pass, &params),
        None => unauthorized(&app, "no basic credentials"),
    }
}

/// `POST /oauth2/token` (form: `grant_type=password`, `username`, `password`, `service`,
/// `scope`), or Basic credentials with the form carrying only `service`/`scope`.
pub async fn token_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match get("grant_type").as_deref() {
        Some("password") => match (get("username"), get("password")) {
            (Some(u), Some(p)) => issue(&app, &u, &p, &params),
            _ => unauthorized(&app, "password grant without username/password"),
        },
        Some(other) => {
            tracing::warn!(grant_type = other, "registry token: unsupported grant type");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"errors": [{"code": "UNSUPPORTED", "message": format!("grant_type '{other}' is not supported; use password")}]})),
            )
                .into_response()
        }
        None => match basic_credentials(&headers) {
            Some((u, p)) => issue(&app, &u, &p, &params),
            None => unauthorized(&app, "no credentials"),
        },
    }
}

fn issue(app: &App, user: &str, pass: &str, params: &[(String, String)]) -> Response {
    let grant = lock(&app.credentials).find(user, pass).cloned();
    let Some(grant) = grant else {
        return unauthorized(app, "unknown, expired or revoked credential");
    };
    let state = lock(&app.resources)
        .get(&grant.manifest)
        .map(|m| m.manifest_state().to_string());
    let Some(state) = state else {
        return unauthorized(app, "the credential's artifact manifest no longer exists");
    };
    let may_push = PUSHABLE_STATES.contains(&state.as_str());
    let requested = parse_scopes(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let access = grant_access(&requested, &grant.repositories, may_push);
    let service = match &app.registry {
        Some(r) => r.host.clone(),
        None => params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    };
    let cfg = app.config();
    let ttl = cfg.registry_token_ttl.as_secs().max(1);
    let now = SystemTime::now();
    // Dated early: see REGISTRY_LEEWAY_SECS.
    let iat = time_fmt::unix(now).saturating_sub(REGISTRY_LEEWAY_SECS);
    let claims = RegistryClaims {
        iss: REGISTRY_TOKEN_ISSUER,
        sub: &grant.username,
        aud: &service,
        exp: iat + ttl,
        nbf: iat,
        iat,
        jti: uuid::Uuid::new_v4().to_string(),
        access: access.clone(),
    };
    let token = match app.registry_key.sign(&claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a registry token");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    lock(&app.stats).acr_token(grant.manifest.stats_key());
    let granted: Vec<String> = access
        .iter()
        .map(|a| format!("{}:{}", a.name, a.actions.join(",")))
        .collect();
    tracing::info!(manifest = %grant.manifest, state = %state, granted = ?granted, requested = requested.len(), "registry token issued");
    Json(json!({
        "access_token": token,
        "token": token,
        "expires_in": ttl,
        "issued_at": time_fmt::azure(now),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_and_space_separated_scopes() {
        let s = parse_scopes([
            "repository:a/b:pull,push",
            "repository:c:pull repository(plugin):d:*",
            "bad",
            "registry:catalog:*",
        ]);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "a/b");
        assert_eq!(s[0].actions, ["pull", "push"]);
        assert_eq!(s[2].kind, "repository");
        assert_eq!(s[2].actions, ["*"]);
        assert_eq!(s[3].kind, "registry");
    }

    #[test]
    fn grants_only_listed_repositories_and_actions() {
        let repos = vec!["a".to_string(), "m/b".to_string()];
        let req = parse_scopes([
            "repository:a:pull,push,delete",
            "repository:x:pull",
            "repository:m/b:*",
            "registry:catalog:*",
        ]);
        let got = grant_access(&req, &repos, true);
        assert_eq!(
            got,
            vec![
                Access {
                    kind: "repository".into(),
                    name: "a".into(),
                    actions: vec!["pull".into(), "push".into()]
                },
                Access {
                    kind: "repository".into(),
                    name: "m/b".into(),
                    actions: vec!["pull".into(), "push".into()]
                },
            ]
        );
        let got = grant_access(&req, &repos, false);
        assert!(got.iter().all(|a| a.actions == ["pull"]));
        let push_only = parse_scopes(["repository:a:push"]);
        assert!(grant_access(&push_only, &repos, false).is_empty());
    }
}
