//! The memory backend: registrations of this process only (tests, ephemeral servers), with
//! their expiry, bounded by bytes: when full, the registrations closest to expiry go first (the
//! key cache in front holds the ones in use).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use pir_core::KeyId;

use super::{Backend, KeyStoreError, now_ms, ttl_ms};

struct Stored {
    record: Vec<u8>,
    expires: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<KeyId, Stored>,
    bytes: u64,
}

impl Inner {
    fn remove(&mut self, id: &KeyId) {
        if let Some(s) = self.map.remove(id) {
            self.bytes -= s.record.len() as u64;
        }
    }

    fn live(&self, id: &KeyId, now: u64) -> Option<&Stored> {
        self.map.get(id).filter(|s| s.expires > now)
    }
}

pub(super) struct Memory {
    budget: u64,
    inner: Mutex<Inner>,
}

impl Memory {
    /// Holds at most `budget` bytes of records.
    pub(super) fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update below leaves the map and its byte count consistent before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[tonic::async_trait]
impl Backend for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn insert(
        &self,
        id: &KeyId,
        record: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<u64>, KeyStoreError> {
        let now = now_ms();
        let mut inner = self.lock();
        if inner.live(id, now).is_some() {
            return Ok(None);
        }
        inner.remove(id);
        let expired: Vec<KeyId> = inner
            .map
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            inner.remove(&k);
        }
        let len = record.len() as u64;
        while inner.bytes + len > self.budget {
            let Some(soonest) = inner
                .map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            else {
                break;
            };
            inner.remove(&soonest);
        }
        let expires = now.saturating_add(ttl_ms(ttl));
        inner.bytes += len;
        inner.map.insert(*id, Stored { record, expires });
        Ok(Some(expires))
    }

    fn clear_memory(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.bytes = 0;
    }

    async fn get(&self, id: &KeyId) -> Result<Option<(Vec<u8>, u64)>, KeyStoreError> {
        Ok(self
            .lock()
            .live(id, now_ms())
            .map(|s| (s.record.clone(), s.expires)))
    }

    async fn expiry(&self, id: &KeyId) -> Result<Option<u64>, KeyStoreError> {
        Ok(self.lock().live(id, now_ms()).map(|s| s.expires))
    }

    async fn renew(&self, id: &KeyId, ttl: Duration) -> Result<Option<u64>, KeyStoreError> {
        let now = now_ms();
        let mut inner = self.lock();
        Ok(inner.map.get_mut(id).filter(|s| s.expires > now).map(|s| {
            s.expires = now.saturating_add(ttl_ms(ttl));
            s.expires
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_backend_keeps_registrations_until_they_expire() {
        super::super::tests::behaves(Arc::new(Memory::new(1 << 30))).await;
    }

    #[tokio::test]
    async fn when_full_the_registration_closest_to_expiry_goes() {
        let m = Memory::new(10);
        let (a, b, c) = (KeyId([1; 32]), KeyId([2; 32]), KeyId([3; 32]));
        m.insert(&a, vec![0; 4], Duration::from_secs(10))
            .await
            .unwrap();
        m.insert(&b, vec![0; 4], Duration::from_secs(20))
            .await
            .unwrap();
        m.insert(&c, vec![0; 4], Duration::from_secs(30))
            .await
            .unwrap();
        assert!(m.get(&a).await.unwrap().is_none());
        assert!(m.get(&b).await.unwrap().is_some());
        assert!(m.get(&c).await.unwrap().is_some());
        assert_eq!(m.lock().bytes, 8);
    }
}
