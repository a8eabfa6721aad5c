//! The crate's one error type, with a typed reason for every variant, and its classification.

use std::path::PathBuf;

use crate::identity::{Cpi, IssuerId};

/// Everything that can go wrong in `pir-core`.
///
/// Each variant carries a typed reason (tests and callers match on it, never on the text); the
/// text is for people. [`CoreError::class`] says whose fault it is, by an exhaustive match.
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
        reason: CpiError,
    },
    /// A mapping field that breaks the format's rules (length, charset, window).
    #[error("invalid mapping field `{field}`: {reason}")]
    InvalidField {
        /// The field's name as in the JSON form.
        field: &'static str,
        /// What was wrong with it.
        reason: FieldError,
    },
    /// A JSON line that does not parse as a signed mapping.
    #[error("malformed mapping JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// A key file or trust file that does not parse.
    #[error("malformed key material: {}{}{reason}", at_path(path), at_line(*line))]
    MalformedKey {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The 1-based line, when the problem is on one.
        line: Option<usize>,
        /// What was wrong.
        reason: KeyError,
    },

    /// A key, trust or secret file named by a command-line flag, and what was wrong with it:
    /// `--issuer-key issuer.pub: this is a public key ...` (see [`CoreError::with_flag`]).
    #[error("{flag} {}", FlagDetail(source))]
    KeyFile {
        /// The flag that named the file.
        flag: &'static str,
        /// The error, naming the file.
        source: Box<CoreError>,
    },

    // ---- bad input: verification ----------------------------------------------------------------
    /// The mapping names an issuer key that is not among the trusted ones.
    #[error("mapping issued by unknown issuer key {0}")]
    UnknownIssuer(IssuerId),
    /// The issuer signature does not verify under the issuer's key.
    #[error("issuer signature does not verify")]
    BadIssuerSignature,
    /// The user's self-signature does not verify under the user key carried in the mapping.
    #[error("user self-signature does not verify")]
    BadUserSignature,
    /// An MSP's request signature does not verify under the key registered for that MSP.
    #[error("the MSP's request signature does not verify under its registered key")]
    BadMspSignature,
    /// `now` is past the mapping's `not_after`.
    #[error("mapping expired at {} (now {})", crate::human::Time(*.not_after), crate::human::Time(*.now))]
    Expired {
        /// End of the validity window, unix seconds.
        not_after: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// `now` is before the mapping's `not_before`.
    #[error(
        "mapping not valid before {} (now {})",
        crate::human::Time(*.not_before),
        crate::human::Time(*.now)
    )]
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
    #[error("malformed {message}: {reason}")]
    PirBytes {
        /// Which message.
        message: PirMessage,
        /// What was wrong with it.
        reason: PirBytesError,
    },
    /// A bucket whose plaintext does not decode (a corrupted database or a wrong key).
    #[error("malformed bucket: {0}")]
    Bucket(BucketError),

    // ---- bad input: snapshot files --------------------------------------------------------------
    /// A snapshot file that is not a snapshot, is truncated, corrupted or of another version.
    #[error("invalid snapshot: {}{reason}", at_path(path))]
    Snapshot {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: SnapshotError,
    },
    /// A shard manifest that is not one, is truncated, corrupted, of another version, or does
    /// not match its shards.
    #[error("invalid shard manifest: {}{reason}", at_path(path))]
    Manifest {
        /// The file (or directory, when assembling), when read from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: ManifestError,
    },
    /// An update names a CPI that another shard holds.
    #[error(
        "{cpi} belongs to shard {belongs}, not to this snapshot ({shard}): update a sharded directory through its manifest"
    )]
    WrongShard {
        /// The CPI.
        cpi: Cpi,
        /// The snapshot's shard.
        shard: crate::keyword::ShardPosition,
        /// The shard the CPI belongs to.
        belongs: u32,
    },
    /// A snapshot without the DP signature that was required.
    #[error("snapshot is not signed by a DP key")]
    UnsignedSnapshot,
    /// A snapshot signed by a DP key that is not among the trusted ones.
    #[error("snapshot signed by unknown DP key {0}")]
    UnknownDpKey(IssuerId),
    /// A snapshot whose DP signature does not verify.
    #[error("snapshot signature does not verify")]
    BadSnapshotSignature,

    // ---- environment ----------------------------------------------------------------------------
    /// An I/O error, with the file it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    // ---- misuse ---------------------------------------------------------------------------------
    /// Scheme parameters outside what the adapter supports.
    #[error("invalid scheme parameters: {0}")]
    Params(ParamsError),
    /// A keyword layout this build cannot use.
    #[error("invalid keyword layout: {0}")]
    Layout(LayoutError),
    /// A layout whose bucket count is not the database's item count.
    #[error("bucket count {buckets} differs from the number of items {items}")]
    BucketCount {
        /// Buckets in the layout.
        buckets: u32,
        /// Items of the scheme parameters.
        items: usize,
    },
    /// The mapping set does not fit the shape that was asked for.
    #[error(
        "database too large: {record_bytes} record bytes do not fit {items} items of {item_bytes} bytes"
    )]
    TooLargeForShape {
        /// Bytes of bucket entries.
        record_bytes: u64,
        /// Items of the shape.
        items: usize,
        /// Bytes of one item.
        item_bytes: u32,
    },
    /// The mapping set does not fit any vetted shape.
    #[error("database too large: {record_bytes} record bytes do not fit the largest vetted shape")]
    TooLargeForPresets {
        /// Bytes of bucket entries.
        record_bytes: u64,
    },
    /// A bucket would overflow its PIR item.
    #[error("bucket overflow: {0}")]
    BucketOverflow(Overflow),
    /// An operation of one engine asked of another engine's database or configuration.
    #[error("this needs a {expected} database, and this one is {found}")]
    WrongEngine {
        /// The engine the operation needs.
        expected: crate::pir::Engine,
        /// The database's engine.
        found: crate::pir::Engine,
    },
    /// Keys made for other scheme parameters than the database's.
    #[error("parameter mismatch: keys were generated for other scheme parameters")]
    KeysForOtherParams,
    /// An update to the epoch the snapshot already has.
    #[error("the new epoch must differ from the old one ({epoch})")]
    EpochUnchanged {
        /// The epoch both have.
        epoch: u64,
    },

    // ---- bad input: the oblivious PRF and sealed entries ---------------------------------------
    /// An OPRF key, element, proof or batch that is refused.
    #[error("OPRF: {0}")]
    Oprf(OprfError),
    /// A CPI's entry that does not open under the key derived from its OPRF output: damaged, or
    /// planted by whoever served it.
    #[error("an entry for this CPI does not decrypt under its key (damaged or forged)")]
    SealedEntry,
    /// The OPRF key given is not the one the snapshot's layout was built with.
    #[error(
        "the OPRF key given is not the snapshot's (its header names public key {expected}): \
         give the key the snapshot was built with, or rebuild with the new key"
    )]
    OprfKeyMismatch {
        /// The snapshot's OPRF public key, hex.
        expected: String,
    },

    // ---- bugs -----------------------------------------------------------------------------------
    /// A broken invariant, named. Always a bug here or in a dependency.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

fn at_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn at_line(line: Option<usize>) -> String {
    line.map(|n| format!("line {n}: ")).unwrap_or_default()
}

/// The inside of [`CoreError::KeyFile`]: the file, then what was wrong, without the generic
/// prefix (the flag says what the file was for).
struct FlagDetail<'a>(&'a CoreError);

impl std::fmt::Display for FlagDetail<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            CoreError::MalformedKey { path, line, reason } => {
                let path = at_path(path);
                let path = path.strip_suffix(": ").unwrap_or(&path);
                write!(f, "{path}: {}{reason}", at_line(*line))
            }
            CoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            other => write!(f, "{other}"),
        }
    }
}

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bytes or text from outside that do not parse or do not verify.
    BadInput,
    /// A caller asked for something this configuration cannot do.
    Misuse,
    /// The machine: a file that cannot be read or written.
    Environment,
    /// A broken invariant: a bug.
    Bug,
}

impl CoreError {
    /// Whose fault this error is. Every variant is classified here, by name.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidCpi { .. }
            | Self::InvalidField { .. }
            | Self::MalformedJson(_)
            | Self::MalformedKey { .. }
            | Self::UnknownIssuer(_)
            | Self::BadIssuerSignature
            | Self::BadUserSignature
            | Self::BadMspSignature
            | Self::Expired { .. }
            | Self::NotYetValid { .. }
            | Self::InvalidMapping { .. }
            | Self::PirBytes { .. }
            | Self::Bucket(_)
            | Self::Snapshot { .. }
            | Self::Manifest { .. }
            | Self::WrongShard { .. }
            | Self::UnsignedSnapshot
            | Self::UnknownDpKey(_)
            | Self::BadSnapshotSignature
            | Self::Oprf(_)
            | Self::SealedEntry => ErrorClass::BadInput,
            Self::Io { .. } => ErrorClass::Environment,
            Self::KeyFile { source, .. } => source.class(),
            Self::Params(_)
            | Self::Layout(_)
            | Self::BucketCount { .. }
            | Self::TooLargeForShape { .. }
            | Self::TooLargeForPresets { .. }
            | Self::BucketOverflow(_)
            | Self::KeysForOtherParams
            | Self::WrongEngine { .. }
            | Self::EpochUnchanged { .. }
            | Self::OprfKeyMismatch { .. } => ErrorClass::Misuse,
            Self::Internal(_) => ErrorClass::Bug,
        }
    }

    /// True when the error is the caller's input being wrong.
    pub fn is_bad_input(&self) -> bool {
        self.class() == ErrorClass::BadInput
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn field(field: &'static str, reason: FieldError) -> Self {
        Self::InvalidField { field, reason }
    }

    pub(crate) fn key(reason: KeyError) -> Self {
        Self::MalformedKey {
            path: None,
            line: None,
            reason,
        }
    }

    pub(crate) fn snapshot(reason: SnapshotError) -> Self {
        Self::Snapshot { path: None, reason }
    }

    pub(crate) fn manifest(reason: ManifestError) -> Self {
        Self::Manifest { path: None, reason }
    }

    pub(crate) fn pir_bytes(message: PirMessage, reason: PirBytesError) -> Self {
        Self::PirBytes { message, reason }
    }

    /// Names the command-line flag that gave the file of a key-file or I/O error
    /// ([`CoreError::KeyFile`]); other errors are returned as they are.
    pub fn with_flag(self, flag: &'static str) -> Self {
        match self {
            Self::MalformedKey { .. } | Self::Io { .. } => Self::KeyFile {
                flag,
                source: Box::new(self),
            },
            other => other,
        }
    }

    /// Names `path` in a snapshot or key-file error (once), and as the file of an I/O error.
    pub(crate) fn in_file(self, file: &std::path::Path) -> Self {
        match self {
            Self::Snapshot { path: None, reason } => Self::Snapshot {
                path: Some(file.to_owned()),
                reason,
            },
            Self::Manifest { path: None, reason } => Self::Manifest {
                path: Some(file.to_owned()),
                reason,
            },
            Self::MalformedKey {
                path: None,
                line,
                reason,
            } => Self::MalformedKey {
                path: Some(file.to_owned()),
                line,
                reason,
            },
            Self::Io { source, .. } => Self::io(file, source),
            other => other,
        }
    }
}

mod artefact;
mod input;

pub use artefact::{
    BucketError, LayoutError, ManifestError, Overflow, ParamsError, PirBytesError, PirMessage,
    SnapshotError,
};
pub use input::{B64Error, CpiError, DomainError, FieldError, KeyError, OprfError};

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
