//! `pir-proto`: the `pir.v1` gRPC protocol.
//!
//! Generated types live in [`v1`]; conversions to and from `pir-core` types live in one place
//! (`convert/`), as `TryFrom` impls or, where a check needs what the receiver knows, `parse`
//! constructors. Wire messages are not trusted: converting them validates, into types that carry
//! what was checked ([`ConfigIn`], [`AnswerIn`], [`EvaluationIn`], [`QueryIn`],
//! [`RegisterKeysIn`], [`EvaluateIn`]).

// Outside tests, a panic must name the invariant that makes it impossible.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod convert;
#[cfg(feature = "test-utils")]
pub mod testing;

/// Generated code for package `pir.v1`.
#[rustfmt::skip]
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/pir.v1.rs"));
}

/// Generated code for package `pir.issuer.v1`: the ID prover (issuer), which the MSP's client
/// and the prover speak. Its fields are checked where they are used (`pir-issuer`), against the
/// mapping format's own rules.
#[rustfmt::skip]
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod issuer_v1 {
    include!(concat!(env!("OUT_DIR"), "/pir.issuer.v1.rs"));
}

/// Encoded `FileDescriptorSet` of `pir.issuer.v1`, for gRPC server reflection.
pub const ISSUER_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pir_issuer_v1_descriptor.bin"));

/// Trailer key of a wrong code: how many attempts the enrollment has left.
pub const ATTEMPTS_LEFT_KEY: &str = "pir-attempts-left";

pub use convert::{
    AnswerError, AnswerIn, ConfigIn, ConvertError, EvaluateError, EvaluateIn, EvaluationError,
    EvaluationIn, Expiry, QueryError, QueryIn, RegisterKeysError, RegisterKeysIn, RenewKeysError,
    RenewKeysIn, ReportedSizes,
};

/// Encoded `FileDescriptorSet` of `pir.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pir_v1_descriptor.bin"));

/// Trailer key that says why a request failed its precondition.
pub const REASON_KEY: &str = "pir-reason";
/// [`REASON_KEY`] value: the key id is not (or no longer) registered.
pub const REASON_UNKNOWN_KEY: &str = "unknown-key";
/// [`REASON_KEY`] value: the request's epoch is not the served one.
pub const REASON_STALE_EPOCH: &str = "stale-epoch";
/// Trailer key of a rate-limited request: milliseconds until the limit lets it through.
pub const RETRY_AFTER_MS_KEY: &str = "pir-retry-after-ms";
