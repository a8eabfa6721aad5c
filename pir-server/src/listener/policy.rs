//! What a listener speaks and allows its requests, and the limits every listener of a server
//! shares.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::options::TransportOptions;

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
    pub(super) opts: Arc<TransportOptions>,
    pub(super) max_connections: usize,
    pub(super) connections: Arc<Semaphore>,
    pub(super) in_flight: Arc<Semaphore>,
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
