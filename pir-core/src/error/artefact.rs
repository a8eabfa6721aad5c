//! Why a PIR message, a bucket, a snapshot file, scheme parameters or a layout was refused.

use std::path::PathBuf;

use super::CoreError;
use crate::identity::Cpi;

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
    /// Bytes after the last field of an entry, or padding that is not zero.
    #[error("trailing bytes in entry")]
    TrailingBytes,
    /// A record with no statement in it.
    #[error("empty record")]
    RecordLength,
    /// A statement kind (or a mapping's flags) this version does not know.
    #[error("unknown statement head {0:#x}")]
    UnknownKind(u8),
    /// An index beyond the layout's dictionary of MSP names or issuer ids.
    #[error("dictionary index {index} beyond its {len} names")]
    DictionaryIndex {
        /// The index read.
        index: usize,
        /// Names in the dictionary.
        len: usize,
    },
}

/// Why a snapshot file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The path names something other than a regular file (a FIFO, a device, a directory),
    /// refused before it is opened for reading: a FIFO would block until a writer came.
    #[error("not a regular file ({kind}): a snapshot must be a regular file")]
    NotRegularFile {
        /// What it is: "a FIFO", "a directory"...
        kind: &'static str,
    },
    /// The first bytes are not the magic.
    #[error("not a snapshot file (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error(
        "format version {found}, this build reads version {supported}{}",
        if *found < *supported {
            "; rebuild it from the mappings with `build --oprf-key` (version 1 stored \
             entries under a public hash; version 2 did not record its shard; version 3 \
             used fixed-size slots, which layout version 3 replaced)"
        } else {
            ""
        }
    )]
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
    /// An engine this build does not know.
    #[error("engine number {engine} is not known to this build (1: ypir-sp)")]
    Engine {
        /// The number.
        engine: u32,
    },
    /// YPIR+SP rows.
    #[error("YPIR+SP rows = 2^{rows_log2} (supported 2^11..=2^20)")]
    YpirRows {
        /// log2 of the rows.
        rows_log2: u32,
    },
    /// YPIR+SP instances per row.
    #[error("YPIR+SP instances = {instances} (supported 1..=16)")]
    YpirInstances {
        /// The value.
        instances: u32,
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
    /// A shard index not below the shard count, or a count of 0 or beyond the limit.
    #[error("shard {index} of {count}: the index must be below the count, and the count 1 to 2^20")]
    Shard {
        /// The index.
        index: u32,
        /// The count.
        count: u32,
    },
    /// A salt that is not 32 bytes.
    #[error("layout salt is {got} bytes, expected 32")]
    SaltLength {
        /// Bytes given.
        got: usize,
    },
    /// An issuer id in the dictionary that is not 8 bytes.
    #[error("an issuer id in the layout's dictionary is not 8 bytes")]
    IssuerLength,
    /// A group count of 0 or beyond the limit.
    #[error("{got} groups: the count must be 1 to 2^22")]
    Groups {
        /// The count.
        got: u32,
    },
    /// A choice table of the wrong length for the group count.
    #[error("the choice table is {got} bytes, expected {expected} (2 bits a group)")]
    ChoiceTable {
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Bits set past the last group of the choice table.
    #[error("the choice table has bits set past its last group")]
    ChoiceTablePadding,
    /// A dictionary of more than 65536 names.
    #[error("a layout dictionary holds more than 65536 names")]
    DictionarySize,
    /// An MSP name in the dictionary that is not a normalised domain.
    #[error("an MSP name in the layout's dictionary is not a normalised domain")]
    DictionaryName,
    /// A name given twice in a dictionary.
    #[error("a name appears twice in a layout dictionary")]
    DictionaryDuplicate,
    /// An item too large for the layout's 16-bit locators.
    #[error("{item_bytes}-byte items are beyond the layout's 65536")]
    ItemBytes {
        /// Bytes of an item.
        item_bytes: u32,
    },
    /// An OPRF public key that is not a canonical ristretto255 element.
    #[error("the OPRF public key is not a valid ristretto255 element")]
    OprfKey,
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
    /// A delta names an MSP or issuer the snapshot's dictionary cannot take without widening
    /// every index (past 256 names, or 65536).
    #[error(
        "the snapshot's dictionary of MSP names or issuers cannot take another name without \
         re-encoding every record: rebuild from the full mapping set"
    )]
    Dictionary,
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

impl From<Overflow> for CoreError {
    fn from(o: Overflow) -> Self {
        Self::BucketOverflow(o)
    }
}

impl From<BucketError> for CoreError {
    fn from(e: BucketError) -> Self {
        Self::Bucket(e)
    }
}

/// Why a shard manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not a regular file.
    #[error("not a regular file")]
    NotRegularFile,
    /// The first bytes are not the magic.
    #[error("not a shard manifest (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error("manifest format version {found}, this build reads version {supported}")]
    Version {
        /// The file's.
        found: u32,
        /// This build's.
        supported: u32,
    },
    /// Shorter than its length field says.
    #[error("truncated")]
    Truncated,
    /// Longer than its length field says.
    #[error("bytes after the manifest")]
    TrailingBytes,
    /// Beyond the size limit.
    #[error("larger than a manifest may be")]
    Length,
    /// The body does not decode.
    #[error("undecodable body: {0}")]
    Decode(String),
    /// No shard files.
    #[error("no shards: build them first with `build --shards N` (files shard-NNNNN.pirsnap)")]
    NoShards,
    /// Shards of directories with different shard counts.
    #[error("{file} is a shard of {found}, others are shards of {expected}")]
    ShardCounts {
        /// The odd file.
        file: String,
        /// Its count.
        found: u32,
        /// The others'.
        expected: u32,
    },
    /// A shard with another scheme or OPRF key than the others.
    #[error(
        "{file} has another scheme or OPRF key than the other shards: build every shard from one input with the same flags"
    )]
    ShardShape {
        /// The odd file.
        file: String,
    },
    /// Two files claim one shard.
    #[error("two files are shard {index}: {} and {}", files[0], files[1])]
    DuplicateShard {
        /// The shard.
        index: u32,
        /// The two files.
        files: [String; 2],
    },
    /// Shards not found.
    #[error("{} of {count} shards missing (first: {:?}): build them with `build --shards {count} --shard-index I`", missing.len(), &missing[..missing.len().min(8)])]
    MissingShards {
        /// Shards in the directory.
        count: u32,
        /// Indices not found.
        missing: Vec<u32>,
    },
    /// A shard's file name with a directory in it.
    #[error("shard file name {name:?} is not a plain file name")]
    FileName {
        /// The name.
        name: String,
    },
    /// A shard newer than its manifest.
    #[error("shard {file} has epoch {epoch}, above the manifest's {manifest}")]
    ShardEpoch {
        /// The shard's file.
        file: String,
        /// Its epoch.
        epoch: u64,
        /// The manifest's.
        manifest: u64,
    },
    /// A shard index beyond the manifest's.
    #[error("no shard {index}: the manifest has {count}")]
    NoSuchShard {
        /// The index asked for.
        index: u32,
        /// Shards in the manifest.
        count: u32,
    },
    /// A shard file that is not the one the manifest names.
    #[error(
        "shard {index}'s snapshot is not the {file} this manifest names (another build or a changed file)"
    )]
    ShardDiffers {
        /// The shard.
        index: u32,
        /// The file the manifest names.
        file: String,
    },
}
