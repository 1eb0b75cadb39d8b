//! ACR credentials handed out by listCredential: an opaque token (the "password") bound to
//! one manifest, its repositories and an expiry.

use crate::resources::ResourceId;
use crate::secret::Secret;
use std::collections::HashMap;
use std::time::SystemTime;

/// What one acrToken grants.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The manifest it was listed for.
    pub manifest: ResourceId,
    /// The username that goes with it (the manifest name).
    pub username: String,
    /// Repositories it may touch.
    pub repositories: Vec<String>,
    /// When it stops working.
    pub expires_at: SystemTime,
}

/// Outstanding credentials, keyed by token value.
#[derive(Debug, Default)]
pub struct Credentials {
    grants: HashMap<String, Grant>,
}

impl Credentials {
    /// Stores `grant` under a fresh random token and returns the token.
    pub fn issue(&mut self, grant: Grant) -> Secret {
        let now = SystemTime::now();
        self.grants.retain(|_, g| g.expires_at > now);
        let token = Secret::random(32);
        self.grants.insert(token.expose().to_string(), grant);
        token
    }

    /// The live grant for (username, password), if any.
    pub fn find(&self, username: &str, password: &str) -> Option<&Grant> {
        let g = self.grants.get(password)?;
        (g.username.eq_ignore_ascii_case(username) && g.expires_at > SystemTime::now()).then_some(g)
    }

    /// Revokes all credentials, or those of one manifest; returns how many.
    pub fn revoke(&mut self, manifest: Option<&ResourceId>) -> usize {
        let before = self.grants.len();
        match manifest {
            Some(m) => {
                let key = m.key();
                self.grants.retain(|_, g| g.manifest.key() != key);
            }
            None => self.grants.clear(),
        }
        before - self.grants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn grant(ttl: i64) -> Grant {
        let now = SystemTime::now();
        Grant {
            manifest: ResourceId::parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/st/artifactManifests/m",
            )
            .unwrap(),
            username: "m".into(),
            repositories: vec!["a".into()],
            expires_at: if ttl >= 0 { now + Duration::from_secs(ttl as u64) } else { now - Duration::from_secs(1) },
        }
    }

    #[test]
    fn finds_live_grants_by_username_and_token() {
        let mut c = Credentials::default();
        let t = c.issue(grant(60));
        assert!(c.find("m", t.expose()).is_some());
        assert!(c.find("M", t.expose()).is_some());
        assert!(c.find("other", t.expose()).is_none());
        assert!(c.find("m", "guess").is_none());
        let expired = c.issue(grant(-1));
        assert!(c.find("m", expired.expose()).is_none());
        assert_eq!(c.revoke(None), 2);
        assert!(c.find("m", t.expose()).is_none());
    }
}
