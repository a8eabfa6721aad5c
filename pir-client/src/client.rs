//! The gRPC client: connect, register keys, look up, heal.
//!
//! ```text
//! connect:  GetConfig ──▶ config (validated)
//!           keys: key file (same parameters), or generate (+ save) ──▶ RegisterKeys
//! lookup:   Query(key id, epoch, [query]) ──▶ [answer] ──▶ decrypt + verify
//!             FAILED_PRECONDITION pir-reason: unknown-key ──▶ RegisterKeys, retry
//!             FAILED_PRECONDITION pir-reason: stale-epoch ──▶ GetConfig, re-key if the
//!                                                             parameters changed, retry
//! ```
//!
//! Healing is bounded: a lookup makes at most [`MAX_ATTEMPTS`] Query calls. Retries depend only
//! on the server's state, never on the CPI, and each retry is a fresh encryption.

use std::{path::PathBuf, time::Duration, time::Instant};

use pir_core::{ClientKeys, Cpi, KeyId, LookupClient, LookupResult, SchemeParams, TrustStore};
use pir_proto::{
    AnswerError, AnswerIn, ConfigIn, REASON_KEY, REASON_STALE_EPOCH, REASON_UNKNOWN_KEY,
    v1::{self, discovery_client::DiscoveryClient},
};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::address::ServerAddress;

use crate::{
    error::{ClientError, Result},
    keyfile::{KeyFile, StoredKeys},
};

/// Most Query calls one lookup makes (the first try plus healing retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// Default limit on one gRPC message, both ways: public keys are up to about 9 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// gRPC's length-prefixed framing: a compression flag byte and a 4-byte length.
const GRPC_FRAME_BYTES: u64 = 5;

/// How a [`PirClient`] connects and what it trusts.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The issuer keys whose signatures make a mapping genuine.
    pub trust: TrustStore,
    /// Where to keep the client's keys between runs; `None` generates keys on every connect.
    pub key_file: Option<PathBuf>,
    /// Limit for establishing the connection.
    pub connect_timeout: Option<Duration>,
    /// Limit for each RPC (a query's answer scans the whole database: be generous).
    pub request_timeout: Option<Duration>,
    /// Largest gRPC message sent or received, bytes.
    pub max_message_bytes: usize,
    /// PEM file of the CA that signed the server's certificate, for `https://` URLs (the
    /// system's roots are used without it). `http://` URLs are plaintext, by request.
    pub tls_ca: Option<PathBuf>,
}

impl Default for ClientOptions {
    /// No trusted issuer (every found mapping then fails verification), no key file, a 10 s
    /// connect timeout, no request timeout, 64 MiB messages.
    fn default() -> Self {
        Self {
            trust: TrustStore::new(),
            key_file: None,
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls_ca: None,
        }
    }
}

impl ClientOptions {
    /// Defaults, trusting `trust`.
    pub fn new(trust: TrustStore) -> Self {
        Self {
            trust,
            ..Self::default()
        }
    }
}

/// One finished lookup and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupOutcome {
    /// The verified mappings (empty when the CPI is not found).
    pub result: LookupResult,
    /// Bytes sent for this lookup: every protobuf message of every RPC it made (healing
    /// included), plus 5 bytes of gRPC framing each. HTTP/2 and TLS overhead are not counted.
    pub bytes_sent: u64,
    /// Bytes received for this lookup, counted the same way.
    pub bytes_received: u64,
    /// Wall time of the lookup, milliseconds.
    pub millis: f64,
}

/// Bytes of protobuf messages, as seen on the wire.
#[derive(Clone, Copy, Debug, Default)]
struct Wire {
    sent: u64,
    received: u64,
}

impl Wire {
    fn send(&mut self, m: &impl Message) {
        self.sent += m.encoded_len() as u64 + GRPC_FRAME_BYTES;
    }

    fn receive(&mut self, m: &impl Message) {
        self.received += m.encoded_len() as u64 + GRPC_FRAME_BYTES;
    }
}

/// What to do after a failed attempt, and the error to report if no attempt is left.
enum Heal {
    Register(ClientError),
    Refresh(ClientError),
}

/// Opens a channel to `url` (`http://host:port` or `https://`; a bare `host:port` means
/// `http://`) and fetches the server's configuration over it.
async fn open(
    url: &str,
    options: &ClientOptions,
    wire: &mut Wire,
) -> Result<(DiscoveryClient<Channel>, ConfigIn)> {
    let address = ServerAddress::parse(url).map_err(|reason| ClientError::InvalidAddress {
        url: url.to_owned(),
        reason,
    })?;
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
    if let Some(t) = options.request_timeout {
        endpoint = endpoint.timeout(t);
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::transport(&address, source))?;
    let mut grpc = DiscoveryClient::new(channel)
        .max_encoding_message_size(options.max_message_bytes)
        .max_decoding_message_size(options.max_message_bytes);
    let config = match get_config(&mut grpc, wire).await {
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

async fn get_config(grpc: &mut DiscoveryClient<Channel>, wire: &mut Wire) -> Result<ConfigIn> {
    let request = v1::GetConfigRequest {};
    wire.send(&request);
    let response = grpc
        .get_config(request)
        .await
        .map_err(|s| ClientError::rpc("GetConfig", s))?
        .into_inner();
    wire.receive(&response);
    ConfigIn::try_from(response).map_err(ClientError::InvalidServerConfig)
}

/// Fetches a server's configuration without making or registering keys.
pub async fn fetch_config(url: &str, options: &ClientOptions) -> Result<ConfigIn> {
    let (_, config) = open(url, options, &mut Wire::default()).await?;
    Ok(config)
}

/// Generates keys off the async runtime's worker threads (it takes hundreds of milliseconds).
async fn generate_keys(params: SchemeParams) -> Result<ClientKeys> {
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

/// Keys for `params`: from the key file when it holds matching ones (`true`: reused), else
/// fresh ones, saved to the key file if there is one.
async fn keys_for(params: &SchemeParams, key_file: Option<&KeyFile>) -> Result<(ClientKeys, bool)> {
    let Some(file) = key_file else {
        return Ok((generate_keys(*params).await?, false));
    };
    match file.read_for(params)? {
        StoredKeys::Matching(keys) => {
            tracing::debug!(
                path = %file.path().display(),
                key_id = %keys.id(),
                "reusing stored keys"
            );
            return Ok((keys, true));
        }
        StoredKeys::OtherParams(_) => tracing::info!(
            path = %file.path().display(),
            "stored keys are for other scheme parameters: replacing them"
        ),
        StoredKeys::Missing => {}
    }
    let keys = generate_keys(*params).await?;
    file.write(&keys)?;
    Ok((keys, false))
}

/// The `pir-reason` of a FAILED_PRECONDITION status, if any.
fn reason(status: &tonic::Status) -> Option<&str> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    status.metadata().get(REASON_KEY)?.to_str().ok()
}

/// A connection to a discovery server, with registered keys, that makes private lookups.
///
/// The secret key never leaves this process (except into the key file, if one is configured).
#[derive(Debug)]
pub struct PirClient {
    url: String,
    grpc: DiscoveryClient<Channel>,
    config: ConfigIn,
    lookup: LookupClient,
    /// Kept to rebuild `lookup` with new keys: `LookupClient` does not hand its store back.
    trust: TrustStore,
    key_file: Option<KeyFile>,
}

impl PirClient {
    /// Connects, fetches the configuration, gets keys and registers them.
    ///
    /// Keys come from `options.key_file` when it holds keys for the server's parameters; they
    /// are then assumed registered (a server that forgot them says so, and the first lookup
    /// registers them). Otherwise fresh keys are generated, saved and registered.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self> {
        let mut wire = Wire::default();
        let (grpc, config) = open(url, &options, &mut wire).await?;
        let key_file = options.key_file.map(KeyFile::new);
        let (keys, reused) = keys_for(config.lookup().scheme(), key_file.as_ref()).await?;
        let lookup = LookupClient::with_keys(*config.lookup(), keys, options.trust.clone())?;
        let mut client = Self {
            url: url.to_owned(),
            grpc,
            config,
            lookup,
            trust: options.trust,
            key_file,
        };
        if !reused {
            client.register(&mut wire).await?;
        }
        tracing::debug!(
            url,
            epoch = client.config.lookup().epoch(),
            key_id = %client.key_id(),
            bytes_sent = wire.sent,
            bytes_received = wire.received,
            "connected"
        );
        Ok(client)
    }

    /// Looks up one CPI privately and verifies what comes back.
    ///
    /// Heals an evicted key (re-registers) and a new epoch (refreshes the configuration, and the
    /// keys if the parameters changed), retrying at most [`MAX_ATTEMPTS`] - 1 times. A response
    /// that does not decrypt or verify is a [`ClientError::Lookup`].
    pub async fn lookup(&mut self, cpi: &Cpi) -> Result<LookupOutcome> {
        let started = Instant::now();
        let mut wire = Wire::default();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let pending = self.lookup.query(cpi)?;
            let mut request = v1::QueryRequest {
                key_id: self.key_id().0.to_vec(),
                epoch: self.config.lookup().epoch(),
                queries: vec![pending.query().to_vec()],
                ..Default::default()
            };
            // The proof of possession: a MAC under the mac key registered with the keys.
            request.authenticate(self.lookup.keys());
            wire.send(&request);
            let heal = match self.grpc.query(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    wire.receive(&response);
                    match AnswerIn::<1>::parse(response, self.config.lookup().epoch()) {
                        Ok(answer) => {
                            let [answer] = answer.into_answers();
                            let now = pir_core::unix_now();
                            break self
                                .lookup
                                .decode(pending, &answer, now)
                                .map_err(|source| ClientError::Lookup {
                                    cpi: cpi.to_string(),
                                    source,
                                })?;
                        }
                        Err(e @ AnswerError::Epoch { .. }) => {
                            Heal::Refresh(ClientError::Protocol(e.to_string()))
                        }
                        Err(e @ AnswerError::Count { .. }) => {
                            return Err(ClientError::Protocol(e.to_string()));
                        }
                    }
                }
                Err(status) => match reason(&status) {
                    Some(REASON_UNKNOWN_KEY) => Heal::Register(ClientError::rpc("Query", status)),
                    Some(REASON_STALE_EPOCH) => Heal::Refresh(ClientError::rpc("Query", status)),
                    _ => return Err(ClientError::rpc("Query", status)),
                },
            };
            match heal {
                Heal::Register(e) | Heal::Refresh(e) if attempt >= MAX_ATTEMPTS => return Err(e),
                Heal::Register(_) => {
                    tracing::info!(
                        key_id = %self.key_id(),
                        "server does not know our keys: registering"
                    );
                    self.register(&mut wire).await?;
                }
                Heal::Refresh(_) => {
                    tracing::info!(
                        epoch = self.config.lookup().epoch(),
                        "epoch changed: refreshing"
                    );
                    self.refresh_counted(&mut wire).await?;
                }
            }
        };
        let outcome = LookupOutcome {
            result,
            bytes_sent: wire.sent,
            bytes_received: wire.received,
            millis: started.elapsed().as_secs_f64() * 1000.0,
        };
        tracing::debug!(
            attempts = attempt,
            bytes_sent = outcome.bytes_sent,
            bytes_received = outcome.bytes_received,
            millis = outcome.millis,
            "lookup done"
        );
        Ok(outcome)
    }

    /// Looks up several CPIs, one after the other, in order; stops at the first error.
    pub async fn lookup_many(&mut self, cpis: &[Cpi]) -> Result<Vec<LookupOutcome>> {
        let mut out = Vec::with_capacity(cpis.len());
        for cpi in cpis {
            out.push(self.lookup(cpi).await?);
        }
        Ok(out)
    }

    /// Asks the server for its current configuration (does not change this client's).
    pub async fn info(&mut self) -> Result<ConfigIn> {
        get_config(&mut self.grpc, &mut Wire::default()).await
    }

    /// Moves to the server's current configuration now, rather than on the next stale epoch.
    pub async fn refresh(&mut self) -> Result<()> {
        self.refresh_counted(&mut Wire::default()).await
    }

    /// The configuration this client queries (as fetched at connect or the last refresh).
    pub fn config(&self) -> &ConfigIn {
        &self.config
    }

    /// The id of this client's public keys.
    pub fn key_id(&self) -> KeyId {
        self.lookup.keys().id()
    }

    /// The server address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn register(&mut self, wire: &mut Wire) -> Result<()> {
        let keys = self.lookup.keys();
        let request = v1::RegisterKeysRequest::for_keys(keys);
        let size = request.encoded_len() as u64 + GRPC_FRAME_BYTES;
        let server_limit = self.config.max_message_bytes();
        if server_limit > 0 && size > server_limit {
            return Err(ClientError::BadConfig(format!(
                "public keys need a {size}-byte message, the server takes at most {server_limit}"
            )));
        }
        wire.send(&request);
        let response = self
            .grpc
            .register_keys(request)
            .await
            .map_err(|s| ClientError::rpc("RegisterKeys", s))?
            .into_inner();
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

    async fn refresh_counted(&mut self, wire: &mut Wire) -> Result<()> {
        let config = get_config(&mut self.grpc, wire).await?;
        if config.lookup().scheme() == self.config.lookup().scheme() {
            // Same parameters: the keys stay valid; the layout (salt) may still have changed,
            // and the next query is encrypted for the new one.
            self.lookup.set_config(*config.lookup())?;
            self.config = config;
            return Ok(());
        }
        tracing::info!("scheme parameters changed: new keys");
        let (keys, _) = keys_for(config.lookup().scheme(), self.key_file.as_ref()).await?;
        // Built before anything is replaced, so a failure leaves the client as it was.
        self.lookup = LookupClient::with_keys(*config.lookup(), keys, self.trust.clone())?;
        self.config = config;
        // Keys from the key file may be registered already, but the server just changed its
        // database: registering is idempotent and saves a failed query.
        self.register(wire).await
    }
}

/// A key id from the wire as [`KeyId`] displays, or its length when it is not one.
fn shown_id(bytes: &[u8]) -> String {
    match <[u8; 32]>::try_from(bytes) {
        Ok(id) => KeyId(id).to_string(),
        Err(_) => format!("a {}-byte id", bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lookup` reports a response that does not answer its query with the messages it always
    /// has: they are what a user sees of a misbehaving server.
    #[test]
    fn answer_refusals_keep_their_messages() {
        let epoch = AnswerError::Epoch { got: 3, asked: 2 };
        assert_eq!(
            ClientError::Protocol(epoch.to_string()).to_string(),
            "protocol violation by the server: answer for epoch 3, asked for epoch 2"
        );
        for (got, shown) in [(0, "0 answers to 1 query"), (2, "2 answers to 1 query")] {
            let count = AnswerError::Count { got, sent: 1 };
            assert_eq!(
                ClientError::Protocol(count.to_string()).to_string(),
                format!("protocol violation by the server: {shown}")
            );
        }
    }
}
