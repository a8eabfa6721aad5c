//! The gRPC client: connect, register keys, look up, heal.
//!
//! ```text
//! connect:  GetConfig ──▶ config (validated; vetted parameters; with DP keys: the signed header,
//!                         no rollback)
//!           keys: key file (same parameters), or generate (+ save) ──▶ RegisterKeys
//! lookup:   Query(key id, epoch, [query]) ──▶ [answer] ──▶ decrypt + verify
//!             FAILED_PRECONDITION pir-reason: unknown-key ──▶ RegisterKeys, retry
//!             FAILED_PRECONDITION pir-reason: stale-epoch ──▶ GetConfig, re-key if the
//!             or an answer of another snapshot                parameters changed, retry
//! ```
//!
//! Healing is bounded: a lookup makes at most [`MAX_ATTEMPTS`] Query calls. Retries depend only
//! on the server's state, never on the CPI, and each retry is a fresh encryption. Every RPC has
//! a deadline ([`DEFAULT_REQUEST_TIMEOUT`] unless configured).
//!
//! **No selective failure.** [`PirClient::lookup_many`] sends every query of a batch, in order,
//! before it decrypts or verifies any answer: what the client sends, and when, is the same
//! whether an answer holds a mapping, none, or one that fails verification (a server that
//! plants a bad entry under a CPI's tag learns nothing from the client's requests). A failure
//! is reported for its CPI only.

use std::{
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use pir_core::{
    ClientKeys, Cpi, DpKeys, KeyId, LookupClient, LookupResult, SchemeParams, TrustStore,
    lookup::PendingLookup,
};
use pir_proto::{
    AnswerError, AnswerIn, ConfigIn, REASON_KEY, REASON_STALE_EPOCH, REASON_UNKNOWN_KEY,
    v1::{self, discovery_client::DiscoveryClient},
};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::address::ServerAddress;

use crate::{
    error::{ClientError, ParamsRefusal, Result, SnapshotRefusal},
    keyfile::{KeyFile, KeyFileContents, SeenSnapshot},
};

/// Most Query calls one lookup makes (the first try plus healing retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// Default limit on one gRPC message, both ways: public keys are up to about 9 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Default deadline of every RPC: a query's answer scans the whole database (about a second
/// at a million mappings, more while the server is busy), far below this.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// gRPC's length-prefixed framing: a compression flag byte and a 4-byte length.
const GRPC_FRAME_BYTES: u64 = 5;

/// How a [`PirClient`] connects and what it trusts.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The issuer keys whose signatures make a mapping genuine.
    pub trust: TrustStore,
    /// Where to keep the client's keys between runs; `None` generates keys on every connect.
    /// With [`Self::dp_keys`], the file also remembers the newest snapshot verified.
    pub key_file: Option<PathBuf>,
    /// Limit for establishing the connection.
    pub connect_timeout: Option<Duration>,
    /// Deadline of each RPC (a query's answer scans the whole database: be generous). `None`
    /// waits for ever, which a stalled server then makes a hang.
    pub request_timeout: Option<Duration>,
    /// Largest gRPC message sent or received, bytes. Parameters whose keys, queries or
    /// responses need more are refused before any key is made.
    pub max_message_bytes: usize,
    /// PEM file of the CA that signed the server's certificate, for `https://` URLs (the
    /// system's roots are used without it).
    pub tls_ca: Option<PathBuf>,
    /// The DP keys the served snapshot must be signed by (`--dp-pub`). With them, the client
    /// checks the signed snapshot header the server sends and that the configuration is the
    /// one it describes, and refuses an epoch older than the newest it verified (remembered in
    /// the key file, if any, else for this client's life) or another header for that epoch.
    ///
    /// Without them, the configuration is taken as the server states it: a server (or anyone
    /// posing as it) can serve an older snapshot, or one the DP never built, and the client
    /// cannot tell. Mappings are still verified against [`Self::trust`] either way, so a
    /// server cannot forge a mapping, only serve old or partial ones.
    pub dp_keys: Option<DpKeys>,
    /// Accept scheme parameters that are not one of pir-core's vetted presets (for tests and
    /// research: their security and failure probability are unknown). Off by default.
    pub allow_custom_params: bool,
    /// Allow plaintext `http://` to addresses other than this machine's loopback. Off by
    /// default: on a network, anyone on the path could pose as the server.
    pub insecure_plaintext: bool,
    /// Generate and register fresh keys on connect even when [`Self::key_file`] holds usable
    /// ones, and replace them in the file (key rotation). The key id links every lookup made
    /// with one key set; a new set starts a new, unlinked history, at the cost of one key
    /// upload. What the file remembers of verified snapshots is kept.
    pub rotate_keys: bool,
}

impl Default for ClientOptions {
    /// No trusted issuer (every found mapping then fails verification), no key file, a 10 s
    /// connect timeout, a 30 s deadline per RPC, 64 MiB messages, no DP keys, vetted
    /// parameters only, plaintext only to loopback.
    fn default() -> Self {
        Self {
            trust: TrustStore::new(),
            key_file: None,
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls_ca: None,
            dp_keys: None,
            allow_custom_params: false,
            insecure_plaintext: false,
            rotate_keys: false,
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

    /// These options, also accepting parameters that are not vetted presets (tests' small
    /// shapes, research): see [`Self::allow_custom_params`].
    pub fn allowing_custom_params(self) -> Self {
        Self {
            allow_custom_params: true,
            ..self
        }
    }

    /// These options, requiring snapshots signed by `dp_keys`: see [`Self::dp_keys`].
    pub fn with_dp_keys(self, dp_keys: DpKeys) -> Self {
        Self {
            dp_keys: Some(dp_keys),
            ..self
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
    /// Wall time of the lookup's RPCs and of its decoding, milliseconds.
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

/// A request carrying the deadline to the server (`grpc-timeout`), so it can give up too.
fn request<T>(message: T, deadline: Option<Duration>) -> tonic::Request<T> {
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
async fn within<R>(
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

/// Opens a channel to `url` (`http://host:port` or `https://`; a bare `host:port` means
/// `https://`) and fetches the server's configuration over it.
async fn open(
    url: &str,
    options: &ClientOptions,
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
    let config = match get_config(&mut grpc, options.request_timeout, wire).await {
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

async fn get_config(
    grpc: &mut DiscoveryClient<Channel>,
    deadline: Option<Duration>,
    wire: &mut Wire,
) -> Result<ConfigIn> {
    let message = v1::GetConfigRequest {};
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

/// Checks a configuration's snapshot header against the DP keys, and against the newest
/// snapshot verified before (`seen`): the snapshot to remember once it is accepted.
fn verify_snapshot(
    config: &ConfigIn,
    dp_keys: &DpKeys,
    seen: Option<&SeenSnapshot>,
    key_file: Option<&KeyFile>,
) -> Result<SeenSnapshot> {
    let refused = ClientError::SnapshotRefused;
    let (Some(header), Some(hash)) = (config.header(), config.header_hash()) else {
        return Err(refused(SnapshotRefusal::NoHeader));
    };
    header
        .verify_signature(dp_keys)
        .map_err(|e| refused(SnapshotRefusal::Signature(e)))?;
    let offered = SeenSnapshot {
        epoch: header.epoch,
        header_hash: hash,
    };
    let key_file = || key_file.map(|f| f.path().to_path_buf());
    match seen {
        Some(seen) if offered.epoch < seen.epoch => Err(refused(SnapshotRefusal::Rollback {
            offered: offered.epoch,
            seen: seen.epoch,
            key_file: key_file(),
        })),
        Some(seen) if offered.epoch == seen.epoch && offered.header_hash != seen.header_hash => {
            Err(refused(SnapshotRefusal::Fork {
                epoch: offered.epoch,
                offered: short_hash(&offered.header_hash),
                seen: short_hash(&seen.header_hash),
                key_file: key_file(),
            }))
        }
        _ => Ok(offered),
    }
}

/// The first 8 bytes of a hash, in hex: enough to tell two headers apart in a message.
fn short_hash(hash: &[u8; 32]) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses parameters that are not vetted (unless allowed) and any whose messages exceed the
/// client's limit, before a key is made for them.
fn check_params(params: &SchemeParams, options: &ClientOptions) -> Result<()> {
    let refused = |reason| ClientError::RefusedParams {
        params: params.to_string(),
        reason,
    };
    if !options.allow_custom_params && params.as_vetted().is_none() {
        return Err(refused(ParamsRefusal::NotVetted));
    }
    let sizes = params.message_sizes()?;
    let limit = options.max_message_bytes as u64;
    for (what, bytes) in [
        ("public keys", sizes.public_keys),
        ("queries", sizes.query),
        ("responses", sizes.response),
    ] {
        // A message of `bytes` plus its protobuf field header must fit.
        if bytes as u64 + 16 > limit {
            return Err(refused(ParamsRefusal::TooLarge {
                what,
                bytes: bytes as u64,
                limit,
            }));
        }
    }
    Ok(())
}

/// Fetches a server's configuration without making or registering keys.
///
/// With `options.dp_keys`, the snapshot header must verify against them (no rollback memory:
/// nothing is read or written). Parameters are not checked against the vetted presets here:
/// showing them is harmless, and [`PirClient::connect`] refuses them.
pub async fn fetch_config(url: &str, options: &ClientOptions) -> Result<ConfigIn> {
    let (_, config) = open(url, options, &mut Wire::default()).await?;
    if let Some(dp_keys) = &options.dp_keys {
        verify_snapshot(&config, dp_keys, None, None)?;
    }
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

/// The `pir-reason` of a FAILED_PRECONDITION status, if any.
fn reason(status: &tonic::Status) -> Option<&str> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    status.metadata().get(REASON_KEY)?.to_str().ok()
}

/// A query sent and answered, not yet decrypted: decoding waits until every query of the batch
/// is sent. Holds the lookup client the query was made with, so a refresh later in the batch
/// does not change how it decodes.
struct Answered {
    decoder: Arc<LookupClient>,
    pending: PendingLookup,
    answer: Vec<u8>,
    wire: Wire,
    elapsed: Duration,
}

impl Answered {
    fn decode(self) -> Result<LookupOutcome> {
        let started = Instant::now();
        let cpi = self.pending.cpi().to_string();
        let result = self
            .decoder
            .decode(self.pending, &self.answer, pir_core::unix_now())
            .map_err(|source| ClientError::Lookup { cpi, source })?;
        Ok(LookupOutcome {
            result,
            bytes_sent: self.wire.sent,
            bytes_received: self.wire.received,
            millis: (self.elapsed + started.elapsed()).as_secs_f64() * 1000.0,
        })
    }
}

/// A connection to a discovery server, with registered keys, that makes private lookups.
///
/// The secret key never leaves this process (except into the key file, if one is configured).
#[derive(Debug)]
pub struct PirClient {
    url: String,
    grpc: DiscoveryClient<Channel>,
    config: ConfigIn,
    /// Shared with the answers of a batch in flight: see [`Answered`].
    lookup: Arc<LookupClient>,
    /// Kept to rebuild `lookup` with new keys: `LookupClient` does not hand its store back.
    trust: TrustStore,
    key_file: Option<KeyFile>,
    options: ClientOptions,
    /// The newest snapshot verified against the DP keys (with `options.dp_keys` only).
    seen: Option<SeenSnapshot>,
}

impl PirClient {
    /// Connects, fetches and checks the configuration, gets keys and registers them.
    ///
    /// The parameters must be a vetted preset (unless `options.allow_custom_params`); with
    /// `options.dp_keys` the snapshot must be signed and not older than the newest one
    /// verified before (see [`ClientOptions::dp_keys`]). Keys come from `options.key_file`
    /// when it holds keys for the server's parameters; they are then assumed registered (a
    /// server that forgot them says so, and the first lookup registers them). Otherwise fresh
    /// keys are generated, saved and registered.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self> {
        let mut wire = Wire::default();
        let (grpc, config) = open(url, &options, &mut wire).await?;
        let key_file = options.key_file.clone().map(KeyFile::new);
        let stored = match &key_file {
            Some(file) => file.load()?,
            None => None,
        };
        let stored_seen = stored.as_ref().and_then(|c| c.seen);
        let seen = accept(&config, &options, stored_seen.as_ref(), key_file.as_ref())?;
        let (keys, reused) = match stored {
            Some(KeyFileContents { keys, .. })
                if !options.rotate_keys && keys.params() == config.lookup().scheme() =>
            {
                tracing::debug!(key_id = %keys.id(), "reusing stored keys");
                (keys, true)
            }
            other => {
                if other.is_some() && options.rotate_keys {
                    tracing::info!("rotating keys: the stored ones are replaced");
                } else if other.is_some() {
                    tracing::info!("stored keys are for other scheme parameters: replacing them");
                }
                (generate_keys(*config.lookup().scheme()).await?, false)
            }
        };
        if let Some(file) = &key_file
            && (!reused || seen != stored_seen)
        {
            file.write(&keys, seen.as_ref())?;
        }
        let lookup = LookupClient::with_keys(*config.lookup(), keys, options.trust.clone())?;
        let mut client = Self {
            url: url.to_owned(),
            grpc,
            config,
            lookup: Arc::new(lookup),
            trust: options.trust.clone(),
            key_file,
            options,
            seen,
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
    /// Heals an evicted key (re-registers) and a new epoch or snapshot (refreshes the
    /// configuration, and the keys if the parameters changed), retrying at most
    /// [`MAX_ATTEMPTS`] - 1 times. A response that does not decrypt or verify is a
    /// [`ClientError::Lookup`].
    ///
    /// To look up several CPIs, use [`Self::lookup_many`], not this in a loop that stops at
    /// the first error: that would tell the server which query failed to verify.
    pub async fn lookup(&mut self, cpi: &Cpi) -> Result<LookupOutcome> {
        let mut outcomes = self.lookup_many(std::slice::from_ref(cpi)).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(ClientError::Internal("one CPI, one outcome".into())))
    }

    /// Looks up several CPIs, one query each, in order, and reports each one's outcome.
    ///
    /// Every query of the batch is sent, and each is answered, before any answer is decrypted
    /// or verified, so the number, order, sizes and timing of the requests do not depend on
    /// what an answer holds or whether it verifies. A failure (an answer that does not verify,
    /// an RPC the server refused) is that CPI's `Err` and the others still go out: a malicious
    /// server that plants a bad entry under one CPI's tag sees the same requests whether or not
    /// that CPI was asked. Callers that decide what to send next from these results should keep
    /// the same rule: act on a batch's results only once it is complete.
    pub async fn lookup_many(&mut self, cpis: &[Cpi]) -> Vec<Result<LookupOutcome>> {
        let mut answered = Vec::with_capacity(cpis.len());
        for cpi in cpis {
            answered.push(self.exchange(cpi).await);
        }
        answered
            .into_iter()
            .map(|a| a.and_then(Answered::decode))
            .collect()
    }

    /// Sends one CPI's query (healing as needed) and returns its answer, undecoded.
    async fn exchange(&mut self, cpi: &Cpi) -> Result<Answered> {
        let started = Instant::now();
        let mut wire = Wire::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let decoder = Arc::clone(&self.lookup);
            let pending = decoder.query(cpi)?;
            // With the proof of possession: a MAC under the mac key registered with the keys.
            let message = v1::QueryRequest::authenticated(
                decoder.keys(),
                self.config.lookup().epoch(),
                vec![pending.query().to_vec()],
            );
            wire.send(&message);
            let deadline = self.options.request_timeout;
            let reply = within(
                "Query",
                deadline,
                self.grpc.query(request(message, deadline)),
            );
            let heal = match reply.await? {
                Ok(response) => {
                    wire.receive(&response);
                    match AnswerIn::<1>::parse(response, &self.config) {
                        Ok(answer) => {
                            let [answer] = answer.into_answers();
                            tracing::debug!(
                                attempts = attempt,
                                bytes_sent = wire.sent,
                                bytes_received = wire.received,
                                "query answered"
                            );
                            return Ok(Answered {
                                decoder,
                                pending,
                                answer,
                                wire,
                                elapsed: started.elapsed(),
                            });
                        }
                        Err(e @ (AnswerError::Epoch { .. } | AnswerError::Snapshot { .. })) => {
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
                        "the served snapshot changed: refreshing"
                    );
                    self.refresh_counted(&mut wire).await?;
                }
            }
        }
    }

    /// Asks the server for its current configuration (does not change this client's). With
    /// DP keys, its header must verify, and not be older than the newest one verified.
    pub async fn info(&mut self) -> Result<ConfigIn> {
        let config = get_config(
            &mut self.grpc,
            self.options.request_timeout,
            &mut Wire::default(),
        )
        .await?;
        if let Some(dp_keys) = &self.options.dp_keys {
            verify_snapshot(&config, dp_keys, self.seen.as_ref(), self.key_file.as_ref())?;
        }
        Ok(config)
    }

    /// Moves to the server's current configuration now, rather than on the next stale epoch.
    pub async fn refresh(&mut self) -> Result<()> {
        self.refresh_counted(&mut Wire::default()).await
    }

    /// The configuration this client queries (as fetched at connect or the last refresh).
    pub fn config(&self) -> &ConfigIn {
        &self.config
    }

    /// The newest snapshot verified against the DP keys, if the client has them.
    pub fn verified_snapshot(&self) -> Option<SeenSnapshot> {
        self.seen
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
        let message = v1::RegisterKeysRequest::for_keys(keys);
        let size = message.encoded_len() as u64 + GRPC_FRAME_BYTES;
        let server_limit = self.config.max_message_bytes();
        if server_limit > 0 && size > server_limit {
            return Err(ClientError::BadConfig(format!(
                "public keys need a {size}-byte message, the server takes at most {server_limit}"
            )));
        }
        wire.send(&message);
        let deadline = self.options.request_timeout;
        let response = within(
            "RegisterKeys",
            deadline,
            self.grpc.register_keys(request(message, deadline)),
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

    async fn refresh_counted(&mut self, wire: &mut Wire) -> Result<()> {
        let config = get_config(&mut self.grpc, self.options.request_timeout, wire).await?;
        let seen = accept(
            &config,
            &self.options,
            self.seen.as_ref(),
            self.key_file.as_ref(),
        )?;
        let old = self.config.lookup();
        if config.lookup().epoch() == old.epoch()
            && config.header_hash() != self.config.header_hash()
        {
            tracing::warn!(
                epoch = old.epoch(),
                "the server serves another snapshot of the same epoch: following it"
            );
        }
        if config.lookup().scheme() == old.scheme() {
            // Same parameters: the keys stay valid; the layout (salt) may still have changed,
            // and the next query is encrypted for the new one.
            let mut lookup = LookupClient::clone(&self.lookup);
            lookup.set_config(*config.lookup())?;
            self.remember(seen, lookup.keys())?;
            self.lookup = Arc::new(lookup);
            self.config = config;
            return Ok(());
        }
        tracing::info!("scheme parameters changed: new keys");
        let stored = match &self.key_file {
            Some(file) => file.load()?.map(|c| c.keys),
            None => None,
        };
        let keys = match stored {
            Some(keys) if keys.params() == config.lookup().scheme() => keys,
            _ => generate_keys(*config.lookup().scheme()).await?,
        };
        // Built before anything is replaced, so a failure leaves the client as it was.
        let lookup = LookupClient::with_keys(*config.lookup(), keys, self.trust.clone())?;
        if let Some(file) = &self.key_file {
            file.write(lookup.keys(), seen.as_ref())?;
        }
        self.seen = seen;
        self.lookup = Arc::new(lookup);
        self.config = config;
        // Keys from the key file may be registered already, but the server just changed its
        // database: registering is idempotent and saves a failed query.
        self.register(wire).await
    }

    /// Records a newly verified snapshot, in the key file too when it is new.
    fn remember(&mut self, seen: Option<SeenSnapshot>, keys: &ClientKeys) -> Result<()> {
        if seen != self.seen
            && let Some(file) = &self.key_file
        {
            file.write(keys, seen.as_ref())?;
        }
        self.seen = seen;
        Ok(())
    }
}

/// Checks a configuration a client is about to use: its parameters, and with DP keys its
/// snapshot. Returns the snapshot to remember (`seen` unchanged without DP keys).
fn accept(
    config: &ConfigIn,
    options: &ClientOptions,
    seen: Option<&SeenSnapshot>,
    key_file: Option<&KeyFile>,
) -> Result<Option<SeenSnapshot>> {
    if let Some(dp_keys) = &options.dp_keys {
        let verified = verify_snapshot(config, dp_keys, seen, key_file)?;
        check_params(config.lookup().scheme(), options)?;
        return Ok(Some(verified));
    }
    check_params(config.lookup().scheme(), options)?;
    Ok(seen.copied())
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
