//! Credential values (client secrets, ACR tokens, the identity header) that must never be
//! printed: `Debug` shows a placeholder and there is no `Display`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use std::fmt;

/// A secret string. Compare with [`Secret::matches`] (constant time); read with
/// [`Secret::expose`] only where the value must leave the process (a response body, the
/// endpoints file).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps an existing value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A fresh random secret of `bytes` random bytes, base64url-encoded (no padding).
    pub fn random(bytes: usize) -> Self {
        let mut buf = vec![0u8; bytes];
        rand::rng().fill_bytes(&mut buf);
        Secret(URL_SAFE_NO_PAD.encode(buf))
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter"));
    }

    #[test]
    fn random_secrets_differ() {
        let a = Secret::random(32);
        let b = Secret::random(32);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
    }
}
