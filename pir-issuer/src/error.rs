//! Why a request to the prover failed, and the one place that becomes a gRPC status.

use tonic::{Code, Status};

use crate::{feed::FeedError, sender::SendError, store::StoreError};

/// A refused or failed request.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A malformed field.
    #[error("{field}: {detail}")]
    Field {
        /// The field, as named in the protocol.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The request carries no MSP signature (and is not the operator's).
    #[error("the request must be signed by the MSP it names (auth is missing)")]
    Unsigned,
    /// No key is registered for the MSP the request names.
    #[error(
        "no key is registered for MSP {0} at this prover: give the prover's operator the .pub \
         file of `pir-client msp-keygen`"
    )]
    UnknownMsp(String),
    /// The signature does not verify under the named MSP's key.
    #[error(
        "the signature does not verify under the key registered for MSP {0} (an MSP may only \
         name itself; check --msp and --msp-key)"
    )]
    BadSignature(String),
    /// The request's timestamp is too far from the prover's clock.
    #[error(
        "the request was signed at {} but the prover's clock says {}: fix the MSP's clock",
        pir_core::human::Time(*.timestamp),
        pir_core::human::Time(*.now)
    )]
    ClockSkew {
        /// The signed timestamp.
        timestamp: u64,
        /// The prover's time.
        now: u64,
    },
    /// The operator's token is missing or wrong.
    #[error("not authorised: an operator's request needs `authorization: Bearer <token>`")]
    NotOperator,
    /// The enrollment belongs to another MSP.
    #[error("this enrollment was started by another MSP")]
    OtherMsp,
    /// A rate limit refused the request.
    #[error("too many {what}: try again in {} ms", .retry_after_ms)]
    RateLimited {
        /// What was limited.
        what: &'static str,
        /// When it would pass.
        retry_after_ms: u64,
    },
    /// No live enrollment has that id: unknown, expired, used or spent (one answer for all).
    #[error(
        "no such enrollment: it is unknown, expired, already used or out of attempts; start again"
    )]
    NoEnrollment,
    /// The code is wrong.
    #[error("wrong code: {attempts_left} attempts left")]
    WrongCode {
        /// Attempts left; 0 means the enrollment is gone.
        attempts_left: u32,
    },
    /// The enrollment was started with a user key and the completion carries no signature.
    #[error(
        "this enrollment was started with a user key: the user's signature (user_sig) is required"
    )]
    UserSignatureMissing,
    /// The user's signature does not verify.
    #[error("the user's signature does not verify under the user key of the mapping")]
    BadUserSignature,
    /// A user's withdrawal names no mapping this prover issued with a user key.
    #[error(
        "this prover issued no mapping of this CPI at this MSP that carries a user key: the \
         user withdraws through the MSP or the prover's operator"
    )]
    NoUserKey,
    /// The code could not be sent.
    #[error("the code could not be sent: {0}")]
    Send(#[from] SendError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The feed could not be written.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// Something that should not fail did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IssuerError {
    /// A malformed `field`.
    pub fn field(field: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Field {
            field,
            detail: detail.to_string(),
        }
    }
}

impl From<IssuerError> for Status {
    fn from(e: IssuerError) -> Self {
        let code = match &e {
            IssuerError::Field { .. } | IssuerError::BadUserSignature => Code::InvalidArgument,
            IssuerError::Unsigned
            | IssuerError::UnknownMsp(_)
            | IssuerError::BadSignature(_)
            | IssuerError::ClockSkew { .. }
            | IssuerError::NoUserKey
            | IssuerError::NotOperator => Code::Unauthenticated,
            IssuerError::OtherMsp => Code::PermissionDenied,
            IssuerError::RateLimited { .. } => Code::ResourceExhausted,
            IssuerError::NoEnrollment => Code::NotFound,
            IssuerError::WrongCode { .. } | IssuerError::UserSignatureMissing => {
                Code::FailedPrecondition
            }
            IssuerError::Send(SendError::NoChannel(..)) => Code::FailedPrecondition,
            IssuerError::Send(_) => Code::Unavailable,
            IssuerError::Store(_) | IssuerError::Feed(_) | IssuerError::Internal(_) => {
                tracing::error!(error = %e, "request failed inside the prover");
                return Status::internal("the prover failed to record the request; try again");
            }
        };
        let mut status = Status::new(code, e.to_string());
        let trailer = match &e {
            IssuerError::RateLimited { retry_after_ms, .. } => {
                Some((pir_proto::RETRY_AFTER_MS_KEY, retry_after_ms.to_string()))
            }
            IssuerError::WrongCode { attempts_left } => {
                Some((pir_proto::ATTEMPTS_LEFT_KEY, attempts_left.to_string()))
            }
            _ => None,
        };
        if let Some((key, value)) = trailer
            && let Ok(value) = value.parse()
        {
            status.metadata_mut().insert(key, value);
        }
        status
    }
}
