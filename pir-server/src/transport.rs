//! The transport around the Discovery service: the main port's services (health and reflection
//! beside it), plaintext or TLS, on a bounded listener (`listener/`) whose body limits follow
//! the served snapshot's message sizes; and [`RunningServer`], such a server on a background
//! task.
//!
//! ```text
//! listener (TLS?, limits)    ─▶ map OUT_OF_RANGE to RESOURCE_EXHAUSTED ─┬─▶ pir.v1.Discovery
//!                                                                       │   (UNAVAILABLE until
//!                                                                       │    the snapshot loads)
//!                                                                       ├─▶ grpc.health.v1
//!                                                                       └─▶ reflection v1, v1alpha
//! health follows the readiness: NOT_SERVING while loading, once stopping, and for good once the
//! answering thread has died
//! ```

use std::{future::Future, net::SocketAddr, sync::Arc};

use pir_core::oprf::OprfKey;
use pir_proto::v1::{
    EvaluateRequest, EvaluateResponse, GetConfigRequest, GetConfigResponse, QueryRequest,
    QueryResponse, RegisterKeysRequest, RegisterKeysResponse, RenewKeysRequest, RenewKeysResponse,
    discovery_server::{Discovery, DiscoveryServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, server::NamedService, service::Routes};
use tower::Layer;

#[cfg(feature = "test-hooks")]
use crate::options::TestHooks;
use crate::{
    descriptors::NoFile,
    error::ServerError,
    identity::Identity,
    listener::{self, Limits, Policy, Protocol},
    options::ServeOptions,
    readiness::Readiness,
    reflection,
    service::DiscoveryService,
};

/// Serves the Discovery service, health and reflection on `listener` in plaintext until
/// `shutdown` resolves.
pub async fn serve(
    service: DiscoveryService,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    serve_tls(service, listener, None, shutdown).await
}

/// [`serve`], over TLS (rustls) when `identity` (certificate chain and key) is given.
pub async fn serve_tls(
    service: DiscoveryService,
    listener: TcpListener,
    identity: Option<Identity>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let transport = &service.options().transport;
    let limits = Limits::new(
        transport,
        transport.connection_cap(NoFile::current().soft_or_max()),
    );
    let opts = service.options().clone();
    let readiness = Readiness::serving(service).await;
    serve_discovery(readiness, opts, limits, listener, identity, shutdown).await
}

/// Bytes a request may carry beyond its payload: protobuf tags and lengths, and any small
/// field (key id, epoch, proofs).
const SLACK: usize = 16 << 10;
/// Bytes of framing each query of a Query request may add.
const PER_QUERY_SLACK: usize = 16;

/// The main port's body limits, sized from the snapshot being served (so they follow a
/// reload): RegisterKeys its public keys, Query at most `max_queries_per_request` queries,
/// Evaluate as many 32-byte elements, GetConfig, health and reflection a little; never more than `--max-message-mib`.
struct Sized {
    readiness: Readiness,
    max_message_bytes: usize,
    max_queries: usize,
}

impl Sized {
    const SMALL: usize = 4 << 10;
}

impl Policy for Sized {
    fn body_limit(&self, path: &str) -> usize {
        let sized = self
            .readiness
            .service()
            .map(DiscoveryService::message_sizes);
        let payload = match (path, sized) {
            // An engine that takes no keys (YPIR+SP): the body goes to the handler, which
            // names the engine (FAILED_PRECONDITION), so a client that raced a switch of
            // engines refreshes its configuration instead of hearing it sent too much. Its
            // Query bodies are as large, so this opens nothing new.
            ("/pir.v1.Discovery/RegisterKeys", Some(sizes)) if sizes.public_keys == 0 => {
                self.max_message_bytes
            }
            ("/pir.v1.Discovery/RegisterKeys", Some(sizes)) => {
                sizes.public_keys.max(sizes.legacy_public_keys)
            }
            ("/pir.v1.Discovery/Query", Some(sizes)) => self
                .max_queries
                .saturating_mul(sizes.query.saturating_add(PER_QUERY_SLACK)),
            ("/pir.v1.Discovery/Evaluate", _) => self
                .max_queries
                .saturating_mul(pir_core::oprf::ELEMENT_BYTES + PER_QUERY_SLACK),
            ("/pir.v1.Discovery/GetConfig" | "/pir.v1.Discovery/RenewKeys", _) => {
                return Self::SMALL;
            }
            _ => 0,
        };
        // 5 bytes of gRPC framing.
        payload
            .saturating_add(SLACK)
            .min(self.max_message_bytes.saturating_add(5))
    }

    fn refused(&self, limit: &'static str) {
        if let Some(service) = self.readiness.service() {
            service.refused_by(limit);
        }
    }
}

/// The TLS acceptor of `identity`, if any.
pub(crate) fn acceptor(
    identity: Option<&Identity>,
) -> Result<Option<tokio_rustls::TlsAcceptor>, ServerError> {
    identity
        .map(|identity| Ok(tokio_rustls::TlsAcceptor::from(identity.server_config()?)))
        .transpose()
}

/// Serves the main port for a process whose snapshot may still be loading: Discovery (through
/// `readiness`, UNAVAILABLE until loaded), health and reflection.
pub(crate) async fn serve_discovery(
    readiness: Readiness,
    opts: ServeOptions,
    limits: Limits,
    listener: TcpListener,
    identity: Option<Identity>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (reflection_v1, reflection_v1alpha) = reflection::services(&[
        <DiscoveryServer<Pending> as NamedService>::NAME,
        "grpc.health.v1.Health",
    ])?;
    let tls = acceptor(identity.as_ref())?;
    // The watcher holds the readiness (and so, once loaded, the answering thread's queue),
    // which must go when serving ends, however it ends.
    let _watcher = AbortOnDrop(tokio::spawn(readiness.clone().watch()));
    let counted = readiness.clone();
    let routes = Routes::new(readiness.health_server())
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            DiscoveryServer::new(Pending(readiness.clone()))
                .max_decoding_message_size(opts.max_message_bytes)
                .max_encoding_message_size(opts.max_message_bytes),
        )
        .prepare();
    let service = tower::util::MapResponseLayer::new(
        move |response: tonic::codegen::http::Response<tonic::body::Body>| {
            oversized_is_resource_exhausted(response, &counted)
        },
    )
    .layer(routes);
    let policy = Arc::new(Sized {
        readiness,
        max_message_bytes: opts.max_message_bytes,
        max_queries: opts.max_queries_per_request as usize,
    });
    listener::serve(
        "main",
        listener,
        tls,
        Protocol::Grpc,
        limits,
        policy,
        service,
        shutdown,
    )
    .await
}

/// The Discovery service of a process that may still be loading its snapshot.
struct Pending(Readiness);

impl Pending {
    fn service(&self) -> Result<&DiscoveryService, Status> {
        self.0.service().ok_or_else(|| ServerError::Loading.into())
    }
}

#[tonic::async_trait]
impl Discovery for Pending {
    async fn get_config(
        &self,
        req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        self.service()?.get_config(req).await
    }

    async fn register_keys(
        &self,
        req: Request<RegisterKeysRequest>,
    ) -> Result<Response<RegisterKeysResponse>, Status> {
        self.service()?.register_keys(req).await
    }

    async fn renew_keys(
        &self,
        req: Request<RenewKeysRequest>,
    ) -> Result<Response<RenewKeysResponse>, Status> {
        self.service()?.renew_keys(req).await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        Discovery::query(self.service()?, req).await
    }

    async fn evaluate(
        &self,
        req: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        Discovery::evaluate(self.service()?, req).await
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// tonic answers a message over the size limit with OUT_OF_RANGE; gRPC (and this protocol) say
/// RESOURCE_EXHAUSTED. Nothing else here answers OUT_OF_RANGE, so the code is rewritten as is,
/// and counted as a refusal by the `message_size` limit.
fn oversized_is_resource_exhausted<B>(
    mut response: tonic::codegen::http::Response<B>,
    readiness: &Readiness,
) -> tonic::codegen::http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == OUT_OF_RANGE.as_bytes())
    {
        headers.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("8"),
        );
        if let Some(service) = readiness.service() {
            service.refused_by("message_size");
        }
    }
    response
}

/// A server running on a background task (for tests, the demo and embedding).
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    service: DiscoveryService,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving `snapshot` in plaintext,
    /// answering evaluations when given the DP's OPRF key.
    pub async fn start(
        snapshot: impl Into<crate::Directory>,
        addr: SocketAddr,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
    ) -> Result<Self, ServerError> {
        Self::start_tls(snapshot, addr, opts, oprf_key, None).await
    }

    /// [`RunningServer::start`], over TLS when `identity` is given.
    pub async fn start_tls(
        snapshot: impl Into<crate::Directory>,
        addr: SocketAddr,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
        identity: Option<Identity>,
    ) -> Result<Self, ServerError> {
        let service = DiscoveryService::new(snapshot, opts, oprf_key)?;
        Self::start_service(service, addr, identity).await
    }

    /// [`RunningServer::start`], with faults injected as `hooks` say (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    pub async fn start_with_test_hooks(
        snapshot: impl Into<crate::Directory>,
        addr: SocketAddr,
        opts: ServeOptions,
        oprf_key: Option<OprfKey>,
        hooks: TestHooks,
    ) -> Result<Self, ServerError> {
        let service = DiscoveryService::with_test_hooks(snapshot, opts, oprf_key, hooks)?;
        Self::start_service(service, addr, None).await
    }

    async fn start_service(
        service: DiscoveryService,
        addr: SocketAddr,
        identity: Option<Identity>,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::io("reading the bound address", e))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tls = identity.is_some();
        let task = tokio::spawn(serve_tls(service.clone(), listener, identity, async {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            tls,
            service,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (or `https://localhost:PORT` over TLS), for clients.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
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
