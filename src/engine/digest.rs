//! Content digests (`algorithm:encoded`): the OCI image-spec grammar, and hashing with
//! the algorithm a digest names (`sha256` or `sha512`).
//!
//! A digest read from a registry (a descriptor, a `Docker-Content-Digest` header) or given
//! by a user is checked with [`parse_digest`] before it is put in a URL or a path, and the
//! bytes it names are verified with the same algorithm ([`Hasher::for_digest`],
//! [`digest_with`]).

use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm this engine can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha256`: 64 lowercase hex characters (the canonical algorithm of registries).
    Sha256,
    /// `sha512`: 128 lowercase hex characters.
    Sha512,
}

impl Algorithm {
    /// The name used before the `:`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// Why a string is not a usable digest. The offending text is shown quoted and cut short
/// (it may come from a hostile registry).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `algorithm:encoded` by the OCI grammar.
    #[error(
        "{shown} is not a digest: expected ALGORITHM:ENCODED, e.g. sha256:<64 lowercase hex characters>"
    )]
    Malformed {
        /// The text, quoted and shortened.
        shown: String,
    },
    /// Well-formed, but an algorithm we cannot verify.
    #[error("{shown} uses the digest algorithm {algorithm}; only sha256 and sha512 are supported")]
    UnsupportedAlgorithm {
        /// The text, quoted and shortened.
        shown: String,
        /// The algorithm, quoted and shortened.
        algorithm: String,
    },
    /// `sha256`/`sha512` with an encoding of the wrong length or alphabet.
    #[error(
        "{shown} is not a valid {algorithm} digest: expected {hex_len} lowercase hex characters after \"{algorithm}:\""
    )]
    BadEncoding {
        /// The text, quoted and shortened.
        shown: String,
        /// `sha256` or `sha512`.
        algorithm: &'static str,
        /// Expected number of hex characters.
        hex_len: usize,
    },
}

/// `text` quoted for an error message: control characters escaped, at most `max`
/// characters (then `…`), so untrusted input cannot forge lines or flood a message.
pub fn quote_untrusted(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    let mut out = format!("{cut:?}");
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

fn is_algorithm_component(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// True when `alg` matches the OCI grammar
/// `algorithm-component (algorithm-separator algorithm-component)*`, components
/// `[a-z0-9]+`, separators `[+._-]`.
fn is_algorithm(alg: &str) -> bool {
    alg.split(['+', '.', '_', '-']).all(is_algorithm_component)
}

/// True when `enc` matches the OCI grammar `[a-zA-Z0-9=_-]+`.
fn is_encoded(enc: &str) -> bool {
    !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
}

/// Checks `digest` against the OCI grammar and the registered encodings of `sha256`
/// (64 lowercase hex) and `sha512` (128 lowercase hex), and returns its algorithm.
/// Anything else — another algorithm, upper-case hex, a path or a query — is refused.
pub fn parse_digest(digest: &str) -> Result<Algorithm, DigestError> {
    let shown = || quote_untrusted(digest, 80);
    let Some((alg, enc)) = digest.split_once(':') else {
        return Err(DigestError::Malformed { shown: shown() });
    };
    if !is_algorithm(alg) || !is_encoded(enc) {
        return Err(DigestError::Malformed { shown: shown() });
    }
    let algorithm = match alg {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        other => {
            return Err(DigestError::UnsupportedAlgorithm {
                shown: shown(),
                algorithm: quote_untrusted(other, 40),
            });
        }
    };
    if enc.len() != algorithm.hex_len()
        || !enc
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(DigestError::BadEncoding {
            shown: shown(),
            algorithm: algorithm.name(),
            hex_len: algorithm.hex_len(),
        });
    }
    Ok(algorithm)
}

/// `sha256:` digest of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    digest_with(Algorithm::Sha256, data)
}

/// Digest of `data` with `algorithm`, as `algorithm:hex`.
pub fn digest_with(algorithm: Algorithm, data: &[u8]) -> String {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.digest()
}

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Incremental hash (SHA-256 by default, or the algorithm a digest names) that can be
/// checkpointed (cloned) at chunk boundaries.
#[derive(Clone)]
pub struct Hasher(State);

impl Default for Hasher {
    fn default() -> Self {
        Self::new(Algorithm::Sha256)
    }
}

impl Hasher {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        Self(match algorithm {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        })
    }

    /// A hasher for the algorithm `digest` names (which must be valid).
    pub fn for_digest(digest: &str) -> Result<Self, DigestError> {
        parse_digest(digest).map(Self::new)
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// `algorithm:hex` digest of everything fed so far (does not consume the hasher).
    pub fn digest(&self) -> String {
        match &self.0 {
            State::Sha256(h) => format!("sha256:{}", hex::encode(h.clone().finalize())),
            State::Sha512(h) => format!("sha512:{}", hex::encode(h.clone().finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_digest(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let mut h = Hasher::default();
        h.update(b"{");
        let checkpoint = h.clone();
        h.update(b"}");
        assert_eq!(h.digest(), sha256_digest(b"{}"));
        assert_eq!(checkpoint.digest(), sha256_digest(b"{"));
        // `printf '' | sha512sum`
        assert_eq!(
            digest_with(Algorithm::Sha512, b""),
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        let d = digest_with(Algorithm::Sha512, b"abc");
        let mut h = Hasher::for_digest(&d).unwrap();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.digest(), d);
    }

    #[test]
    fn grammar() {
        let sha256 = format!("sha256:{}", "a".repeat(64));
        let sha512 = format!("sha512:{}", "0".repeat(128));
        assert_eq!(parse_digest(&sha256), Ok(Algorithm::Sha256));
        assert_eq!(parse_digest(&sha512), Ok(Algorithm::Sha512));
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:../../../v2/x",
            "sha256:abc?x=",
            "sha256:abc/def",
            "SHA256:abc",
            "sha256+:abc",
            "sha256:a b",
        ] {
            assert!(
                matches!(parse_digest(bad), Err(DigestError::Malformed { .. })),
                "{bad}"
            );
        }
        for unsupported in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha384:abc",
            "a+b:c",
        ] {
            assert!(
                matches!(
                    parse_digest(unsupported),
                    Err(DigestError::UnsupportedAlgorithm { .. })
                ),
                "{unsupported}"
            );
        }
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(128)),
            format!("sha512:{}", "g".repeat(128)),
            format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(
                matches!(parse_digest(&bad), Err(DigestError::BadEncoding { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn messages_quote_and_cut_untrusted_text() {
        let long = format!("sha256:{}\n{}", "x".repeat(50), "y".repeat(10_000));
        let msg = parse_digest(&long).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains('…'), "{msg}");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_url_safe_text(s in "\\PC{0,200}") {
            if parse_digest(&s).is_ok() {
                let (alg, hex) = s.split_once(':').unwrap();
                prop_assert!(alg == "sha256" || alg == "sha512");
                prop_assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
            let msg = match parse_digest(&s) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
            prop_assert!(!msg.contains('\n') && msg.len() < 600);
        }

        #[test]
        fn digests_of_content_round_trip(data in proptest::collection::vec(any::<u8>(), 0..512), sha512 in any::<bool>()) {
            let alg = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let d = digest_with(alg, &data);
            prop_assert_eq!(parse_digest(&d), Ok(alg));
            let mut h = Hasher::for_digest(&d).unwrap();
            let (a, b) = data.split_at(data.len() / 2);
            h.update(a);
            h.update(b);
            prop_assert_eq!(h.digest(), d);
        }

        #[test]
        fn grammar_shaped_strings(alg in "[a-z0-9]{1,8}([+._-][a-z0-9]{1,8}){0,2}", enc in "[a-zA-Z0-9=_-]{1,140}") {
            let s = format!("{alg}:{enc}");
            match parse_digest(&s) {
                Ok(a) => prop_assert_eq!(a.name(), alg.as_str()),
                Err(DigestError::Malformed { .. }) => prop_assert!(false, "{} follows the grammar", s),
                Err(_) => {}
            }
        }
    }
}
