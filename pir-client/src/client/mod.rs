//! The gRPC client: connect, register keys, look up, heal.
//!
//! ```text
//! connect:  GetConfig ──▶ config (validated; vetted parameters; with DP keys: the signed header,
//!                         no rollback)
//!           keys: key file (same parameters), or generate (+ save) ──▶ RegisterKeys
//! lookup:   Evaluate(key id, [blinded CPI], mac) ──▶ [evaluated], proof ──▶ y per CPI
//!             (every CPI of the batch, before any query; see evaluate.rs)
//!           Query(key id, epoch, [query]) ──▶ [answer] ──▶ open the CPI's record + verify
//!             FAILED_PRECONDITION pir-reason: unknown-key ──▶ RegisterKeys, retry
//!             FAILED_PRECONDITION pir-reason: stale-epoch ──▶ GetConfig, re-key if the
//!             or an answer of another snapshot                parameters changed, retry
//! ```
//!
//! Evaluations go to the server itself, or to the DP's evaluators when
//! [`ClientOptions::evaluators`] names some, failing over among them (`evaluators.rs`; the keys
//! are registered there too, and renewed at each evaluator that holds them: evaluations are
//! charged to them).
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
//!
//! This file holds [`PirClient`] and runs the steps; each step is a file of its own, and none
//! of them uses this one: `options.rs` ([`ClientOptions`] and the defaults), `rpc.rs` (every
//! RPC under its deadline, its bytes counted), `connect.rs` (the channel, TLS, the first
//! GetConfig), `check.rs` (the configuration's parameters and, with DP keys, its signed
//! header), `keys.rs` (generating, registering and renewing keys), `evaluate.rs` (the blinded OPRF
//! evaluation), `evaluators.rs` (failover among the DP's evaluators), `lookup.rs` (what a Query came back with, how to heal, decoding once the batch
//! is sent). `sharded/` is [`ShardedClient`], which runs these steps per shard of a sharded
//! directory and wraps a [`PirClient`] for an unsharded one.

mod check;
mod connect;
mod evaluate;
mod evaluators;
mod keys;
mod lookup;
mod options;
mod rpc;
mod sharded;

use std::{sync::Arc, time::Instant};

use pir_core::{ClientKeys, Cpi, KeyId, LookupClient, TrustStore, oprf::Evaluated, pir::Scheme};
use pir_proto::{
    ConfigIn,
    v1::{self, discovery_client::DiscoveryClient},
};
use tonic::transport::Channel;

use crate::{
    error::{ClientError, Result},
    keyfile::{KeyFile, KeyFileContents, SeenSnapshot},
};
use check::{accept, verify_snapshot};
use connect::open;
use evaluate::{Evaluations, evaluate};
use evaluators::{Evaluation, Evaluators};
use keys::{Lease, Registrations, Renewal, generate_keys};
use lookup::{Answered, Heal, Reply, read_reply};
use rpc::{Wire, get_config, request, within};

pub use lookup::{LookupOutcome, MAX_ATTEMPTS};
pub use options::{
    ClientOptions, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHARD_ATTEMPTS,
    ShardPrivacy,
};
pub use sharded::ShardedClient;

/// A connection to a discovery server, with registered keys, that makes private lookups.
///
/// The secret key never leaves this process (except into the key file, if one is configured).
#[derive(Debug)]
pub struct PirClient {
    url: String,
    grpc: DiscoveryClient<Channel>,
    /// The DP's evaluators, when it is not this server (`options.evaluators()`), with
    /// failover among them.
    evaluators: Option<Evaluators>,
    config: ConfigIn,
    /// Shared with the answers of a batch in flight: see [`Answered`].
    lookup: Arc<LookupClient>,
    /// Kept to rebuild `lookup` with new keys: `LookupClient` does not hand its store back.
    trust: TrustStore,
    key_file: Option<KeyFile>,
    options: ClientOptions,
    /// The newest snapshot verified against the DP keys (with `options.dp_keys` only).
    seen: Option<SeenSnapshot>,
    /// How long the keys stay registered with the server, and with each evaluator.
    lease: Lease,
    evaluator_leases: Registrations,
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
        let (grpc, config) = open(url, &options, None, &mut wire).await?;
        Self::connected(url, grpc, config, options, wire).await
    }

    /// [`Self::connect`] once the channel is open and the first configuration fetched.
    async fn connected(
        url: &str,
        grpc: DiscoveryClient<Channel>,
        config: ConfigIn,
        options: ClientOptions,
        mut wire: Wire,
    ) -> Result<Self> {
        let key_file = options.key_file.clone().map(KeyFile::new);
        let stored = match &key_file {
            Some(file) => file.load()?,
            None => None,
        };
        let stored_seen = stored.as_ref().and_then(|c| c.seen);
        let seen = accept(&config, &options, stored_seen.as_ref(), key_file.as_ref())?;
        let (lookup, reused) = match config.lookup().scheme() {
            // Nothing to make or register: every query carries its own keys. A key file keeps
            // its Spiral keys, and the newest verified snapshot beside them.
            Scheme::YpirSp(_) => {
                if let (Some(file), Some(contents)) = (&key_file, &stored)
                    && seen != stored_seen
                {
                    file.write(&contents.keys, seen.as_ref())?;
                }
                let lookup = LookupClient::new(config.lookup().clone(), options.trust.clone())?;
                (lookup, true)
            }
            Scheme::Spiral(params) => {
                let (keys, reused) = match stored {
                    Some(KeyFileContents { keys, .. })
                        if !options.rotate_keys && keys.params() == params =>
                    {
                        tracing::debug!(key_id = %keys.id(), "reusing stored keys");
                        (keys, true)
                    }
                    other => {
                        if other.is_some() && options.rotate_keys {
                            tracing::info!("rotating keys: the stored ones are replaced");
                        } else if other.is_some() {
                            tracing::info!(
                                "stored keys are for other scheme parameters: replacing them"
                            );
                        }
                        (generate_keys(*params).await?, false)
                    }
                };
                if let Some(file) = &key_file
                    && (!reused || seen != stored_seen)
                {
                    file.write(&keys, seen.as_ref())?;
                }
                let lookup =
                    LookupClient::with_keys(config.lookup().clone(), keys, options.trust.clone())?;
                (lookup, reused)
            }
        };
        let mut client = Self {
            url: url.to_owned(),
            grpc,
            evaluators: Evaluators::of(&options),
            config,
            lookup: Arc::new(lookup),
            trust: options.trust.clone(),
            key_file,
            options,
            seen,
            lease: Lease::Unknown,
            evaluator_leases: Registrations::default(),
        };
        if !reused {
            client.register(&mut wire).await?;
        }
        if let Some(evaluators) = &mut client.evaluators {
            // Evaluations are charged to the keys: the evaluator must know them too.
            let ours = client.config.lookup().layout().oprf_key;
            evaluators
                .connect(
                    &client.lookup,
                    &ours,
                    &client.options,
                    &mut client.evaluator_leases,
                    &mut wire,
                )
                .await?;
        }
        tracing::debug!(
            url,
            epoch = client.config.lookup().epoch(),
            engine = %client.config.lookup().scheme().engine(),
            key_id = ?client.key_id(),
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

    /// Looks up several CPIs, one evaluation and one query each, in order, and reports each
    /// one's outcome.
    ///
    /// Every CPI is evaluated first (in requests of at most the server's batch limit), then
    /// every query of the batch is sent, and each is answered, before any answer is decrypted
    /// or verified, so the number, order, sizes and timing of the requests do not depend on
    /// what an answer holds or whether it verifies. A failure (an answer that does not verify,
    /// an RPC the server refused) is that CPI's `Err` and the others still go out: a malicious
    /// server that plants a bad entry under one CPI's tag sees the same requests whether or not
    /// that CPI was asked. (A failed evaluation fails its whole request's CPIs, whose queries
    /// are then not sent: the evaluator cannot tell which CPIs it was given, so what it learns
    /// from that is its own doing.) Callers that decide what to send next from these results
    /// should keep the same rule: act on a batch's results only once it is complete.
    pub async fn lookup_many(&mut self, cpis: &[Cpi]) -> Vec<Result<LookupOutcome>> {
        self.keep_registered().await;
        let evaluated = self.evaluate_all(cpis).await;
        let mut answered = Vec::with_capacity(cpis.len());
        for (cpi, evaluated) in cpis.iter().zip(evaluated) {
            answered.push(match evaluated {
                Ok((evaluated, wire)) => self.exchange(&evaluated, wire).await,
                Err(source) => Err(ClientError::BatchEvaluation {
                    cpi: cpi.to_string(),
                    source,
                }),
            });
        }
        answered
            .into_iter()
            .map(|a| a.and_then(Answered::decode))
            .collect()
    }

    /// Evaluates every CPI, in requests of at most the server's batch limit: each CPI with its
    /// share of its request's bytes, or its request's error.
    async fn evaluate_all(
        &mut self,
        cpis: &[Cpi],
    ) -> Vec<std::result::Result<(Evaluated, Wire), Arc<ClientError>>> {
        let per_request = match &self.evaluators {
            Some(evaluators) => evaluators.batch(),
            None => None,
        }
        .unwrap_or(self.config.max_queries_per_request())
        .max(1) as usize;
        let mut out = Vec::with_capacity(cpis.len());
        for chunk in cpis.chunks(per_request) {
            let mut wire = Wire::default();
            match self.evaluate_chunk(chunk, &mut wire).await {
                Ok(evaluated) => {
                    let n = chunk.len() as u64;
                    let share = Wire {
                        sent: wire.sent.div_ceil(n),
                        received: wire.received.div_ceil(n),
                    };
                    out.extend(evaluated.into_iter().map(|e| Ok((e, share))));
                }
                Err(e) => {
                    let e = Arc::new(e);
                    out.extend(chunk.iter().map(|_| Err(Arc::clone(&e))));
                }
            }
        }
        out
    }

    /// Evaluates one request's CPIs, healing an unknown key and a stale configuration.
    async fn evaluate_chunk(&mut self, cpis: &[Cpi], wire: &mut Wire) -> Result<Vec<Evaluated>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let deadline = self.options.request_timeout;
            let lookup = Arc::clone(&self.lookup);
            let heal = match &mut self.evaluators {
                // Failover among the evaluators, registering with them, is theirs.
                Some(evaluators) => {
                    let ours = self.config.lookup().layout().oprf_key;
                    let options = &self.options;
                    let leases = &mut self.evaluator_leases;
                    match evaluators
                        .evaluate(&lookup, cpis, &ours, options, leases, wire)
                        .await?
                    {
                        Evaluation::Done(evaluated) => return Ok(evaluated),
                        Evaluation::Refresh(e) => Heal::Refresh(e),
                    }
                }
                None => match evaluate(&mut self.grpc, &lookup, cpis, deadline, wire).await? {
                    Evaluations::Done(evaluated) => return Ok(evaluated),
                    Evaluations::Heal(heal) => heal,
                },
            };
            match heal {
                Heal::Register(e) | Heal::Refresh(e) if attempt >= MAX_ATTEMPTS => return Err(e),
                Heal::Register(_) => {
                    tracing::info!(key_id = ?self.key_id(), "server does not know our keys");
                    self.register(wire).await?;
                }
                Heal::Refresh(_) => {
                    tracing::info!("evaluation not proven under our snapshot's key: refreshing");
                    self.refresh_counted(wire).await?;
                }
            }
        }
    }

    /// Sends one evaluated CPI's query (healing as needed) and returns its answer, undecoded.
    async fn exchange(&mut self, evaluated: &Evaluated, mut wire: Wire) -> Result<Answered> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let decoder = Arc::clone(&self.lookup);
            let pending = decoder.query(evaluated)?;
            // With the proof of possession: a MAC under the mac key registered with the keys
            // (YPIR+SP's queries carry their own keys, and no key id).
            let epoch = self.config.lookup().epoch();
            let queries = vec![pending.query().to_vec()];
            let message = match decoder.keys() {
                Some(keys) => v1::QueryRequest::authenticated(keys, epoch, queries),
                None => v1::QueryRequest::keyless(epoch, queries),
            };
            wire.send(&message);
            let deadline = self.options.request_timeout;
            let reply = within(
                "Query",
                deadline,
                self.grpc.query(request(message, deadline)),
            );
            let heal = match read_reply(reply.await?, &self.config, &mut wire)? {
                Reply::Answer(answer) => {
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
                Reply::Heal(heal) => heal,
            };
            match heal {
                Heal::Register(e) | Heal::Refresh(e) if attempt >= MAX_ATTEMPTS => return Err(e),
                Heal::Register(_) => {
                    tracing::info!(
                        key_id = ?self.key_id(),
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
            None,
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

    /// The id of this client's public keys; `None` for a YPIR+SP snapshot (no keys).
    pub fn key_id(&self) -> Option<KeyId> {
        self.lookup.keys().map(ClientKeys::id)
    }

    /// The server address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// When the keys' registration with the server expires, as it last said (`None` before
    /// it said, or when it states none). The client renews it by itself before then.
    pub fn registered_until(&self) -> Option<std::time::SystemTime> {
        self.lease.expires_at()
    }

    /// Renews the keys' registrations that are due (half their lifetime passed, or not known
    /// yet), and registers keys a server no longer knows. Failures are only logged: the lookup
    /// that follows heals or reports them itself.
    async fn keep_registered(&mut self) {
        let deadline = self.options.request_timeout;
        let mut wire = Wire::default();
        let Some(keys) = self.lookup.keys().cloned() else {
            return;
        };
        if self.lease.due() {
            let renewal = keys::renew(&mut self.grpc, &keys, deadline, &mut wire).await;
            match renewal {
                Ok(Renewal::Renewed(lease)) => self.lease = lease,
                Ok(Renewal::Unsupported) => self.lease = Lease::Forever,
                Ok(Renewal::Unknown) => {
                    if let Err(e) = self.register(&mut wire).await {
                        tracing::warn!(error = %e, "registering keys again failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing the keys' registration failed"),
            }
        }
        // An evaluator that lost the keys registers them again on the next evaluation.
        self.evaluator_leases
            .renew_due(&keys, deadline, &mut wire)
            .await;
    }

    /// Registers the keys (nothing to do for YPIR+SP, which has none).
    async fn register(&mut self, wire: &mut Wire) -> Result<()> {
        let deadline = self.options.request_timeout;
        let Some(keys) = self.lookup.keys() else {
            return Ok(());
        };
        self.lease = keys::register(&mut self.grpc, keys, &self.config, deadline, wire).await?;
        Ok(())
    }

    async fn refresh_counted(&mut self, wire: &mut Wire) -> Result<()> {
        let config = get_config(&mut self.grpc, None, self.options.request_timeout, wire).await?;
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
            lookup.set_config(config.lookup().clone())?;
            self.remember(seen, lookup.keys())?;
            self.lookup = Arc::new(lookup);
            self.config = config;
            return Ok(());
        }
        tracing::info!(
            engine = %config.lookup().scheme().engine(),
            "scheme parameters changed: new keys"
        );
        let stored = match &self.key_file {
            Some(file) => file.load()?.map(|c| c.keys),
            None => None,
        };
        // Built before anything is replaced, so a failure leaves the client as it was.
        let lookup = match config.lookup().scheme() {
            Scheme::YpirSp(_) => LookupClient::new(config.lookup().clone(), self.trust.clone())?,
            Scheme::Spiral(params) => {
                let keys = match stored {
                    Some(keys) if keys.params() == params => keys,
                    _ => generate_keys(*params).await?,
                };
                LookupClient::with_keys(config.lookup().clone(), keys, self.trust.clone())?
            }
        };
        if let (Some(file), Some(keys)) = (&self.key_file, lookup.keys()) {
            file.write(keys, seen.as_ref())?;
        }
        self.seen = seen;
        self.lookup = Arc::new(lookup);
        self.config = config;
        // Keys from the key file may be registered already, but the server just changed its
        // database: registering is idempotent and saves a failed query.
        self.register(wire).await
    }

    /// Records a newly verified snapshot, in the key file too when it is new (a key file
    /// holds it beside Spiral keys: a YPIR+SP client without them keeps it in memory).
    fn remember(&mut self, seen: Option<SeenSnapshot>, keys: Option<&ClientKeys>) -> Result<()> {
        if seen != self.seen
            && let (Some(file), Some(keys)) = (&self.key_file, keys)
        {
            file.write(keys, seen.as_ref())?;
        }
        self.seen = seen;
        Ok(())
    }
}

/// Fetches a server's configuration without making or registering keys.
///
/// With `options.dp_keys`, the snapshot header must verify against them (no rollback memory:
/// nothing is read or written). Parameters are not checked against the vetted presets here:
/// showing them is harmless, and [`PirClient::connect`] refuses them.
pub async fn fetch_config(url: &str, options: &ClientOptions) -> Result<ConfigIn> {
    let (_, config) = open(url, options, None, &mut Wire::default()).await?;
    if let Some(dp_keys) = &options.dp_keys {
        verify_snapshot(&config, dp_keys, None, None)?;
    }
    Ok(config)
}
