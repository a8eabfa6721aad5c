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
    /// Keys made for other scheme parameters than the database's.
    #[error("parameter mismatch: keys were generated for other scheme parameters")]
    KeysForOtherParams,
    /// An update to the epoch the snapshot already has.
    #[error("the new epoch must differ from the old one ({epoch})")]
    EpochUnchanged {
        /// The epoch both have.
        epoch: u64,
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
            | Self::Expired { .. }
            | Self::NotYetValid { .. }
            | Self::InvalidMapping { .. }
            | Self::PirBytes { .. }
            | Self::Bucket(_)
            | Self::Snapshot { .. }
            | Self::UnsignedSnapshot
            | Self::UnknownDpKey(_)
            | Self::BadSnapshotSignature => ErrorClass::BadInput,
            Self::Io { .. } => ErrorClass::Environment,
            Self::Params(_)
            | Self::Layout(_)
            | Self::BucketCount { .. }
            | Self::TooLargeForShape { .. }
            | Self::TooLargeForPresets { .. }
            | Self::BucketOverflow(_)
            | Self::KeysForOtherParams
            | Self::EpochUnchanged { .. } => ErrorClass::Misuse,
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

    pub(crate) fn pir_bytes(message: PirMessage, reason: PirBytesError) -> Self {
        Self::PirBytes { message, reason }
    }

    /// Names `path` in a snapshot or key-file error (once), and as the file of an I/O error.
    pub(crate) fn in_file(self, file: &std::path::Path) -> Self {
        match self {
            Self::Snapshot { path: None, reason } => Self::Snapshot {
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

/// Why a CPI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpiError {
    /// No scheme.
    #[error("expected a `tel:` or `mailto:` URI")]
    NotAUri,
    /// A scheme other than `tel` and `mailto`.
    #[error("scheme must be `tel` or `mailto`")]
    Scheme,
    /// Longer than [`crate::identity::MAX_CPI_LEN`] once normalised.
    #[error("too long")]
    TooLong,
    /// `;ext=` or `;phone-context=`.
    #[error("`tel:` parameters (`;...`) are not supported")]
    TelParameters,
    /// A local number (no `+`).
    #[error("a `tel:` CPI must be a global number starting with `+`")]
    NotGlobal,
    /// libphonenumber cannot parse it.
    #[error("not a phone number: {0}")]
    NotAPhoneNumber(String),
    /// An extension (`x123`).
    #[error("numbers with an extension are not CPIs")]
    Extension,
    /// A number the phone metadata does not know as valid, with other characters than digits
    /// and visual separators after its `+` (letters are read as keypad digits only in numbers
    /// the metadata knows).
    #[error(
        "a number the phone metadata does not know may have only digits and the separators \
         space - . / ( ) after its `+`"
    )]
    TelCharacters,
    /// A number the phone metadata does not know, longer than E.164 allows.
    #[error("{digits} digits: an E.164 number has at most 15, its country code included")]
    TelTooLong {
        /// Digits of the E.164 form, country code included.
        digits: usize,
    },
    /// A number the phone metadata does not know whose E.164 form does not read back as
    /// itself, so it has no stable normalised form (a prefix written after the country code).
    #[error(
        "its E.164 form {e164} reads back as another number; write it as `+`, the country code \
         and the national number without a trunk prefix"
    )]
    TelUnstable {
        /// The E.164 form the number first gave.
        e164: String,
    },
    /// `?subject=` and the like.
    #[error("`mailto:` headers (`?...`) are not supported")]
    MailtoHeaders,
    /// No `@`.
    #[error("an email address needs `@`")]
    NoAt,
    /// Empty or over 64 bytes.
    #[error("the local part must be 1 to 64 bytes")]
    LocalPartLength,
    /// Whitespace, a control character or an angle bracket.
    #[error("the local part has a space, control character or angle bracket")]
    LocalPartChars,
    /// The domain.
    #[error(transparent)]
    Domain(DomainError),
}

/// Why a DNS name (email domain or MSP) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// Empty or over 253 bytes.
    #[error("the domain must be 1 to 253 bytes")]
    Length,
    /// A label with other characters than a-z, 0-9 and `-`, or of the wrong length.
    #[error(
        "domain label {label:?} must be 1 to 63 of a-z, 0-9, `-` (use the A-label form for IDNs)"
    )]
    LabelChars {
        /// The label.
        label: String,
    },
    /// A label that starts or ends with `-`.
    #[error("domain label {label:?} starts or ends with `-`")]
    LabelHyphen {
        /// The label.
        label: String,
    },
    /// An internationalised email domain that UTS-46 processing refuses (a character IDNA
    /// disallows, a bad `xn--` label, a bidi or joiner rule, a label starting or ending with `-`).
    #[error("the domain is not a valid internationalised domain name (UTS-46 refuses it)")]
    Uts46,
}

/// Why a mapping field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// Not a valid domain.
    #[error(transparent)]
    Domain(DomainError),
    /// A domain that is not in its normalised (lower-case) form.
    #[error("must be a lower-case domain name")]
    NotNormalised,
    /// Empty, or longer than the field allows.
    #[error("must be 1 to {max} bytes when present")]
    Length {
        /// Most bytes allowed.
        max: usize,
    },
    /// A control or invisible formatting character.
    #[error("contains a control or invisible formatting character")]
    Invisible,
    /// `not_before` after `not_after`.
    #[error("is after not_after")]
    WindowReversed,
    /// A binary field that is not the right base64.
    #[error(transparent)]
    Base64(B64Error),
    /// Half of a pair that must come together.
    #[error("missing while {other} is given")]
    Unpaired {
        /// The field that is present.
        other: &'static str,
    },
}

/// Why base64url text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum B64Error {
    /// Not base64url without padding.
    #[error("not base64url without padding: {0}")]
    Encoding(base64::DecodeError),
    /// Decodes, to the wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    Length {
        /// Bytes wanted.
        expected: usize,
        /// Bytes decoded.
        got: usize,
    },
}

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A small-order public key, which verifies nothing honestly.
    #[error("weak (small-order) public key")]
    Weak,
    /// Two different keys with the same 64-bit id.
    #[error("two different keys share the id {0}")]
    DuplicateId(IssuerId),
    /// Not base64.
    #[error(transparent)]
    Base64(B64Error),
    /// 32 bytes that are not an Ed25519 point.
    #[error("not an Ed25519 public key")]
    NotEd25519,
    /// A trust file without any key.
    #[error("no public key in trust file")]
    NoPublicKey,
    /// A secret key file without the key.
    #[error("empty key file")]
    Empty,
}

/// A PIR message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PirMessage {
    /// A client's query.
    #[error("query")]
    Query,
    /// A client's evaluation keys.
    #[error("public keys")]
    PublicKeys,
    /// A server's response.
    #[error("response")]
    Response,
}

/// Why PIR bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PirBytesError {
    /// Not the length the parameters give.
    #[error("{got} bytes, expected {expected}")]
    Length {
        /// Bytes the parameters give.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A word at or above the modulus.
    #[error("word {word} is not reduced modulo q")]
    Unreduced {
        /// Its index among the message's words.
        word: usize,
    },
}

/// Why a bucket's plaintext does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BucketError {
    /// It ends inside an entry.
    #[error("truncated entry")]
    Truncated,
    /// A text field that is not UTF-8.
    #[error("text field is not UTF-8")]
    NotUtf8,
    /// Flags this version does not know.
    #[error("unknown entry flags {0:#x}")]
    UnknownFlags(u8),
    /// Bytes after the last field of an entry.
    #[error("trailing bytes in entry")]
    TrailingBytes,
}

/// Why a snapshot file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The first bytes are not the magic.
    #[error("not a snapshot file (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error("format version {found}, this build reads version {supported}")]
    Version {
        /// The file's.
        found: u32,
        /// This build's.
        supported: u32,
    },
    /// A header length over the limit.
    #[error("header length out of range")]
    HeaderLength,
    /// The file ends inside a part.
    #[error("truncated in the {part}")]
    Truncated {
        /// Which part: "preamble", "header", "buckets", "database", "delta"...
        part: &'static str,
    },
    /// Shorter than the header says.
    #[error("truncated: {len} bytes, the header announces {expected}")]
    Short {
        /// The file's length.
        len: u64,
        /// The length the header gives.
        expected: u64,
    },
    /// Longer than the header says.
    #[error("{extra} unexpected bytes after the database")]
    TrailingBytes {
        /// Bytes too many.
        extra: u64,
    },
    /// The header's checksum does not match.
    #[error("header checksum mismatch (corrupted header)")]
    HeaderChecksum,
    /// The header's bytes do not decode.
    #[error("header does not decode: {0}")]
    HeaderDecode(#[source] bincode::error::DecodeError),
    /// Bytes after the header's fields.
    #[error("trailing bytes after the header")]
    HeaderTrailingBytes,
    /// Parameters this build cannot run.
    #[error("invalid scheme parameters: {0}")]
    Params(ParamsError),
    /// A layout this build cannot use.
    #[error("invalid keyword layout: {0}")]
    Layout(LayoutError),
    /// A layout whose bucket count is not the item count.
    #[error("bucket count differs from the number of items")]
    BucketCount,
    /// The buckets' checksum does not match.
    #[error("bucket checksum mismatch (corrupted buckets)")]
    BucketChecksum,
    /// The database's checksum does not match.
    #[error("database checksum mismatch (corrupted database)")]
    DatabaseChecksum,
    /// A delta with more items than the database.
    #[error("more delta items than items")]
    DeltaItemCount,
    /// A delta whose length does not follow from its item count.
    #[error("delta of {items} items should be {expected} bytes, the file has {len}")]
    DeltaLength {
        /// Items it announces.
        items: usize,
        /// Bytes that makes.
        expected: u64,
        /// Bytes it has.
        len: u64,
    },
    /// Delta item indices not strictly ascending or out of range.
    #[error("delta item indices out of order or range")]
    DeltaIndices,
    /// The delta's buckets' checksum does not match.
    #[error("delta bucket checksum mismatch")]
    DeltaBucketChecksum,
    /// The delta's words' checksum does not match.
    #[error("delta database checksum mismatch")]
    DeltaDatabaseChecksum,
    /// A base name with a directory in it, or `.`/`..`.
    #[error("base file name {name:?} is not a plain file name")]
    BaseName {
        /// The name as in the header.
        name: String,
    },
    /// The base is a delta too: what is left when a delta is copied over the name of its base.
    #[error(
        "its base {} is itself a delta, not a full snapshot: that file was probably overwritten \
         by a delta (copying a delta over its base destroys the base); restore the full snapshot \
         or rebuild it with `pir-server build`, and write updates under new names (`update \
         --full` makes a snapshot that stands alone)",
        base.display()
    )]
    BaseIsDelta {
        /// The base file.
        base: PathBuf,
    },
    /// The base's header is not the one the delta was made from.
    #[error("its base {} is not the snapshot it was made from (header differs)", base.display())]
    BaseDiffers {
        /// The base file.
        base: PathBuf,
    },
    /// The base has other parameters or layout.
    #[error("its base has other parameters or layout")]
    BaseShape,
    /// A delta read from a stream: its base cannot be found.
    #[error("a delta snapshot: load it from its file, beside its base")]
    DeltaNeedsFile,
    /// A path without a file name.
    #[error("no file name")]
    NoFileName,
}

/// Why scheme parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// Matrix dimension n.
    #[error("n = {n} (supported 1..=8)")]
    N {
        /// The value.
        n: u32,
    },
    /// Database dimensions.
    #[error("nu_1 = {nu_1}, nu_2 = {nu_2} (supported 2..=11, 1..=11)")]
    Dimensions {
        /// nu_1.
        nu_1: u32,
        /// nu_2.
        nu_2: u32,
    },
    /// More than 2^22 items.
    #[error("more than 2^22 items")]
    TooManyItems,
    /// Plaintext modulus p.
    #[error("p = {p} (supported 4, 16, 256)")]
    PlaintextModulus {
        /// The value.
        p: u64,
    },
    /// log2 q2.
    #[error("q2_bits = {q2_bits} (supported 14..=30)")]
    Q2Bits {
        /// The value.
        q2_bits: u32,
    },
    /// A gadget length.
    #[error("{name} = {t} (supported 4..=56)")]
    GadgetLength {
        /// Which gadget.
        name: &'static str,
        /// The value.
        t: u32,
    },
    /// Query expansion cannot hold both dimensions.
    #[error(
        "nu_1 = {nu_1}, nu_2 = {nu_2}, t_gsw = {t_gsw}: query expansion cannot hold both dimensions"
    )]
    Expansion {
        /// nu_1.
        nu_1: u32,
        /// nu_2.
        nu_2: u32,
        /// t_GSW.
        t_gsw: u32,
    },
    /// Instances per item.
    #[error("instances = {instances} (supported 1..=64)")]
    Instances {
        /// The value.
        instances: u32,
    },
    /// Key-layout version.
    #[error("version = {version} (supported 0)")]
    Version {
        /// The value.
        version: u32,
    },
    /// Usable item bytes.
    #[error("item_bytes = {item_bytes} but an item holds at most {capacity} bytes")]
    ItemBytes {
        /// The value.
        item_bytes: u32,
        /// What an item holds.
        capacity: usize,
    },
}

/// Why a keyword layout was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Another version of the keyword function.
    #[error("keyword layout version {found} is not supported (this build knows {supported})")]
    Version {
        /// The layout's.
        found: u32,
        /// This build's.
        supported: u32,
    },
    /// No buckets.
    #[error("zero buckets")]
    ZeroBuckets,
    /// A salt that is not 32 bytes.
    #[error("layout salt is {got} bytes, expected 32")]
    SaltLength {
        /// Bytes given.
        got: usize,
    },
}

/// Why buckets do not fit their items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Overflow {
    /// One CPI's mappings alone exceed an item.
    #[error(
        "{cpi} alone has {mappings} mappings that need more than one {item_bytes}-byte item; \
         remove some or use larger items"
    )]
    OneCpi {
        /// The CPI.
        cpi: Cpi,
        /// Its mappings.
        mappings: usize,
        /// Bytes of an item.
        item_bytes: usize,
    },
    /// Every salt tried left a bucket too full at the shape asked for.
    #[error(
        "fullest bucket needs {needs} of {item_bytes} bytes at {items} items after {salts} salts; \
         rebuild with more headroom (a larger shape)"
    )]
    Fullest {
        /// Bytes the fullest bucket needs.
        needs: usize,
        /// Bytes of an item.
        item_bytes: usize,
        /// Items of the shape.
        items: usize,
        /// Salts tried.
        salts: u32,
    },
    /// More entries than a bucket can count.
    #[error("{count} entries in one bucket")]
    Entries {
        /// Entries.
        count: usize,
    },
    /// A bucket's entries exceed its item.
    #[error("bucket exceeds {item_bytes} bytes")]
    Bytes {
        /// Bytes of an item.
        item_bytes: usize,
    },
    /// A delta makes a bucket exceed its item.
    #[error(
        "bucket {bucket}: bucket exceeds {item_bytes} bytes; this delta does not fit the \
         snapshot's shape: rebuild from the full mapping set with more headroom"
    )]
    Delta {
        /// The bucket.
        bucket: usize,
        /// Bytes of an item.
        item_bytes: usize,
    },
}

impl From<crate::bytes::Truncated> for BucketError {
    fn from(_: crate::bytes::Truncated) -> Self {
        Self::Truncated
    }
}

impl From<BucketError> for CoreError {
    fn from(e: BucketError) -> Self {
        Self::Bucket(e)
    }
}

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
