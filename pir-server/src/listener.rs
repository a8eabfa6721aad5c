//! Every listener's connections, bounded: the accept loop, TLS, and hyper's HTTP/2 (gRPC) or
//! HTTP/1 (metrics, probes) connections, driven here rather than by tonic's server so that each
//! limit of [`TransportOptions`] holds on every port.
//!
//! ```text
//! accept ── a connection slot (global cap; at the cap: wait, warn) ── EMFILE/ENFILE: back off
//!   │       50 ms .. 1.6 s, warn (at most every 10 s), never spin
//!   ▼
//! TLS handshake (≤ tls_handshake_timeout) ─▶ HTTP/2: MAX_CONCURRENT_STREAMS, reset caps,
//!   keepalive PINGs; GOAWAY once idle (no open stream for idle_timeout), too old
//!   (max_connection_age) or shutting down; closed anyway connection_grace later
//!   ▼ each request
//! body: at most the method's limit (Policy), whole within request_body_timeout, its bytes
//!   charged to the global in-flight budget until answered ─ else refused, bytes released
//! ```

use std::{
    convert::Infallible,
    future::Future,
    pin::{Pin, pin},
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Sleep,
};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;

use crate::{
    error::{BodyRefusal, ServerError},
    options::TransportOptions,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// gRPC: HTTP/2 only; refusals are gRPC statuses.
    Grpc,
    /// Plain HTTP/1.1 (metrics and probes); refusals are HTTP status codes.
    Http1,
}

/// What one listener allows its requests, and where it counts refusals.
pub(crate) trait Policy: Send + Sync + 'static {
    /// The largest request body for `path`, bytes (gRPC framing included).
    fn body_limit(&self, path: &str) -> usize;
    /// Counts a request refused by `limit` (a `pir_limit_refusals_total` label).
    fn refused(&self, limit: &'static str);
}

/// Bodies of at most `bytes` on every path, refusals not counted (Admin, metrics).
pub(crate) struct Fixed(pub(crate) usize);

impl Policy for Fixed {
    fn body_limit(&self, _: &str) -> usize {
        self.0
    }

    fn refused(&self, limit: &'static str) {
        tracing::debug!(limit, "request refused");
    }
}

/// The limits every listener of one server shares: the options, the connection slots and the
/// in-flight byte budget.
#[derive(Clone)]
pub(crate) struct Limits {
    opts: Arc<TransportOptions>,
    max_connections: usize,
    connections: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl Limits {
    /// Limits under `opts`, with at most `max_connections` connections over all listeners.
    pub(crate) fn new(opts: &TransportOptions, max_connections: usize) -> Self {
        let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let budget = opts
            .in_flight_request_bytes
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            opts: Arc::new(opts.clone()),
            max_connections,
            connections: Arc::new(Semaphore::new(max_connections)),
            in_flight: Arc::new(Semaphore::new(budget)),
        }
    }
}

/// A warning logged at most once per interval, saying how many were held back.
struct Throttled {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// Calls `log` with the number of occurrences since the last call that logged, if due.
    fn log(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.every)
        {
            log(self.held);
            self.last = Some(now);
            self.held = 0;
        } else {
            self.held += 1;
        }
    }
}

/// Whether an accept failed for want of descriptors (or kernel memory): worth backing off.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// Whether an accept failed for the connection's own sake (the next one may well succeed).
fn connection_failed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock | K::TimedOut
    )
}

/// What a listener serves: tonic's routes or axum's router, behind the body limit.
pub(crate) trait Handler<B>:
    tower::Service<
        Request<Limited>,
        Response = Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> Handler<B> for S
where
    S: tower::Service<Request<Limited>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
}

/// A response body a listener can send.
pub(crate) trait ResponseBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Default + Unpin + Send + 'static
{
}

impl<B> ResponseBody for B
where
    B: Body<Data = Bytes> + Default + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
}

/// Serves `service` on `listener` (`name` in the logs) until `shutdown` resolves, then closes
/// the listener, sends GOAWAY on every connection and waits for them to end (at most
/// `connection_grace` for requests in flight).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    protocol: Protocol,
    limits: Limits,
    policy: Arc<dyn Policy>,
    service: S,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError>
where
    S: Handler<B>,
    B: ResponseBody,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut at_cap = Throttled::new(Duration::from_secs(10));
    let mut no_fds = Throttled::new(Duration::from_secs(10));
    let mut backoff = Duration::ZERO;
    loop {
        let permit = match limits.connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                at_cap.log(|held| {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        since_last_warning = held,
                        "connection cap reached: new connections wait in the listen queue \
                         (see --max-connections)"
                    );
                });
                policy.refused("connections");
                tokio::select! {
                    permit = limits.connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) if connection_failed(&e) => continue,
            Err(e) => {
                // Out of descriptors (or another failure of the listener itself): retrying at
                // once would spin a core while serving nobody. Wait, longer each time.
                backoff =
                    (backoff * 2).clamp(Duration::from_millis(50), Duration::from_millis(1600));
                let kind = if out_of_descriptors(&e) {
                    "out of file descriptors"
                } else {
                    "accept failed"
                };
                no_fds.log(|held| {
                    tracing::warn!(
                        listener = name,
                        error = %e,
                        retry_in = ?backoff,
                        since_last_warning = held,
                        "{kind}: not accepting for a while (raise the descriptor limit, \
                         or lower --max-connections)"
                    );
                });
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let conn = Conn {
            info: TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            },
            limits: limits.clone(),
            policy: policy.clone(),
            protocol,
            stop: stop_rx.clone(),
            _slot: permit,
        };
        tokio::spawn(conn.run(stream, tls.clone(), service.clone()));
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: closed once the last has ended.
    stop_tx.closed().await;
    Ok(())
}

/// One accepted connection.
struct Conn {
    info: TcpConnectInfo,
    limits: Limits,
    policy: Arc<dyn Policy>,
    protocol: Protocol,
    stop: watch::Receiver<bool>,
    // Its slot under the connection cap, free again once the connection ends.
    _slot: OwnedSemaphorePermit,
}

fn peer(info: &TcpConnectInfo) -> String {
    info.remote_addr.map(|a| a.to_string()).unwrap_or_default()
}

impl Conn {
    async fn run<S, B>(mut self, stream: TcpStream, tls: Option<TlsAcceptor>, service: S)
    where
        S: Handler<B>,
        B: ResponseBody,
    {
        let _ = stream.set_nodelay(true);
        match tls {
            None => self.drive(TokioIo::new(stream), service).await,
            Some(acceptor) => {
                let timeout = self.limits.opts.tls_handshake_timeout;
                let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
                let stream = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = peer(&self.info), error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = peer(&self.info), ?timeout, "TLS handshake timed out");
                            return;
                        }
                    },
                    _ = self.stop.wait_for(|s| *s) => return,
                };
                self.drive(TokioIo::new(stream), service).await;
            }
        }
    }

    async fn drive<I, S, B>(self, io: I, service: S)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: Handler<B>,
        B: ResponseBody,
    {
        let (open_tx, open_rx) = watch::channel(0usize);
        let service = ConnService {
            inner: service,
            info: self.info.clone(),
            limits: self.limits.clone(),
            policy: self.policy.clone(),
            protocol: self.protocol,
            open: Arc::new(open_tx),
        };
        let opts = self.limits.opts.clone();
        match self.protocol {
            Protocol::Grpc => {
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(opts.max_streams_per_connection)
                    .max_pending_accept_reset_streams(opts.max_pending_reset_streams)
                    .max_local_error_reset_streams(opts.max_local_reset_streams)
                    .keep_alive_interval(Some(opts.keepalive_interval))
                    .keep_alive_timeout(opts.keepalive_timeout);
                let conn = builder.serve_connection(io, service);
                self.until_closed(conn, open_rx).await;
            }
            Protocol::Http1 => {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(Some(opts.request_body_timeout))
                    .keep_alive(true);
                let conn = builder.serve_connection(io, service);
                self.until_closed(conn, open_rx).await;
            }
        }
    }

    /// Runs `conn` until it ends; sends GOAWAY (or, in HTTP/1, stops keep-alive) once it is
    /// idle, too old or the listener stops, and drops it if it has not ended a grace later.
    async fn until_closed<C: Graceful>(mut self, conn: C, open: watch::Receiver<usize>) {
        let opts = self.limits.opts.clone();
        let mut conn = pin!(conn);
        let why = tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(peer = peer(&self.info), error = %e, "connection ended");
                }
                return;
            }
            () = idle_for(open.clone(), opts.idle_timeout) => "idle",
            () = tokio::time::sleep(opts.max_connection_age) => "at its maximum age",
            _ = self.stop.wait_for(|s| *s) => "the listener is stopping",
        };
        tracing::debug!(
            peer = peer(&self.info),
            why,
            "closing the connection (GOAWAY)"
        );
        conn.as_mut().goaway();
        // With nothing in flight (an idle connection, or one still in its handshake) only the
        // GOAWAY has to go out.
        let grace = if *open.borrow() == 0 {
            opts.connection_grace.min(Duration::from_secs(1))
        } else {
            opts.connection_grace
        };
        tokio::select! {
            _ = conn.as_mut() => {}
            () = tokio::time::sleep(grace) => {
                tracing::debug!(peer = peer(&self.info), ?grace, "connection closed after the grace");
            }
        }
    }
}

/// Resolves once no stream has been open for `idle`.
async fn idle_for(mut open: watch::Receiver<usize>, idle: Duration) {
    loop {
        if open.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(idle) => return,
            changed = open.changed() => if changed.is_err() {
                return std::future::pending().await;
            },
        }
    }
}

/// A hyper connection that can be asked to close gracefully.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn goaway(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn goaway(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn goaway(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The response refusing a request to `path` for `why`: in gRPC the status [`ServerError`]
/// makes of it, in HTTP/1 the status code alone.
fn refusal_response<B: Default>(why: BodyRefusal, protocol: Protocol, path: &str) -> Response<B> {
    match protocol {
        Protocol::Grpc => tonic::Status::from(ServerError::RequestBody {
            path: path.to_owned(),
            refusal: why,
        })
        .into_http(),
        Protocol::Http1 => {
            let mut response = Response::new(B::default());
            *response.status_mut() = match why {
                BodyRefusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyRefusal::Stalled { .. } => StatusCode::REQUEST_TIMEOUT,
                BodyRefusal::Budget { .. } => StatusCode::SERVICE_UNAVAILABLE,
            };
            response
        }
    }
}

/// What a request's body and its response future share: why it was refused, if it was, and
/// the in-flight bytes its body holds (released when both are done).
#[derive(Default)]
struct Shared {
    refusal: OnceLock<BodyRefusal>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Shared {
    fn refuse(&self, why: BodyRefusal) -> BodyRefusal {
        *self.refusal.get_or_init(|| why)
    }

    fn hold(&self, permit: OwnedSemaphorePermit) {
        if let Ok(mut held) = self.held.lock() {
            match held.as_mut() {
                Some(all) => all.merge(permit),
                None => *held = Some(permit),
            }
        }
    }

    fn release(&self) {
        if let Ok(mut held) = self.held.lock() {
            held.take();
        }
    }
}

/// A request body within its limits: at most `limit` bytes (a gRPC message declaring more is
/// refused at its first frame), whole before its deadline, every byte charged to the in-flight
/// budget. Past any of them it fails, and the request is answered with the refusal.
pub(crate) struct Limited {
    inner: Incoming,
    limit: usize,
    received: usize,
    prefix: Vec<u8>,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    shared: Arc<Shared>,
}

impl Limited {
    /// Charges a data frame of `n` bytes, or says why it may not be taken.
    fn charge(&mut self, data: &[u8]) -> Result<(), BodyRefusal> {
        self.received = self.received.saturating_add(data.len());
        if self.received > self.limit {
            return Err(BodyRefusal::TooLarge { limit: self.limit });
        }
        // The gRPC length prefix (flag byte, u32 length) of the first message.
        if self.prefix.len() < 5 {
            let take = (5 - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
            if let [_, a, b, c, d] = self.prefix[..] {
                let declared = u32::from_be_bytes([a, b, c, d]) as usize;
                if declared.saturating_add(5) > self.limit {
                    return Err(BodyRefusal::TooLarge { limit: self.limit });
                }
            }
        }
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                self.shared.hold(permit);
                Ok(())
            }
            Err(_) => Err(BodyRefusal::Budget {
                budget: self.budget_bytes,
            }),
        }
    }

    fn fail(&mut self, why: BodyRefusal) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let why = self.shared.refuse(why);
        // What this body held is released now, not when the handler lets go of it.
        self.shared.release();
        self.deadline = None;
        Poll::Ready(Some(Err(Box::new(why))))
    }
}

impl Body for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some(why) = this.shared.refusal.get() {
            return this.fail(*why);
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let timeout = this.timeout;
            return this.fail(BodyRefusal::Stalled { timeout });
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => {
                this.deadline = None;
                return Poll::Ready(None);
            }
            Some(Err(e)) => return Poll::Ready(Some(Err(Box::new(e)))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref()
            && let Err(why) = this.charge(data)
        {
            return this.fail(why);
        }
        if this.inner.is_end_stream() {
            this.deadline = None;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its stream counted as open (for the idle timeout) until sent.
pub(crate) struct Counted<B> {
    inner: B,
    _open: OpenStream,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One open stream of a connection, counted while it lives.
struct OpenStream(Arc<watch::Sender<usize>>);

impl OpenStream {
    fn new(open: &Arc<watch::Sender<usize>>) -> Self {
        open.send_modify(|n| *n += 1);
        Self(open.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The service of one connection: the listener's, with its requests' bodies limited, the
/// connection's addresses in their extensions (as tonic's own server puts them, for
/// `Request::remote_addr`) and their streams counted.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    info: TcpConnectInfo,
    limits: Limits,
    policy: Arc<dyn Policy>,
    protocol: Protocol,
    open: Arc<watch::Sender<usize>>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    // `Handler<B>` alone leaves `B` free in this impl: `S`'s response type must fix it.
    S: Handler<B> + tower::Service<Request<Limited>, Response = Response<B>>,
    B: ResponseBody,
{
    type Response = Response<Counted<B>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let open = OpenStream::new(&self.open);
        let counted =
            move |response: Response<B>| Ok(response.map(|inner| Counted { inner, _open: open }));
        let path = req.uri().path().to_owned();
        let limit = self.policy.body_limit(&path);
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            let why = BodyRefusal::TooLarge { limit };
            self.policy.refused(why.limit());
            return Box::pin(std::future::ready(counted(refusal_response(
                why,
                self.protocol,
                &path,
            ))));
        }
        req.extensions_mut().insert(self.info.clone());
        let opts = &self.limits.opts;
        let shared = Arc::new(Shared::default());
        let (parts, body) = req.into_parts();
        let body = Limited {
            inner: body,
            limit,
            received: 0,
            prefix: Vec::with_capacity(5),
            deadline: Some(Box::pin(tokio::time::sleep(opts.request_body_timeout))),
            timeout: opts.request_body_timeout,
            budget: self.limits.in_flight.clone(),
            budget_bytes: opts.in_flight_request_bytes,
            shared: shared.clone(),
        };
        let answer = self.inner.clone().oneshot(Request::from_parts(parts, body));
        let (policy, protocol) = (self.policy.clone(), self.protocol);
        Box::pin(async move {
            let Ok(response) = answer.await;
            let response = match shared.refusal.get() {
                Some(why) => {
                    policy.refused(why.limit());
                    tracing::debug!(path, refusal = %why.message(&path), "request refused");
                    refusal_response(*why, protocol, &path)
                }
                None => response,
            };
            // The request's bytes are released once it is answered.
            shared.release();
            counted(response)
        })
    }
}
