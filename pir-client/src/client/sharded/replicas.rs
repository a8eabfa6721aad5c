//! One shard's replicas: their channels (opened when first used), the configuration of the
//! shard in force, the round-robin that spreads queries over the replicas from a random
//! start, and which failures leave a replica for the next one.

use std::sync::Arc;

use pir_core::LookupClient;
use pir_proto::{ConfigIn, v1::discovery_client::DiscoveryClient};
use tonic::transport::Channel;

use crate::error::ClientError;

/// One replica of a shard.
#[derive(Debug)]
pub(super) struct Replica {
    pub(super) url: String,
    /// Open once used; dropped after a failure, so that the next use reconnects and checks
    /// its configuration again.
    pub(super) grpc: Option<DiscoveryClient<Channel>>,
}

/// The shard's configuration in force (of the manifest the client follows) and the lookup
/// client for it (the one key set, this shard's layout and epoch).
#[derive(Clone, Debug)]
pub(super) struct ShardConfig {
    pub(super) config: ConfigIn,
    pub(super) lookup: Arc<LookupClient>,
}

/// A shard of the directory and its replicas.
#[derive(Debug)]
pub(super) struct Shard {
    pub(super) replicas: Vec<Replica>,
    /// The replica the next query starts with.
    cursor: usize,
    /// `None` until fetched, and again after the manifest or the shard's snapshot changed.
    pub(super) config: Option<ShardConfig>,
}

impl Shard {
    /// A shard of these replicas (at least one), starting the round-robin at `start`.
    pub(super) fn new(urls: Vec<String>, start: usize) -> Self {
        let cursor = start % urls.len().max(1);
        Self {
            replicas: urls
                .into_iter()
                .map(|url| Replica { url, grpc: None })
                .collect(),
            cursor,
            config: None,
        }
    }

    /// The replica a new query starts with: each query the next one, round-robin.
    pub(super) fn start(&mut self) -> usize {
        let r = self.cursor;
        self.cursor = (self.cursor + 1) % self.replicas.len();
        r
    }

    /// The replica after `r`.
    pub(super) fn after(&self, r: usize) -> usize {
        (r + 1) % self.replicas.len()
    }
}

/// Whether an RPC's error means its replica is unavailable, so that another replica of the
/// shard should be tried: no connection, a broken transport, UNAVAILABLE, or the deadline.
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
    fn queries_go_round_robin_from_the_start_and_fail_over_to_the_next() {
        let mut shard = Shard::new(vec!["a".into(), "b".into(), "c".into()], 4);
        assert_eq!([shard.start(), shard.start(), shard.start()], [1, 2, 0]);
        assert_eq!([shard.after(1), shard.after(2)], [2, 0]);
    }

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
