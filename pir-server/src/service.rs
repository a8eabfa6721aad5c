//! The `pir.v1.Discovery` gRPC service.
//!
//! Answering is CPU work over the whole database: a request that passes its checks is handed to
//! the answering thread (see `answerer.rs`), which answers queued requests together in one pass
//! over the database on rayon's pool, never on the async runtime, so the runtime keeps accepting
//! connections and answering health checks while queries compute. A bounded number of queries
//! may be queued or answered; past that the server says RESOURCE_EXHAUSTED at once.
//!
//! ```text
//! Query: epoch ─▶ shape (count, key id, mac length) ─▶ every query's bytes (length, words below
//!        the modulus) ─▶ registered key ─▶ MAC (constant time) ─▶ slots ─▶ peer network's and
//!        key's tokens ─▶ queue
//! RegisterKeys: registration worker (semaphore) ─▶ off the runtime: sizes, mac key, id hash ─▶
//!        already registered (cache, else key store)? same mac key: renew ─▶ peer network's,
//!        then the server's registration tokens (shared with Redis) ─▶ eviction tokens (if the
//!        cache must make room) ─▶ off the runtime: parse ─▶ key store (write-through) ─▶ cache
//! RenewKeys: shape ─▶ registered key (cache, else key store) ─▶ MAC ─▶ key store renews
//! Evaluate: holds the OPRF key? ─▶ shape (count, key id, mac, element lengths) ─▶ registered
//!        key ─▶ MAC ─▶ peer network's, key's, then the server's evaluation tokens ─▶ off the
//!        runtime: evaluate and prove (evaluator.rs)
//! ```
//!
//! Each check is cheaper than the next and nothing is charged before the checks that can refuse
//! without cost: a malformed request never takes a slot, a request refused as overloaded spends
//! no token, and a request without its owner's MAC neither.

use std::{
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use pir_core::{EvalKeys, KeyId, SchemeParams, Snapshot, oprf::OprfKey};
use pir_proto::{
    EvaluateIn, QueryIn, RegisterKeysIn, RenewKeysIn,
    v1::{
        self, EvaluateRequest, EvaluateResponse, GetConfigRequest, GetConfigResponse, QueryRequest,
        QueryResponse, RegisterKeysRequest, RegisterKeysResponse, RenewKeysRequest,
        RenewKeysResponse,
        discovery_server::{Discovery, DiscoveryServer},
    },
};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

#[cfg(feature = "test-hooks")]
use crate::options::TestHooks;
use crate::{
    answerer::Answerer,
    directory::Directory,
    error::{QueryAuthError, ServerError},
    evaluator::Evaluator,
    keycache::{KeyCache, Registered, Wanted, estimated_cost},
    keystore::{KeyStore, Record},
    limits::{self, Limiters, Quotas},
    metrics::Metrics,
    options::{RateLimit, ServeOptions},
    peer::PeerPolicy,
};

/// The limiters `opts` ask for.
fn limiters(opts: &ServeOptions) -> Limiters {
    let quota = |rate: Option<RateLimit>| rate.and_then(|r| limits::quota(r.burst, r.per_hour));
    Limiters::new(Quotas {
        per_key: quota(opts.per_key_rate),
        per_peer: quota(opts.per_peer_rate),
        registrations: quota(opts.per_peer_registrations),
        global_registrations: opts
            .global_registrations_per_second
            .and_then(limits::per_second),
        evictions: opts.key_evictions_per_minute.and_then(limits::per_minute),
        shared_registrations: opts.per_peer_registrations.and_then(limits::shared_quota),
        shared_global_registrations: opts
            .global_registrations_per_second
            .and_then(limits::shared_per_second),
    })
}

/// What is served: the shards (one, unsharded) with their configurations, swapped as one.
struct Served {
    shards: std::collections::BTreeMap<u32, ServedShard>,
    /// GetConfig without a shard: the first shard served (or the described one).
    default_config: GetConfigResponse,
    /// The manifest's epoch, or the one snapshot's.
    epoch: u64,
    scheme: pir_core::Scheme,
    // The transport sizes its per-method body limits from these (transport, issue 15).
    sizes: pir_core::MessageSizes,
}

struct ServedShard {
    snapshot: Arc<Snapshot>,
    config: GetConfigResponse,
}

impl Served {
    fn new(
        directory: Directory,
        opts: &ServeOptions,
        evaluator: Option<&Evaluator>,
    ) -> Result<Self, ServerError> {
        let limits = v1::Limits {
            max_queries_per_request: opts.max_queries_per_request,
            max_message_bytes: opts.max_message_bytes as u64,
        };
        let served_list: Vec<u32> = directory.shards.iter().map(|(i, _)| *i).collect();
        let in_directory = |config: GetConfigResponse| match &directory.manifest {
            Some(m) => config.in_directory(m.bytes.clone(), served_list.clone()),
            None => config,
        };
        // Evaluations under one key and entries sealed under another would find nothing.
        let check_key = |h: &pir_core::SnapshotHeader| match evaluator {
            Some(evaluator) if evaluator.public() != h.layout.oprf_key => {
                Err(ServerError::OprfKeyMismatch {
                    snapshot: h.layout.oprf_key.to_string(),
                    served: evaluator.public().to_string(),
                })
            }
            _ => Ok(()),
        };
        let mut shards = std::collections::BTreeMap::new();
        for (index, snapshot) in &directory.shards {
            check_key(snapshot.header())?;
            // One shard of many served alone would answer "not found" for the other shards'
            // CPIs: it is served with its manifest, which clients route by.
            let position = snapshot.header().layout.shard;
            if directory.manifest.is_none() && position.is_sharded() {
                return Err(ServerError::ShardWithoutManifest {
                    index: position.index,
                    count: position.count,
                });
            }
            let config = in_directory(GetConfigResponse::for_snapshot(snapshot, limits)?);
            shards.insert(
                *index,
                ServedShard {
                    snapshot: snapshot.clone(),
                    config,
                },
            );
        }
        let (default_config, header) = match (shards.values().next(), &directory.described) {
            (Some(first), _) => (first.config.clone(), first.snapshot.header().clone()),
            (None, Some((_, header))) => {
                check_key(header)?;
                (
                    in_directory(GetConfigResponse::for_header(header, limits)?),
                    header.clone(),
                )
            }
            (None, None) => {
                return Err(ServerError::Internal(
                    "a directory with nothing to serve".into(),
                ));
            }
        };
        let sizes = header.scheme.message_sizes()?;
        Ok(Self {
            shards,
            default_config,
            epoch: directory.epoch(),
            scheme: header.scheme,
            sizes,
        })
    }

    /// The shard a request names, if served here.
    fn shard(&self, index: u32) -> Result<&ServedShard, ServerError> {
        self.shards
            .get(&index)
            .ok_or_else(|| ServerError::ShardNotServed {
                shard: index,
                served: self.shards.keys().copied().collect(),
            })
    }

    /// The snapshots served, to know when a replaced set is freed.
    fn retired(&self) -> Retired {
        Retired(
            self.shards
                .values()
                .map(|s| Arc::downgrade(&s.snapshot))
                .collect(),
        )
    }
}

/// The snapshots a reload replaced: freed once the requests still on them finish.
#[derive(Debug, Default)]
pub(crate) struct Retired(Vec<std::sync::Weak<Snapshot>>);

impl Retired {
    /// True while a request still holds one of them.
    pub(crate) fn in_use(&self) -> bool {
        self.0.iter().any(|w| w.strong_count() > 0)
    }
}

struct State {
    served: ArcSwap<Served>,
    keys: KeyCache,
    /// Where registrations outlive the cache (and this process, and are shared, by backend).
    store: KeyStore,
    opts: ServeOptions,
    answerer: Answerer,
    limiters: Limiters,
    peers: PeerPolicy,
    /// Registrations hashed or parsed at once (`registration_workers`).
    registration_workers: Arc<Semaphore>,
    /// The DP's OPRF key and its limits, when this server answers evaluations.
    evaluator: Option<Evaluator>,
    metrics: Metrics,
    requests: AtomicU64,
}

/// The service; cheap to clone (shared state).
#[derive(Clone)]
pub struct DiscoveryService {
    state: Arc<State>,
}

impl DiscoveryService {
    /// A service answering PIR queries over `snapshot`, and OPRF evaluations when given the
    /// DP's OPRF key (which must be the one `snapshot` is keyed by). Without the key it is a PIR
    /// host only: `Evaluate` is UNIMPLEMENTED.
    ///
    /// Registrations are kept in the key store `opts.key_store` names, opened here (a Redis
    /// store connects on first use: call within a tokio runtime). A process that opened its
    /// store already (to refuse an unreachable one at start) gives it to
    /// [`DiscoveryService::with_key_store`].
    pub fn new(
        served: impl Into<Directory>,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
    ) -> Result<Self, ServerError> {
        let store = open_store(&opts)?;
        Self::with_answerer(served.into(), opts, oprf_key, store, Answerer::start)
    }

    /// [`DiscoveryService::new`] keeping registrations in `store` (its TTL is the store's).
    pub fn with_key_store(
        served: impl Into<Directory>,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
        store: KeyStore,
    ) -> Result<Self, ServerError> {
        Self::with_answerer(served.into(), opts, oprf_key, store, Answerer::start)
    }

    /// [`DiscoveryService::new`], with faults injected as `hooks` say (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    pub fn with_test_hooks(
        served: impl Into<Directory>,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
        hooks: TestHooks,
    ) -> Result<Self, ServerError> {
        let store = open_store(&opts)?;
        Self::with_answerer(served.into(), opts, oprf_key, store, |opts, metrics| {
            Answerer::start_with_hooks(opts, metrics, &hooks)
        })
    }

    fn with_answerer(
        directory: Directory,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
        store: KeyStore,
        start: impl FnOnce(&ServeOptions, &Metrics) -> Result<Answerer, ServerError>,
    ) -> Result<Self, ServerError> {
        let evaluator = oprf_key.map(|k| Evaluator::new(k, &opts));
        let served = Served::new(directory, &opts, evaluator.as_ref())?;
        let metrics = Metrics::new().map_err(|e| ServerError::Internal(format!("metrics: {e}")))?;
        for collector in store.collectors() {
            metrics
                .register(collector)
                .map_err(|e| ServerError::Internal(format!("metrics: {e}")))?;
        }
        metrics.epoch.set(served.epoch as i64);
        let answerer = start(&opts, &metrics)?;
        Ok(Self {
            state: Arc::new(State {
                served: ArcSwap::from_pointee(served),
                keys: KeyCache::new(opts.key_cache_bytes),
                store,
                answerer,
                limiters: limiters(&opts),
                peers: PeerPolicy::new(
                    opts.trusted_proxies.clone(),
                    opts.peer_prefix_v4,
                    opts.peer_prefix_v6,
                ),
                registration_workers: Arc::new(Semaphore::new(opts.registration_workers.max(1))),
                evaluator,
                metrics,
                requests: AtomicU64::new(0),
                opts,
            }),
        })
    }

    /// Replaces the served snapshot atomically. Requests in flight finish on the one they
    /// started with; clients on the old epoch get FAILED_PRECONDITION and refresh.
    pub fn install(&self, served: impl Into<Directory>) -> Result<(), ServerError> {
        self.install_retiring(served.into()).map(drop)
    }

    /// [`DiscoveryService::install`], returning a weak handle on the snapshot replaced: it is
    /// freed once the requests in flight on it finish (the reloader waits for that before it
    /// loads another, so that at most two are ever resident).
    pub(crate) fn install_retiring(&self, directory: Directory) -> Result<Retired, ServerError> {
        let served = Served::new(directory, &self.state.opts, self.state.evaluator.as_ref())?;
        let epoch = served.epoch;
        let shards = served.shards.len();
        let retired = self.state.served.swap(Arc::new(served));
        self.state.metrics.epoch.set(epoch as i64);
        tracing::info!(epoch, shards, "snapshot installed");
        Ok(retired.retired())
    }

    /// The epoch being served (the manifest's, for shards of a sharded directory).
    pub fn epoch(&self) -> u64 {
        self.state.served.load().epoch
    }

    /// The shards this process answers queries for (`[0]` for one unsharded snapshot).
    pub fn served_shards(&self) -> Vec<u32> {
        self.state.served.load().shards.keys().copied().collect()
    }

    /// Whether the answering thread is running (false only after a bug killed it: every Query
    /// then fails with INTERNAL, and the health service reports NOT_SERVING).
    pub fn answering(&self) -> bool {
        self.state.answerer.is_alive()
    }

    /// Registered key sets in the cache.
    pub fn registered_keys(&self) -> usize {
        self.state.keys.len()
    }

    /// Whether keys `id` are registered (asking does not count as using them).
    pub fn has_keys(&self, id: &pir_core::KeyId) -> bool {
        self.state.keys.contains(id)
    }

    /// Estimated bytes of registered keys.
    pub fn key_cache_bytes(&self) -> u64 {
        self.state.keys.used_bytes()
    }

    /// Forgets every registered key this process holds: the cache, and a memory key store
    /// (clients heal by registering again). A persistent or shared store keeps its
    /// registrations: the next request loads them again.
    pub fn evict_all_keys(&self) {
        self.state.keys.clear();
        self.state.store.clear_memory();
    }

    /// The key store registrations are kept in.
    pub fn key_store(&self) -> &KeyStore {
        &self.state.store
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let m = &self.state.metrics;
        m.key_cache_entries.set(self.state.keys.len() as i64);
        m.key_cache_bytes.set(self.state.keys.used_bytes() as i64);
        m.render()
    }

    /// The limits this service was started with.
    pub(crate) fn options(&self) -> &ServeOptions {
        &self.state.opts
    }

    /// The message sizes of the snapshot being served (the transport's body limits follow them
    /// across reloads).
    pub(crate) fn message_sizes(&self) -> pir_core::MessageSizes {
        self.state.served.load().sizes
    }

    /// Records how long loading the snapshot being installed took.
    pub(crate) fn record_load(&self, took: Duration) {
        self.state.metrics.load_seconds.set(took.as_secs_f64());
    }

    /// Counts a reload that was refused.
    pub(crate) fn reload_failed(&self) {
        self.state.metrics.reload_failures.inc();
    }

    /// Counts a reload refused because its epoch did not rise (a failure too).
    pub(crate) fn reload_epoch_refused(&self) {
        self.state.metrics.reload_epoch_refusals.inc();
    }

    /// Counts a request refused by `limit` outside the handlers (tonic's message size check).
    pub(crate) fn refused_by(&self, limit: &str) {
        self.state.metrics.refused_by(limit);
    }

    /// Drops rate-limiter state of idle keys and peers now and then, so it stays bounded.
    fn housekeeping(&self) {
        if self
            .state
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(4096)
        {
            self.state.limiters.retain_recent();
            if let Some(evaluator) = &self.state.evaluator {
                evaluator.retain_recent();
            }
        }
    }

    /// The tonic service with this server's message limits.
    pub fn into_server(self) -> DiscoveryServer<Self> {
        let max = self.state.opts.max_message_bytes;
        DiscoveryServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    async fn register(
        &self,
        peer: Option<IpAddr>,
        req: RegisterKeysRequest,
    ) -> Result<RegisterKeysResponse, ServerError> {
        self.housekeeping();
        let served = self.state.served.load_full();
        let scheme =
            spiral_of(&served.scheme).ok_or(ServerError::NoKeysTaken(served.scheme.engine()))?;
        // The keys' current form, or the legacy one a stored key file may still hold.
        let expected = [served.sizes.public_keys, served.sizes.legacy_public_keys];
        // Hashing and parsing megabytes of keys is CPU work: a few at a time, off the runtime.
        // A registration waits for a worker at most as long as any request may take.
        let timeout = self.state.opts.request_timeout;
        let _worker = tokio::time::timeout(
            timeout,
            self.state.registration_workers.clone().acquire_owned(),
        )
        .await
        .map_err(|_| ServerError::DeadlineExceeded(timeout))?
        .map_err(|_| ServerError::Internal("the registration workers are gone".into()))?;
        let req = off_runtime(move || RegisterKeysIn::parse(req, &expected))
            .await?
            .map_err(ServerError::from)?;
        let id = req.key_id();
        if let Some(expires_at) = self.registered_already(&req, scheme).await? {
            return Ok(RegisterKeysResponse::registered(id, expires_at));
        }
        self.state
            .limiters
            .registration_tokens(&self.state.store, peer)
            .await?;
        let cost = estimated_cost(req.public_keys().len());
        if cost > self.state.opts.key_cache_bytes {
            return Err(ServerError::KeyCacheTooSmall {
                cost,
                budget: self.state.opts.key_cache_bytes,
            });
        }
        // Charged before parsing, so that a refusal wastes no work. Concurrent registrations
        // (at most `registration_workers`) may each evict one entry more than they asked for.
        self.state
            .limiters
            .evictions(self.state.keys.evictions_needed(&id, cost))?;
        let record = Record {
            scheme,
            mac_key: req.query_mac_key().clone(),
            public_keys: req.into_public_keys(),
        };
        let bytes = record.public_keys.clone();
        let keys = off_runtime(move || EvalKeys::parse(&scheme, &bytes)).await??;
        // Write-through, only once the keys parse: the store never holds what is not keys.
        let expires_at = match self
            .state
            .store
            .insert(&id, &record)
            .await
            .map_err(ServerError::KeyStore)?
        {
            Some(expires_at) => expires_at,
            // Registered meanwhile (another replica, a concurrent request): the first stays.
            None => self.renew_stored(&id, &record.mac_key, scheme).await?,
        };
        let registered = Registered {
            keys: Arc::new(keys),
            mac_key: record.mac_key,
            expires_at,
        };
        if !self.state.keys.insert(id, registered, cost) {
            return Err(ServerError::KeyCacheTooSmall {
                cost,
                budget: self.state.opts.key_cache_bytes,
            });
        }
        tracing::info!(key_id = %id, "keys registered");
        Ok(RegisterKeysResponse::registered(id, expires_at))
    }

    /// The new expiry of keys registered already, here or in the key store (a registration
    /// again renews them, free of rate-limit tokens); `None` when they are not.
    ///
    /// The mac key is the first registration's: nobody else can take over the budget of keys
    /// they saw, by registering them again with a mac key of their own.
    async fn registered_already(
        &self,
        req: &RegisterKeysIn,
        scheme: SchemeParams,
    ) -> Result<Option<SystemTime>, ServerError> {
        let id = req.key_id();
        let Some(existing) = self.registered(&id, scheme).await? else {
            return Ok(None);
        };
        if existing.mac_key != *req.query_mac_key() {
            return Err(ServerError::QueryAuth(QueryAuthError::OtherMacKey(id)));
        }
        let store = &self.state.store;
        let expires_at = match store.renew(&id).await.map_err(ServerError::KeyStore)? {
            Some(t) => t,
            // Cached here but gone from the store (Redis restarted): the keys are at hand.
            None => {
                let record = Record {
                    scheme,
                    mac_key: existing.mac_key.clone(),
                    public_keys: req.public_keys().to_vec(),
                };
                match store
                    .insert(&id, &record)
                    .await
                    .map_err(ServerError::KeyStore)?
                {
                    Some(t) => t,
                    None => self.renew_stored(&id, &existing.mac_key, scheme).await?,
                }
            }
        };
        self.state.keys.set_expiry(&id, expires_at);
        Ok(Some(expires_at))
    }

    /// Renews keys another registration stored first, if theirs is the same mac key.
    async fn renew_stored(
        &self,
        id: &KeyId,
        mac_key: &pir_core::QueryMacKey,
        scheme: SchemeParams,
    ) -> Result<SystemTime, ServerError> {
        let store = &self.state.store;
        match store.get(id).await.map_err(ServerError::KeyStore)? {
            Some((stored, _)) if stored.scheme == scheme && stored.mac_key != *mac_key => {
                Err(ServerError::QueryAuth(QueryAuthError::OtherMacKey(*id)))
            }
            _ => store
                .renew(id)
                .await
                .map_err(ServerError::KeyStore)?
                .ok_or_else(|| {
                    ServerError::KeyStore(crate::keystore::KeyStoreError::unavailable(
                        store.kind(),
                        "a registration vanished while being stored",
                    ))
                }),
        }
    }

    /// The registration of `id` for `scheme` while it lasts: from the cache, else loaded from
    /// the key store (the evictions that takes are rationed as a registration's are).
    async fn registered(
        &self,
        id: &KeyId,
        scheme: SchemeParams,
    ) -> Result<Option<Registered>, ServerError> {
        self.resolve(id, scheme, Wanted::Params).await
    }

    async fn resolve(
        &self,
        id: &KeyId,
        scheme: SchemeParams,
        wanted: Wanted,
    ) -> Result<Option<Registered>, ServerError> {
        self.state
            .keys
            .resolve(&self.state.store, id, (scheme, wanted), |n| {
                self.state.limiters.evictions(n)
            })
            .await
    }

    async fn renew(&self, req: RenewKeysRequest) -> Result<RenewKeysResponse, ServerError> {
        self.housekeeping();
        let req = RenewKeysIn::try_from(req)?;
        let id = req.key_id();
        let served = self.state.served.load();
        let scheme =
            spiral_of(&served.scheme).ok_or(ServerError::NoKeysTaken(served.scheme.engine()))?;
        let registered = self
            .registered(&id, scheme)
            .await?
            .ok_or_else(|| ServerError::UnknownKey(id.to_string()))?;
        if !registered.mac_key.verify_renewal(&id, req.mac()) {
            return Err(ServerError::QueryAuth(QueryAuthError::BadRenewalMac(id)));
        }
        let expires_at = self
            .state
            .store
            .renew(&id)
            .await
            .map_err(ServerError::KeyStore)?
            // Cached here, gone from the store: registering again stores it.
            .ok_or_else(|| ServerError::UnknownKey(id.to_string()))?;
        self.state.keys.set_expiry(&id, expires_at);
        Ok(RenewKeysResponse::until(expires_at))
    }

    async fn query(
        &self,
        peer: Option<IpAddr>,
        req: QueryRequest,
    ) -> Result<QueryResponse, ServerError> {
        self.housekeeping();
        let served = self.state.served.load_full();
        let shard = served.shard(req.shard)?;
        let epoch = shard.config.epoch;
        // The epoch before the request's shape: a client on an old snapshot hears that first,
        // whatever else is wrong with its request.
        if req.epoch != epoch {
            return Err(ServerError::StaleEpoch {
                requested: req.epoch,
                current: epoch,
            });
        }
        let req = QueryIn::parse(req, self.state.opts.max_queries_per_request)?;
        // At the door: a query that answering would refuse is refused now, before it takes a
        // slot or a token, so it can never fail (and split) a batch of honest requests.
        for query in req.queries() {
            served.scheme.check_query(query)?;
        }
        let Some(scheme) = spiral_of(&served.scheme) else {
            // YPIR+SP: every query carries its own keys; nothing is looked up or kept, and a
            // key id, if sent, is ignored. Charged to the peer's network.
            let n = req.queries().len();
            let slot = self.state.answerer.reserve(n)?;
            if let Some(peer) = peer {
                self.state.limiters.queries_of_peer(&peer, n)?;
            }
            let answers = self
                .state
                .answerer
                .answer(slot, shard.snapshot.clone(), None, req.into_queries())
                .await?;
            self.state.metrics.lookups.inc_by(n as u64);
            return Ok(QueryResponse::for_config(&shard.config, answers));
        };
        let id = req
            .key_id()
            .ok_or(ServerError::KeysNeeded(served.scheme.engine()))?;
        let registered = self
            .registered(&id, scheme)
            .await?
            .ok_or_else(|| ServerError::UnknownKey(id.to_string()))?;
        let Some(mac) = req.mac() else {
            return Err(ServerError::ClientTooOld(
                "the query carries no mac: this server authenticates every query",
            ));
        };
        if !registered
            .mac_key
            .verify(&id, req.epoch(), req.queries(), mac)
        {
            return Err(ServerError::QueryAuth(QueryAuthError::BadMac(id)));
        }
        let n = req.queries().len();
        // The slots first: a request refused as overloaded spends none of its user's tokens.
        // Tokens refused after it give the slots back (dropped with `slot`).
        let slot = self.state.answerer.reserve(n)?;
        if let Some(peer) = peer {
            self.state.limiters.queries_of_peer(&peer, n)?;
        }
        self.state.limiters.queries_of_key(&id, n)?;
        let answers = self
            .state
            .answerer
            .answer(
                slot,
                shard.snapshot.clone(),
                Some(registered.keys),
                req.into_queries(),
            )
            .await?;
        self.state.metrics.lookups.inc_by(n as u64);
        Ok(QueryResponse::for_config(&shard.config, answers))
    }

    /// The peer network a request is charged to (behind a trusted proxy, the client's).
    async fn evaluate(
        &self,
        peer: Option<IpAddr>,
        req: EvaluateRequest,
    ) -> Result<EvaluateResponse, ServerError> {
        self.housekeeping();
        let evaluator = self
            .state
            .evaluator
            .as_ref()
            .ok_or(ServerError::NoEvaluator)?;
        let req = EvaluateIn::parse(req, self.state.opts.max_queries_per_request)?;
        let served = self.state.served.load();
        let id = match (req.key_id(), req.mac(), spiral_of(&served.scheme)) {
            // Any registered key will do: an evaluation does not depend on the snapshot (keys
            // not cached are loaded from the store for the parameters served).
            (Some(id), Some(mac), Some(scheme)) => {
                let registered = self
                    .resolve(&id, scheme, Wanted::AnyParams)
                    .await?
                    .ok_or_else(|| ServerError::UnknownKey(id.to_string()))?;
                if !registered
                    .mac_key
                    .verify_evaluation(&id, req.blinded(), mac)
                {
                    return Err(ServerError::QueryAuth(QueryAuthError::BadEvaluationMac(id)));
                }
                Some(id)
            }
            // An engine without keys (YPIR+SP): charged to the peer's network and the server.
            (_, _, None) => None,
            (_, _, Some(_)) => return Err(ServerError::KeysNeeded(served.scheme.engine())),
        };
        let n = req.blinded().len();
        let evaluation = evaluator
            .evaluate(peer, id.as_ref(), req.into_blinded())
            .await?;
        self.state.metrics.evaluations.inc_by(n as u64);
        Ok(EvaluateResponse::from(evaluation))
    }

    fn peer_of<T>(&self, req: &Request<T>) -> Option<IpAddr> {
        self.state
            .peers
            .peer_of(req.remote_addr().map(|a| a.ip()), req.metadata())
    }
}

/// The Spiral parameters keys are registered for; `None` for an engine that takes no keys.
fn spiral_of(scheme: &pir_core::Scheme) -> Option<SchemeParams> {
    scheme.spiral().copied()
}

/// The key store `opts` name.
fn open_store(opts: &ServeOptions) -> Result<KeyStore, ServerError> {
    KeyStore::open(opts).map_err(ServerError::KeyStore)
}

/// Runs CPU work on tokio's blocking pool, so the runtime's threads keep serving.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(work).await.map_err(join_error)
}

fn join_error(e: tokio::task::JoinError) -> ServerError {
    if e.is_panic() {
        ServerError::Internal("checking or parsing keys panicked".into())
    } else {
        ServerError::Internal("checking or parsing keys was cancelled".into())
    }
}

impl DiscoveryService {
    async fn timed<T>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<T, ServerError>>,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let result = work.await;
        let millis = start.elapsed().as_secs_f64() * 1e3;
        self.state.metrics.handled(method, result.is_ok());
        match &result {
            Ok(_) => tracing::info!(method, millis, "ok"),
            Err(e) => {
                self.state.metrics.reject(e.reason());
                if let Some(limit) = e.limit() {
                    self.state.metrics.refused_by(limit);
                }
                tracing::warn!(method, millis, error = %e, "refused");
            }
        }
        result.map(Response::new).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    async fn get_config(
        &self,
        req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        let served = self.state.served.load();
        match req.into_inner().shard {
            None => Ok(Response::new(served.default_config.clone())),
            Some(i) => match served.shard(i) {
                Ok(shard) => Ok(Response::new(shard.config.clone())),
                // The shard a process without shards describes (evaluation only).
                Err(_)
                    if served.shards.is_empty()
                        && served
                            .default_config
                            .layout
                            .as_ref()
                            .is_some_and(|l| l.shard_index == i) =>
                {
                    Ok(Response::new(served.default_config.clone()))
                }
                Err(e) => Err(Status::from(e)),
            },
        }
    }

    async fn register_keys(
        &self,
        req: Request<RegisterKeysRequest>,
    ) -> Result<Response<RegisterKeysResponse>, Status> {
        let peer = self.peer_of(&req);
        self.timed("RegisterKeys", self.register(peer, req.into_inner()))
            .await
    }

    async fn renew_keys(
        &self,
        req: Request<RenewKeysRequest>,
    ) -> Result<Response<RenewKeysResponse>, Status> {
        self.timed("RenewKeys", self.renew(req.into_inner())).await
    }

    async fn evaluate(
        &self,
        req: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let peer = self.peer_of(&req);
        self.timed(
            "Evaluate",
            DiscoveryService::evaluate(self, peer, req.into_inner()),
        )
        .await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let peer = self.peer_of(&req);
        self.timed(
            "Query",
            DiscoveryService::query(self, peer, req.into_inner()),
        )
        .await
    }
}
