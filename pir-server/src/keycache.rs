//! Registered client keys, bounded by memory and evicted least-recently-used first.
//!
//! Deserialised Spiral keys are large (tens of MB on the server for vetted shapes), so the
//! cache counts bytes, not entries. An evicted client gets FAILED_PRECONDITION with reason
//! `unknown-key` and registers again by itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use pir_core::{EvalKeys, KeyId};

struct Entry {
    keys: Arc<EvalKeys>,
    cost: u64,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<KeyId, Entry>,
    used: u64,
    clock: u64,
}

/// A byte-bounded LRU map from key id to deserialised keys.
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

    pub(crate) fn get(&self, id: &KeyId) -> Option<Arc<EvalKeys>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.map.get_mut(id).map(|e| {
            e.last_used = now;
            e.keys.clone()
        })
    }

    /// Inserts keys, evicting the least recently used until they fit. False if they can never
    /// fit the budget.
    pub(crate) fn insert(&self, id: KeyId, keys: Arc<EvalKeys>, cost: u64) -> bool {
        if cost > self.budget {
            return false;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(old) = inner.map.remove(&id) {
            inner.used -= old.cost;
        }
        while inner.used + cost > self.budget {
            let Some(victim) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = inner.map.remove(&victim) {
                inner.used -= e.cost;
                tracing::info!(key_id = %victim, "evicted registered keys");
            }
        }
        inner.used += cost;
        inner.map.insert(
            id,
            Entry {
                keys,
                cost,
                last_used: now,
            },
        );
        true
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
