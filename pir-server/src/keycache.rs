//! Registered client keys, bounded by memory and evicted least-recently-used first, each with
//! the mac key its queries are authenticated with.
//!
//! Spiral keys are large (about 1.5 MB each for vetted shapes, held in their compact wire
//! form), so the cache counts bytes, not entries. An evicted client gets FAILED_PRECONDITION with reason
//! `unknown-key` and registers again by itself. Evictions can be rationed (the eviction rate in
//! `limits.rs`): a registration that needs room asks first how many entries it would evict.
//!
//! The cache sits in front of the key store (`keystore/`): an entry lasts until its
//! registration expires, and a miss ([`KeyCache::resolve`]) reads the store, checks the record
//! (the parameters served, `KeyId::of` its bytes), parses it off the async runtime and caches
//! it. Concurrent misses of one key wait for the first (a per-key lock), so it is parsed once.
//! A store that fails makes the key unknown here (the client registers again), never an error
//! of its own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use pir_core::{EvalKeys, KeyId, QueryMacKey, SchemeParams};

use crate::{
    error::ServerError,
    keystore::{Fetch, KeyStore},
};

/// One client's registration: its keys, the key its queries' MACs are made with, and when the
/// registration expires.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) keys: Arc<EvalKeys>,
    pub(crate) mac_key: QueryMacKey,
    pub(crate) expires_at: SystemTime,
}

struct Entry {
    registered: Registered,
    cost: u64,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<KeyId, Entry>,
    used: u64,
    clock: u64,
}

impl Inner {
    /// The least recently used entries to evict so that `cost` more bytes fit, oldest first
    /// (`id`'s own entry, which an insert replaces, is not among them and its bytes count as
    /// free).
    fn victims(&self, id: &KeyId, cost: u64, budget: u64) -> Vec<KeyId> {
        let own = self.map.get(id).map_or(0, |e| e.cost);
        let mut used = self.used - own;
        if used + cost <= budget {
            return Vec::new();
        }
        let mut by_age: Vec<(&KeyId, &Entry)> = self.map.iter().filter(|(k, _)| *k != id).collect();
        by_age.sort_by_key(|(_, e)| e.last_used);
        let mut victims = Vec::new();
        for (k, e) in by_age {
            if used + cost <= budget {
                break;
            }
            used -= e.cost;
            victims.push(*k);
        }
        victims
    }
}

/// Which registrations [`KeyCache::resolve`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// Only keys for the parameters served (a query).
    Params,
    /// Keys for any parameters, if cached (an evaluation).
    AnyParams,
}

/// A byte-bounded LRU map from key id to registrations.
pub(crate) struct KeyCache {
    budget: u64,
    inner: Mutex<Inner>,
    /// A lock per key being fetched from the store, so that concurrent misses parse it once.
    fetching: Mutex<HashMap<KeyId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Server-side bytes of one cached client whose keys' wire form is `wire_len` bytes: the keys
/// stay in their compact wire form (`EvalKeys::resident_bytes_for`; a batch expands them for
/// itself only), plus the entry's own bookkeeping.
pub fn estimated_cost(wire_len: usize) -> u64 {
    (EvalKeys::resident_bytes_for(wire_len) + ENTRY_OVERHEAD) as u64
}

/// Bytes an entry takes beside its keys: the `Registered` value (mac key, expiry), the
/// `Arc`'s counts, the map's and the LRU order's nodes, rounded up.
const ENTRY_OVERHEAD: usize = 512;

impl KeyCache {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
            fetching: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the map consistent (no multi-step updates).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, id: &KeyId) -> Option<Registered> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.map.get_mut(id).map(|e| {
            e.last_used = now;
            e.registered.clone()
        })
    }

    /// How many entries inserting `cost` bytes under `id` would evict now (registrations ask
    /// before the work of parsing keys, so that a refusal wastes none).
    pub(crate) fn evictions_needed(&self, id: &KeyId, cost: u64) -> usize {
        self.lock().victims(id, cost, self.budget).len()
    }

    /// Inserts a registration, evicting the least recently used until it fits. False if it can
    /// never fit the budget.
    pub(crate) fn insert(&self, id: KeyId, registered: Registered, cost: u64) -> bool {
        if cost > self.budget {
            return false;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        for victim in inner.victims(&id, cost, self.budget) {
            if let Some(e) = inner.map.remove(&victim) {
                inner.used -= e.cost;
                tracing::info!(key_id = %victim, "evicted registered keys");
            }
        }
        if let Some(old) = inner.map.remove(&id) {
            inner.used -= old.cost;
        }
        inner.used += cost;
        inner.map.insert(
            id,
            Entry {
                registered,
                cost,
                last_used: now,
            },
        );
        true
    }

    /// Records that `id`'s registration now lasts until `expires_at`.
    pub(crate) fn set_expiry(&self, id: &KeyId, expires_at: SystemTime) {
        if let Some(e) = self.lock().map.get_mut(id) {
            e.registered.expires_at = expires_at;
        }
    }

    /// Forgets `id` (its registration expired).
    pub(crate) fn remove(&self, id: &KeyId) {
        let mut inner = self.lock();
        if let Some(e) = inner.map.remove(id) {
            inner.used -= e.cost;
        }
    }

    /// The registration of `id` for `scheme` while it lasts: from the cache, else from `store`
    /// (parsed off the runtime, after `make_room` agreed to the evictions it needs). `None`
    /// when it is not registered, expired, for other parameters, or the store cannot say.
    /// `Wanted::AnyParams` takes a cached registration for any parameters (an evaluation does
    /// not depend on them); the store's must be for `scheme`, which it is parsed with.
    pub(crate) async fn resolve(
        &self,
        store: &KeyStore,
        id: &KeyId,
        (scheme, wanted): (SchemeParams, Wanted),
        make_room: impl Fn(usize) -> Result<(), ServerError>,
    ) -> Result<Option<Registered>, ServerError> {
        let cached_scheme = match wanted {
            Wanted::Params => Some(scheme),
            Wanted::AnyParams => None,
        };
        if let Some(found) = self.cached(store, id, cached_scheme).await {
            return Ok(found);
        }
        let lock = self.fetching_lock().entry(*id).or_default().clone();
        let result = {
            let _fetching = lock.lock().await;
            // Another miss may have fetched it while this one waited.
            match self.cached(store, id, cached_scheme).await {
                Some(found) => Ok(found),
                None => self.fetch(store, id, scheme, make_room).await,
            }
        };
        let mut fetching = self.fetching_lock();
        // The map's and this one's: nobody else waits on it.
        if Arc::strong_count(&lock) == 2 {
            fetching.remove(id);
        }
        result
    }

    fn fetching_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<KeyId, Arc<tokio::sync::Mutex<()>>>> {
        self.fetching.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the cache says of `id`: `Some(Some(..))` a live registration, `Some(None)` one that
    /// expired everywhere, `None` nothing cached. An entry past its expiry asks the store
    /// whether another replica renewed it.
    async fn cached(
        &self,
        store: &KeyStore,
        id: &KeyId,
        scheme: Option<SchemeParams>,
    ) -> Option<Option<Registered>> {
        let found = self
            .get(id)
            .filter(|r| scheme.is_none_or(|s| *r.keys.params() == s))?;
        if found.expires_at > SystemTime::now() {
            return Some(Some(found));
        }
        match store.expiry(id).await {
            Ok(Some(until)) if until > SystemTime::now() => {
                self.set_expiry(id, until);
                Some(Some(Registered {
                    expires_at: until,
                    ..found
                }))
            }
            Ok(_) => {
                self.remove(id);
                Some(None)
            }
            // Expired here and the store cannot say otherwise: unknown, the client registers.
            Err(_) => Some(None),
        }
    }

    async fn fetch(
        &self,
        store: &KeyStore,
        id: &KeyId,
        scheme: SchemeParams,
        make_room: impl Fn(usize) -> Result<(), ServerError>,
    ) -> Result<Option<Registered>, ServerError> {
        let (record, expires_at) = match store.get(id).await {
            Ok(Some(found)) if found.0.scheme == scheme => found,
            Ok(_) => {
                store.count_fetch(Fetch::Absent);
                return Ok(None);
            }
            Err(_) => {
                store.count_fetch(Fetch::Failed);
                return Ok(None);
            }
        };
        let cost = estimated_cost(record.public_keys.len());
        make_room(self.evictions_needed(id, cost))?;
        let (want, bytes) = (*id, record.public_keys);
        let parsed = tokio::task::spawn_blocking(move || {
            // The store is trusted no more than the wire: the bytes must be the keys they are
            // filed under.
            (KeyId::of(&bytes) == want).then(|| EvalKeys::parse(&scheme, &bytes))
        })
        .await;
        let keys = match parsed {
            Ok(Some(Ok(keys))) => keys,
            outcome => {
                tracing::warn!(
                    key_id = %id,
                    mismatched = matches!(outcome, Ok(None)),
                    "a stored registration is not the keys it is filed under, or does not parse"
                );
                store.count_fetch(Fetch::Failed);
                return Ok(None);
            }
        };
        let registered = Registered {
            keys: Arc::new(keys),
            mac_key: record.mac_key,
            expires_at,
        };
        if !self.insert(*id, registered.clone(), cost) {
            return Err(ServerError::KeyCacheTooSmall {
                cost,
                budget: self.budget,
            });
        }
        store.count_fetch(Fetch::Loaded);
        tracing::debug!(key_id = %id, "registered keys loaded from the key store");
        Ok(Some(registered))
    }

    /// Whether keys `id` are registered, without counting as a use.
    pub(crate) fn contains(&self, id: &KeyId) -> bool {
        self.lock().map.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub(crate) fn used_bytes(&self) -> u64 {
        self.lock().used
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use pir_core::{ClientKeys, SchemeParams};

    use super::*;

    fn registered() -> Registered {
        let scheme = SchemeParams::danger_test_only_small();
        let client = ClientKeys::generate(&scheme).unwrap();
        Registered {
            keys: Arc::new(EvalKeys::parse(&scheme, client.public_bytes()).unwrap()),
            mac_key: client.query_mac_key(),
            expires_at: SystemTime::now() + std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn the_least_recently_used_go_first_and_are_counted_beforehand() {
        let r = registered();
        let cache = KeyCache::new(30);
        for i in 0..3 {
            assert!(cache.insert(KeyId([i; 32]), r.clone(), 10));
        }
        // 0 is used, so 1 is the oldest.
        assert!(cache.get(&KeyId([0; 32])).is_some());
        assert_eq!(cache.evictions_needed(&KeyId([9; 32]), 10), 1);
        assert_eq!(cache.evictions_needed(&KeyId([9; 32]), 20), 2);
        // Replacing an entry needs no room beyond its own.
        assert_eq!(cache.evictions_needed(&KeyId([2; 32]), 10), 0);
        assert!(cache.insert(KeyId([9; 32]), r.clone(), 10));
        assert!(cache.get(&KeyId([1; 32])).is_none());
        assert!(cache.get(&KeyId([0; 32])).is_some());
        assert_eq!((cache.len(), cache.used_bytes()), (3, 30));
        assert!(!cache.insert(KeyId([8; 32]), r, 31));
    }
}
