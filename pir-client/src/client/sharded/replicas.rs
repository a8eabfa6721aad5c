//! One shard's replicas: their channels (opened when first used), the configuration of the
//! shard in force, the round-robin that spreads queries over the replicas from a random
//! start (which failures leave a replica for the next one: `rpc::unavailable`).

use std::sync::Arc;

use pir_core::LookupClient;
use pir_proto::{ConfigIn, v1::discovery_client::DiscoveryClient};
use tonic::transport::Channel;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_go_round_robin_from_the_start_and_fail_over_to_the_next() {
        let mut shard = Shard::new(vec!["a".into(), "b".into(), "c".into()], 4);
        assert_eq!([shard.start(), shard.start(), shard.start()], [1, 2, 0]);
        assert_eq!([shard.after(1), shard.after(2)], [2, 0]);
    }
}
