//! SHA-256 digests in the `sha256:<hex>` form registries use.

use sha2::{Digest as _, Sha256};

/// `sha256:` digest of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Incremental SHA-256 that can be checkpointed (cloned) at chunk boundaries.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// `sha256:` digest of everything fed so far (does not consume the hasher).
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.0.clone().finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
