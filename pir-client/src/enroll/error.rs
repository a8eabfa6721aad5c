//! `EnrollError`: what can go wrong talking to an ID prover, and the one place a prover's
//! status becomes one.

use std::{path::PathBuf, time::Duration};

use pir_core::CoreError;

use crate::{address::AddressError, error::ClientError};

/// Everything that can go wrong enrolling, completing or revoking a mapping with an ID prover.
///
/// Grouped as *configuration* (what the caller gave), *files*, *the prover's refusals* (each
/// gRPC status of `pir.issuer.v1` as a sentence) and *a broken or hostile prover* (an answer
/// that is malformed, or not about what was asked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    // ---- configuration ------------------------------------------------------------------------
    /// The prover's address is not `http://HOST:PORT` or `https://HOST:PORT`.
    #[error("invalid ID prover address {url:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: AddressError,
    },
    /// Plaintext (`http://`) to an address that is not this machine, without
    /// [`ProverOptions::insecure_plaintext`](super::ProverOptions::insecure_plaintext).
    #[error(
        "{url}: plaintext http:// is only used to a loopback address (on a network, anyone on \
         the path could pose as the ID prover and read the CPIs and codes): use https://, or \
         pass --insecure-plaintext (ProverOptions::insecure_plaintext) for a network you trust"
    )]
    PlaintextRefused {
        /// The prover's address.
        url: String,
    },
    /// A CA certificate given for a plaintext address.
    #[error("a CA certificate (--ca) was given but {url} is not an https:// address")]
    CaWithoutTls {
        /// The prover's address.
        url: String,
    },
    /// The connection could not be made: the CA file, the transport, TLS or the certificate.
    #[error(transparent)]
    Connect(ClientError),
    /// An RPC got no answer in time.
    #[error(
        "{rpc}: no answer from the ID prover within {} s (--timeout, \
         ProverOptions::request_timeout)",
        after.as_secs_f64()
    )]
    Deadline {
        /// The RPC's name.
        rpc: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// A request field that breaks the mapping format's rules (an MSP that is not a domain, a
    /// PSI or context too long or with invisible characters), refused before anything is sent.
    #[error("{0}")]
    InvalidRequest(#[source] CoreError),
    /// A key file that does not read, named with its flag (`--msp-key`, `--user-key`).
    #[error(transparent)]
    KeyFile(CoreError),
    /// Completing as another MSP than the one that started the enrollment.
    #[error(
        "the enrollment was started by MSP {started}, not {given}: complete it as {started}, \
         with its key"
    )]
    OtherMsp {
        /// The MSP that started it.
        started: String,
        /// The MSP given now.
        given: String,
    },
    /// The user key given to complete does not fit the enrollment.
    #[error("{0}")]
    UserKey(UserKeyProblem),

    // ---- files --------------------------------------------------------------------------------
    /// A file that cannot be read or written, or is not what it should be.
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: FileProblem,
    },

    // ---- the prover's refusals ----------------------------------------------------------------
    /// A wrong code (`FAILED_PRECONDITION` with the `pir-attempts-left` trailer).
    #[error("{}", wrong_code(*attempts_left))]
    WrongCode {
        /// Attempts the enrollment has left, when the prover said.
        attempts_left: Option<u32>,
    },
    /// `NOT_FOUND`: the enrollment is unknown, expired, used or out of attempts (the prover
    /// gives one answer for all four).
    #[error(
        "the ID prover has no such enrollment: its code expired, it was completed already, its \
         attempts are spent or it was never started there; start it again ({message})"
    )]
    EnrollmentGone {
        /// The prover's words.
        message: String,
    },
    /// `RESOURCE_EXHAUSTED`: past one of the prover's rate limits.
    #[error("{rpc}: the ID prover's rate limit was reached; {} ({message})", retry_text(*retry_after))]
    RateLimited {
        /// The RPC's name.
        rpc: &'static str,
        /// How long to wait, from the `pir-retry-after-ms` trailer.
        retry_after: Option<Duration>,
        /// The prover's words.
        message: String,
    },
    /// `UNAUTHENTICATED`: the prover does not accept the MSP's signature.
    #[error(
        "{rpc}: the ID prover refused the signature of MSP {msp} ({message}): either it holds \
         no public key for {msp} (give its operator the .pub file written by pir-client \
         msp-keygen, to keep as {msp}.pub in the prover's --msp-keys directory), or the key it \
         holds is not the one of --msp-key, or this machine's clock and the prover's differ by \
         more than it allows"
    )]
    NotAuthenticated {
        /// The RPC's name.
        rpc: &'static str,
        /// The MSP that signed.
        msp: String,
        /// The prover's words.
        message: String,
    },
    /// `PERMISSION_DENIED`: the request names another MSP than the signer.
    #[error(
        "{rpc}: the ID prover refused MSP {msp} ({message}): an MSP may only enroll, complete \
         and revoke mappings that name itself, and complete only the enrollments it started"
    )]
    PermissionDenied {
        /// The RPC's name.
        rpc: &'static str,
        /// The MSP that signed.
        msp: String,
        /// The prover's words.
        message: String,
    },
    /// `UNAVAILABLE` (or a connection that broke): the prover could not send the code, or is
    /// down.
    #[error(
        "{rpc}: the ID prover is unavailable or could not send the code ({message}); try again \
         later"
    )]
    Unavailable {
        /// The RPC's name.
        rpc: &'static str,
        /// The prover's words.
        message: String,
    },
    /// `INVALID_ARGUMENT`: the prover refused a field (its message names it).
    #[error("{rpc}: the ID prover refused a field of the request: {message}")]
    InvalidArgument {
        /// The RPC's name.
        rpc: &'static str,
        /// The prover's words.
        message: String,
    },
    /// `FAILED_PRECONDITION` without an attempts count: a missing user signature, for one.
    #[error("{rpc}: the ID prover refused the request: {message}")]
    FailedPrecondition {
        /// The RPC's name.
        rpc: &'static str,
        /// The prover's words.
        message: String,
    },
    /// Any other status.
    #[error("{rpc} failed: {}: {}", crate::error::code_name(status.code()), status.message())]
    Rpc {
        /// The RPC's name.
        rpc: &'static str,
        /// The status (boxed: `tonic::Status` is large).
        status: Box<tonic::Status>,
    },

    // ---- a broken or hostile prover -----------------------------------------------------------
    /// An answer that breaks the protocol.
    #[error("{rpc}: the ID prover's answer is malformed: {problem}")]
    Protocol {
        /// The RPC's name.
        rpc: &'static str,
        /// What is wrong with it.
        problem: ProtocolProblem,
    },
    /// An answer about another mapping than the one asked for: refused, so that a prover
    /// cannot make the MSP (or its user) accept or sign a mapping it did not ask for.
    #[error(
        "{rpc}: the ID prover answered with another {field} than the one asked for; refused \
         (a faulty or hostile prover)"
    )]
    Mismatch {
        /// The RPC's name.
        rpc: &'static str,
        /// The first field that differs.
        field: MappingField,
    },

    // ---- internal -----------------------------------------------------------------------------
    /// A broken invariant. Always a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a user key given to complete an enrollment does not fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserKeyProblem {
    /// The enrollment was started with a user key and none was given.
    #[error(
        "the enrollment was started with a user key: give that key (--user-key) to sign the \
         user's consent"
    )]
    Missing,
    /// A user key was given for an enrollment started without one.
    #[error(
        "the enrollment was started without a user key, so the mapping carries no user \
         signature: complete it without --user-key, or start again with it"
    )]
    Unexpected,
    /// The user key given is not the one the enrollment was started with.
    #[error("the user key given is not the one the enrollment was started with")]
    Other,
}

/// What went wrong with a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// It exists, and overwriting was not asked for.
    #[error("already exists: pass --force to overwrite it (the key in it is then lost)")]
    Exists,
    /// Its directory does not exist.
    #[error("the directory {} does not exist (create it first)", .0.display())]
    NoSuchDirectory(PathBuf),
    /// A secret key file named `.pub`, where its public key would go.
    #[error("a secret key file must not end in .pub (the public key is written beside it as .pub)")]
    PubName,
    /// Reading or writing it failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// Not an enrollment file written by `pir-client enroll start` (or damaged).
    #[error("not an enrollment file written by pir-client enroll start: {0}")]
    NotEnrollment(#[source] serde_json::Error),
}

/// What is malformed in a prover's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolProblem {
    /// An enrollment id that is not 16 bytes.
    #[error("an enrollment id of {0} bytes (16 expected)")]
    EnrollmentIdLength(usize),
    /// An issuer key id that is not 8 bytes.
    #[error("an issuer key id of {0} bytes (8 expected)")]
    IssuerIdLength(usize),
    /// A CPI that does not parse.
    #[error("its CPI: {0}")]
    Cpi(#[source] CoreError),
    /// A validity window that breaks the mapping format (ends before it starts).
    #[error("its validity window: {0}")]
    Window(#[source] CoreError),
    /// No bytes for the user to sign although a user key was given.
    #[error("no bytes for the user to sign, although a user key was given")]
    NoUserSignedBytes,
    /// A mapping line that does not parse.
    #[error("its mapping: {0}")]
    Mapping(#[source] CoreError),
}

/// A field of a mapping (or of the enrollment that will issue it), as named in its JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MappingField {
    /// `cpi`.
    Cpi,
    /// `msp`.
    Msp,
    /// `psi`.
    Psi,
    /// `context`.
    Context,
    /// `not_before` and `not_after`.
    Window,
    /// `issuer`, the issuer key id.
    Issuer,
    /// `user_key`.
    UserKey,
    /// `user_sig`: not the signature the user made.
    UserSig,
    /// The bytes the user is to sign (`USER_SIG_CONTEXT || canonical body`).
    UserSignedBytes,
}

impl std::fmt::Display for MappingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpi => "CPI (cpi)",
            Self::Msp => "MSP (msp)",
            Self::Psi => "PSI (psi)",
            Self::Context => "context",
            Self::Window => "validity window (not_before, not_after)",
            Self::Issuer => "issuer key id (issuer)",
            Self::UserKey => "user key (user_key)",
            Self::UserSig => "user signature (user_sig)",
            Self::UserSignedBytes => {
                "bytes for the user to sign (they do not describe the mapping asked for)"
            }
        })
    }
}

fn wrong_code(attempts_left: Option<u32>) -> String {
    match attempts_left {
        Some(0) => "wrong code, and no attempts are left: start the enrollment again".to_owned(),
        Some(1) => "wrong code: 1 attempt left".to_owned(),
        Some(n) => format!("wrong code: {n} attempts left"),
        None => "wrong code".to_owned(),
    }
}

fn retry_text(after: Option<Duration>) -> String {
    match after {
        Some(d) => format!("retry in {} s", d.as_secs_f64()),
        None => "retry later".to_owned(),
    }
}

/// A status's trailer as a number.
fn trailer<T: std::str::FromStr>(status: &tonic::Status, key: &str) -> Option<T> {
    status
        .metadata()
        .get(key)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl EnrollError {
    /// The error a prover's status means, for `rpc` signed as `msp`: the one place a
    /// `pir.issuer.v1` status is classified.
    pub(crate) fn from_status(rpc: &'static str, msp: &str, status: tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_owned();
        // A status made by this client's transport (a connection that broke), not the prover.
        if let Some(source) = std::error::Error::source(&status) {
            return Self::Unavailable {
                rpc,
                message: format!("{message}: {source}"),
            };
        }
        match status.code() {
            Code::FailedPrecondition => {
                match trailer::<u32>(&status, pir_proto::ATTEMPTS_LEFT_KEY) {
                    Some(left) => Self::WrongCode {
                        attempts_left: Some(left),
                    },
                    None => Self::FailedPrecondition { rpc, message },
                }
            }
            Code::NotFound => Self::EnrollmentGone { message },
            Code::ResourceExhausted => Self::RateLimited {
                rpc,
                retry_after: trailer::<u64>(&status, pir_proto::RETRY_AFTER_MS_KEY)
                    .map(Duration::from_millis),
                message,
            },
            Code::Unauthenticated => Self::NotAuthenticated {
                rpc,
                msp: msp.to_owned(),
                message,
            },
            Code::PermissionDenied => Self::PermissionDenied {
                rpc,
                msp: msp.to_owned(),
                message,
            },
            Code::Unavailable => Self::Unavailable { rpc, message },
            Code::InvalidArgument => Self::InvalidArgument { rpc, message },
            _ => Self::Rpc {
                rpc,
                status: Box::new(status),
            },
        }
    }

    /// How long the prover asked to wait, for a rate-limited request.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Attempts left after a wrong code, when the prover said.
    pub fn attempts_left(&self) -> Option<u32> {
        match self {
            Self::WrongCode { attempts_left } => *attempts_left,
            _ => None,
        }
    }

    pub(crate) fn file(path: &std::path::Path, problem: FileProblem) -> Self {
        Self::File {
            path: path.to_path_buf(),
            problem,
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Self::file(path, FileProblem::Io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_trailer(mut status: tonic::Status, key: &'static str, value: &str) -> tonic::Status {
        status.metadata_mut().insert(key, value.parse().unwrap());
        status
    }

    #[test]
    fn each_status_is_its_own_sentence() {
        let e = |s| EnrollError::from_status("CompleteEnrollment", "chat.example", s);
        let wrong = e(with_trailer(
            tonic::Status::failed_precondition("wrong code"),
            pir_proto::ATTEMPTS_LEFT_KEY,
            "2",
        ));
        assert!(matches!(
            wrong,
            EnrollError::WrongCode {
                attempts_left: Some(2)
            }
        ));
        assert_eq!(wrong.to_string(), "wrong code: 2 attempts left");
        assert_eq!(wrong.attempts_left(), Some(2));
        let last = e(with_trailer(
            tonic::Status::failed_precondition("wrong code"),
            pir_proto::ATTEMPTS_LEFT_KEY,
            "0",
        ));
        assert!(
            last.to_string().contains("start the enrollment again"),
            "{last}"
        );
        assert!(matches!(
            e(tonic::Status::failed_precondition("user_sig is missing")),
            EnrollError::FailedPrecondition { .. }
        ));
        assert!(matches!(
            e(tonic::Status::not_found("no such enrollment")),
            EnrollError::EnrollmentGone { .. }
        ));
        let limited = e(with_trailer(
            tonic::Status::resource_exhausted("slow down"),
            pir_proto::RETRY_AFTER_MS_KEY,
            "1500",
        ));
        assert_eq!(limited.retry_after(), Some(Duration::from_millis(1500)));
        assert!(limited.to_string().contains("retry in 1.5 s"), "{limited}");
        let unauthenticated = e(tonic::Status::unauthenticated("unknown MSP"));
        let text = unauthenticated.to_string();
        assert!(
            text.contains("chat.example.pub")
                && text.contains("--msp-keys")
                && text.contains("clock"),
            "{text}"
        );
        assert!(matches!(
            e(tonic::Status::permission_denied("another MSP")),
            EnrollError::PermissionDenied { .. }
        ));
        assert!(matches!(
            e(tonic::Status::unavailable("SMTP down")),
            EnrollError::Unavailable { .. }
        ));
        assert!(matches!(
            e(tonic::Status::invalid_argument("psi: too long")),
            EnrollError::InvalidArgument { .. }
        ));
        let other = e(tonic::Status::internal("boom"));
        assert_eq!(
            other.to_string(),
            "CompleteEnrollment failed: INTERNAL: boom"
        );
    }
}
