//! The `pir.v1.Discovery` gRPC service.
//!
//! Answering is CPU work over the whole database: a request that passes its checks (epoch, key,
//! sizes, rate limits) is handed to the answering thread (see `answerer.rs`), which answers
//! queued requests together in one pass over the database on rayon's pool, never on the async
//! runtime, so the runtime keeps accepting connections and answering health checks while
//! queries compute. A bounded number of requests may be queued or answered; past that the server
//! says RESOURCE_EXHAUSTED at once.

use std::{
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use pir_core::{EvalKeys, Snapshot};
use pir_proto::{
    QueryIn, RegisterKeysIn,
    v1::{
        self, GetConfigRequest, GetConfigResponse, QueryRequest, QueryResponse,
        RegisterKeysRequest, RegisterKeysResponse,
        discovery_server::{Discovery, DiscoveryServer},
    },
};
use tonic::{Request, Response, Status};

#[cfg(feature = "test-hooks")]
use crate::options::TestHooks;
use crate::{
    answerer::Answerer,
    error::ServerError,
    keycache::{KeyCache, estimated_cost},
    limits::{self, Limiters},
    metrics::Metrics,
    options::{RateLimit, ServeOptions},
};

/// The limiters `opts` ask for.
fn limiters(opts: &ServeOptions) -> Limiters {
    let quota = |rate: Option<RateLimit>| rate.and_then(|r| limits::quota(r.burst, r.per_hour));
    Limiters::new(
        quota(opts.per_key_rate),
        quota(opts.per_peer_rate),
        quota(opts.per_peer_registrations),
    )
}

struct Served {
    snapshot: Arc<Snapshot>,
    config: GetConfigResponse,
    public_key_bytes: usize,
    // The transport sizes its per-method body limits from these (transport, issue 15).
    sizes: pir_core::MessageSizes,
}

impl Served {
    fn new(snapshot: Snapshot, opts: &ServeOptions) -> Result<Self, ServerError> {
        let limits = v1::Limits {
            max_queries_per_request: opts.max_queries_per_request,
            max_message_bytes: opts.max_message_bytes as u64,
        };
        let config = GetConfigResponse::for_snapshot(&snapshot, limits)?;
        let sizes = snapshot.message_sizes()?;
        let public_key_bytes = sizes.public_keys;
        Ok(Self {
            snapshot: Arc::new(snapshot),
            config,
            public_key_bytes,
            sizes,
        })
    }
}

struct State {
    served: ArcSwap<Served>,
    keys: KeyCache,
    opts: ServeOptions,
    answerer: Answerer,
    limiters: Limiters,
    metrics: Metrics,
    requests: AtomicU64,
}

/// The service; cheap to clone (shared state).
#[derive(Clone)]
pub struct DiscoveryService {
    state: Arc<State>,
}

impl DiscoveryService {
    /// A service answering over `snapshot`.
    pub fn new(snapshot: Snapshot, opts: ServeOptions) -> Result<Self, ServerError> {
        Self::with_answerer(snapshot, opts, Answerer::start)
    }

    /// [`DiscoveryService::new`], with faults injected as `hooks` say (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    pub fn with_test_hooks(
        snapshot: Snapshot,
        opts: ServeOptions,
        hooks: TestHooks,
    ) -> Result<Self, ServerError> {
        Self::with_answerer(snapshot, opts, |opts, metrics| {
            Answerer::start_with_hooks(opts, metrics, &hooks)
        })
    }

    fn with_answerer(
        snapshot: Snapshot,
        opts: ServeOptions,
        start: impl FnOnce(&ServeOptions, &Metrics) -> Result<Answerer, ServerError>,
    ) -> Result<Self, ServerError> {
        let served = Served::new(snapshot, &opts)?;
        let metrics = Metrics::new().map_err(|e| ServerError::Internal(format!("metrics: {e}")))?;
        metrics.epoch.set(served.config.epoch as i64);
        let answerer = start(&opts, &metrics)?;
        Ok(Self {
            state: Arc::new(State {
                served: ArcSwap::from_pointee(served),
                keys: KeyCache::new(opts.key_cache_bytes),
                answerer,
                limiters: limiters(&opts),
                metrics,
                requests: AtomicU64::new(0),
                opts,
            }),
        })
    }

    /// Replaces the served snapshot atomically. Requests in flight finish on the one they
    /// started with; clients on the old epoch get FAILED_PRECONDITION and refresh.
    pub fn install(&self, snapshot: Snapshot) -> Result<(), ServerError> {
        self.install_retiring(snapshot).map(drop)
    }

    /// [`DiscoveryService::install`], returning a weak handle on the snapshot replaced: it is
    /// freed once the requests in flight on it finish (the reloader waits for that before it
    /// loads another, so that at most two are ever resident).
    pub(crate) fn install_retiring(
        &self,
        snapshot: Snapshot,
    ) -> Result<std::sync::Weak<Snapshot>, ServerError> {
        let served = Served::new(snapshot, &self.state.opts)?;
        let epoch = served.config.epoch;
        let retired = self.state.served.swap(Arc::new(served));
        self.state.metrics.epoch.set(epoch as i64);
        tracing::info!(epoch, "snapshot installed");
        Ok(Arc::downgrade(&retired.snapshot))
    }

    /// The epoch being served.
    pub fn epoch(&self) -> u64 {
        self.state.served.load().config.epoch
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

    /// Estimated bytes of registered keys.
    pub fn key_cache_bytes(&self) -> u64 {
        self.state.keys.used_bytes()
    }

    /// Forgets every registered key (clients heal by registering again).
    pub fn evict_all_keys(&self) {
        self.state.keys.clear();
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
        let req = RegisterKeysIn::parse(req, served.public_key_bytes)?;
        let id = req.key_id();
        let scheme = served.snapshot.header().scheme;
        if let Some(existing) = self.state.keys.get(&id)
            && *existing.params() == scheme
        {
            return Ok(RegisterKeysResponse {
                key_id: id.0.to_vec(),
            });
        }
        if let Some(peer) = peer {
            self.state.limiters.registration_of_peer(&peer)?;
        }
        let cost = estimated_cost(req.public_keys().len());
        let bytes = req.into_public_keys();
        let keys = tokio::task::spawn_blocking(move || EvalKeys::parse(&scheme, &bytes))
            .await
            .map_err(join_error)??;
        if !self.state.keys.insert(id, Arc::new(keys), cost) {
            return Err(ServerError::KeyCacheTooSmall {
                cost,
                budget: self.state.opts.key_cache_bytes,
            });
        }
        tracing::info!(key_id = %id, "keys registered");
        Ok(RegisterKeysResponse {
            key_id: id.0.to_vec(),
        })
    }

    async fn query(
        &self,
        peer: Option<IpAddr>,
        req: QueryRequest,
    ) -> Result<QueryResponse, ServerError> {
        self.housekeeping();
        let served = self.state.served.load_full();
        let epoch = served.config.epoch;
        // The epoch before the request's shape: a client on an old snapshot hears that first,
        // whatever else is wrong with its request.
        if req.epoch != epoch {
            return Err(ServerError::StaleEpoch {
                requested: req.epoch,
                current: epoch,
            });
        }
        let req = QueryIn::parse(req, self.state.opts.max_queries_per_request)?;
        let id = req.key_id();
        let keys = self
            .state
            .keys
            .get(&id)
            .filter(|k| *k.params() == served.snapshot.header().scheme)
            .ok_or_else(|| ServerError::UnknownKey(id.to_string()))?;
        let n = req.queries().len();
        if let Some(peer) = peer {
            self.state.limiters.queries_of_peer(&peer, n)?;
        }
        self.state.limiters.queries_of_key(&id, n)?;
        let answers = self
            .state
            .answerer
            .answer(served.snapshot.clone(), keys, req.into_queries())
            .await?;
        self.state.metrics.lookups.inc_by(n as u64);
        Ok(QueryResponse::for_config(&served.config, answers))
    }
}

fn join_error(e: tokio::task::JoinError) -> ServerError {
    if e.is_panic() {
        ServerError::Internal("parsing keys panicked".into())
    } else {
        ServerError::Internal("parsing keys was cancelled".into())
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
        _req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        Ok(Response::new(self.state.served.load().config.clone()))
    }

    async fn register_keys(
        &self,
        req: Request<RegisterKeysRequest>,
    ) -> Result<Response<RegisterKeysResponse>, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        self.timed("RegisterKeys", self.register(peer, req.into_inner()))
            .await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        self.timed(
            "Query",
            DiscoveryService::query(self, peer, req.into_inner()),
        )
        .await
    }
}
