//! Workload identity federation as Entra checks it: a client assertion from an external
//! issuer (a Kubernetes service account token) is exchanged only when a federated identity
//! credential of the app names its issuer, its subject and one of its audiences, and its
//! signature verifies against the issuer's published keys: OpenID discovery at
//! `{issuer}/.well-known/openid-configuration` (whose `issuer` must be the same), then
//! the JWK set at its `jwks_uri`, both over HTTPS. Lifetime (`exp`, `nbf`) is checked too.
//!
//! Entra documents RS256 as the supported algorithm ("others may work"); the emulator
//! verifies RS256 and ES256. Keys are cached per issuer for [`KEYS_TTL`] and fetched again
//! once when a token names a key id the cache lacks (key rotation). Documents are bounded
//! ([`MAX_DOCUMENT_BYTES`]) and fetched with a timeout: the issuer is untrusted input.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::lock;

/// The audience Entra expects in federated tokens.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// How long an issuer's keys are used before they are fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(300);
/// Largest discovery document or JWK set read.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Time allowed for each fetch from an issuer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

/// A federated identity credential of the app (what `az identity federated-credential
/// create` or the Graph API configures): tokens of `issuer` for `subject`, with one of
/// `audiences`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    /// The token issuer URL (`iss`), e.g. the cluster's service account issuer.
    pub issuer: String,
    /// The subject (`sub`), e.g. `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// Accepted audiences (`aud`); Entra's default is `api://AzureADTokenExchange`.
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
}

fn default_audiences() -> Vec<String> {
    vec![FEDERATED_AUDIENCE.to_string()]
}

/// Why an assertion was refused: the AADSTS code and Entra's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The AADSTS number.
    pub code: u32,
    /// The description (never the token).
    pub message: String,
}

fn refusal(code: u32, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Checks `assertion` against `credentials`; `ca_file` adds a PEM bundle to trust for the
/// issuers' HTTPS endpoints.
pub async fn verify(
    assertion: &str,
    credentials: &[FederatedCredential],
    ca_file: Option<&str>,
) -> Result<(), Refusal> {
    let malformed =
        |why: String| refusal(50027, format!("JWT token is invalid or malformed ({why})."));
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| malformed(e.to_string()))?;
    let (_, claims) = crate::jwt::peek(assertion).map_err(|e| malformed(e.to_string()))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    let (iss, sub) = (text("iss"), text("sub"));
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let of_issuer: Vec<&FederatedCredential> =
        credentials.iter().filter(|c| c.issuer == iss).collect();
    if of_issuer.is_empty() {
        return Err(refusal(
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'."
            ),
        ));
    }
    let of_subject: Vec<&&FederatedCredential> =
        of_issuer.iter().filter(|c| c.subject == sub).collect();
    if of_subject.is_empty() {
        return Err(refusal(
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'."
            ),
        ));
    }
    let Some(credential) = of_subject
        .iter()
        .find(|c| c.audiences.iter().any(|a| audiences.contains(&a.as_str())))
    else {
        return Err(refusal(
            700212,
            "No matching federated identity record found for presented assertion audience.",
        ));
    };
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(refusal(
            5002738,
            format!(
                "Invalid JWT token. The signing algorithm {:?} is not supported.",
                header.alg
            ),
        ));
    }
    let key = issuer_key(iss, header.kid.as_deref(), ca_file).await?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[iss]);
    validation.set_audience(&credential.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature
            | jsonwebtoken::errors::ErrorKind::ImmatureSignature => refusal(
                700024,
                "Client assertion is not within its valid time range.",
            ),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                refusal(700027, "Client assertion contains an invalid signature.")
            }
            _ => malformed(e.to_string()),
        }),
    }
}

/// Cached JWK sets per (issuer, CA file): when fetched, and the set.
type KeyCache = HashMap<(String, Option<String>), (Instant, JwkSet)>;
static KEYS: LazyLock<Mutex<KeyCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The issuer's key `kid` (the only key when the token names none), from the cache or
/// fetched (again once when the cache lacks `kid`).
async fn issuer_key(
    issuer: &str,
    kid: Option<&str>,
    ca_file: Option<&str>,
) -> Result<DecodingKey, Refusal> {
    let cache_key = (issuer.to_string(), ca_file.map(str::to_string));
    let cached = lock(&KEYS)
        .get(&cache_key)
        .filter(|(at, _)| at.elapsed() < KEYS_TTL)
        .map(|(_, set)| set.clone());
    let pick = |set: &JwkSet| match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    };
    let jwk = match cached.as_ref().and_then(pick) {
        Some(jwk) => jwk,
        None => {
            let set = fetch_keys(issuer, ca_file).await?;
            let found = pick(&set);
            lock(&KEYS).insert(cache_key, (Instant::now(), set));
            found.ok_or_else(|| {
                refusal(
                    700027,
                    format!(
                        "Client assertion contains an invalid signature. The key {} is not published by the issuer.",
                        kid.unwrap_or("(no kid)")
                    ),
                )
            })?
        }
    };
    DecodingKey::from_jwk(&jwk).map_err(|e| {
        refusal(
            700027,
            format!(
                "Client assertion contains an invalid signature. The issuer's key is unusable: {e}."
            ),
        )
    })
}

/// OpenID discovery of `issuer`, then its JWK set.
async fn fetch_keys(issuer: &str, ca_file: Option<&str>) -> Result<JwkSet, Refusal> {
    let failed = |why: String| {
        refusal(
            50166,
            format!("Request to External OIDC endpoint failed: {why}."),
        )
    };
    if !issuer.starts_with("https://") {
        return Err(failed(format!("the issuer {issuer} is not an https URL")));
    }
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| failed(format!("cannot read {path}: {e}")))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| failed(format!("{path} is not a PEM bundle: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|e| failed(e.to_string()))?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery: Value = get_json(&client, &discovery_url).await.map_err(failed)?;
    if discovery.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(failed(format!(
            "the discovery document at {discovery_url} names another issuer"
        )));
    }
    let jwks_uri = discovery
        .get("jwks_uri")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("https://"))
        .ok_or_else(|| failed(format!("{discovery_url} has no https jwks_uri")))?;
    let set: Value = get_json(&client, jwks_uri).await.map_err(failed)?;
    serde_json::from_value(set).map_err(|e| failed(format!("{jwks_uri} is not a JWK set: {e}")))
}

/// GETs `url` as JSON of at most [`MAX_DOCUMENT_BYTES`].
async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    use futures_util::StreamExt as _;
    let resp = client
        .get(url)
        .header("Accept", "application/json, application/jwk-set+json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtKey;
    use serde_json::json;

    const ISSUER: &str = "https://127.0.0.1:1/issuer";
    const SUBJECT: &str = "system:serviceaccount:aosm-system:aosm-artifact-operator";

    fn now() -> i64 {
        crate::time_fmt::unix(std::time::SystemTime::now()) as i64
    }

    fn credential() -> Vec<FederatedCredential> {
        vec![FederatedCredential {
            issuer: ISSUER.into(),
            subject: SUBJECT.into(),
            audiences: default_audiences(),
        }]
    }

    /// A token of `key` with the usual claims, `change` applied.
    fn token(key: &JwtKey, change: serde_json::Value) -> String {
        let mut claims = json!({
            "iss": ISSUER, "sub": SUBJECT, "aud": [FEDERATED_AUDIENCE],
            "iat": now() - 10, "nbf": now() - 10, "exp": now() + 3600,
        });
        for (k, v) in change.as_object().into_iter().flatten() {
            claims[k] = v.clone();
        }
        key.sign(&claims).expect("signs")
    }

    /// The issuer's keys as if fetched (the issuer itself is unreachable).
    fn publish(keys: &[&JwtKey]) {
        let set: JwkSet = serde_json::from_value(json!({
            "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()
        }))
        .expect("a JWK set");
        lock(&KEYS).insert((ISSUER.to_string(), None), (Instant::now(), set));
    }

    async fn code(assertion: &str) -> Option<u32> {
        verify(assertion, &credential(), None)
            .await
            .err()
            .map(|r| r.code)
    }

    #[tokio::test]
    async fn checks_issuer_subject_audience_lifetime_and_signature() {
        let key = JwtKey::generate("k1").expect("a key");
        publish(&[&key]);
        assert_eq!(code(&token(&key, json!({}))).await, None);
        assert_eq!(
            code(&token(&key, json!({"aud": FEDERATED_AUDIENCE}))).await,
            None,
            "a single audience string"
        );
        for (change, expected) in [
            (json!({"iss": "https://elsewhere.example"}), 700211),
            (json!({"sub": "system:serviceaccount:other:sa"}), 700213),
            (json!({"aud": ["https://kubernetes.default.svc"]}), 700212),
            (json!({"exp": now() - 600}), 700024),
            (json!({"nbf": now() + 600}), 700024),
        ] {
            assert_eq!(
                code(&token(&key, change.clone())).await,
                Some(expected),
                "{change}"
            );
        }
        // Signed by another key that claims the published key's id.
        let forger = JwtKey::generate("k1").expect("a key");
        assert_eq!(code(&token(&forger, json!({}))).await, Some(700027));
        // A key id the issuer does not publish: fetched again, and the issuer is down.
        let unknown = JwtKey::generate("k2").expect("a key");
        assert_eq!(code(&token(&unknown, json!({}))).await, Some(50166));
        assert_eq!(code("not-a-jwt").await, Some(50027));
    }

    #[test]
    fn only_https_issuers_are_fetched() {
        let refused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(fetch_keys("http://127.0.0.1:1", None))
            .expect_err("refused");
        assert_eq!(refused.code, 50166);
        assert!(refused.message.contains("not an https URL"), "{refused:?}");
    }
}
