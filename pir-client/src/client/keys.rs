//! The client's keys: generated off the runtime, registered with the server.

use std::time::{Duration, Instant};

use pir_core::{ClientKeys, KeyId, SchemeParams};
use pir_proto::{
    ConfigIn,
    v1::{self, discovery_client::DiscoveryClient},
};
use prost::Message;
use tonic::transport::Channel;

use super::rpc::{GRPC_FRAME_BYTES, Wire, request, within};
use crate::error::{ClientError, Result};

/// Generates keys off the async runtime's worker threads (it takes hundreds of milliseconds).
pub(super) async fn generate_keys(params: SchemeParams) -> Result<ClientKeys> {
    tracing::info!("generating client keys");
    let started = Instant::now();
    let keys = tokio::task::spawn_blocking(move || ClientKeys::generate(&params))
        .await
        .map_err(|e| ClientError::Internal(format!("key generation task failed: {e}")))??;
    tracing::info!(
        key_id = %keys.id(),
        millis = started.elapsed().as_millis() as u64,
        "generated client keys"
    );
    Ok(keys)
}

/// Registers `keys` with the server whose configuration is `config`; refused before anything is
/// sent when their message exceeds the server's stated limit.
pub(super) async fn register(
    grpc: &mut DiscoveryClient<Channel>,
    keys: &ClientKeys,
    config: &ConfigIn,
    deadline: Option<Duration>,
    wire: &mut Wire,
) -> Result<()> {
    let message = v1::RegisterKeysRequest::for_keys(keys);
    let size = message.encoded_len() as u64 + GRPC_FRAME_BYTES;
    let server_limit = config.max_message_bytes();
    if server_limit > 0 && size > server_limit {
        return Err(ClientError::BadConfig(format!(
            "public keys need a {size}-byte message, the server takes at most {server_limit}"
        )));
    }
    wire.send(&message);
    let response = within(
        "RegisterKeys",
        deadline,
        grpc.register_keys(request(message, deadline)),
    )
    .await?
    .map_err(|s| ClientError::rpc("RegisterKeys", s))?;
    wire.receive(&response);
    if response.key_id != keys.id().0 {
        return Err(ClientError::Protocol(format!(
            "server registered the keys as {}, expected {}",
            shown_id(&response.key_id),
            keys.id()
        )));
    }
    tracing::debug!(key_id = %keys.id(), bytes = size, "registered keys");
    Ok(())
}

/// A key id from the wire as [`KeyId`] displays, or its length when it is not one.
fn shown_id(bytes: &[u8]) -> String {
    match <[u8; 32]>::try_from(bytes) {
        Ok(id) => KeyId(id).to_string(),
        Err(_) => format!("a {}-byte id", bytes.len()),
    }
}
