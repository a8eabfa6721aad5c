//! Helpers shared by the server's integration tests.

use std::net::SocketAddr;

use pir_core::Snapshot;
use pir_proto::v1::discovery_client::DiscoveryClient;
use pir_server::{RunningServer, ServeOptions};
use tonic::transport::Channel;

/// Serves `snapshot` on a free loopback port.
pub(crate) async fn start_on(snapshot: Snapshot, opts: ServeOptions) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(snapshot, addr, opts).await.unwrap()
}

/// A raw gRPC client of `server`, with room for public keys and batches (64 MiB messages).
pub(crate) async fn connect(server: &RunningServer) -> DiscoveryClient<Channel> {
    DiscoveryClient::connect(server.url())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}
