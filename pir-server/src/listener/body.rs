//! Request bodies held to their limits: at most the method's size (a gRPC message declaring
//! more is refused at its first frame), whole within the body timeout, every byte charged to the
//! in-flight budget until the request is answered; and the response that refuses one.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};

use super::policy::{Limits, Protocol};
use crate::error::{BodyRefusal, ServerError};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response refusing a request to `path` for `why`: in gRPC the status [`ServerError`]
/// makes of it, in HTTP/1 the status code alone.
pub(super) fn refusal_response<B: Default>(
    why: BodyRefusal,
    protocol: Protocol,
    path: &str,
) -> Response<B> {
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
pub(super) struct Shared {
    pub(super) refusal: OnceLock<BodyRefusal>,
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

    pub(super) fn release(&self) {
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
    /// The body `inner` of a request to a method that takes at most `limit` bytes, under
    /// `limits`; `shared` with the request's response future.
    pub(super) fn new(inner: Incoming, limit: usize, limits: &Limits, shared: Arc<Shared>) -> Self {
        let opts = &limits.opts;
        Self {
            inner,
            limit,
            received: 0,
            prefix: Vec::with_capacity(5),
            deadline: Some(Box::pin(tokio::time::sleep(opts.request_body_timeout))),
            timeout: opts.request_body_timeout,
            budget: limits.in_flight.clone(),
            budget_bytes: opts.in_flight_request_bytes,
            shared,
        }
    }

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
