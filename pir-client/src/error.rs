//! The crate's one error type.

use std::{path::PathBuf, time::Duration};

use pir_core::CoreError;

use crate::address::{AddressError, ServerAddress};

/// Everything that can go wrong in `pir-client`.
///
/// Grouped as *configuration* (what the caller gave us), *transport and server* (what happened
/// on the wire), *verification* (what came back does not check out) and *internal* (a bug).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    // ---- configuration ------------------------------------------------------------------------
    /// The server address is not `http://HOST:PORT` or `https://HOST:PORT`.
    #[error("invalid server address {url:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: AddressError,
    },
    /// Options that cannot work, or a server configuration this client cannot use.
    #[error("bad configuration: {0}")]
    BadConfig(String),
    /// The CA certificate file cannot be read.
    #[error("CA certificate {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file that cannot be read or written.
    #[error("key file {path}: {source}")]
    KeyFileIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file that is not a key file, is truncated, corrupted or of another version.
    #[error("key file {path}: {reason}")]
    InvalidKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Plaintext (`http://`) to an address that is not this machine, without
    /// `ClientOptions::insecure_plaintext`.
    #[error(
        "{url}: plaintext http:// is only used to a loopback address (on a network, anyone on \
         the path could pose as the server): use https://, or pass --insecure-plaintext \
         (ClientOptions::insecure_plaintext) for a network you trust"
    )]
    PlaintextRefused {
        /// The server address.
        url: String,
    },

    /// A shard map that does not read or lacks a shard of the directory.
    #[error(transparent)]
    ShardMap(#[from] crate::shard_map::ShardMapError),
    /// A [`PirClient`](crate::PirClient) pointed at one shard of a sharded directory: it
    /// would report the other shards' CPIs as absent.
    #[error(
        "the server serves shard {shard} of a directory of {count} shards: look up through a \
         ShardedClient (the pir-client CLI does), naming the shards' endpoints with \
         --shard-endpoints or --shard-map unless this server serves them all"
    )]
    ShardedDirectory {
        /// The shard the server described.
        shard: u32,
        /// Shards in the directory.
        count: u32,
    },

    // ---- transport and server -----------------------------------------------------------------
    /// An RPC got no answer in time.
    #[error(
        "{rpc}: no answer from the server within {} (--timeout, ClientOptions::request_timeout)",
        seconds(*after)
    )]
    Deadline {
        /// The RPC's name.
        rpc: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// Scheme parameters this client will not use.
    #[error("the server's scheme parameters ({params}) {reason}")]
    RefusedParams {
        /// The parameters, as they display.
        params: String,
        /// Why.
        reason: ParamsRefusal,
    },
    /// A snapshot the DP keys do not vouch for, or older than one already verified.
    #[error("the server's snapshot is refused: {0}")]
    SnapshotRefused(SnapshotRefusal),
    /// The address's scheme does not match what the server speaks on that port.
    #[error("{}", tls_mismatch(url, *server_speaks_tls))]
    TlsMismatch {
        /// The server address.
        url: String,
        /// Whether the server answered with TLS (to an `http://` address) or without it (to an
        /// `https://` one).
        server_speaks_tls: bool,
    },
    /// The server's TLS certificate was refused.
    #[error("{url}: {problem}")]
    Certificate {
        /// The server address.
        url: String,
        /// What is wrong with the certificate.
        problem: CertificateProblem,
    },
    /// The connection to the server could not be made or broke.
    #[error("cannot reach {url}: {}", chain(.source))]
    Transport {
        /// The server address.
        url: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// Every replica tried for one query of a shard failed (or refused what it serves), within
    /// [`ClientOptions::shard_attempts`](crate::ClientOptions::shard_attempts).
    #[error("shard {shard}: no replica answered ({})", tried.join("; "))]
    ShardUnavailable {
        /// The shard.
        shard: u32,
        /// Each attempt: the replica's URL and what went wrong, in order.
        tried: Vec<String>,
    },
    /// Every evaluator tried for one Evaluate request failed, within
    /// [`ClientOptions::shard_attempts`](crate::ClientOptions::shard_attempts).
    #[error("no evaluator answered ({})", tried.join("; "))]
    EvaluatorsUnavailable {
        /// Each attempt: the evaluator's URL and what went wrong, in order.
        tried: Vec<String>,
    },
    /// A shard endpoint that serves something else than the manifest's shard.
    #[error("shard {shard} at {url}: {reason}")]
    ShardRefused {
        /// The shard asked for.
        shard: u32,
        /// The endpoint.
        url: String,
        /// What it serves instead.
        reason: ShardRefusal,
    },
    /// The server answered an RPC with an error status.
    #[error("{rpc} failed: {}", status_text(status))]
    Rpc {
        /// The RPC's name.
        rpc: &'static str,
        /// The status (boxed: `tonic::Status` is large).
        status: Box<tonic::Status>,
    },
    /// The server's configuration does not validate.
    #[error("invalid server configuration: {0}")]
    InvalidServerConfig(#[source] pir_proto::ConvertError),
    /// The server's answer breaks the protocol (wrong answer count, different key id...).
    #[error("protocol violation by the server: {0}")]
    Protocol(String),

    // ---- verification and PIR -----------------------------------------------------------------
    /// The lookup of one CPI failed: the response does not decrypt, decode or verify.
    #[error("lookup of {cpi}: {source}")]
    Lookup {
        /// The CPI looked up (normalised).
        cpi: String,
        /// What went wrong.
        source: CoreError,
    },
    /// The evaluator's answer does not prove it used the snapshot's OPRF key: its outputs
    /// would locate nothing, or the wrong entries.
    #[error(
        "the OPRF evaluation was refused: {source} (the evaluator and the snapshot's header \
         disagree on the DP's OPRF key)"
    )]
    Evaluation {
        /// What failed (a proof, a count, an element).
        source: CoreError,
    },
    /// The server answers no evaluations: it is a PIR host only.
    #[error(
        "the server answers no OPRF evaluations ({message}); give --evaluator URL, the DP's evaluator"
    )]
    NoEvaluator {
        /// The server's words.
        message: String,
    },
    /// Every CPI of a batch whose evaluation failed gets this, with the batch's error (shared
    /// by its CPIs): match on `source` for what failed; [`ClientError::status`] and
    /// [`ClientError::retry_after`] look through it.
    #[error("lookup of {cpi}: its batch's evaluation failed: {source}")]
    BatchEvaluation {
        /// The CPI looked up (normalised).
        cpi: String,
        /// The batch's error.
        source: std::sync::Arc<ClientError>,
    },
    /// An error from `pir-core` outside a lookup (key generation, query encryption, trust file).
    #[error(transparent)]
    Core(#[from] CoreError),

    // ---- internal -----------------------------------------------------------------------------
    /// A broken invariant. Always a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a server's scheme parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsRefusal {
    /// Not one of pir-core's vetted presets.
    #[error(
        "are not a vetted preset: their security and failure probability are unknown; pass \
         --allow-custom-params (ClientOptions::allow_custom_params) only for a test or research \
         server"
    )]
    NotVetted,
    /// A preset withdrawn after answers through it were measured to decode wrong
    /// (`SchemeParams::is_withdrawn`).
    #[error(
        "are a withdrawn preset: answers through them were measured to decode wrong, so a \
         lookup could miss a registered CPI; the DP must rebuild the snapshot with a current \
         pir-server build"
    )]
    Withdrawn,
    /// A sharded directory of an engine without keys (YPIR+SP), which the sharded client
    /// does not query yet.
    #[error(
        "are YPIR+SP's in a sharded directory, which this client does not query yet: query an \
         unsharded YPIR+SP snapshot, or a Spiral directory"
    )]
    ShardedKeyless,
    /// Messages larger than this client takes.
    #[error(
        "need {bytes}-byte {what}, more than this client's limit of {limit} bytes per message \
         (ClientOptions::max_message_bytes)"
    )]
    TooLarge {
        /// Which message: "public keys", "queries", "responses".
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The client's limit.
        limit: u64,
    },
}

/// Why a snapshot's configuration was refused by a client given the DP's keys (`--dp-pub`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotRefusal {
    /// The server sends no snapshot header to check.
    #[error(
        "the server sends no snapshot header to check against --dp-pub (a server older than \
         this client?)"
    )]
    NoHeader,
    /// The shard manifest is unsigned, signed by another key, or its signature does not verify.
    #[error("its shard manifest does not verify against --dp-pub: {0}")]
    ManifestSignature(#[source] CoreError),
    /// The header is unsigned, signed by another key, or its signature does not verify.
    #[error("its header does not verify against --dp-pub: {0}")]
    Signature(#[source] CoreError),
    /// An older epoch than one already verified.
    #[error(
        "rollback: the server offers epoch {offered}, older than epoch {seen} already \
         verified{}",
        remembered_in(key_file.as_ref())
    )]
    Rollback {
        /// The epoch offered.
        offered: u64,
        /// The highest epoch verified before.
        seen: u64,
        /// Where it is remembered, if in a key file.
        key_file: Option<PathBuf>,
    },
    /// Another header for the epoch already verified.
    #[error(
        "the server offers a snapshot of epoch {epoch} (header {offered}) other than the one \
         of that epoch already verified (header {seen}){}: the DP signed two snapshots with \
         one epoch, or a server replays another",
        remembered_in(key_file.as_ref())
    )]
    Fork {
        /// The epoch of both.
        epoch: u64,
        /// The offered header's hash, abbreviated.
        offered: String,
        /// The verified header's hash, abbreviated.
        seen: String,
        /// Where it is remembered, if in a key file.
        key_file: Option<PathBuf>,
    },
}

/// Why a shard endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardRefusal {
    /// The endpoint connected to does not serve this shard, and no shard map names one.
    #[error(
        "is not served there: name the shards' endpoints with --shard-endpoints or --shard-map \
         (ClientOptions::shard_map)"
    )]
    NotServed,
    /// It describes another shard than the one asked for.
    #[error("describes shard {got} instead")]
    OtherShard {
        /// The shard it described.
        got: u32,
    },
    /// It serves an unsharded snapshot.
    #[error("serves no shard manifest (an unsharded snapshot)")]
    NoManifest,
    /// Its manifest is older than one this client has seen.
    #[error("serves manifest epoch {offered}, older than epoch {seen} already seen")]
    OlderManifest {
        /// Its manifest's epoch.
        offered: u64,
        /// The newest seen.
        seen: u64,
    },
    /// Another manifest of the epoch this client follows.
    #[error(
        "serves another manifest of epoch {epoch} than the one seen: the DP signed two, or the \
         endpoint forged one"
    )]
    ManifestFork {
        /// The epoch of both.
        epoch: u64,
    },
    /// A newer manifest of another shape (shard count, scheme or OPRF key): the directory was
    /// rebuilt; connect again.
    #[error(
        "serves a newer manifest (epoch {epoch}) of another shard count, scheme or OPRF key: \
         the directory was rebuilt, connect again"
    )]
    Rebuilt {
        /// Its manifest's epoch.
        epoch: u64,
    },
}

fn remembered_in(key_file: Option<&PathBuf>) -> String {
    key_file.map_or_else(String::new, |p| {
        format!(" (remembered in key file {})", p.display())
    })
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Why the server's TLS certificate was refused, from rustls's verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Not signed by a CA this client trusts.
    #[error(
        "the server's certificate is not signed by a CA this client trusts: pass the CA's \
         certificate with --ca (ClientOptions::tls_ca)"
    )]
    UnknownIssuer,
    /// Issued for another host name.
    #[error(
        "the server's certificate is not valid for this host name: connect by a name it was \
         issued for"
    )]
    WrongName,
    /// Expired.
    #[error("the server's certificate has expired: the server must renew it")]
    Expired,
    /// Not valid yet (or this machine's clock is behind).
    #[error("the server's certificate is not valid yet: check this machine's clock")]
    NotYetValid,
    /// Another refusal, as rustls words it.
    #[error("the server's certificate was refused: {0}")]
    Other(String),
}

impl CertificateProblem {
    /// The problem named in a transport error's text, if it is a certificate refusal.
    fn of(text: &str) -> Option<Self> {
        let (_, verdict) = text.split_once("invalid peer certificate: ")?;
        Some(match verdict.split([':', ' ']).next().unwrap_or_default() {
            "UnknownIssuer" => Self::UnknownIssuer,
            "NotValidForName" | "NotValidForNameContext" => Self::WrongName,
            "Expired" | "ExpiredContext" => Self::Expired,
            "NotValidYet" | "NotValidYetContext" => Self::NotYetValid,
            other => Self::Other(other.to_owned()),
        })
    }
}

/// A status as `CODE_NAME: message` (a rate limit's message says when to retry; programs read
/// it from [`ClientError::retry_after`]).
fn status_text(status: &tonic::Status) -> String {
    format!("{}: {}", code_name(status.code()), status.message())
}

/// The `pir-retry-after-ms` trailer of a rate-limited request.
fn retry_after_ms(status: &tonic::Status) -> Option<u64> {
    status
        .metadata()
        .get(pir_proto::RETRY_AFTER_MS_KEY)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The canonical name of a gRPC status code, as in the gRPC specification.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn tls_mismatch(url: &str, server_speaks_tls: bool) -> String {
    if server_speaks_tls {
        format!(
            "{url}: the server speaks TLS on this port: use https:// (with --ca if its \
             certificate is not from a public CA)"
        )
    } else {
        format!("{url}: the server does not speak TLS on this port: use http://")
    }
}

impl ClientError {
    /// A failed connection, recognised as a TLS mismatch where it is one.
    pub(crate) fn transport(address: &ServerAddress, source: tonic::transport::Error) -> Self {
        let url = address.to_string();
        let text = chain(&source);
        tracing::debug!(%url, error = %text, "connection failed");
        // rustls reading a plaintext HTTP/2 server's bytes as a TLS record.
        if address.tls()
            && (text.contains("InvalidContentType") || text.contains("corrupt message"))
        {
            return Self::TlsMismatch {
                url,
                server_speaks_tls: false,
            };
        }
        if let Some(problem) = CertificateProblem::of(&text) {
            return Self::Certificate { url, problem };
        }
        Self::Transport { url, source }
    }

    pub(crate) fn rpc(rpc: &'static str, status: tonic::Status) -> Self {
        Self::Rpc {
            rpc,
            status: Box::new(status),
        }
    }

    pub(crate) fn key_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::InvalidKeyFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// How long the server asked a rate-limited client to wait, when it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.status()
            .and_then(retry_after_ms)
            .map(std::time::Duration::from_millis)
    }

    /// The gRPC status, when the server answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Rpc { status, .. } => Some(status),
            Self::BatchEvaluation { source, .. } => source.status(),
            _ => None,
        }
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say little on their own).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// Result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_print_canonical_code_names_and_when_to_retry() {
        let plain = ClientError::rpc("Query", tonic::Status::invalid_argument("no queries"));
        assert_eq!(
            plain.to_string(),
            "Query failed: INVALID_ARGUMENT: no queries"
        );
        assert_eq!(plain.retry_after(), None);
        let mut status =
            tonic::Status::resource_exhausted("rate limit of this key exceeded; retry in 2 s");
        status
            .metadata_mut()
            .insert(pir_proto::RETRY_AFTER_MS_KEY, 1500u64.into());
        let limited = ClientError::rpc("Query", status);
        assert_eq!(
            limited.to_string(),
            "Query failed: RESOURCE_EXHAUSTED: rate limit of this key exceeded; retry in 2 s"
        );
        assert_eq!(
            limited.retry_after(),
            Some(std::time::Duration::from_millis(1500))
        );
    }
}
