//! The channel to a server: its address (plaintext only to loopback unless allowed), TLS with
//! the given CA or the system's roots, a connect timeout that covers the handshake, and the
//! first GetConfig, where a plaintext client that met a TLS port is told so.

use std::time::Duration;

use pir_proto::{ConfigIn, v1::discovery_client::DiscoveryClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{
    options::ClientOptions,
    rpc::{Wire, get_config},
};
use crate::{
    address::ServerAddress,
    error::{ClientError, Result},
};

/// Opens a channel to `url` (`http://host:port` or `https://`; a bare `host:port` means
/// `https://`) and fetches the server's configuration over it (of `shard`, or of the first
/// shard the server serves).
pub(super) async fn open(
    url: &str,
    options: &ClientOptions,
    shard: Option<u32>,
    wire: &mut Wire,
) -> Result<(DiscoveryClient<Channel>, ConfigIn)> {
    let address = ServerAddress::parse(url).map_err(|reason| ClientError::InvalidAddress {
        url: url.to_owned(),
        reason,
    })?;
    if !address.tls() && !address.is_loopback() && !options.insecure_plaintext {
        return Err(ClientError::PlaintextRefused {
            url: address.to_string(),
        });
    }
    let mut endpoint = Endpoint::from(address.uri().clone());
    if address.tls() {
        let mut tls = ClientTlsConfig::new();
        tls = match &options.tls_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|source| ClientError::Transport {
                url: url.to_owned(),
                source,
            })?;
    } else if options.tls_ca.is_some() {
        return Err(ClientError::BadConfig(format!(
            "a CA certificate was given but {url} is not an https:// URL"
        )));
    }
    if let Some(t) = options.connect_timeout {
        endpoint = endpoint.connect_timeout(t);
    }
    let connect = endpoint.connect();
    let channel = match options.connect_timeout {
        // The connect timeout bounds the TCP connect; this bounds the TLS handshake as well.
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| ClientError::Deadline {
                rpc: "connect",
                after: t,
            })?,
        None => connect.await,
    }
    .map_err(|source| ClientError::transport(&address, source))?;
    let mut grpc = DiscoveryClient::new(channel)
        .max_encoding_message_size(options.max_message_bytes)
        .max_decoding_message_size(options.max_message_bytes);
    let config = match get_config(&mut grpc, shard, options.request_timeout, wire).await {
        Ok(config) => config,
        // The first RPC is where a plaintext client meets a TLS port: it fails in the
        // transport, in one of several ways depending on timing. Ask the port itself.
        Err(e) if !address.tls() && e.status().is_some_and(is_transport_failure) => {
            if answers_with_tls(&address).await {
                return Err(ClientError::TlsMismatch {
                    url: address.to_string(),
                    server_speaks_tls: true,
                });
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    Ok((grpc, config))
}

/// A status made by the client's own transport, not sent by a server.
fn is_transport_failure(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Whether the server at `address` answers the start of an HTTP/2 connection with a TLS record
/// (the alert a TLS server sends for bytes that are not TLS).
async fn answers_with_tls(address: &ServerAddress) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(host) = address.uri().host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = address.uri().port_u16().unwrap_or(80);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 3];
        stream.read_exact(&mut head).await.ok()?;
        // A TLS record: content type alert (21) or handshake (22), protocol version 3.x.
        Some(matches!(head, [21 | 22, 3, 0..=4]))
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
