//! How a client connects and what it trusts, and the defaults that hold against a hostile
//! server.

use std::{path::PathBuf, time::Duration};

use pir_core::{DpKeys, TrustStore};

use crate::shard_map::ShardMap;

/// Default limit on one gRPC message, both ways: public keys are up to about 9 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Default deadline of every RPC: a query's answer scans the whole database (about a second
/// at a million mappings, more while the server is busy), far below this.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on the Query attempts one query of a sharded lookup makes across its shard's
/// replicas (each on another replica, with a fresh encryption).
pub const DEFAULT_SHARD_ATTEMPTS: u32 = 3;

/// What the routing of a sharded lookup tells the servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShardPrivacy {
    /// Each CPI's query goes to its own shard only: the servers learn which shard, that is
    /// log2(N) bits of the CPI's OPRF output (a CPI's shard, not the CPI; as Apple's PIR
    /// service does for its shards). Without [`ClientOptions::pad_shards`], a batch also shows
    /// how many of its CPIs fall in each shard.
    #[default]
    Shard,
    /// Each CPI is queried in every shard and only its own shard's answer is decoded: N times
    /// the queries, nothing learnt from routing.
    AllShards,
}

impl std::fmt::Display for ShardPrivacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shard => "shard",
            Self::AllShards => "all-shards",
        })
    }
}

impl std::str::FromStr for ShardPrivacy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shard" => Ok(Self::Shard),
            "all-shards" => Ok(Self::AllShards),
            _ => Err(format!(
                "unknown shard privacy mode {s:?}: use shard or all-shards"
            )),
        }
    }
}

/// How a [`PirClient`](crate::PirClient) connects and what it trusts.
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
    /// The DP's evaluator (`--evaluator URL`), when the server is a PIR host without the OPRF
    /// key. `None` asks the server itself. The keys are registered with both; the evaluator's
    /// snapshot must be keyed by the same OPRF key as the server's.
    pub evaluator: Option<String>,
    /// More of the DP's evaluators (`--evaluator URL` repeated), tried in order after
    /// [`Self::evaluator`] when it cannot be reached, answers UNAVAILABLE, passes the deadline,
    /// answers no evaluations or fails to register the keys: at most [`Self::shard_attempts`]
    /// attempts per Evaluate request, each with a fresh blinding. Each must be keyed by the same
    /// OPRF key. See [`Self::evaluators`].
    pub fallback_evaluators: Vec<String>,
    /// How to reach each shard of a sharded directory (`--shard-endpoints`, `--shard-map`),
    /// for a [`ShardedClient`](crate::ShardedClient). `None`: every shard through the endpoint
    /// it connects to, which must then serve them all.
    pub shard_map: Option<ShardMap>,
    /// What a sharded lookup's routing tells the servers (`--shard-privacy`).
    pub shard_privacy: ShardPrivacy,
    /// In [`ShardPrivacy::Shard`] mode, pad every batch with cover queries so that every
    /// shard receives as many queries as the batch's busiest shard (`--pad-shards`): the
    /// per-shard counts then tell nothing. Without it, they tell how many of the batch's CPIs
    /// fall in each shard. (Every shard always gets every CPI in `AllShards` mode.)
    pub pad_shards: bool,
    /// Most Query attempts one query of a sharded lookup makes across its shard's replicas
    /// (`--shard-attempts`): a replica that is unreachable, UNAVAILABLE, past the deadline,
    /// refused or failing to register the keys is left for the next one. At least 1. It bounds
    /// the Evaluate attempts of a request across [`Self::evaluators`] the same way.
    pub shard_attempts: u32,
}

impl Default for ClientOptions {
    /// No trusted issuer (every found mapping then fails verification), no key file, a 10 s
    /// connect timeout, a 30 s deadline per RPC, 64 MiB messages, no DP keys, vetted
    /// parameters only, plaintext only to loopback; sharded: every shard through the first
    /// endpoint, `shard` privacy without padding, 3 attempts per query.
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
            evaluator: None,
            fallback_evaluators: Vec::new(),
            shard_map: None,
            shard_privacy: ShardPrivacy::Shard,
            pad_shards: false,
            shard_attempts: DEFAULT_SHARD_ATTEMPTS,
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

    /// These options, with evaluations going to `urls` in order (the first, then the next when
    /// one fails): [`Self::evaluator`] the first, [`Self::fallback_evaluators`] the rest.
    pub fn with_evaluators(self, urls: impl IntoIterator<Item = String>) -> Self {
        let mut urls = urls.into_iter();
        Self {
            evaluator: urls.next(),
            fallback_evaluators: urls.collect(),
            ..self
        }
    }

    /// Every evaluator, in the order they are tried: [`Self::evaluator`] then
    /// [`Self::fallback_evaluators`], each once. Empty: the server evaluates.
    pub fn evaluators(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for url in self.evaluator.iter().chain(&self.fallback_evaluators) {
            if !all.contains(url) {
                all.push(url.clone());
            }
        }
        all
    }

    /// These options, requiring snapshots signed by `dp_keys`: see [`Self::dp_keys`].
    pub fn with_dp_keys(self, dp_keys: DpKeys) -> Self {
        Self {
            dp_keys: Some(dp_keys),
            ..self
        }
    }
}
