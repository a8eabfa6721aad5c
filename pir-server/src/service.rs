//! The `pir.v1.Discovery` gRPC service.
//!
//! Answering is CPU work over the whole database: it runs on the blocking pool (and spiral-rs's
//! rayon pool inside it), never on the async runtime, so the runtime keeps accepting connections
//! and answering health checks while queries compute. A bounded number of answers may be in
//! progress; past that the server says RESOURCE_EXHAUSTED at once instead of queueing.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use pir_core::{KeyId, ServerKeys, Snapshot};
use pir_proto::v1::{
    self, GetConfigRequest, GetConfigResponse, QueryRequest, QueryResponse, RegisterKeysRequest,
    RegisterKeysResponse,
    discovery_server::{Discovery, DiscoveryServer},
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::Server};

use crate::{
    error::ServerError,
    keycache::{KeyCache, estimated_cost},
};

/// Limits of a running server.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Largest request or response message, bytes (public keys are the largest: up to ~9 MB).
    pub max_message_bytes: usize,
    /// Most queries in one `Query` request.
    pub max_queries_per_request: u32,
    /// Memory budget of registered keys, bytes.
    pub key_cache_bytes: u64,
    /// Answers (requests) in progress at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_pending_answers: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 << 20,
            max_queries_per_request: 32,
            key_cache_bytes: 2 << 30,
            max_pending_answers: 64,
        }
    }
}

struct Served {
    snapshot: Arc<Snapshot>,
    config: GetConfigResponse,
    public_key_bytes: usize,
}

impl Served {
    fn new(snapshot: Snapshot, opts: &ServeOptions) -> Result<Self, ServerError> {
        let limits = v1::Limits {
            max_queries_per_request: opts.max_queries_per_request,
            max_message_bytes: opts.max_message_bytes as u64,
        };
        let config = GetConfigResponse::for_snapshot(&snapshot, limits)?;
        let public_key_bytes = snapshot.message_sizes()?.public_keys;
        Ok(Self {
            snapshot: Arc::new(snapshot),
            config,
            public_key_bytes,
        })
    }
}

struct State {
    served: ArcSwap<Served>,
    keys: KeyCache,
    opts: ServeOptions,
    slots: Arc<Semaphore>,
}

/// The service; cheap to clone (shared state).
#[derive(Clone)]
pub struct DiscoveryService {
    state: Arc<State>,
}

impl DiscoveryService {
    /// A service answering over `snapshot`.
    pub fn new(snapshot: Snapshot, opts: ServeOptions) -> Result<Self, ServerError> {
        let served = Served::new(snapshot, &opts)?;
        Ok(Self {
            state: Arc::new(State {
                served: ArcSwap::from_pointee(served),
                keys: KeyCache::new(opts.key_cache_bytes),
                slots: Arc::new(Semaphore::new(opts.max_pending_answers)),
                opts,
            }),
        })
    }

    /// Replaces the served snapshot atomically. Requests in flight finish on the one they
    /// started with; clients on the old epoch get FAILED_PRECONDITION and refresh.
    pub fn install(&self, snapshot: Snapshot) -> Result<(), ServerError> {
        let served = Served::new(snapshot, &self.state.opts)?;
        let epoch = served.config.epoch;
        self.state.served.store(Arc::new(served));
        tracing::info!(epoch, "snapshot installed");
        Ok(())
    }

    /// The epoch being served.
    pub fn epoch(&self) -> u64 {
        self.state.served.load().config.epoch
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

    /// The tonic service with this server's message limits.
    pub fn into_server(self) -> DiscoveryServer<Self> {
        let max = self.state.opts.max_message_bytes;
        DiscoveryServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    async fn register(
        &self,
        req: RegisterKeysRequest,
    ) -> Result<RegisterKeysResponse, ServerError> {
        let served = self.state.served.load_full();
        let bytes = req.public_keys;
        if bytes.len() != served.public_key_bytes {
            return Err(ServerError::Malformed(format!(
                "public keys are {} bytes; this snapshot's parameters need {}",
                bytes.len(),
                served.public_key_bytes
            )));
        }
        let id = KeyId::of(&bytes);
        let scheme = served.snapshot.header().scheme;
        if let Some(existing) = self.state.keys.get(&id)
            && *existing.params() == scheme
        {
            return Ok(RegisterKeysResponse {
                key_id: id.0.to_vec(),
            });
        }
        let cost = estimated_cost(bytes.len());
        let keys = tokio::task::spawn_blocking(move || ServerKeys::parse(&scheme, &bytes))
            .await
            .map_err(join_error)??;
        if !self.state.keys.insert(id, Arc::new(keys), cost) {
            return Err(ServerError::Overloaded(0));
        }
        tracing::info!(key_id = %id, "keys registered");
        Ok(RegisterKeysResponse {
            key_id: id.0.to_vec(),
        })
    }

    async fn query(&self, req: QueryRequest) -> Result<QueryResponse, ServerError> {
        let served = self.state.served.load_full();
        let epoch = served.config.epoch;
        if req.epoch != epoch {
            return Err(ServerError::StaleEpoch {
                requested: req.epoch,
                current: epoch,
            });
        }
        let max = self.state.opts.max_queries_per_request;
        if req.queries.is_empty() {
            return Err(ServerError::Malformed("no queries".into()));
        }
        if req.queries.len() > max as usize {
            return Err(ServerError::TooManyQueries {
                got: req.queries.len(),
                max,
            });
        }
        let id = KeyId(
            req.key_id
                .as_slice()
                .try_into()
                .map_err(|_| ServerError::Malformed("key id must be 32 bytes".into()))?,
        );
        let keys = self
            .state
            .keys
            .get(&id)
            .filter(|k| *k.params() == served.snapshot.header().scheme)
            .ok_or_else(|| ServerError::UnknownKey(id.to_string()))?;
        let _permit = self
            .state
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServerError::Overloaded(self.state.opts.max_pending_answers))?;
        let snapshot = served.snapshot.clone();
        let queries = req.queries;
        let answers = tokio::task::spawn_blocking(move || {
            queries
                .iter()
                .map(|q| snapshot.answer(&keys, q))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(join_error)??;
        Ok(QueryResponse { epoch, answers })
    }
}

fn join_error(e: tokio::task::JoinError) -> ServerError {
    if e.is_panic() {
        ServerError::Internal("answering panicked".into())
    } else {
        ServerError::Internal("answering task cancelled".into())
    }
}

async fn timed<T>(
    method: &'static str,
    work: impl Future<Output = Result<T, ServerError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    let result = work.await;
    let millis = start.elapsed().as_secs_f64() * 1e3;
    match &result {
        Ok(_) => tracing::info!(method, millis, "ok"),
        Err(e) => tracing::warn!(method, millis, error = %e, "refused"),
    }
    result.map(Response::new).map_err(Status::from)
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
        timed("RegisterKeys", self.register(req.into_inner())).await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        timed("Query", DiscoveryService::query(self, req.into_inner())).await
    }
}

/// Serves the Discovery service, health and reflection on `listener` until `shutdown` resolves.
pub async fn serve(
    service: DiscoveryService,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<DiscoveryServer<DiscoveryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pir_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Internal(format!("reflection service: {e}")))?;
    Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// A server running on a background task (for tests, the demo and embedding).
pub struct RunningServer {
    addr: SocketAddr,
    service: DiscoveryService,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving `snapshot`.
    pub async fn start(
        snapshot: Snapshot,
        addr: SocketAddr,
        opts: ServeOptions,
    ) -> Result<Self, ServerError> {
        let service = DiscoveryService::new(snapshot, opts)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::io("reading the bound address", e))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(service.clone(), listener, async {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            service,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The service (to install snapshots, inspect the key cache).
    pub fn service(&self) -> &DiscoveryService {
        &self.service
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| ServerError::Internal(format!("server task: {e}")))?
    }
}
