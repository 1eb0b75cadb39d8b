//! [`SlotMap`]: a bounded map of per-key async slots, so that for each key one task at a
//! time computes a value (a credential, a manifest, a store type) and the others wait for
//! it instead of asking again. The least recently used key is dropped when the map is
//! full: a task still holding its slot keeps it, a later one starts a new slot.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

/// One key's value, computed by whoever holds the lock first.
pub type Slot<V> = Arc<tokio::sync::Mutex<Option<V>>>;

/// A bounded, least-recently-used map of [`Slot`]s.
pub struct SlotMap<K: Hash + Eq, V> {
    slots: Mutex<LruCache<K, Slot<V>>>,
}

impl<K: Hash + Eq, V> SlotMap<K, V> {
    /// A map of at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The slot of `key`, made empty when it is new.
    pub fn slot(&self, key: &K) -> Slot<V>
    where
        K: Clone,
    {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.get_or_insert(key.clone(), Slot::default).clone()
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &K) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop(key);
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V> std::fmt::Debug for SlotMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMap").field("len", &self.len()).finish()
    }
}

/// A bounded, least-recently-used map of shared values made on demand.
pub struct Memo<K: Hash + Eq, V> {
    values: Mutex<LruCache<K, Arc<V>>>,
}

impl<K: Hash + Eq + Clone, V> Memo<K, V> {
    /// A map of at most `capacity` values (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            values: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The value of `key`, made by `make` when absent (a failure keeps nothing).
    pub fn get_or_try_insert<E>(
        &self,
        key: &K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = values.get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        values.put(key.clone(), v.clone());
        Ok(v)
    }

    /// Forgets every key for which `drop` says so.
    pub fn remove_where(&self, drop: impl Fn(&K) -> bool) {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let doomed: Vec<K> = values
            .iter()
            .filter(|(k, _)| drop(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            values.pop(&k);
        }
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V> std::fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Memo").field("len", &len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_slot_per_key_and_the_oldest_key_goes_first() {
        let map: SlotMap<u32, &str> = SlotMap::new(2);
        *map.slot(&1).lock().await = Some("one");
        *map.slot(&2).lock().await = Some("two");
        assert_eq!(*map.slot(&1).lock().await, Some("one"), "same slot again");
        *map.slot(&3).lock().await = Some("three");
        assert_eq!(map.len(), 2);
        assert_eq!(
            *map.slot(&2).lock().await,
            None,
            "2 was the least recently used"
        );
        map.remove(&2);
        assert_eq!(
            *map.slot(&1).lock().await,
            None,
            "1 was dropped when 2 came back"
        );
    }

    #[test]
    fn memo_makes_once_keeps_no_failure_and_is_bounded() {
        let memo: Memo<u32, String> = Memo::new(2);
        let mut made = 0;
        for _ in 0..3 {
            let v = memo
                .get_or_try_insert(&1, || {
                    made += 1;
                    Ok::<_, ()>("a".to_string())
                })
                .unwrap();
            assert_eq!(*v, "a");
        }
        assert_eq!(made, 1);
        assert_eq!(memo.get_or_try_insert(&2, || Err("no")), Err("no"));
        assert_eq!(memo.len(), 1);
        for k in 2..10 {
            memo.get_or_try_insert(&k, || Ok::<_, ()>(k.to_string()))
                .unwrap();
        }
        assert_eq!(memo.len(), 2);
        memo.remove_where(|k| *k == 9);
        assert_eq!(memo.len(), 1);
    }
}
