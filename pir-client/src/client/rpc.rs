//! Every RPC under its deadline, and the bytes it puts on the wire.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use pir_proto::{
    ConfigIn,
    v1::{self, discovery_client::DiscoveryClient},
};
use prost::Message;
use tonic::transport::Channel;

use crate::error::{ClientError, Result};

/// gRPC's length-prefixed framing: a compression flag byte and a 4-byte length.
pub(super) const GRPC_FRAME_BYTES: u64 = 5;

/// Bytes of protobuf messages, as seen on the wire.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Wire {
    pub(super) sent: u64,
    pub(super) received: u64,
}

impl Wire {
    pub(super) fn send(&mut self, m: &impl Message) {
        self.sent += m.encoded_len() as u64 + GRPC_FRAME_BYTES;
    }

    pub(super) fn receive(&mut self, m: &impl Message) {
        self.received += m.encoded_len() as u64 + GRPC_FRAME_BYTES;
    }
}

/// A request carrying the deadline to the server (`grpc-timeout`), so it can give up too.
pub(super) fn request<T>(message: T, deadline: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(d) = deadline {
        request.set_timeout(d);
    }
    request
}

/// Runs one RPC under the deadline: `Err` when it passed, else the server's answer.
///
/// The whole call is bounded here, not only by the transport: a server that sends its response
/// headers and then stalls the body is cut off too.
pub(super) async fn within<R>(
    rpc: &'static str,
    deadline: Option<Duration>,
    call: impl Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
) -> Result<std::result::Result<R, tonic::Status>> {
    let Some(after) = deadline else {
        return Ok(call.await.map(tonic::Response::into_inner));
    };
    let started = Instant::now();
    match tokio::time::timeout(after, call).await {
        Err(_) => Err(ClientError::Deadline { rpc, after }),
        // The channel enforces the `grpc-timeout` it sends too, and so may the server: either
        // may be first.
        Ok(Err(status)) if timed_out(&status, started.elapsed() >= after.mul_f64(0.9)) => {
            Err(ClientError::Deadline { rpc, after })
        }
        Ok(response) => Ok(response.map(tonic::Response::into_inner)),
    }
}

/// Whether a status is the deadline expiring: the client channel's own timeout, or a server's
/// CANCELLED or DEADLINE_EXCEEDED once (about) the deadline has passed.
fn timed_out(status: &tonic::Status, deadline_passed: bool) -> bool {
    if deadline_passed
        && matches!(
            status.code(),
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        )
    {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Fetches the server's configuration, validated (not yet checked against what the client
/// accepts): of shard `shard` of a sharded directory, or of the first shard the server serves.
pub(super) async fn get_config(
    grpc: &mut DiscoveryClient<Channel>,
    shard: Option<u32>,
    deadline: Option<Duration>,
    wire: &mut Wire,
) -> Result<ConfigIn> {
    let message = v1::GetConfigRequest { shard };
    wire.send(&message);
    let response = within(
        "GetConfig",
        deadline,
        grpc.get_config(request(message, deadline)),
    )
    .await?
    .map_err(|s| ClientError::rpc("GetConfig", s))?;
    wire.receive(&response);
    ConfigIn::try_from(response).map_err(ClientError::InvalidServerConfig)
}

/// Whether an RPC's error means its replica is unavailable, so that another replica of the
/// shard (or another evaluator) should be tried: no connection, a broken transport, UNAVAILABLE, or the deadline.
pub(super) fn unavailable(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } | ClientError::Deadline { .. } => true,
        ClientError::Rpc { status, .. } => unavailable_status(status),
        _ => false,
    }
}

/// UNAVAILABLE, or a status the client's own transport made (a connection that broke).
pub(super) fn unavailable_status(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_replicas_are_left_and_refusals_are_not() {
        let rpc = |code| ClientError::rpc("Query", tonic::Status::new(code, "x"));
        assert!(unavailable(&rpc(tonic::Code::Unavailable)));
        assert!(unavailable(&ClientError::Deadline {
            rpc: "Query",
            after: std::time::Duration::from_secs(1)
        }));
        for code in [
            tonic::Code::NotFound,
            tonic::Code::ResourceExhausted,
            tonic::Code::InvalidArgument,
            tonic::Code::PermissionDenied,
        ] {
            assert!(!unavailable(&rpc(code)), "{code:?}");
        }
    }
}
