//! Snapshots: a keyword layout plus the NTT-preprocessed Spiral database, in one file.
//!
//! ```text
//! file    = magic "PIRSNAP\0" || format_version:u32le || header_len:u32le
//!           || header[header_len]            (bincode, little-endian, fixed-width integers)
//!           || blake3(header)[32]
//!           || plaintext[num_items * item_bytes]   (the buckets, for updates and inspection)
//!           || db words[db_words] as u64le        (NTT form: loading never redoes the NTT)
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

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs::File,
    io::{BufWriter, Read, Write},
    path::Path,
};

use bincode::{Decode, Encode};
use rand::RngCore;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::{
    bucket::{self, BUCKET_HEADER_BYTES},
    cpi::Cpi,
    error::{CoreError, Result},
    layout::{KeywordLayout, Tag},
    mapping::{IssuerId, IssuerKey, Mapping, TrustStore, VerifiedMapping},
    params::SchemeParams,
    spiral::{self, AnswerPhases, MessageSizes, ServerKeys},
};

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PIRSNAP\0";
/// Version of the file format this build reads and writes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const MAX_HEADER_LEN: u32 = 1 << 20;
/// Different salts tried at one size before growing the database.
const SALT_ATTEMPTS: u32 = 4;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ MAX_HEADER_LEN as usize }>()
}

/// A DP's signature over the header (reserved for provenance).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DpSignature {
    /// Id of the DP's key.
    pub key_id: [u8; 8],
    /// Ed25519 signature.
    pub sig: [u8; 64],
}

/// What a snapshot says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotHeader {
    /// Spiral parameters of the database.
    pub scheme: SchemeParams,
    /// Keyword-to-bucket layout.
    pub layout: KeywordLayout,
    /// Version of the content; clients quote it with each query.
    pub epoch: u64,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Mappings stored.
    pub mapping_count: u64,
    /// Distinct CPIs stored.
    pub cpi_count: u64,
    /// Bytes of bucket entries (tags, lengths and compact mappings).
    pub record_bytes: u64,
    /// For a delta file: the full snapshot it applies to. `None` for a full file.
    pub base: Option<BaseRef>,
    /// blake3 of the file's bucket plaintext (a delta's: its item count, indices and buckets).
    pub plaintext_checksum: [u8; 32],
    /// blake3 of the file's database words (a delta's: its items' words).
    pub db_checksum: [u8; 32],
    /// The DP's signature, if signed.
    pub signature: Option<DpSignature>,
}

/// The full snapshot a delta file applies to.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BaseRef {
    /// Its file name, in the delta file's directory.
    pub file: String,
    /// Its epoch.
    pub epoch: u64,
    /// blake3 of its header bytes, which cover its content through its checksums.
    pub header_hash: [u8; 32],
}

impl SnapshotHeader {
    /// Record bytes over database capacity.
    pub fn packing_efficiency(&self) -> f64 {
        self.record_bytes as f64 / self.scheme.capacity_bytes() as f64
    }
}

/// What a client needs to know to query a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    /// Spiral parameters.
    pub scheme: SchemeParams,
    /// Keyword layout.
    pub layout: KeywordLayout,
    /// Snapshot epoch.
    pub epoch: u64,
}

/// Options for [`Snapshot::build`].
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Epoch of the new snapshot.
    pub epoch: u64,
    /// Unix time used for expiry and as creation time.
    pub now: u64,
    /// Fixed salt (reproducible builds); random when `None`.
    pub salt: Option<[u8; 32]>,
    /// Fixed scheme parameters; the smallest fitting vetted preset when `None`.
    pub scheme: Option<SchemeParams>,
}

/// What a build did.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildReport {
    /// Mappings in the input.
    pub input_mappings: usize,
    /// Mappings dropped because `not_after` had passed.
    pub expired_dropped: usize,
    /// Mappings that replaced an earlier one for the same CPI and MSP.
    pub duplicates_replaced: usize,
    /// Mappings stored.
    pub stored_mappings: usize,
    /// Salts tried before one fitted.
    pub layout_attempts: u32,
    /// Record bytes over database capacity.
    pub packing_efficiency: f64,
}

/// A loaded or freshly built snapshot, ready to answer queries.
pub struct Snapshot {
    header: SnapshotHeader,
    plaintext: Vec<u8>,
    /// Empty when loaded for an update only ([`Snapshot::load_plaintext`]).
    db: Vec<u64>,
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

struct Entry {
    tag: Tag,
    compact: Vec<u8>,
}

fn derive_salt(base: &[u8; 32], attempt: u32) -> [u8; 32] {
    if attempt == 0 {
        return *base;
    }
    Sha256::new()
        .chain_update(b"pir-discovery/salt-retry/v1\0")
        .chain_update(base)
        .chain_update(attempt.to_le_bytes())
        .finalize()
        .into()
}

impl Snapshot {
    /// Builds a snapshot: verifies every mapping, drops expired ones, keeps the last mapping for
    /// each (CPI, MSP), lays buckets out and preprocesses the database.
    pub fn build(
        mappings: Vec<Mapping>,
        trust: &TrustStore,
        opts: &BuildOptions,
    ) -> Result<(Self, BuildReport)> {
        Self::build_with_progress(mappings, trust, opts, &|_, _| {})
    }

    /// [`Snapshot::build`], reporting `(items encoded, items in all)` to `progress`.
    pub fn build_with_progress(
        mappings: Vec<Mapping>,
        trust: &TrustStore,
        opts: &BuildOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Self, BuildReport)> {
        let verified = mappings
            .into_par_iter()
            .enumerate()
            .map(|(index, m)| {
                VerifiedMapping::new(m, trust).map_err(|e| CoreError::InvalidMapping {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::build_verified(verified, opts, progress)
    }

    /// Builds from mappings already verified (see [`Snapshot::build`] for what happens).
    pub fn build_verified(
        mappings: Vec<VerifiedMapping>,
        opts: &BuildOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Self, BuildReport)> {
        let input_mappings = mappings.len();
        // Last mapping wins for each (CPI, MSP); expired ones go.
        let mut expired_dropped = 0;
        let mut by_key: HashMap<(Cpi, String), Mapping> = HashMap::new();
        for m in mappings.into_iter().map(VerifiedMapping::into_inner) {
            if m.fields.not_after < opts.now {
                expired_dropped += 1;
                continue;
            }
            by_key.insert((m.fields.cpi.clone(), m.fields.msp.clone()), m);
        }
        let kept = input_mappings - expired_dropped;
        let duplicates_replaced = kept - by_key.len();
        let mut by_cpi: BTreeMap<Cpi, Vec<Mapping>> = BTreeMap::new();
        for ((cpi, _), m) in by_key {
            by_cpi.entry(cpi).or_default().push(m);
        }
        let stored_mappings = kept - duplicates_replaced;
        let groups: Vec<(Cpi, Vec<Vec<u8>>)> = by_cpi
            .into_iter()
            .map(|(cpi, mut ms)| {
                ms.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
                (cpi, ms.iter().map(bucket::encode_compact).collect())
            })
            .collect();
        let record_bytes: u64 = groups
            .iter()
            .flat_map(|(_, es)| es.iter().map(|c| bucket::entry_len(c.len()) as u64))
            .sum();

        let candidates: Vec<SchemeParams> = match opts.scheme {
            Some(s) => vec![s],
            None => SchemeParams::vetted_presets().map(|p| p.params).collect(),
        };
        let base_salt = opts.salt.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut s);
            s
        });
        let mut attempts = 0;
        let mut last_overflow = None;
        for scheme in candidates {
            scheme.validate()?;
            let item_bytes = scheme.item_bytes as usize;
            if let Some((cpi, es)) = groups.iter().find(|(_, es)| {
                BUCKET_HEADER_BYTES + es.iter().map(|c| bucket::entry_len(c.len())).sum::<usize>()
                    > item_bytes
            }) {
                return Err(CoreError::BucketOverflow(format!(
                    "{cpi} alone has {} mappings that need more than one {item_bytes}-byte item; \
                     remove some or use larger items",
                    es.len()
                )));
            }
            if record_bytes + (scheme.num_items() * BUCKET_HEADER_BYTES) as u64
                > scheme.capacity_bytes()
            {
                continue;
            }
            for attempt in 0..SALT_ATTEMPTS {
                attempts += 1;
                let layout = KeywordLayout::new(
                    derive_salt(&base_salt, attempt),
                    scheme.num_items() as u32,
                )?;
                let located: Vec<(usize, Tag)> = groups
                    .par_iter()
                    .map(|(cpi, _)| {
                        let l = layout.locate(cpi);
                        (l.bucket.0 as usize, l.tag)
                    })
                    .collect();
                let mut load = vec![BUCKET_HEADER_BYTES; scheme.num_items()];
                for ((b, _), (_, es)) in located.iter().zip(&groups) {
                    load[*b] += es.iter().map(|c| bucket::entry_len(c.len())).sum::<usize>();
                }
                let max = load.iter().copied().max().unwrap_or(0);
                if max > item_bytes {
                    tracing::debug!(attempt, max, item_bytes, "bucket overflow, retrying");
                    last_overflow = Some(format!(
                        "fullest bucket needs {max} of {item_bytes} bytes at {} items",
                        scheme.num_items()
                    ));
                    continue;
                }
                let mut buckets: Vec<Vec<Entry>> =
                    (0..scheme.num_items()).map(|_| Vec::new()).collect();
                for ((b, tag), (_, es)) in located.into_iter().zip(groups) {
                    buckets[b].extend(es.into_iter().map(|compact| Entry { tag, compact }));
                }
                buckets.par_iter_mut().for_each(|b| {
                    b.sort_unstable_by(|x, y| (x.tag, &x.compact).cmp(&(y.tag, &y.compact)))
                });
                let header = SnapshotHeader {
                    scheme,
                    layout,
                    epoch: opts.epoch,
                    created_at: opts.now,
                    mapping_count: 0,
                    cpi_count: 0,
                    record_bytes: 0,
                    base: None,
                    plaintext_checksum: [0; 32],
                    db_checksum: [0; 32],
                    signature: None,
                };
                let snapshot = Self::encode(header, &buckets, progress)?;
                let report = BuildReport {
                    input_mappings,
                    expired_dropped,
                    duplicates_replaced,
                    stored_mappings,
                    layout_attempts: attempts,
                    packing_efficiency: snapshot.header.packing_efficiency(),
                };
                return Ok((snapshot, report));
            }
        }
        match (opts.scheme, last_overflow) {
            (Some(_), Some(detail)) => Err(CoreError::BucketOverflow(format!(
                "{detail} after {attempts} salts; rebuild with more headroom (a larger shape)"
            ))),
            (Some(s), None) => Err(CoreError::TooLarge(format!(
                "{record_bytes} record bytes do not fit {} items of {} bytes",
                s.num_items(),
                s.item_bytes
            ))),
            (None, _) => Err(CoreError::TooLarge(format!(
                "{record_bytes} record bytes do not fit the largest vetted shape"
            ))),
        }
    }

    fn encode(
        header: SnapshotHeader,
        buckets: &[Vec<Entry>],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let scheme = header.scheme;
        let item_bytes = scheme.item_bytes as usize;
        let mut plaintext = vec![0u8; scheme.num_items() * item_bytes];
        plaintext
            .par_chunks_mut(item_bytes)
            .zip(buckets)
            .try_for_each(|(item, entries)| {
                bucket::encode_bucket(entries.iter().map(|e| (e.tag, e.compact.as_slice())), item)
            })?;
        let mut db = vec![0u64; scheme.db_words()];
        let all: Vec<usize> = (0..scheme.num_items()).collect();
        spiral::encode_items(&scheme, &plaintext, &all, &mut db, progress)?;
        let mut snapshot = Self {
            header,
            plaintext,
            db,
            delta_items: BTreeSet::new(),
            origin: None,
            sealed_delta: None,
        };
        snapshot.seal()?;
        Ok(snapshot)
    }

    /// Recomputes the header's counts and checksum from the content (after any change to it).
    /// A signature no longer covers the new header and is dropped.
    fn seal(&mut self) -> Result<()> {
        let item_bytes = self.header.scheme.item_bytes as usize;
        let (mappings, cpis, bytes) = self
            .plaintext
            .par_chunks(item_bytes)
            .map(bucket::bucket_stats)
            .try_reduce(|| (0, 0, 0), |a, b| Ok((a.0 + b.0, a.1 + b.1, a.2 + b.2)))?;
        self.header.mapping_count = mappings;
        self.header.cpi_count = cpis;
        self.header.record_bytes = bytes;
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
            if self.db.len() != self.header.scheme.db_words() {
                return Err(CoreError::Internal(
                    "a full snapshot needs its database loaded".into(),
                ));
            }
            let mut h = blake3::Hasher::new();
            h.update_rayon(&self.plaintext);
            (h.finalize(), words_checksum(&self.db))
        };
        self.header.plaintext_checksum = *plain.as_bytes();
        self.header.db_checksum = words;
        self.header.signature = None;
        Ok(())
    }

    /// A delta's payload: its item indices, their buckets, and their words (recomputed from the
    /// buckets: the NTT is a function of them).
    fn delta_payload(&self) -> Result<DeltaPayload> {
        let n = self.header.scheme.item_bytes as usize;
        let indices: Vec<usize> = self.delta_items.iter().copied().collect();
        let mut plain = Vec::with_capacity(indices.len() * n);
        for &i in &indices {
            plain.extend_from_slice(&self.plaintext[i * n..(i + 1) * n]);
        }
        let words = spiral::item_words(&self.header.scheme, &self.plaintext, &indices)?.concat();
        Ok((indices, plain, words))
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
        LookupConfig {
            scheme: self.header.scheme,
            layout: self.header.layout,
            epoch: self.header.epoch,
        }
    }

    /// Message sizes for this snapshot's parameters.
    pub fn message_sizes(&self) -> Result<MessageSizes> {
        self.header.scheme.message_sizes()
    }

    /// The plaintext of bucket `index`.
    pub fn bucket(&self, index: usize) -> Option<&[u8]> {
        let n = self.header.scheme.item_bytes as usize;
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
            + self.db.len() as u64 * 8)
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
        let n = self.header.scheme.item_bytes as usize;
        let item = self
            .plaintext
            .get_mut(index * n..(index + 1) * n)
            .ok_or_else(|| CoreError::Internal(format!("bucket {index} out of range")))?;
        edit(item);
        spiral::encode_items(
            &self.header.scheme,
            &self.plaintext,
            &[index],
            &mut self.db,
            &|_, _| {},
        )?;
        self.seal()
    }

    /// Answers one encrypted query. Malformed query bytes are an error, never a panic.
    pub fn answer(&self, keys: &ServerKeys, query: &[u8]) -> Result<Vec<u8>> {
        spiral::answer(&self.header.scheme, &self.db, keys, query)
    }

    /// Answers several queries (from one client or many) in one pass over the database, on
    /// every core; answers come in the order of `batch`. One malformed query fails the batch.
    pub fn answer_batch(&self, batch: &[(&ServerKeys, &[u8])]) -> Result<Vec<Vec<u8>>> {
        spiral::answer_batch(&self.header.scheme, &self.db, batch)
    }

    /// [`Snapshot::answer_batch`], also saying how long each phase took (for the benchmarks).
    pub fn answer_batch_timed(
        &self,
        batch: &[(&ServerKeys, &[u8])],
    ) -> Result<(Vec<Vec<u8>>, AnswerPhases)> {
        spiral::answer_batch_timed(&self.header.scheme, &self.db, batch)
    }

    /// spiral-rs's own `process_query` on this database: the reference the benchmarks compare
    /// against. Not for serving.
    #[doc(hidden)]
    pub fn danger_reference_answer(&self, keys: &ServerKeys, query: &[u8]) -> Result<Vec<u8>> {
        spiral::danger_reference_answer(&self.header.scheme, &self.db, keys, query)
    }

    /// Writes the snapshot to `path` (through a temporary file, renamed into place).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("pirsnap.tmp");
        let io = |e| CoreError::io(&tmp, e);
        let file = File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::with_capacity(1 << 22, file);
        self.write_to(&mut w).map_err(|e| match e {
            CoreError::Io { source, .. } => io(source),
            other => other,
        })?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
    }

    /// Writes the snapshot's bytes to any writer: a full file, or a delta file when this
    /// snapshot is a delta of a full one.
    pub fn write_to(&self, w: &mut impl Write) -> Result<()> {
        let header = encode_header(&self.header)?;
        let io = |e| CoreError::io("<snapshot>", e);
        w.write_all(&SNAPSHOT_MAGIC).map_err(io)?;
        w.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())
            .map_err(io)?;
        w.write_all(&(header.len() as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        w.write_all(blake3::hash(&header).as_bytes()).map_err(io)?;
        if self.header.base.is_some() {
            let computed;
            let (indices, plain, words) = match &self.sealed_delta {
                Some(payload) => payload,
                None => {
                    computed = self.delta_payload()?;
                    &computed
                }
            };
            w.write_all(&(indices.len() as u32).to_le_bytes())
                .map_err(io)?;
            for i in indices {
                w.write_all(&(*i as u32).to_le_bytes()).map_err(io)?;
            }
            w.write_all(plain).map_err(io)?;
            w.write_all(bytemuck::cast_slice(words)).map_err(io)?;
        } else {
            if self.db.len() != self.header.scheme.db_words() {
                return Err(CoreError::Internal(
                    "a full snapshot needs its database loaded".into(),
                ));
            }
            w.write_all(&self.plaintext).map_err(io)?;
            w.write_all(bytemuck::cast_slice(&self.db)).map_err(io)?;
        }
        w.flush().map_err(io)
    }

    /// Loads a snapshot file, checking its structure and checksums. Never redoes the NTT.
    /// A delta file loads its base (found beside it) and applies its items.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_impl(path, true)
    }

    /// Loads only what an update needs: the header and the buckets (checked), not the
    /// database. The result can be updated and written as a delta of `path` (or of its base).
    pub fn load_plaintext(path: &Path) -> Result<Self> {
        Self::load_impl(path, false)
    }

    fn load_impl(path: &Path, with_db: bool) -> Result<Self> {
        let in_file = |e: CoreError| match e {
            CoreError::InvalidSnapshot(m) => {
                CoreError::InvalidSnapshot(format!("{}: {m}", path.display()))
            }
            CoreError::Io { source, .. } => CoreError::io(path, source),
            other => other,
        };
        let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| CoreError::io(path, e))?.len();
        let mut r = std::io::BufReader::with_capacity(1 << 22, file);
        let (header, header_hash) = read_header_from(&mut r, len).map_err(in_file)?;
        let Some(base) = header.base.clone() else {
            let mut s = read_full_payload(&mut r, header, with_db).map_err(in_file)?;
            s.origin = Some(BaseRef {
                file: file_name(path)?,
                epoch: s.header.epoch,
                header_hash,
            });
            return Ok(s);
        };
        // A plain file name beside the delta: no directories, no way out of this one.
        if base.file.is_empty()
            || base.file == "."
            || base.file == ".."
            || base.file.contains(['/', '\\'])
        {
            return Err(in_file(CoreError::InvalidSnapshot(format!(
                "base file name {:?} is not a plain file name",
                base.file
            ))));
        }
        let base_path = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&base.file);
        // Checked before loading, so a delta naming itself (or another delta) cannot recurse.
        if Self::read_header(&base_path)?.base.is_some() {
            return Err(in_file(CoreError::InvalidSnapshot(
                "its base is itself a delta (deltas apply to full snapshots only)".into(),
            )));
        }
        let mut full = Self::load_impl(&base_path, with_db)?;
        if full.origin.as_ref().map(|o| o.header_hash) != Some(base.header_hash) {
            return Err(in_file(CoreError::InvalidSnapshot(format!(
                "its base {} is not the snapshot it was made from (header differs)",
                base_path.display()
            ))));
        }
        if (full.header.scheme, full.header.layout) != (header.scheme, header.layout) {
            return Err(in_file(CoreError::InvalidSnapshot(
                "its base has other parameters or layout".into(),
            )));
        }
        apply_delta_payload(&mut r, len, &mut full, &header, with_db).map_err(in_file)?;
        full.header = header;
        full.origin = Some(base);
        Ok(full)
    }

    /// Reads and checks only the header of a snapshot file (fast: skips the database).
    pub fn read_header(path: &Path) -> Result<SnapshotHeader> {
        let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| CoreError::io(path, e))?.len();
        read_header_from(&mut std::io::BufReader::new(file), len)
            .map(|(h, _)| h)
            .map_err(|e| match e {
                CoreError::InvalidSnapshot(m) => {
                    CoreError::InvalidSnapshot(format!("{}: {m}", path.display()))
                }
                CoreError::Io { source, .. } => CoreError::io(path, source),
                other => other,
            })
    }

    /// Reads a full snapshot of `len` bytes from a reader (a delta needs its file: see
    /// [`Snapshot::load`]).
    pub fn read_from(mut r: impl Read, len: u64) -> Result<Self> {
        let (header, _) = read_header_from(&mut r, len)?;
        if header.base.is_some() {
            return Err(CoreError::InvalidSnapshot(
                "a delta snapshot: load it from its file, beside its base".into(),
            ));
        }
        read_full_payload(&mut r, header, true)
    }
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| CoreError::InvalidSnapshot(format!("{}: no file name", path.display())))
}

/// Reads a full file's buckets and (if wanted) database, checking both checksums.
fn read_full_payload(r: &mut dyn Read, header: SnapshotHeader, with_db: bool) -> Result<Snapshot> {
    let plain_len = header.scheme.num_items() * header.scheme.item_bytes as usize;
    let mut plaintext = vec![0u8; plain_len];
    read_exact_or(r, &mut plaintext, "buckets")?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(&plaintext);
    if hasher.finalize().as_bytes() != &header.plaintext_checksum {
        return Err(CoreError::InvalidSnapshot(
            "bucket checksum mismatch (corrupted buckets)".into(),
        ));
    }
    let db = if with_db {
        let mut db = vec![0u64; header.scheme.db_words()];
        let mut hasher = blake3::Hasher::new();
        for chunk in bytemuck::cast_slice_mut::<u64, u8>(&mut db).chunks_mut(1 << 24) {
            read_exact_or(r, chunk, "database")?;
            hasher.update_rayon(chunk);
        }
        if hasher.finalize().as_bytes() != &header.db_checksum {
            return Err(CoreError::InvalidSnapshot(
                "database checksum mismatch (corrupted database)".into(),
            ));
        }
        db
    } else {
        Vec::new()
    };
    Ok(Snapshot {
        header,
        plaintext,
        db,
        delta_items: BTreeSet::new(),
        origin: None,
        sealed_delta: None,
    })
}

/// Reads a delta file's payload and applies it to its loaded base.
fn apply_delta_payload(
    r: &mut dyn Read,
    len: u64,
    base: &mut Snapshot,
    header: &SnapshotHeader,
    with_db: bool,
) -> Result<()> {
    let scheme = &header.scheme;
    let n = scheme.item_bytes as usize;
    let per_item = spiral::words_per_item(scheme);
    let mut count = [0u8; 4];
    read_exact_or(r, &mut count, "delta")?;
    let k = u32::from_le_bytes(count) as usize;
    if k > scheme.num_items() {
        return Err(CoreError::InvalidSnapshot(
            "more delta items than items".into(),
        ));
    }
    let header_len = encode_header(header)?.len() as u64;
    let expected =
        16 + header_len + 32 + 4 + 4 * k as u64 + (k * n) as u64 + (k * per_item * 8) as u64;
    if len != expected {
        return Err(CoreError::InvalidSnapshot(format!(
            "delta of {k} items should be {expected} bytes, the file has {len}"
        )));
    }
    let mut idx_bytes = vec![0u8; 4 * k];
    read_exact_or(r, &mut idx_bytes, "delta")?;
    let indices: Vec<usize> = idx_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if indices.windows(2).any(|w| w[0] >= w[1]) || indices.iter().any(|&i| i >= scheme.num_items())
    {
        return Err(CoreError::InvalidSnapshot(
            "delta item indices out of order or range".into(),
        ));
    }
    let mut plain = vec![0u8; k * n];
    read_exact_or(r, &mut plain, "delta buckets")?;
    let mut h = blake3::Hasher::new();
    h.update(&count);
    h.update(&idx_bytes);
    h.update(&plain);
    if h.finalize().as_bytes() != &header.plaintext_checksum {
        return Err(CoreError::InvalidSnapshot(
            "delta bucket checksum mismatch".into(),
        ));
    }
    if with_db {
        let mut words = vec![0u64; k * per_item];
        read_exact_or(r, bytemuck::cast_slice_mut(&mut words), "delta database")?;
        if words_checksum(&words) != header.db_checksum {
            return Err(CoreError::InvalidSnapshot(
                "delta database checksum mismatch".into(),
            ));
        }
        let chunks: Vec<&[u64]> = words.chunks_exact(per_item).collect();
        spiral::scatter_items(scheme, &indices, &chunks, &mut base.db)?;
    }
    for (j, &i) in indices.iter().enumerate() {
        base.plaintext[i * n..(i + 1) * n].copy_from_slice(&plain[j * n..(j + 1) * n]);
    }
    base.delta_items = indices.into_iter().collect();
    Ok(())
}

fn read_exact_or(r: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            CoreError::InvalidSnapshot(format!("truncated in the {what}"))
        }
        _ => CoreError::io("<snapshot>", e),
    })
}

/// Reads and checks the preamble and header; returns the header and the hash of its bytes.
fn read_header_from(r: &mut dyn Read, len: u64) -> Result<(SnapshotHeader, [u8; 32])> {
    let invalid = |m: &str| CoreError::InvalidSnapshot(m.to_owned());
    let mut fixed = [0u8; 16];
    read_exact_or(r, &mut fixed, "preamble")?;
    if fixed[..8] != SNAPSHOT_MAGIC {
        return Err(invalid("not a snapshot file (bad magic)"));
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().unwrap_or_default());
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(CoreError::InvalidSnapshot(format!(
            "format version {version}, this build reads version {SNAPSHOT_FORMAT_VERSION}"
        )));
    }
    let header_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap_or_default());
    if header_len > MAX_HEADER_LEN {
        return Err(invalid("header length out of range"));
    }
    let mut header_bytes = vec![0u8; header_len as usize];
    read_exact_or(r, &mut header_bytes, "header")?;
    let mut header_hash = [0u8; 32];
    read_exact_or(r, &mut header_hash, "header")?;
    if blake3::hash(&header_bytes).as_bytes() != &header_hash {
        return Err(invalid("header checksum mismatch (corrupted header)"));
    }
    let (header, used): (SnapshotHeader, usize) =
        bincode::decode_from_slice(&header_bytes, bincode_config())
            .map_err(|e| CoreError::InvalidSnapshot(format!("header does not decode: {e}")))?;
    if used != header_bytes.len() {
        return Err(invalid("trailing bytes after the header"));
    }
    header
        .scheme
        .validate()
        .map_err(|e| CoreError::InvalidSnapshot(e.to_string()))?;
    header
        .layout
        .validate()
        .map_err(|e| CoreError::InvalidSnapshot(e.to_string()))?;
    if header.layout.num_buckets as usize != header.scheme.num_items() {
        return Err(invalid("bucket count differs from the number of items"));
    }
    if header.base.is_some() {
        // A delta's length depends on its item count, checked when its payload is read.
        return Ok((header, header_hash));
    }
    let plain_len = header.scheme.num_items() * header.scheme.item_bytes as usize;
    let words = header.scheme.db_words();
    let expected = 16 + header_len as u64 + 32 + plain_len as u64 + words as u64 * 8;
    if len < expected {
        return Err(CoreError::InvalidSnapshot(format!(
            "truncated: {len} bytes, the header announces {expected}"
        )));
    }
    if len > expected {
        return Err(CoreError::InvalidSnapshot(format!(
            "{} unexpected bytes after the database",
            len - expected
        )));
    }
    Ok((header, header_hash))
}

fn encode_header(h: &SnapshotHeader) -> Result<Vec<u8>> {
    bincode::encode_to_vec(h, bincode_config())
        .map_err(|e| CoreError::Internal(format!("header does not encode: {e}")))
}

fn words_checksum(words: &[u64]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for chunk in bytemuck::cast_slice::<u64, u8>(words).chunks(1 << 24) {
        hasher.update_rayon(chunk);
    }
    *hasher.finalize().as_bytes()
}

/// One change of a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaOp {
    /// Insert the mapping, or replace the one for the same CPI and MSP.
    Upsert(Box<VerifiedMapping>),
    /// Remove the CPI's mapping at `msp`, or all its mappings when `msp` is `None`.
    Remove {
        /// The CPI.
        cpi: Cpi,
        /// The MSP (a normalised domain), or every MSP.
        msp: Option<String>,
    },
}

impl DeltaOp {
    fn cpi(&self) -> &Cpi {
        match self {
            Self::Upsert(m) => &m.mapping().fields.cpi,
            Self::Remove { cpi, .. } => cpi,
        }
    }
}

/// Options for [`Snapshot::update`].
#[derive(Clone, Copy, Debug)]
pub struct UpdateOptions {
    /// Epoch of the new snapshot; must differ from the old one.
    pub epoch: u64,
    /// Unix time used for expiry and as creation time.
    pub now: u64,
}

/// What an update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Mappings inserted or replaced.
    pub upserts: usize,
    /// Mappings removed by removal operations.
    pub removed: usize,
    /// Removals that matched nothing.
    pub removals_unmatched: usize,
    /// Mappings dropped because `not_after` had passed (old or new).
    pub expired_dropped: usize,
    /// PIR items re-encoded.
    pub items_reencoded: usize,
}

const HEADER_SIG_CONTEXT: &[u8] = b"pir-discovery/snapshot-header/v1\0";

impl Snapshot {
    /// Applies a delta: only the items whose buckets change are re-encoded (Spiral's NTT is
    /// per item); layout and scheme parameters stay, so clients' keys stay valid. Expired
    /// mappings anywhere are dropped. The result equals a full build of the updated mapping set
    /// with the same layout, parameters, epoch and time. A signature is dropped: sign again.
    pub fn update(
        mut self,
        ops: Vec<DeltaOp>,
        opts: &UpdateOptions,
    ) -> Result<(Self, UpdateReport)> {
        if opts.epoch == self.header.epoch {
            return Err(CoreError::InvalidParams(format!(
                "the new epoch must differ from the old one ({})",
                opts.epoch
            )));
        }
        let layout = self.header.layout;
        let item_bytes = self.header.scheme.item_bytes as usize;
        let mut touched: BTreeMap<usize, Vec<(Tag, DeltaOp)>> = BTreeMap::new();
        for op in ops {
            let loc = layout.locate(op.cpi());
            touched
                .entry(loc.bucket.0 as usize)
                .or_default()
                .push((loc.tag, op));
        }
        // Buckets holding expired entries change too.
        let now = opts.now;
        let expired: Vec<usize> = self
            .plaintext
            .par_chunks(item_bytes)
            .enumerate()
            .filter_map(|(i, item)| {
                let entries = bucket::decode_bucket(item).ok()?;
                entries
                    .iter()
                    .any(|(_, c)| matches!(bucket::compact_msp_and_expiry(c), Ok((_, na)) if na < now))
                    .then_some(i)
            })
            .collect();
        for i in expired {
            touched.entry(i).or_default();
        }

        let mut report = UpdateReport::default();
        for (&index, ops) in &touched {
            let item = &mut self.plaintext[index * item_bytes..(index + 1) * item_bytes];
            let mut entries: Vec<(Tag, Vec<u8>)> = bucket::decode_bucket(item)?
                .into_iter()
                .map(|(t, c)| (t, c.to_vec()))
                .collect();
            let before = entries.len();
            entries.retain(
                |(_, c)| matches!(bucket::compact_msp_and_expiry(c), Ok((_, na)) if na >= now),
            );
            report.expired_dropped += before - entries.len();
            let msp_is = |c: &[u8], msp: &str| matches!(bucket::compact_msp_and_expiry(c), Ok((m, _)) if m == msp.as_bytes());
            for (tag, op) in ops {
                match op {
                    DeltaOp::Remove { msp, .. } => {
                        let before = entries.len();
                        entries.retain(|(t, c)| {
                            t != tag || msp.as_deref().is_some_and(|m| !msp_is(c, m))
                        });
                        let removed = before - entries.len();
                        report.removed += removed;
                        if removed == 0 {
                            report.removals_unmatched += 1;
                        }
                    }
                    DeltaOp::Upsert(m) => {
                        let m = m.mapping();
                        entries.retain(|(t, c)| t != tag || !msp_is(c, &m.fields.msp));
                        if m.fields.not_after < now {
                            report.expired_dropped += 1;
                        } else {
                            entries.push((*tag, bucket::encode_compact(m)));
                            report.upserts += 1;
                        }
                    }
                }
            }
            entries.sort_unstable();
            item.fill(0);
            bucket::encode_bucket(entries.iter().map(|(t, c)| (*t, c.as_slice())), item).map_err(
                |e| match e {
                    CoreError::BucketOverflow(detail) => CoreError::BucketOverflow(format!(
                        "bucket {index}: {detail}; this delta does not fit the snapshot's shape: \
                         rebuild from the full mapping set with more headroom"
                    )),
                    other => other,
                },
            )?;
        }
        let indices: Vec<usize> = touched.keys().copied().collect();
        report.items_reencoded = indices.len();
        if self.db.is_empty() {
            // Loaded for an update only: the result is a delta of the file it came from.
            if self.header.base.is_none() {
                self.header.base = Some(self.origin.clone().ok_or_else(|| {
                    CoreError::Internal("an update without a database needs its origin".into())
                })?);
            }
        } else {
            spiral::encode_items(
                &self.header.scheme,
                &self.plaintext,
                &indices,
                &mut self.db,
                &|_, _| {},
            )?;
        }
        if self.header.base.is_some() {
            self.delta_items.extend(indices);
        }
        self.header.epoch = opts.epoch;
        self.header.created_at = opts.now;
        self.seal()?;
        Ok((self, report))
    }

    /// Signs the header (which covers the content through its checksum) with the DP's key.
    pub fn sign(&mut self, dp_key: &IssuerKey) -> Result<()> {
        self.header.signature = None;
        let message = [HEADER_SIG_CONTEXT, &encode_header(&self.header)?].concat();
        self.header.signature = Some(DpSignature {
            key_id: dp_key.id().0,
            sig: dp_key.sign_raw(&message),
        });
        Ok(())
    }
}

impl SnapshotHeader {
    /// Checks the DP's signature against trusted DP keys.
    pub fn verify_signature(&self, dp_keys: &TrustStore) -> Result<()> {
        let sig = self.signature.as_ref().ok_or(CoreError::UnsignedSnapshot)?;
        let key = dp_keys
            .get(&IssuerId(sig.key_id))
            .ok_or_else(|| CoreError::UnknownIssuer(IssuerId(sig.key_id).to_string()))?;
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        let message = [HEADER_SIG_CONTEXT, &encode_header(&unsigned)?].concat();
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig.sig))
            .map_err(|_| CoreError::BadSnapshotSignature)
    }
}
