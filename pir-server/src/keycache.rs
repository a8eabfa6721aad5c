//! Registered client keys, bounded by memory and evicted least-recently-used first, each with
//! the mac key its queries are authenticated with.
//!
//! Deserialised Spiral keys are large (tens of MB on the server for vetted shapes), so the
//! cache counts bytes, not entries. An evicted client gets FAILED_PRECONDITION with reason
//! `unknown-key` and registers again by itself. Evictions can be rationed (the eviction rate in
//! `limits.rs`): a registration that needs room asks first how many entries it would evict.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use pir_core::{EvalKeys, KeyId, QueryMacKey};

/// One client's registration: its keys, and the key its queries' MACs are made with.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) keys: Arc<EvalKeys>,
    pub(crate) mac_key: QueryMacKey,
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

/// A byte-bounded LRU map from key id to registrations.
pub(crate) struct KeyCache {
    budget: u64,
    inner: Mutex<Inner>,
}

/// Server-side bytes of deserialised keys whose wire form is `wire_len` bytes: the NTT form
/// doubles each polynomial (two CRT residues) and restores the row the wire form derives from
/// a seed, so about four times the wire size.
pub(crate) fn estimated_cost(wire_len: usize) -> u64 {
    wire_len as u64 * 4
}

impl KeyCache {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
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
