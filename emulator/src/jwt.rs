//! ES256 JSON Web Tokens: signing (Entra access tokens, registry tokens), verifying the
//! emulator's own tokens, and reading the claims of a foreign token without verification
//! (workload identity assertions, which are only checked for shape, subject and expiry).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Errors of signing and verification. Messages never contain token values.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The key could not be loaded.
    #[error("signing key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The token is not a well-formed JWT.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token failed verification (signature, issuer, lifetime).
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Selects the aws-lc-rs backend of jsonwebtoken for the whole process (idempotent).
pub fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Signs and verifies ES256 tokens with one P-256 key.
pub struct JwtKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    public_raw: Vec<u8>,
    kid: String,
}

impl JwtKey {
    /// Uses `key` (P-256); `x5c_der` (leaf first) goes into every header when given.
    pub fn new(
        key: &KeyPair,
        kid: impl Into<String>,
        x5c_der: Option<&[Vec<u8>]>,
    ) -> Result<Self, JwtError> {
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
            .map_err(|e| JwtError::Key(e.to_string()))?;
        let public_raw = key.public_key_raw().to_vec();
        let decoding = DecodingKey::from_ec_der(&public_raw);
        let kid = kid.into();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        match x5c_der {
            Some(chain) => {
                header.x5c = Some(chain.iter().map(|der| STANDARD.encode(der)).collect())
            }
            None => header.kid = Some(kid.clone()),
        }
        Ok(JwtKey {
            encoding,
            decoding,
            header,
            public_raw,
            kid,
        })
    }

    /// A fresh random key (no certificate).
    pub fn generate(kid: impl Into<String>) -> Result<Self, JwtError> {
        let key = KeyPair::generate().map_err(|e| JwtError::Key(e.to_string()))?;
        Self::new(&key, kid, None)
    }

    /// Signs `claims`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, JwtError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|e| JwtError::Sign(e.to_string()))
    }

    /// Verifies signature, `exp`/`nbf` (no leeway) and that `iss` equals `issuer`; the
    /// audience is left to the caller.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, issuer: &str) -> Result<T, JwtError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 0;
        v.validate_aud = false;
        v.validate_nbf = true;
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "iss"]);
        jsonwebtoken::decode::<T>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| JwtError::Invalid(e.kind_description()))
    }

    /// The public key as a JWK (for a `jwks_uri`).
    pub fn jwk(&self) -> Value {
        // Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
        let (x, y) = match self.public_raw.as_slice() {
            [4, rest @ ..] if rest.len() == 64 => (&rest[..32], &rest[32..]),
            _ => (&[][..], &[][..]),
        };
        json!({
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })
    }
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for jsonwebtoken::errors::Error {
    fn kind_description(&self) -> String {
        use jsonwebtoken::errors::ErrorKind as K;
        match self.kind() {
            K::ExpiredSignature => "the token has expired".into(),
            K::ImmatureSignature => "the token is not valid yet".into(),
            K::InvalidIssuer => "the token was not issued by this emulator".into(),
            K::InvalidSignature => "the signature does not verify".into(),
            K::InvalidAlgorithm => "unexpected signing algorithm".into(),
            K::MissingRequiredClaim(c) => format!("claim {c} is missing"),
            _ => "the token is malformed".into(),
        }
    }
}

/// Header and claims of a JWT, read without verifying the signature.
pub fn peek(token: &str) -> Result<(Value, Value), JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("a JWT has three dot-separated parts"));
    };
    if s.is_empty() {
        return Err(JwtError::Malformed("the signature is empty"));
    }
    let decode = |part: &str, what: &'static str| -> Result<Value, JwtError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| JwtError::Malformed(what))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed(what))?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(JwtError::Malformed(what))
        }
    };
    let header = decode(h, "the header is not base64url JSON")?;
    let claims = decode(c, "the claims are not base64url JSON")?;
    if header.get("alg").and_then(Value::as_str).is_none() {
        return Err(JwtError::Malformed("the header has no alg"));
    }
    Ok((header, claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn signs_and_verifies_its_own_tokens() {
        install_crypto_provider();
        let key = JwtKey::generate("k1").unwrap();
        let token = key
            .sign(&json!({"iss": "me", "aud": "x", "exp": now() + 60}))
            .unwrap();
        let claims: Value = key.verify(&token, "me").unwrap();
        assert_eq!(claims["aud"], "x");
        assert!(key.verify::<Value>(&token, "someone-else").is_err());
        let other = JwtKey::generate("k2").unwrap();
        assert!(other.verify::<Value>(&token, "me").is_err());
        let expired = key.sign(&json!({"iss": "me", "exp": now() - 1})).unwrap();
        assert!(key.verify::<Value>(&expired, "me").is_err());
        let (header, _) = peek(&token).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "k1");
        assert_eq!(key.jwk()["x"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn x5c_header_carries_the_chain() {
        install_crypto_provider();
        let kp = KeyPair::generate().unwrap();
        let key = JwtKey::new(&kp, "k", Some(&[vec![1, 2, 3]])).unwrap();
        let token = key.sign(&json!({"iss": "me", "exp": now() + 60})).unwrap();
        let (header, _) = peek(&token).unwrap();
        assert_eq!(header["x5c"], json!(["AQID"]));
        assert!(header.get("kid").is_none());
    }

    #[test]
    fn peek_rejects_garbage() {
        assert!(peek("abc").is_err());
        assert!(peek("a.b.c").is_err());
        assert!(peek("e30.e30.").is_err());
        assert!(peek("e30.e30.sig").is_err(), "header without alg");
        let ok = format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"s"}"#)
        );
        assert_eq!(peek(&ok).unwrap().1["sub"], "s");
    }
}
