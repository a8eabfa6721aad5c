//! The server's one error type, and the one place errors become gRPC statuses.
//!
//! Only serving errors live here: the DP tooling has `pir_dp::DpError`, and the serve process's
//! start-up failures (flags, files, listeners) are `process::ProcessError`. So every variant is
//! something a request or a reload can meet, and the mapping to a status is exhaustive.

use std::path::PathBuf;

use pir_core::{CoreError, ErrorClass};
use pir_proto::{
    EvaluateError, QueryError, REASON_KEY, REASON_STALE_EPOCH, REASON_UNKNOWN_KEY,
    RETRY_AFTER_MS_KEY, RegisterKeysError, RenewKeysError,
};

use crate::keystore::KeyStoreError;
use tonic::{Code, Status, metadata::MetadataValue};

/// Everything that can go wrong serving: a request, a reload, the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    // ---- bad input from a request --------------------------------------------------------------
    /// A request whose shape is wrong (no queries, a key id or key set of the wrong length).
    #[error("malformed request: {0}")]
    Malformed(MalformedRequest),
    /// The key id is not registered (or was evicted).
    #[error("unknown key id {0}; register the keys again")]
    UnknownKey(String),
    /// Keys sent to a server whose engine takes none (RegisterKeys, RenewKeys).
    #[error(
        "this server's snapshot uses the {0} engine, which takes no keys: query without \
         registering (GetConfig names the engine)"
    )]
    NoKeysTaken(pir_core::Engine),
    /// A request without keys to a server whose engine needs them: the client's configuration
    /// is out of date.
    #[error(
        "this server's snapshot uses the {0} engine, whose queries and evaluations need \
         registered keys: fetch the configuration again"
    )]
    KeysNeeded(pir_core::Engine),
    /// The request names another epoch than the one served.
    #[error("stale epoch {requested}; the server is at epoch {current}")]
    StaleEpoch {
        /// Epoch in the request.
        requested: u64,
        /// Epoch served.
        current: u64,
    },
    /// Too many queries in one request.
    #[error("{got} queries in one request; at most {max}")]
    TooManyQueries {
        /// Queries sent.
        got: usize,
        /// The limit.
        max: u32,
    },
    /// Too many blinded elements in one evaluation (the same limit as queries: a lookup is one
    /// of each).
    #[error("{got} blinded elements in one evaluation; at most {max}")]
    TooManyElements {
        /// Elements sent.
        got: usize,
        /// The limit (`--max-queries-per-request`).
        max: u32,
    },
    /// A key or peer is over its rate limit.
    #[error("rate limit of this {who} exceeded; {}", retry_hint(*.retry_after))]
    RateLimited {
        /// Whose limit.
        who: RateLimited,
        /// When the limit lets the request through; `None` when it never does (the request
        /// needs more tokens than the limit's burst).
        retry_after: Option<std::time::Duration>,
    },
    /// An Admin request without the right bearer token.
    #[error("admin token required")]
    AdminTokenRequired,
    /// A request that fails the proof of possession on queries.
    #[error("{0}")]
    QueryAuth(QueryAuthError),
    /// A request from a client older than this server's protocol needs (no mac key, no MAC).
    #[error("{0}; upgrade the client")]
    ClientTooOld(&'static str),
    /// The request took longer than the server's deadline.
    #[error("request took longer than {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// One key set needs more memory than the whole key cache may use.
    #[error("keys need about {cost} bytes but the key cache holds {budget}")]
    KeyCacheTooSmall {
        /// Estimated bytes of the keys.
        cost: u64,
        /// The cache's budget.
        budget: u64,
    },
    /// The key store (Redis, the embedded file) cannot be asked: registrations and renewals
    /// are refused until it is back (what failed is logged, not sent).
    #[error(
        "the key store ({}) is unavailable: keys cannot be registered or renewed now; retry \
         later",
        .0.backend()
    )]
    KeyStore(KeyStoreError),
    /// Every answer slot is busy.
    #[error("overloaded: {0} answers in progress; retry later")]
    Overloaded(usize),
    /// The process has bound its ports but not finished loading its snapshot.
    #[error("the server is still loading its snapshot; retry shortly")]
    Loading,
    /// Evaluate on a server started without `--oprf-key` (a PIR host only).
    #[error(
        "this server holds no OPRF key and answers no evaluations: ask the DP's evaluator \
         (pir-client --evaluator URL)"
    )]
    NoEvaluator,
    /// A GetConfig or Query for a shard this process does not serve.
    #[error(
        "shard {shard} is not served here (this endpoint serves shards {served:?}): ask that shard's endpoints"
    )]
    ShardNotServed {
        /// The shard asked for.
        shard: u32,
        /// The shards served here.
        served: Vec<u32>,
    },
    /// A request body the listener refused before its handler finished.
    #[error("{}", refusal.message(path))]
    RequestBody {
        /// The request's path (a gRPC method's).
        path: String,
        /// Which of the listener's limits it broke.
        refusal: BodyRefusal,
    },

    // ---- a snapshot offered for serving --------------------------------------------------------
    /// A snapshot refused by policy: not signed by a trusted DP key.
    #[error("refused: {}: {reason}", path.display())]
    Refused {
        /// The snapshot file.
        path: PathBuf,
        /// Why its signature does not count (unsigned, unknown key, bad signature).
        reason: CoreError,
    },

    /// A snapshot whose epoch is not above the one served, in a reload that was not forced: a
    /// rollback, or another build under the same epoch (with its own salt clients would look
    /// CPIs up in the wrong layout and find nothing, silently).
    #[error(
        "refused: {}: epoch {epoch} is not above the serving epoch {serving}; build with a \
         higher --epoch, or force (Admin Reload with force: true)",
        path.display()
    )]
    EpochNotRising {
        /// The snapshot file.
        path: PathBuf,
        /// Its epoch.
        epoch: u64,
        /// The epoch served.
        serving: u64,
    },
    /// The snapshot replaced by the last reload is still held by requests in flight: loading
    /// another now would keep three snapshots in memory.
    #[error(
        "refused: the snapshot replaced by the last reload is still in use by requests in flight \
         after {0:?}; retry once they finish"
    )]
    PreviousSnapshotInUse(std::time::Duration),
    /// A shard of a sharded directory offered as a whole snapshot (`--snapshot`).
    #[error(
        "refused: the snapshot is shard {index} of {count} of a sharded directory: serve it with \
         --manifest (its directory's manifest.pirman) --shards {index}"
    )]
    ShardWithoutManifest {
        /// Its index.
        index: u32,
        /// Shards in its directory.
        count: u32,
    },
    /// `--shards` names a shard the manifest does not have.
    #[error("--shards names shard {index}, but the manifest has {count} (0 to {})", count.saturating_sub(1))]
    NoSuchShard {
        /// The index named.
        index: u32,
        /// Shards in the manifest.
        count: u32,
    },
    /// A snapshot keyed by another OPRF key than the one this server evaluates with.
    #[error(
        "refused: the snapshot is keyed by OPRF public key {snapshot}, but this server \
         evaluates with {served} (--oprf-key): its clients would find nothing; serve it with \
         its own key, or build it with this one"
    )]
    OprfKeyMismatch {
        /// The snapshot's OPRF public key, hex.
        snapshot: String,
        /// This server's, hex.
        served: String,
    },

    // ---- wrapped -------------------------------------------------------------------------------
    /// An engine error.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A bug: a panic in answering, a task that vanished.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which rate limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimited {
    /// PIR queries of one registered key (`--key-rate`).
    Key,
    /// PIR queries from one peer address (`--peer-rate`).
    Peer,
    /// Key registrations from one peer network (`--registration-rate`).
    Registrations,
    /// Key registrations from all peers together (`--global-registration-rate`).
    GlobalRegistrations,
    /// Evictions from a full key cache (`--key-eviction-rate`).
    Evictions,
    /// OPRF evaluations of one registered key (`--key-evaluation-rate`).
    EvaluationsOfKey,
    /// OPRF evaluations from one peer network (`--peer-evaluation-rate`).
    EvaluationsOfPeer,
    /// OPRF evaluations from all peers together (`--global-evaluation-rate`).
    GlobalEvaluations,
}

/// Why the listener refused a request's body: each of the transport's limits on one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Its body is larger than its method allows.
    TooLarge {
        /// The method's limit, bytes (gRPC framing included).
        limit: usize,
    },
    /// Its body did not arrive whole in time.
    Stalled {
        /// The time it had from its headers.
        timeout: std::time::Duration,
    },
    /// The in-flight byte budget is spent.
    Budget {
        /// The budget, bytes.
        budget: usize,
    },
}

impl BodyRefusal {
    /// The `limit` label of `pir_limit_refusals_total` it counts under.
    pub fn limit(self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "message_size",
            Self::Stalled { .. } => "request_body_timeout",
            Self::Budget { .. } => "in_flight_bytes",
        }
    }

    /// What the client is told of a refused request to `path`.
    pub(crate) fn message(self, path: &str) -> String {
        match self {
            Self::TooLarge { limit } => format!(
                "request body larger than the {limit} bytes {path} allows under the served \
                 parameters"
            ),
            Self::Stalled { timeout } => format!(
                "request body not received whole within {} of its headers; dropped",
                humantime::format_duration(timeout)
            ),
            Self::Budget { budget } => format!(
                "server busy: request bodies in flight hold the whole budget of {} MiB; retry \
                 later",
                budget >> 20
            ),
        }
    }
}

/// The handler sees a refused body fail with this, its path unknown there.
impl std::fmt::Display for BodyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message("this method"))
    }
}

impl std::error::Error for BodyRefusal {}

/// Why a request failed the proof of possession on queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryAuthError {
    /// The query's MAC is not the one the registered mac key makes.
    #[error("the query's mac does not verify under the mac key registered with key id {0}")]
    BadMac(pir_core::KeyId),
    /// Keys registered again with another mac key than they were registered with.
    #[error("keys {0} are registered with another query mac key")]
    OtherMacKey(pir_core::KeyId),
    /// An Evaluate request's MAC is not the one the registered mac key makes.
    #[error("the evaluation's mac does not verify under the mac key registered with key id {0}")]
    BadEvaluationMac(pir_core::KeyId),
    /// A RenewKeys request's MAC is not the one the registered mac key makes.
    #[error("the renewal's mac does not verify under the mac key registered with key id {0}")]
    BadRenewalMac(pir_core::KeyId),
}

/// The words of the message: "rate limit of this key exceeded".
impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Key => "key",
            Self::Peer => "peer",
            Self::Registrations => "peer (registrations)",
            Self::GlobalRegistrations => "server (key registrations from all peers)",
            Self::Evictions => "key cache (evictions: it is full)",
            Self::EvaluationsOfKey => "key (OPRF evaluations)",
            Self::EvaluationsOfPeer => "peer (OPRF evaluations)",
            Self::GlobalEvaluations => "server (OPRF evaluations from all peers)",
        })
    }
}

impl ServerError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl ServerError {
    /// A short label for metrics: why a request was refused.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownKey(_) => "unknown_key",
            Self::NoKeysTaken(_) => "no_keys_taken",
            Self::StaleEpoch { .. } | Self::KeysNeeded(_) => "stale_epoch",
            Self::TooManyQueries { .. } => "too_many_queries",
            Self::TooManyElements { .. } => "too_many_elements",
            Self::RateLimited { .. } => "rate_limited",
            Self::DeadlineExceeded(_) => "deadline",
            Self::Overloaded(_) => "overloaded",
            Self::Loading => "loading",
            Self::NoEvaluator => "no_evaluator",
            Self::ShardNotServed { .. } => "shard_not_served",
            Self::KeyCacheTooSmall { .. } => "key_cache_too_small",
            Self::KeyStore(_) => "key_store",
            Self::Core(e) if e.is_bad_input() => "malformed",
            Self::Internal(_) => "internal",
            Self::AdminTokenRequired | Self::QueryAuth(_) => "unauthenticated",
            Self::ClientTooOld(_) => "client_too_old",
            Self::RequestBody { .. } => "request_body",
            Self::Refused { .. }
            | Self::EpochNotRising { .. }
            | Self::OprfKeyMismatch { .. }
            | Self::NoSuchShard { .. }
            | Self::ShardWithoutManifest { .. }
            | Self::PreviousSnapshotInUse(_)
            | Self::Core(_)
            | Self::Io { .. }
            | Self::Transport(_) => "other",
        }
    }
}

fn retry_hint(retry_after: Option<std::time::Duration>) -> String {
    match retry_after {
        // Rounded up: retrying at the stated second succeeds.
        Some(d) => format!("retry in {} s", d.as_millis().div_ceil(1000).max(1)),
        None => "the request needs more than the limit's burst: send fewer queries at once".into(),
    }
}

/// Why a request's shape was refused.
#[derive(Debug, thiserror::Error)]
pub enum MalformedRequest {
    /// The query request.
    #[error(transparent)]
    Query(QueryError),
    /// The key registration.
    #[error(transparent)]
    Keys(RegisterKeysError),
    /// The evaluation request.
    #[error(transparent)]
    Evaluate(EvaluateError),
    /// The renewal request.
    #[error(transparent)]
    Renew(RenewKeysError),
}

impl From<RenewKeysError> for ServerError {
    fn from(e: RenewKeysError) -> Self {
        Self::Malformed(MalformedRequest::Renew(e))
    }
}

impl ServerError {
    /// Which configured limit refused the request, if one did: the `limit` label of
    /// `pir_limit_refusals_total` (`message_size` is counted where tonic refuses).
    pub fn limit(&self) -> Option<&'static str> {
        Some(match self {
            Self::RateLimited {
                who: RateLimited::Key,
                ..
            } => "key_rate",
            Self::RateLimited {
                who: RateLimited::Peer,
                ..
            } => "peer_rate",
            Self::RateLimited {
                who: RateLimited::Registrations,
                ..
            } => "registration_rate",
            Self::RateLimited {
                who: RateLimited::GlobalRegistrations,
                ..
            } => "global_registration_rate",
            Self::RateLimited {
                who: RateLimited::Evictions,
                ..
            } => "eviction_rate",
            Self::RateLimited {
                who: RateLimited::EvaluationsOfKey,
                ..
            } => "evaluation_key_rate",
            Self::RateLimited {
                who: RateLimited::EvaluationsOfPeer,
                ..
            } => "evaluation_peer_rate",
            Self::RateLimited {
                who: RateLimited::GlobalEvaluations,
                ..
            } => "global_evaluation_rate",
            Self::QueryAuth(QueryAuthError::BadEvaluationMac(_)) => "evaluate_mac",
            Self::QueryAuth(_) | Self::ClientTooOld(_) => "query_mac",
            Self::Overloaded(_) => "pending",
            Self::TooManyQueries { .. } | Self::TooManyElements { .. } => "queries_per_request",
            Self::KeyCacheTooSmall { .. } => "key_cache",
            Self::DeadlineExceeded(_) => "request_timeout",
            Self::RequestBody { refusal, .. } => refusal.limit(),
            _ => return None,
        })
    }
}

/// A request refused by its shape keeps the variant, and so the status and message, it had when
/// the handler checked it inline.
impl From<QueryError> for ServerError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::TooMany { got, max } => Self::TooManyQueries { got, max },
            QueryError::NoQueries
            | QueryError::KeyIdLength { .. }
            | QueryError::MacLength { .. } => Self::Malformed(MalformedRequest::Query(e)),
        }
    }
}

impl From<EvaluateError> for ServerError {
    fn from(e: EvaluateError) -> Self {
        match e {
            EvaluateError::TooMany { got, max } => Self::TooManyElements { got, max },
            EvaluateError::NoElements
            | EvaluateError::KeyIdLength { .. }
            | EvaluateError::MacLength { .. }
            | EvaluateError::ElementLength { .. } => Self::Malformed(MalformedRequest::Evaluate(e)),
        }
    }
}

impl From<RegisterKeysError> for ServerError {
    fn from(e: RegisterKeysError) -> Self {
        match e {
            RegisterKeysError::KeysLength { .. } | RegisterKeysError::MacKeyLength { .. } => {
                Self::Malformed(MalformedRequest::Keys(e))
            }
            RegisterKeysError::MacKeyMissing => Self::ClientTooOld(
                "RegisterKeys carries no query_mac_key: this server authenticates every query",
            ),
        }
    }
}

fn with_reason(mut status: Status, reason: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(REASON_KEY, MetadataValue::from_static(reason));
    status
}

/// What the client learns of a failure on the server's side: nothing but that it happened.
fn internal(msg: &str) -> Status {
    tracing::error!(error = %msg, "internal error answering a request");
    Status::new(Code::Internal, "internal error")
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        let msg = e.to_string();
        match e {
            ServerError::Malformed(_) => Status::invalid_argument(msg),
            ServerError::UnknownKey(_) => {
                with_reason(Status::failed_precondition(msg), REASON_UNKNOWN_KEY)
            }
            // The client's configuration names another engine: refreshing it heals.
            ServerError::StaleEpoch { .. } | ServerError::KeysNeeded(_) => {
                with_reason(Status::failed_precondition(msg), REASON_STALE_EPOCH)
            }
            ServerError::NoKeysTaken(_) => Status::failed_precondition(msg),
            ServerError::RateLimited {
                retry_after: Some(after),
                ..
            } => {
                let mut status = Status::resource_exhausted(msg);
                status.metadata_mut().insert(
                    RETRY_AFTER_MS_KEY,
                    MetadataValue::from(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
                );
                status
            }
            ServerError::TooManyQueries { .. }
            | ServerError::TooManyElements { .. }
            | ServerError::Overloaded(_)
            | ServerError::RateLimited { .. }
            | ServerError::KeyCacheTooSmall { .. } => Status::resource_exhausted(msg),
            ServerError::DeadlineExceeded(_)
            | ServerError::RequestBody {
                refusal: BodyRefusal::Stalled { .. },
                ..
            } => Status::deadline_exceeded(msg),
            ServerError::RequestBody { .. } => Status::resource_exhausted(msg),
            ServerError::Loading | ServerError::KeyStore(_) => Status::unavailable(msg),
            ServerError::NoEvaluator => Status::unimplemented(msg),
            ServerError::ShardNotServed { .. } => Status::not_found(msg),
            ServerError::AdminTokenRequired | ServerError::QueryAuth(_) => {
                Status::unauthenticated(msg)
            }
            // No pir-reason: nothing the old client does by itself would help.
            ServerError::ClientTooOld(_) => Status::failed_precondition(msg),
            // Keys registered for the previous snapshot's parameters: the client re-registers.
            ServerError::Core(CoreError::KeysForOtherParams) => {
                with_reason(Status::failed_precondition(msg), REASON_UNKNOWN_KEY)
            }
            ServerError::Core(core) => match core.class() {
                ErrorClass::BadInput => Status::invalid_argument(msg),
                ErrorClass::Misuse | ErrorClass::Environment | ErrorClass::Bug => internal(&msg),
            },
            ServerError::Refused { .. }
            | ServerError::EpochNotRising { .. }
            | ServerError::OprfKeyMismatch { .. }
            | ServerError::NoSuchShard { .. }
            | ServerError::ShardWithoutManifest { .. } => Status::failed_precondition(msg),
            ServerError::PreviousSnapshotInUse(_) => Status::unavailable(msg),
            ServerError::Io { .. } | ServerError::Transport(_) | ServerError::Internal(_) => {
                internal(&msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use pir_core::error::BucketError;

    /// Every variant's wire form: status code, `pir-reason` trailer, message.
    #[test]
    fn each_error_has_its_status_reason_and_message() {
        let io = || std::io::Error::other("disk on fire");
        let cases: Vec<(ServerError, Code, Option<&str>, &str)> = vec![
            (
                ServerError::Malformed(MalformedRequest::Query(QueryError::NoQueries)),
                Code::InvalidArgument,
                None,
                "malformed request: no queries",
            ),
            (
                ServerError::UnknownKey("k".into()),
                Code::FailedPrecondition,
                Some(REASON_UNKNOWN_KEY),
                "unknown key id k; register the keys again",
            ),
            (
                ServerError::StaleEpoch {
                    requested: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
                Some(REASON_STALE_EPOCH),
                "stale epoch 1; the server is at epoch 2",
            ),
            (
                ServerError::TooManyQueries { got: 9, max: 8 },
                Code::ResourceExhausted,
                None,
                "9 queries in one request; at most 8",
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Key,
                    retry_after: Some(Duration::from_millis(2500)),
                },
                Code::ResourceExhausted,
                None,
                "rate limit of this key exceeded; retry in 3 s",
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Peer,
                    retry_after: None,
                },
                Code::ResourceExhausted,
                None,
                "rate limit of this peer exceeded; the request needs more than the limit's \
                 burst: send fewer queries at once",
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Registrations,
                    retry_after: Some(Duration::from_millis(10)),
                },
                Code::ResourceExhausted,
                None,
                "rate limit of this peer (registrations) exceeded; retry in 1 s",
            ),
            (
                ServerError::Loading,
                Code::Unavailable,
                None,
                "the server is still loading its snapshot; retry shortly",
            ),
            (
                // What failed stays in the log: the client hears which store, and to retry.
                ServerError::KeyStore(KeyStoreError::unavailable(
                    "redis",
                    "Connection refused (os error 111) at 10.0.0.5:6379",
                )),
                Code::Unavailable,
                None,
                "the key store (redis) is unavailable: keys cannot be registered or renewed now; \
                 retry later",
            ),
            (
                ServerError::DeadlineExceeded(Duration::from_secs(1)),
                Code::DeadlineExceeded,
                None,
                "request took longer than 1s",
            ),
            (
                ServerError::KeyCacheTooSmall { cost: 2, budget: 1 },
                Code::ResourceExhausted,
                None,
                "keys need about 2 bytes but the key cache holds 1",
            ),
            (
                ServerError::Overloaded(3),
                Code::ResourceExhausted,
                None,
                "overloaded: 3 answers in progress; retry later",
            ),
            (
                ServerError::Refused {
                    path: "db.pirsnap".into(),
                    reason: CoreError::UnsignedSnapshot,
                },
                Code::FailedPrecondition,
                None,
                "refused: db.pirsnap: snapshot is not signed by a DP key",
            ),
            (
                ServerError::EpochNotRising {
                    path: "db.pirsnap".into(),
                    epoch: 1500,
                    serving: 2000,
                },
                Code::FailedPrecondition,
                None,
                "refused: db.pirsnap: epoch 1500 is not above the serving epoch 2000; build with \
                 a higher --epoch, or force (Admin Reload with force: true)",
            ),
            (
                ServerError::PreviousSnapshotInUse(Duration::from_secs(70)),
                Code::Unavailable,
                None,
                "refused: the snapshot replaced by the last reload is still in use by requests \
                 in flight after 70s; retry once they finish",
            ),
            (
                ServerError::Core(CoreError::Bucket(BucketError::Truncated)),
                Code::InvalidArgument,
                None,
                "malformed bucket: truncated entry",
            ),
            (
                ServerError::Core(CoreError::KeysForOtherParams),
                Code::FailedPrecondition,
                Some(REASON_UNKNOWN_KEY),
                "parameter mismatch: keys were generated for other scheme parameters",
            ),
            (
                // A file the server cannot read is its own problem, not the request's.
                ServerError::Core(CoreError::Io {
                    path: "db.pirsnap".into(),
                    source: io(),
                }),
                Code::Internal,
                None,
                "internal error",
            ),
            (
                ServerError::Core(CoreError::Internal("bug")),
                Code::Internal,
                None,
                "internal error",
            ),
            (
                ServerError::io("serving metrics", io()),
                Code::Internal,
                None,
                "internal error",
            ),
            (
                ServerError::AdminTokenRequired,
                Code::Unauthenticated,
                None,
                "admin token required",
            ),
            (
                ServerError::Internal("answering panicked".into()),
                Code::Internal,
                None,
                "internal error",
            ),
            (
                ServerError::QueryAuth(QueryAuthError::BadMac(pir_core::KeyId([0; 32]))),
                Code::Unauthenticated,
                None,
                "the query's mac does not verify under the mac key registered with key id \
                 AAAAAAAAAAA",
            ),
            (
                ServerError::QueryAuth(QueryAuthError::OtherMacKey(pir_core::KeyId([0; 32]))),
                Code::Unauthenticated,
                None,
                "keys AAAAAAAAAAA are registered with another query mac key",
            ),
            (
                RegisterKeysError::MacKeyMissing.into(),
                Code::FailedPrecondition,
                None,
                "RegisterKeys carries no query_mac_key: this server authenticates every query; \
                 upgrade the client",
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Evictions,
                    retry_after: Some(Duration::from_secs(3)),
                },
                Code::ResourceExhausted,
                None,
                "rate limit of this key cache (evictions: it is full) exceeded; retry in 3 s",
            ),
        ];
        check(cases);
        let limited = Status::from(ServerError::RateLimited {
            who: RateLimited::Key,
            retry_after: Some(Duration::from_millis(2500)),
        });
        assert_eq!(
            limited.metadata().get(RETRY_AFTER_MS_KEY).unwrap(),
            "2500",
            "a rate-limited client is told when to retry"
        );
    }

    /// The shape refusals made in `pir-proto` reach the wire as they did when the handlers
    /// made them.
    #[test]
    fn request_shape_refusals_keep_their_status_and_message() {
        let cases: Vec<(ServerError, Code, Option<&str>, &str)> = vec![
            (
                QueryError::NoQueries.into(),
                Code::InvalidArgument,
                None,
                "malformed request: no queries",
            ),
            (
                QueryError::TooMany { got: 33, max: 32 }.into(),
                Code::ResourceExhausted,
                None,
                "33 queries in one request; at most 32",
            ),
            (
                QueryError::KeyIdLength { got: 5 }.into(),
                Code::InvalidArgument,
                None,
                "malformed request: key id must be 32 bytes",
            ),
            (
                RegisterKeysError::KeysLength {
                    got: 100,
                    expected: 1_000,
                }
                .into(),
                Code::InvalidArgument,
                None,
                "malformed request: public keys are 100 bytes; this snapshot's parameters need 1000",
            ),
        ];
        check(cases);
    }

    /// The listener's refusals of a request body keep the codes and messages they had when the
    /// listener made their statuses itself, and count under their limits' labels.
    #[test]
    fn body_refusals_keep_their_status_message_and_limit() {
        let at = |refusal| ServerError::RequestBody {
            path: "/pir.v1.Discovery/Query".into(),
            refusal,
        };
        let cases = [
            (
                BodyRefusal::TooLarge { limit: 100 },
                Code::ResourceExhausted,
                "request body larger than the 100 bytes /pir.v1.Discovery/Query allows under the \
                 served parameters",
                "message_size",
            ),
            (
                BodyRefusal::Stalled {
                    timeout: Duration::from_secs(10),
                },
                Code::DeadlineExceeded,
                "request body not received whole within 10s of its headers; dropped",
                "request_body_timeout",
            ),
            (
                BodyRefusal::Budget { budget: 64 << 20 },
                Code::ResourceExhausted,
                "server busy: request bodies in flight hold the whole budget of 64 MiB; retry \
                 later",
                "in_flight_bytes",
            ),
        ];
        for (refusal, code, message, limit) in cases {
            assert_eq!(at(refusal).limit(), Some(limit));
            check(vec![(at(refusal), code, None, message)]);
        }
        assert_eq!(
            BodyRefusal::TooLarge { limit: 100 }.to_string(),
            "request body larger than the 100 bytes this method allows under the served parameters"
        );
    }

    /// Each limit is named by the label the refusal counter uses; other errors name none.
    #[test]
    fn each_limit_refusal_names_its_limit() {
        let cases = [
            (
                ServerError::RateLimited {
                    who: RateLimited::Key,
                    retry_after: None,
                },
                Some("key_rate"),
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Peer,
                    retry_after: None,
                },
                Some("peer_rate"),
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Registrations,
                    retry_after: None,
                },
                Some("registration_rate"),
            ),
            (ServerError::Overloaded(1), Some("pending")),
            (
                ServerError::TooManyQueries { got: 2, max: 1 },
                Some("queries_per_request"),
            ),
            (
                ServerError::KeyCacheTooSmall { cost: 2, budget: 1 },
                Some("key_cache"),
            ),
            (
                ServerError::DeadlineExceeded(Duration::from_secs(1)),
                Some("request_timeout"),
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::GlobalRegistrations,
                    retry_after: None,
                },
                Some("global_registration_rate"),
            ),
            (
                ServerError::RateLimited {
                    who: RateLimited::Evictions,
                    retry_after: None,
                },
                Some("eviction_rate"),
            ),
            (
                ServerError::QueryAuth(QueryAuthError::BadMac(pir_core::KeyId([0; 32]))),
                Some("query_mac"),
            ),
            (ServerError::ClientTooOld("no mac"), Some("query_mac")),
            (ServerError::UnknownKey("k".into()), None),
            (ServerError::Loading, None),
        ];
        for (error, limit) in cases {
            assert_eq!(error.limit(), limit, "{error}");
        }
    }

    fn check(cases: Vec<(ServerError, Code, Option<&str>, &str)>) {
        for (error, code, reason, message) in cases {
            let shown = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{shown}");
            assert_eq!(status.message(), message, "{shown}");
            let trailer = status
                .metadata()
                .get(REASON_KEY)
                .map(|v| v.to_str().unwrap());
            assert_eq!(trailer, reason, "{shown}");
        }
    }
}
