//! The transport around the Discovery service: one tonic server with health and reflection,
//! plaintext or TLS, that shuts down gracefully; and [`RunningServer`], such a server on a
//! background task.
//!
//! ```text
//! listener ─▶ tonic (TLS?) ─▶ map OUT_OF_RANGE to RESOURCE_EXHAUSTED ─┬─▶ pir.v1.Discovery
//!                                                                       ├─▶ grpc.health.v1
//!                                                                       └─▶ reflection
//! health watcher: NOT_SERVING once the answering thread has died
//! ```

use std::{future::Future, net::SocketAddr, time::Duration};

use pir_core::Snapshot;
use pir_proto::v1::discovery_server::DiscoveryServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

#[cfg(feature = "test-hooks")]
use crate::options::TestHooks;
use crate::{error::ServerError, options::ServeOptions, service::DiscoveryService};

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
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<DiscoveryServer<DiscoveryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pir_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Internal(format!("reflection service: {e}")))?;
    let mut builder = Server::builder();
    if let Some(identity) = identity {
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    // Health follows the answering thread: if a bug ever kills it, load balancers should stop
    // sending lookups here.
    let watched = service.clone();
    let _watcher = AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if !watched.answering() {
                tracing::error!("the answering thread has stopped; health is now NOT_SERVING");
                reporter
                    .set_not_serving::<DiscoveryServer<DiscoveryService>>()
                    .await;
                break;
            }
        }
    }));
    builder
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted,
        ))
        .add_service(health)
        .add_service(reflection)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Aborts a task when dropped: the health watcher holds a clone of the service (and so the
/// answering thread's queue), which must go when serving ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// tonic answers a message over the size limit with OUT_OF_RANGE; gRPC (and this protocol) say
/// RESOURCE_EXHAUSTED. Nothing else here answers OUT_OF_RANGE, so the code is rewritten as is.
fn oversized_is_resource_exhausted<B>(
    mut response: tonic::codegen::http::Response<B>,
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
    /// Binds `addr` (port 0 picks a free port) and starts serving `snapshot` in plaintext.
    pub async fn start(
        snapshot: Snapshot,
        addr: SocketAddr,
        opts: ServeOptions,
    ) -> Result<Self, ServerError> {
        Self::start_tls(snapshot, addr, opts, None).await
    }

    /// [`RunningServer::start`], over TLS when `identity` is given.
    pub async fn start_tls(
        snapshot: Snapshot,
        addr: SocketAddr,
        opts: ServeOptions,
        identity: Option<Identity>,
    ) -> Result<Self, ServerError> {
        Self::start_service(DiscoveryService::new(snapshot, opts)?, addr, identity).await
    }

    /// [`RunningServer::start`], with faults injected as `hooks` say (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    pub async fn start_with_test_hooks(
        snapshot: Snapshot,
        addr: SocketAddr,
        opts: ServeOptions,
        hooks: TestHooks,
    ) -> Result<Self, ServerError> {
        let service = DiscoveryService::with_test_hooks(snapshot, opts, hooks)?;
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
