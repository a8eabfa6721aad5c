//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `pir-core`.
///
/// Variants are grouped as *bad input* (bytes or text from outside that do not parse or do not
/// verify), *misuse* (a caller asked for something this configuration cannot do) and *internal*
/// (a broken invariant: a bug here or in a dependency).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    // ---- bad input: identifiers and mappings -------------------------------------------------
    /// A CPI that is not a `tel:` or `mailto:` URI, or whose number or address is malformed.
    #[error("invalid CPI {input:?}: {reason}")]
    InvalidCpi {
        /// The text as given.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A mapping field that breaks the format's rules (length, charset, window).
    #[error("invalid mapping field `{field}`: {reason}")]
    InvalidField {
        /// The field's name as in the JSON form.
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A JSON line that does not parse as a signed mapping.
    #[error("malformed mapping JSON: {0}")]
    MalformedJson(String),
    /// A key file or trust file that does not parse.
    #[error("malformed key material: {0}")]
    MalformedKey(String),

    // ---- bad input: verification ----------------------------------------------------------------
    /// The mapping names an issuer key that is not among the trusted ones.
    #[error("mapping issued by unknown issuer key {0}")]
    UnknownIssuer(String),
    /// The issuer signature does not verify under the issuer's key.
    #[error("issuer signature does not verify")]
    BadIssuerSignature,
    /// The user's self-signature does not verify under the user key carried in the mapping.
    #[error("user self-signature does not verify")]
    BadUserSignature,
    /// `now` is past the mapping's `not_after`.
    #[error("mapping expired at {not_after} (now {now})")]
    Expired {
        /// End of the validity window, unix seconds.
        not_after: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// `now` is before the mapping's `not_before`.
    #[error("mapping not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of the validity window, unix seconds.
        not_before: u64,
        /// The time it was checked at.
        now: u64,
    },

    /// A mapping in a build's input that does not verify, with its position (0-based).
    #[error("mapping #{index}: {source}")]
    InvalidMapping {
        /// Position in the input.
        index: usize,
        /// Why it was refused.
        source: Box<CoreError>,
    },

    // ---- bad input: PIR bytes -------------------------------------------------------------------
    /// Query, key or response bytes of the wrong length or with out-of-range words.
    #[error("malformed {what}: {reason}")]
    MalformedPirBytes {
        /// Which message: "query", "public keys", "response".
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A bucket whose plaintext does not decode (a corrupted database or a wrong key).
    #[error("malformed bucket: {0}")]
    MalformedBucket(String),

    // ---- bad input: snapshot files --------------------------------------------------------------
    /// A snapshot file that is not a snapshot, is truncated, corrupted or of another version.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// A snapshot without the DP signature that was required.
    #[error("snapshot is not signed by a DP key")]
    UnsignedSnapshot,
    /// A snapshot whose DP signature does not verify.
    #[error("snapshot signature does not verify")]
    BadSnapshotSignature,
    /// An I/O error, with the file it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    // ---- misuse ---------------------------------------------------------------------------------
    /// Scheme parameters outside what the adapter supports.
    #[error("invalid scheme parameters: {0}")]
    InvalidParams(String),
    /// The mapping set does not fit any supported database shape.
    #[error("database too large: {0}")]
    TooLarge(String),
    /// A bucket would overflow its PIR item; the message names the remedy.
    #[error("bucket overflow: {0}")]
    BucketOverflow(String),
    /// Keys made for other scheme parameters than the database's.
    #[error("parameter mismatch: {0}")]
    ParamsMismatch(String),

    // ---- internal -------------------------------------------------------------------------------
    /// A broken invariant. Always a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    /// True when the error is the caller's input being wrong (as opposed to misuse or a bug).
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            Self::InvalidParams(_)
                | Self::TooLarge(_)
                | Self::BucketOverflow(_)
                | Self::ParamsMismatch(_)
                | Self::Internal(_)
        )
    }
}

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
