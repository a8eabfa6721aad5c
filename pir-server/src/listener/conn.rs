//! One connection, bounded: the TLS handshake under its timeout, hyper's HTTP/2 or HTTP/1 with
//! their stream, reset and keepalive limits, GOAWAY once idle, too old or stopping; each request
//! with its body limited and its stream counted while it is open.

use std::{
    convert::Infallible,
    future::Future,
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;

use super::{
    body::{BoxError, Limited, Shared, refusal_response},
    policy::{Limits, Policy, Protocol},
};
use crate::error::BodyRefusal;

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

/// One accepted connection.
pub(super) struct Conn {
    pub(super) info: TcpConnectInfo,
    pub(super) limits: Limits,
    pub(super) policy: Arc<dyn Policy>,
    pub(super) protocol: Protocol,
    pub(super) stop: watch::Receiver<bool>,
    // Its slot under the connection cap, free again once the connection ends.
    pub(super) _slot: OwnedSemaphorePermit,
}

fn peer(info: &TcpConnectInfo) -> String {
    info.remote_addr.map(|a| a.to_string()).unwrap_or_default()
}

impl Conn {
    pub(super) async fn run<S, B>(mut self, stream: TcpStream, tls: Option<TlsAcceptor>, service: S)
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
        let shared = Arc::new(Shared::default());
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, limit, &self.limits, shared.clone());
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
