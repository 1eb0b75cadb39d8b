//! Credential cache keyed by (store, manifest): one `listCredential` in flight per key
//! (concurrent callers wait for and share it), refreshed ahead of expiry, and dropped
//! when a registry refuses the token.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::arm::AcrCredential;
use super::error::AosmError;

/// Key of one cached credential.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// ARM path of the store.
    pub store: String,
    /// Manifest name.
    pub manifest: String,
}

#[derive(Clone)]
struct Entry {
    credential: AcrCredential,
    refresh_at: jiff::Timestamp,
}

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

/// Shared credential cache.
#[derive(Default, Clone)]
pub struct CredentialCache {
    slots: Arc<Mutex<HashMap<CacheKey, Slot>>>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialCache")
    }
}

/// When to refresh: a fifth of the lifetime before expiry, at most 5 minutes before.
fn refresh_at(now: jiff::Timestamp, expiry: jiff::Timestamp) -> jiff::Timestamp {
    let lifetime = expiry.duration_since(now).unsigned_abs();
    let margin = (lifetime / 5).min(Duration::from_secs(300));
    let margin = jiff::SignedDuration::try_from(margin).unwrap_or_default();
    expiry.checked_sub(margin).unwrap_or(now)
}

impl CredentialCache {
    fn slot(&self, key: &CacheKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    /// The cached credential for `key`, or the one `fetch` gets (only one fetch runs per key).
    pub async fn get<F, Fut>(&self, key: &CacheKey, fetch: F) -> Result<AcrCredential, AosmError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AcrCredential, AosmError>>,
    {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        let now = jiff::Timestamp::now();
        if let Some(e) = entry.as_ref()
            && now < e.refresh_at
        {
            return Ok(e.credential.clone());
        }
        let credential = fetch().await?;
        *entry = Some(Entry {
            refresh_at: refresh_at(now, credential.expiry),
            credential: credential.clone(),
        });
        Ok(credential)
    }

    /// Drops the cached credential for `key`, whatever it is (the manifest changed state).
    pub async fn forget(&self, key: &CacheKey) {
        *self.slot(key).lock().await = None;
    }

    /// Drops the cached credential for `key` if it is still the one whose token failed.
    pub async fn invalidate(&self, key: &CacheKey, failed_token: &str) {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        if entry
            .as_ref()
            .is_some_and(|e| e.credential.token.expose() == failed_token)
        {
            *entry = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::engine::Secret;

    fn cred(token: &str, ttl: i64) -> AcrCredential {
        AcrCredential {
            server: "r".into(),
            username: "m".into(),
            token: Secret::new(token),
            repositories: vec![],
            expiry: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(ttl),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = CredentialCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let key = CacheKey {
            store: "s".into(),
            manifest: "m".into(),
        };
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, calls, key) = (cache.clone(), calls.clone(), key.clone());
                tokio::spawn(async move {
                    cache
                        .get(&key, || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(cred("t1", 3600))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().token.expose(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_near_expiry_and_after_invalidate() {
        let cache = CredentialCache::default();
        let key = CacheKey {
            store: "s".into(),
            manifest: "m".into(),
        };
        // Already inside the refresh margin: every call fetches.
        cache
            .get(&key, || async { Ok(cred("short", 0)) })
            .await
            .unwrap();
        let c = cache
            .get(&key, || async { Ok(cred("long", 3600)) })
            .await
            .unwrap();
        assert_eq!(c.token.expose(), "long");
        let c = cache
            .get(&key, || async { Ok(cred("unused", 3600)) })
            .await
            .unwrap();
        assert_eq!(c.token.expose(), "long");
        cache.invalidate(&key, "other").await;
        let c = cache
            .get(&key, || async { Ok(cred("unused", 3600)) })
            .await
            .unwrap();
        assert_eq!(c.token.expose(), "long");
        cache.invalidate(&key, "long").await;
        let c = cache
            .get(&key, || async { Ok(cred("new", 3600)) })
            .await
            .unwrap();
        assert_eq!(c.token.expose(), "new");
    }
}
