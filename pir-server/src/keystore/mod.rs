//! Registered client keys that outlive a process and are shared by replicas: the key store.
//!
//! The store keeps, per [`KeyId`], the public keys exactly as received (the compact wire form,
//! which is also what the cache holds), the query mac key, the scheme
//! parameters they are for, and an expiry. The key cache (`keycache.rs`) stays in front of it
//! with the parsed keys; the store is read on a cache miss and written on registration.
//!
//! ```text
//! RegisterKeys ─▶ store.insert (only if absent: the first registration's mac key stays)
//! RenewKeys    ─▶ store.renew ─▶ new expiry
//! Query miss   ─▶ store.get ─▶ parameters, KeyId::of(bytes) ─▶ parse off the runtime ─▶ cache
//! registration rate limits ─▶ store.take (shared counters; Redis only, else local governor)
//! ```
//!
//! One backend a file: `memory.rs` (this process only, bounded by bytes), `embedded.rs` (redb on
//! local disk, owner-only), `redis.rs` (Redis or Valkey: keys expire in Redis itself, and the
//! registration limits are counted there for every replica). A backend stores opaque records
//! ([`Record::encode`]); this file checks them and counts every operation for the metrics.

mod embedded;
mod memory;
mod redis;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pir_core::{KeyId, QueryMacKey, SchemeParams, query_auth::QUERY_MAC_BYTES};
use prometheus::{IntCounterVec, Opts, core::Collector};

use crate::options::{KeyStoreSpec, ServeOptions};

/// Why the key store could not do what it was asked: the store is down, or refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The backend failed (I/O, a connection, a timeout); the details are for the log.
    #[error("the {backend} key store is unavailable: {detail}")]
    Unavailable {
        /// `memory`, `embedded` or `redis`.
        backend: &'static str,
        /// What failed.
        detail: String,
    },
}

impl KeyStoreError {
    pub(crate) fn unavailable(backend: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            backend,
            detail: detail.to_string(),
        }
    }

    /// The backend that failed.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Unavailable { backend, .. } => backend,
        }
    }
}

/// A token bucket kept by the store for every replica (GCRA): one token every `interval`, at
/// most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedRate {
    pub(crate) interval: Duration,
    pub(crate) burst: u32,
}

/// What a shared counter said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The token was taken.
    Granted,
    /// None left; one is back after this long.
    Refused(Duration),
}

/// One backend: opaque records by key id, each with an expiry, and (Redis only) the shared
/// rate-limit counters. Times are unix milliseconds.
#[tonic::async_trait]
pub(crate) trait Backend: Send + Sync {
    /// `memory`, `embedded` or `redis` (the metrics' `backend` label).
    fn kind(&self) -> &'static str;
    /// Stores `record` until `ttl` from now, unless a live record of `id` is there already
    /// (then `None`: the first registration stays). Returns the expiry.
    async fn insert(
        &self,
        id: &KeyId,
        record: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<u64>, KeyStoreError>;
    /// The live record of `id` and its expiry.
    async fn get(&self, id: &KeyId) -> Result<Option<(Vec<u8>, u64)>, KeyStoreError>;
    /// The expiry of `id`'s live record, without reading it.
    async fn expiry(&self, id: &KeyId) -> Result<Option<u64>, KeyStoreError>;
    /// Extends `id`'s live record to `ttl` from now; `None` when there is none.
    async fn renew(&self, id: &KeyId, ttl: Duration) -> Result<Option<u64>, KeyStoreError>;
    /// Takes a token of the shared counter `name`; `None` when this backend keeps no shared
    /// counters (the server's own limiters count instead).
    async fn take(&self, name: &str, rate: SharedRate) -> Result<Option<Taken>, KeyStoreError> {
        let _ = (name, rate);
        Ok(None)
    }
    /// Whether the store answers (at start: an unreachable store is refused).
    async fn check(&self) -> Result<(), KeyStoreError> {
        Ok(())
    }
    /// Forgets every registration, for a store that is this process's alone (memory); others
    /// keep theirs.
    fn clear_memory(&self) {}
}

/// A stored registration: what a replica needs to serve the keys' owner.
#[derive(Clone)]
pub(crate) struct Record {
    pub(crate) scheme: SchemeParams,
    pub(crate) mac_key: QueryMacKey,
    pub(crate) public_keys: Vec<u8>,
}

/// The record format's version, its first byte.
const RECORD_V1: u8 = 1;
const HEADER: usize = 1 + SchemeParams::ENCODED_LEN + QUERY_MAC_BYTES;

impl Record {
    /// `version (1) || scheme parameters (fixed encoding) || mac key (32) || public keys`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.public_keys.len());
        out.push(RECORD_V1);
        out.extend_from_slice(&self.scheme.to_le_bytes());
        out.extend_from_slice(&self.mac_key.to_bytes());
        out.extend_from_slice(&self.public_keys);
        out
    }

    /// The record in `bytes`; `None` for another version or a shape that is not one (a record
    /// from a newer server, or a damaged one: treated as absent, so the client registers).
    pub(crate) fn decode(mut bytes: Vec<u8>) -> Option<Self> {
        if bytes.len() < HEADER || bytes[0] != RECORD_V1 {
            return None;
        }
        let scheme =
            <&[u8; SchemeParams::ENCODED_LEN]>::try_from(&bytes[1..1 + SchemeParams::ENCODED_LEN])
                .ok()
                .and_then(|b| SchemeParams::from_le_bytes(b).ok())?;
        let mac = <[u8; QUERY_MAC_BYTES]>::try_from(&bytes[1 + SchemeParams::ENCODED_LEN..HEADER])
            .ok()?;
        let public_keys = bytes.split_off(HEADER);
        Some(Self {
            scheme,
            mac_key: QueryMacKey::from_bytes(mac),
            public_keys,
        })
    }
}

pub(crate) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A TTL in milliseconds, at least 1 (Redis refuses 0).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The outcome of fetching keys the cache did not hold (`pir_key_cache_store_fetches_total`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fetch {
    /// Found in the store and loaded into the cache.
    Loaded,
    /// Not in the store (never registered, expired, or for other parameters).
    Absent,
    /// The store failed, or held a record that is not the keys it is filed under.
    Failed,
}

/// The server's key store: a backend, the registrations' TTL, and its metrics. Cheap to clone.
#[derive(Clone)]
pub struct KeyStore {
    backend: Arc<dyn Backend>,
    ttl: Duration,
    operations: IntCounterVec,
    errors: IntCounterVec,
    fetches: IntCounterVec,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("backend", &self.backend.kind())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl KeyStore {
    /// Opens the store `options.key_store` names, registrations lasting `options.key_ttl`; a
    /// Redis store is connected to lazily (call [`KeyStore::check`] to know it answers), and
    /// must be opened within a tokio runtime. The memory backend holds a quarter of the key
    /// cache's budget in wire-form keys: as many keys as the cache holds parsed (about four
    /// times larger).
    pub fn open(options: &ServeOptions) -> Result<Self, KeyStoreError> {
        let (ttl, memory_budget) = (options.key_ttl, options.key_cache_bytes / 4);
        let backend: Arc<dyn Backend> = match &options.key_store {
            KeyStoreSpec::Memory => Arc::new(memory::Memory::new(memory_budget)),
            KeyStoreSpec::File(path) => Arc::new(embedded::Embedded::open(path)?),
            KeyStoreSpec::Redis(url) => Arc::new(redis::Redis::open(url)?),
        };
        Self::with_backend(backend, ttl)
    }

    fn with_backend(backend: Arc<dyn Backend>, ttl: Duration) -> Result<Self, KeyStoreError> {
        let metric = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
                .map_err(|e| KeyStoreError::unavailable("metrics", e))
        };
        Ok(Self {
            backend,
            ttl,
            operations: metric(
                "pir_key_store_operations_total",
                "Key store operations, by backend and operation (insert, get, expiry, renew, \
                 take, check)",
                &["backend", "op"],
            )?,
            errors: metric(
                "pir_key_store_errors_total",
                "Key store operations that failed (store unavailable, timed out), by backend and \
                 operation",
                &["backend", "op"],
            )?,
            fetches: metric(
                "pir_key_cache_store_fetches_total",
                "Key cache misses looked up in the key store, by outcome: loaded (served from \
                 the store), absent, failed",
                &["outcome"],
            )?,
        })
    }

    /// The metrics to register with the server's registry.
    pub(crate) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.operations.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.fetches.clone()),
        ]
    }

    /// `memory`, `embedded` or `redis`.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// How long a registration lasts unless renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn counted<T>(&self, op: &str, result: Result<T, KeyStoreError>) -> Result<T, KeyStoreError> {
        let kind = self.backend.kind();
        self.operations.with_label_values(&[kind, op]).inc();
        if let Err(e) = &result {
            self.errors.with_label_values(&[kind, op]).inc();
            tracing::warn!(backend = kind, op, error = %e, "key store operation failed");
        }
        result
    }

    pub(crate) fn count_fetch(&self, outcome: Fetch) {
        let label = match outcome {
            Fetch::Loaded => "loaded",
            Fetch::Absent => "absent",
            Fetch::Failed => "failed",
        };
        self.fetches.with_label_values(&[label]).inc();
    }

    /// Forgets every registration of a memory store (nothing for others).
    pub(crate) fn clear_memory(&self) {
        self.backend.clear_memory();
    }

    /// Whether the store answers.
    pub async fn check(&self) -> Result<(), KeyStoreError> {
        let r = self.backend.check().await;
        self.counted("check", r)
    }

    /// Stores a registration unless one of `id` lives already; its expiry, or `None`.
    pub(crate) async fn insert(
        &self,
        id: &KeyId,
        record: &Record,
    ) -> Result<Option<SystemTime>, KeyStoreError> {
        let r = self.backend.insert(id, record.encode(), self.ttl).await;
        self.counted("insert", r).map(|t| t.map(from_ms))
    }

    /// The live registration of `id` and its expiry; a record that does not decode counts as
    /// absent.
    pub(crate) async fn get(
        &self,
        id: &KeyId,
    ) -> Result<Option<(Record, SystemTime)>, KeyStoreError> {
        let r = self.backend.get(id).await;
        Ok(self.counted("get", r)?.and_then(|(bytes, expiry)| {
            let record = Record::decode(bytes);
            if record.is_none() {
                tracing::warn!(key_id = %id, "a stored registration does not decode: ignored");
            }
            record.map(|r| (r, from_ms(expiry)))
        }))
    }

    /// The expiry of `id`'s live registration.
    pub(crate) async fn expiry(&self, id: &KeyId) -> Result<Option<SystemTime>, KeyStoreError> {
        let r = self.backend.expiry(id).await;
        self.counted("expiry", r).map(|t| t.map(from_ms))
    }

    /// Extends `id`'s registration by the TTL from now; `None` when it is not stored.
    pub(crate) async fn renew(&self, id: &KeyId) -> Result<Option<SystemTime>, KeyStoreError> {
        let r = self.backend.renew(id, self.ttl).await;
        self.counted("renew", r).map(|t| t.map(from_ms))
    }

    /// Takes a token of a shared counter; `None` when this store keeps none.
    pub(crate) async fn take(
        &self,
        name: &str,
        rate: SharedRate,
    ) -> Result<Option<Taken>, KeyStoreError> {
        let r = self.backend.take(name, rate).await;
        if matches!(r, Ok(None)) {
            return Ok(None);
        }
        self.counted("take", r)
    }
}

#[cfg(test)]
mod tests {
    use pir_core::ClientKeys;

    use super::*;

    pub(super) fn record() -> Record {
        let scheme = SchemeParams::danger_test_only_small();
        let keys = ClientKeys::generate(&scheme).unwrap();
        Record {
            scheme,
            mac_key: keys.query_mac_key(),
            public_keys: keys.public_bytes().to_vec(),
        }
    }

    #[test]
    fn a_record_decodes_to_itself_and_another_version_to_nothing() {
        let r = record();
        let bytes = r.encode();
        let back = Record::decode(bytes.clone()).unwrap();
        assert_eq!(back.scheme, r.scheme);
        assert_eq!(back.mac_key, r.mac_key);
        assert_eq!(back.public_keys, r.public_keys);
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(Record::decode(other).is_none());
        assert!(Record::decode(bytes[..HEADER - 1].to_vec()).is_none());
    }

    /// What every backend must do, for the tests of each.
    pub(super) async fn behaves(backend: Arc<dyn Backend>) {
        let store = KeyStore::with_backend(backend, Duration::from_secs(60)).unwrap();
        let (a, b) = (KeyId([1; 32]), KeyId([2; 32]));
        let r = record();
        assert!(store.get(&a).await.unwrap().is_none());
        assert!(store.renew(&a).await.unwrap().is_none());
        let first = store.insert(&a, &r).await.unwrap().unwrap();
        let ahead = first.duration_since(SystemTime::now()).unwrap();
        assert!(ahead > Duration::from_secs(55) && ahead <= Duration::from_secs(60));
        // The first registration stays.
        assert!(store.insert(&a, &r).await.unwrap().is_none());
        let (got, expiry) = store.get(&a).await.unwrap().unwrap();
        assert_eq!(got.public_keys, r.public_keys);
        assert_eq!(got.mac_key, r.mac_key);
        assert_eq!(to_ms(expiry) / 1000, to_ms(first) / 1000);
        assert_eq!(
            store.expiry(&a).await.unwrap().map(|t| to_ms(t) / 1000),
            Some(to_ms(first) / 1000)
        );
        assert!(store.get(&b).await.unwrap().is_none());
        // Short-lived: gone once expired, and then insertable again.
        let short =
            KeyStore::with_backend(store.backend.clone(), Duration::from_millis(100)).unwrap();
        short.insert(&b, &r).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(short.get(&b).await.unwrap().is_none());
        assert!(short.expiry(&b).await.unwrap().is_none());
        assert!(short.renew(&b).await.unwrap().is_none());
        assert!(short.insert(&b, &r).await.unwrap().is_some());
        // Renewing extends from now.
        let renewed = store.renew(&b).await.unwrap().unwrap();
        assert!(renewed.duration_since(SystemTime::now()).unwrap() > Duration::from_secs(55));
    }
}
