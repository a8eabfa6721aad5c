//! Snapshots: a keyword layout plus the database of its engine (the header's `Scheme`: Spiral's
//! NTT-preprocessed words, or YPIR+SP's buckets alone), in one file.
//!
//! ```text
//! file    = magic "PIRSNAP\0" || format_version:u32le || header_len:u32le
//!           || header[header_len]            (bincode, little-endian, fixed-width integers)
//!           || blake3(header)[32]
//!           || plaintext[num_items * item_bytes]   (the buckets, for updates and inspection)
//!           || db words[db_words] as u64le        (NTT form: loading never redoes the NTT;
//!                                                  none for YPIR+SP, derived from the buckets)
//! header.plaintext_checksum = blake3(plaintext), header.db_checksum = blake3(db bytes)
//!
//! delta   = magic || format_version || header_len || header (base = Some) || blake3(header)
//!           || k:u32le || k item indices:u32le (ascending) || k buckets || k items' words
//!           (each item's words in (instance, trial, coefficient) order)
//! header.plaintext_checksum = blake3(k || indices || buckets), db_checksum = blake3(words)
//! ```
//!
//! A delta names its full base (a file beside it) by epoch and header hash; loading it loads the
//! base and replaces the delta's items. Updates write deltas, so their cost follows the size of
//! the change, not of the database.

mod build;
mod delta;
mod file;
mod header;
mod manifest;
mod sign;

use std::{collections::BTreeSet, sync::OnceLock};

pub use build::{
    BuildInput, BuildOptions, BuildReport, DEFAULT_FILL_PERCENT, GROUP_SIZE, ShardedBuild,
};
pub use delta::{DeltaOp, UpdateOptions, UpdateReport, split_by_shard};
pub use file::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC};
pub use header::{BaseRef, DpSignature, SnapshotHeader};
pub use manifest::{
    MANIFEST_FILE_NAME, MANIFEST_FORMAT_VERSION, MANIFEST_MAGIC, Manifest, ShardEntry,
    shard_file_name,
};

use file::words_checksum;
use header::encode_header;

use crate::{
    error::{CoreError, Result},
    keyword::LookupConfig,
    pir::{Database, Engine, MessageSizes, Scheme, ypir::YpirDatabase, ypir::YpirParams},
};

/// What answering reads, by engine.
enum Payload {
    /// Spiral's NTT-form words (none when loaded for an update only).
    Spiral(Database),
    /// YPIR+SP's elements and precomputation, derived from the buckets when first asked for
    /// (a server asks at load): its file holds the buckets only. `false` when loaded for an
    /// update only (an update then writes a delta).
    YpirSp(YpirParams, OnceLock<YpirDatabase>, bool),
}

impl Payload {
    /// An empty payload for a scheme, loaded for an update only: Spiral's without words.
    fn not_loaded(scheme: Scheme) -> Self {
        match scheme {
            Scheme::Spiral(p) => Payload::Spiral(Database::not_loaded(p)),
            Scheme::YpirSp(p) => Payload::YpirSp(p, OnceLock::new(), false),
        }
    }

    /// YPIR+SP's payload for serving: derived from the buckets when first needed.
    fn ypir(params: YpirParams) -> Self {
        Payload::YpirSp(params, OnceLock::new(), true)
    }

    /// Whether answering can use it (not when loaded for an update only).
    fn is_loaded(&self) -> bool {
        match self {
            Payload::Spiral(db) => db.is_loaded(),
            Payload::YpirSp(_, _, served) => *served,
        }
    }

    /// The words a file stores after the buckets (none for YPIR+SP).
    fn words(&self) -> &[u64] {
        match self {
            Payload::Spiral(db) => db.words(),
            Payload::YpirSp(..) => &[],
        }
    }

    /// A delta's items' words (`per_item` each) in place of theirs.
    fn scatter_items(&mut self, indices: &[usize], words: &[u64], per_item: usize) -> Result<()> {
        match self {
            Payload::Spiral(db) => {
                let chunks: Vec<&[u64]> = words.chunks_exact(per_item.max(1)).collect();
                db.scatter_items(indices, &chunks)
            }
            Payload::YpirSp(_, db, _) => {
                *db = OnceLock::new();
                Ok(())
            }
        }
    }

    /// Re-encodes items `indices` after their buckets changed in `plaintext`.
    fn encode_items(
        &mut self,
        plaintext: &[u8],
        indices: &[usize],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        match self {
            Payload::Spiral(db) => db.encode_items(plaintext, indices, progress),
            // Every changed row changes every column's hint: derived again when next needed.
            Payload::YpirSp(_, db, _) => {
                *db = OnceLock::new();
                Ok(())
            }
        }
    }
}

/// A loaded or freshly built snapshot, ready to answer queries.
pub struct Snapshot {
    header: SnapshotHeader,
    plaintext: Vec<u8>,
    /// Spiral's without words when loaded for an update only ([`Snapshot::load_plaintext`]).
    db: Payload,
    /// Items that differ from the base (for a delta).
    delta_items: BTreeSet<usize>,
    /// What a delta of this snapshot refers to (the file it was loaded from, or its base).
    origin: Option<BaseRef>,
    /// A delta's payload as its checksums were computed, so writing does not redo the NTT.
    sealed_delta: Option<DeltaPayload>,
}

/// A delta's item indices, their buckets, and their words.
type DeltaPayload = (Vec<usize>, Vec<u8>, Vec<u64>);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// A full snapshot of these parts, not yet sealed, with no delta state.
    fn from_parts(header: SnapshotHeader, plaintext: Vec<u8>, db: Payload) -> Self {
        Self {
            header,
            plaintext,
            db,
            delta_items: BTreeSet::new(),
            origin: None,
            sealed_delta: None,
        }
    }

    /// Recomputes the header's checksums from the content (after any change to it; the counts
    /// are kept by whoever changed it, since sealed buckets cannot be counted without keys).
    /// A signature no longer covers the new header and is dropped.
    fn seal(&mut self) -> Result<()> {
        self.sealed_delta = None;
        let (plain, words) = if self.header.base.is_some() {
            let payload = self.delta_payload()?;
            let (indices, plain, words) = &payload;
            let mut h = blake3::Hasher::new();
            h.update(&(indices.len() as u32).to_le_bytes());
            for i in indices {
                h.update(&(*i as u32).to_le_bytes());
            }
            h.update(plain);
            let checksums = (h.finalize(), words_checksum(words));
            self.sealed_delta = Some(payload);
            checksums
        } else {
            if !self.db.is_loaded() {
                return Err(CoreError::Internal(
                    "a full snapshot needs its database loaded",
                ));
            }
            let mut h = blake3::Hasher::new();
            h.update_rayon(&self.plaintext);
            (h.finalize(), words_checksum(self.db.words()))
        };
        self.header.plaintext_checksum = *plain.as_bytes();
        self.header.db_checksum = words;
        self.header.signature = None;
        Ok(())
    }

    /// Turns a delta-derived snapshot into a full one (for writing a self-contained file).
    /// Needs the database loaded.
    pub fn compact(&mut self) -> Result<()> {
        self.header.base = None;
        self.delta_items.clear();
        self.seal()
    }

    /// True when this snapshot is written as a delta of a full one.
    pub fn is_delta(&self) -> bool {
        self.header.base.is_some()
    }

    /// The header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// What a client needs to query this snapshot.
    pub fn config(&self) -> LookupConfig {
        LookupConfig::of_checked_header(
            self.header.scheme,
            self.header.layout.clone(),
            self.header.epoch,
        )
    }

    /// Message sizes for this snapshot's parameters.
    pub fn message_sizes(&self) -> Result<MessageSizes> {
        self.header.scheme.message_sizes()
    }

    /// The plaintext of bucket `index`.
    pub fn bucket(&self, index: usize) -> Option<&[u8]> {
        let n = self.header.scheme.item_bytes();
        let start = index.checked_mul(n)?;
        self.plaintext.get(start..start.checked_add(n)?)
    }

    /// Bytes of the file this snapshot writes.
    pub fn file_len(&self) -> Result<u64> {
        Ok(SNAPSHOT_MAGIC.len() as u64
            + 8
            + encode_header(&self.header)?.len() as u64
            + 32
            + self.plaintext.len() as u64
            + self.db.words().len() as u64 * 8)
    }

    /// Rewrites bucket `index` in place and re-encodes only its item (its NTT is local).
    ///
    /// The result no longer matches what the DP signed over its content: this exists so tests
    /// can play a dishonest PIR host. Real updates go through a delta.
    #[doc(hidden)]
    pub fn danger_overwrite_bucket(
        &mut self,
        index: usize,
        edit: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        let n = self.header.scheme.item_bytes();
        let item =
            self.plaintext
                .get_mut(index * n..(index + 1) * n)
                .ok_or(CoreError::Internal(
                    "danger_overwrite_bucket: bucket out of range",
                ))?;
        edit(item);
        self.db
            .encode_items(&self.plaintext, &[index], &|_, _| {})?;
        self.seal()
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        self.header.scheme.engine()
    }

    /// The NTT-form Spiral database: what answering a Spiral snapshot reads. Refused for
    /// another engine.
    pub fn database(&self) -> Result<&Database> {
        match &self.db {
            Payload::Spiral(db) => Ok(db),
            Payload::YpirSp(..) => Err(CoreError::WrongEngine {
                expected: Engine::Spiral,
                found: self.engine(),
            }),
        }
    }

    /// The YPIR+SP database: what answering a YPIR+SP snapshot reads, derived from the buckets
    /// the first time it is asked for (the offline precomputation; a server asks at load).
    /// Refused for another engine.
    pub fn ypir_database(&self) -> Result<&YpirDatabase> {
        match &self.db {
            Payload::YpirSp(params, db, _) => {
                if let Some(db) = db.get() {
                    return Ok(db);
                }
                let built = YpirDatabase::encode(*params, &self.plaintext)?;
                Ok(db.get_or_init(|| built))
            }
            Payload::Spiral(_) => Err(CoreError::WrongEngine {
                expected: Engine::YpirSp,
                found: self.engine(),
            }),
        }
    }
}
