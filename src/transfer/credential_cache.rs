//! Credential cache keyed by (store configuration with its identity, manifest): one
//! `listCredential` in flight per key (concurrent callers wait for and share it), refreshed
//! ahead of expiry, dropped when a registry refuses the token, at most
//! [`crate::limits::MAX_CACHED_MANIFESTS`] keys.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::request::StoreConfig;
use futures_util::FutureExt as _;

use crate::aosm::{AcrCredential, AosmError, ArmClient};
use crate::engine::{CredentialSource, EngineError, Secret};
use crate::slots::SlotMap;

/// Key of one cached credential.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The store and the identity that asks.
    pub store: StoreConfig,
    /// Manifest name.
    pub manifest: String,
}

impl CacheKey {
    /// The key of an artifact's store and manifest.
    pub fn of(a: &super::request::StoreSide) -> Self {
        Self {
            store: a.store.clone(),
            manifest: a.manifest.clone(),
        }
    }
}

#[derive(Clone)]
struct Entry {
    credential: AcrCredential,
    refresh_at: jiff::Timestamp,
}

/// Shared credential cache (clones share it).
#[derive(Clone)]
pub struct CredentialCache {
    slots: Arc<SlotMap<CacheKey, Entry>>,
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self {
            slots: Arc::new(SlotMap::new(crate::limits::MAX_CACHED_MANIFESTS)),
        }
    }
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialCache")
    }
}

/// How long a credential whose `expiry` is already past (or too close to leave any time
/// before a refresh) is still used. ARM's clock and ours may disagree, and the official
/// `listCredential` example's expiry lies in 2022: such a credential is used for the
/// transfer at hand, and the registry decides; its refusal drops it
/// ([`CredentialCache::invalidate`]). Without this floor every use would call
/// `listCredential` again, in a loop.
pub const PAST_EXPIRY_REUSE: Duration = Duration::from_secs(300);

/// When to refresh: a fifth of the lifetime before expiry, at most 5 minutes before; an
/// expiry already past (or leaving less than a second before that) counts from now:
/// [`PAST_EXPIRY_REUSE`].
fn refresh_at(now: jiff::Timestamp, expiry: jiff::Timestamp) -> jiff::Timestamp {
    let lifetime = expiry.duration_since(now);
    let margin = (lifetime.unsigned_abs() / 5).min(Duration::from_secs(300));
    let margin = jiff::SignedDuration::try_from(margin).unwrap_or_default();
    match expiry.checked_sub(margin) {
        Ok(at) if at.duration_since(now) >= jiff::SignedDuration::from_secs(1) => at,
        _ => now
            .checked_add(jiff::SignedDuration::try_from(PAST_EXPIRY_REUSE).unwrap_or_default())
            .unwrap_or(now),
    }
}

impl CredentialCache {
    fn slot(&self, key: &CacheKey) -> crate::slots::Slot<Entry> {
        self.slots.slot(key)
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

/// An ARM failure met while the engine asked for credentials, kept as what it is (the
/// transfer error recovers it: a missing manifest stays `StoreNotFound`, throttling stays
/// transient).
fn aosm_to_engine(e: AosmError) -> EngineError {
    EngineError::CredentialSource {
        transient: e.is_transient(),
        retry_after: e.retry_after(),
        source: Arc::new(e),
    }
}

/// Registry credentials that come from the credential cache and are renewed on refusal.
pub struct StoreCredentials {
    /// The shared cache.
    pub cache: CredentialCache,
    /// The store's ARM client.
    pub arm: Arc<ArmClient>,
    /// The store (with identity) and manifest.
    pub key: CacheKey,
    /// The token last handed out, dropped from the cache when it is refused.
    pub last_token: Mutex<Option<String>>,
}

impl CredentialSource for StoreCredentials {
    fn basic(
        &self,
        refresh: bool,
    ) -> futures_util::future::BoxFuture<'_, crate::engine::Result<(String, Secret)>> {
        async move {
            if refresh {
                let last = self
                    .last_token
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Some(t) = last {
                    self.cache.invalidate(&self.key, &t).await;
                }
            }
            let c = self
                .cache
                .get(&self.key, || {
                    self.arm
                        .list_credential(&self.key.store.id, &self.key.manifest)
                })
                .await
                .map_err(aosm_to_engine)?;
            *self.last_token.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(c.token.expose().to_string());
            Ok((c.username, c.token))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::aosm::{Cloud, Identity, StoreId};
    use crate::engine::Secret;

    fn key() -> CacheKey {
        CacheKey {
            store: StoreConfig {
                id: StoreId {
                    subscription_id: "s".into(),
                    resource_group: "rg".into(),
                    publisher: "p".into(),
                    artifact_store: "a".into(),
                },
                cloud: Cloud::AzurePublic,
                arm_endpoint: None,
                authority_host: None,
                api_version: "2023-09-01".into(),
                identity: Identity::ManagedIdentity { client_id: None },
            },
            manifest: "m".into(),
        }
    }

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
        let key = key();
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

    #[test]
    fn refresh_times() {
        let now = jiff::Timestamp::now();
        let secs = jiff::SignedDuration::from_secs;
        // An hour: refreshed 5 minutes before; 10 s: 2 s before.
        assert_eq!(refresh_at(now, now + secs(3600)), now + secs(3300));
        assert_eq!(refresh_at(now, now + secs(10)), now + secs(8));
        // Past or now: used for PAST_EXPIRY_REUSE from now.
        let floor = now + secs(PAST_EXPIRY_REUSE.as_secs() as i64);
        assert_eq!(refresh_at(now, now), floor);
        assert_eq!(refresh_at(now, now - secs(3600)), floor);
    }

    #[tokio::test]
    async fn refreshes_near_expiry_and_after_invalidate() {
        let cache = CredentialCache::default();
        let key = key();
        // Past its expiry on arrival (clock skew; the official example's is in 2022):
        // used, not fetched again on every call, until the registry refuses it.
        for expired in [0, -3600, -4 * 365 * 86400] {
            cache.forget(&key).await;
            cache
                .get(&key, || async { Ok(cred("stale", expired)) })
                .await
                .unwrap();
            let c = cache
                .get(&key, || async { Ok(cred("unused", 3600)) })
                .await
                .unwrap();
            assert_eq!(c.token.expose(), "stale", "expiry {expired}s from now");
        }
        cache.invalidate(&key, "stale").await;
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
