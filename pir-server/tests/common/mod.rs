//! Helpers shared by the server's integration tests.

use std::net::SocketAddr;

use pir_core::Snapshot;
use pir_proto::v1::discovery_client::DiscoveryClient;
use pir_server::{RunningServer, ServeOptions, TestHooks};
use tonic::transport::Channel;

/// Serves `snapshot` on a free loopback port.
pub(crate) async fn start_on(snapshot: Snapshot, opts: ServeOptions) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(snapshot, addr, opts).await.unwrap()
}

/// Serves `snapshot` on a free loopback port, with default options and a query starting with
/// `marker` panicking while answered.
#[allow(dead_code)] // Not every test file injects faults.
pub(crate) async fn start_panicking_on(snapshot: Snapshot, marker: &[u8]) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let hooks = TestHooks {
        danger_panic_marker: Some(marker.to_vec()),
    };
    RunningServer::start_with_test_hooks(snapshot, addr, ServeOptions::default(), hooks)
        .await
        .unwrap()
}

/// A raw gRPC client of `server`, with room for public keys and batches (64 MiB messages).
pub(crate) async fn connect(server: &RunningServer) -> DiscoveryClient<Channel> {
    DiscoveryClient::connect(server.url())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}
