//! Updates: a delta of signed statements and removals re-encodes only the items it changes.
//!
//! The DP computes each named CPI's OPRF output itself, opens that CPI's record, applies the
//! delta's operations in order and seals the new record into the same bucket (its group's, by
//! the choice table, which an update never changes: moving a group would need the OPRF outputs
//! of its other CPIs). Records of CPIs the delta does not name stay sealed and untouched: an
//! update cannot read them, so their expired statements stay until the next full build
//! (clients ignore them: they are outside their validity window). A delta that names an MSP or
//! issuer the layout's dictionaries lack appends it, unless that would widen their indices.

use std::{collections::BTreeMap, io::Read};

use rayon::prelude::*;

use super::{
    DeltaPayload, Snapshot,
    file::{read_exact_or, words_checksum},
    header::{SnapshotHeader, encode_header},
};
use crate::{
    error::{CoreError, Overflow, Result, SnapshotError},
    identity::{Cpi, VerifiedMapping, VerifiedOptOut},
    keyword::{
        KeywordLayout,
        bucket::Bucket,
        entry::{self, Dictionaries, Item},
    },
    oprf::OprfKey,
    pir::{self, Scheme},
};

/// One change of a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaOp {
    /// Insert the mapping, or replace the one for the same CPI and MSP; the CPI's opt-outs go.
    Upsert(Box<VerifiedMapping>),
    /// Store the opt-out (replacing one from the same issuer); the CPI's mappings go.
    OptOut(Box<VerifiedOptOut>),
    /// Remove the CPI's mapping at `msp`, or everything stored for it when `msp` is `None`.
    Remove {
        /// The CPI.
        cpi: Cpi,
        /// The MSP (a normalised domain), or every MSP.
        msp: Option<String>,
    },
}

/// Splits `ops` by the shard of their CPI among `count` shards (keeping their order within a
/// shard): the ops of shard `i` at index `i`.
pub fn split_by_shard(ops: Vec<DeltaOp>, oprf: &OprfKey, count: u32) -> Result<Vec<Vec<DeltaOp>>> {
    crate::keyword::ShardPosition::new(0, count)?;
    let shards = ops
        .par_iter()
        .map(|op| Ok(crate::keyword::shard_of(&oprf.evaluate(op.cpi())?, count)))
        .collect::<Result<Vec<u32>>>()?;
    let mut split: Vec<Vec<DeltaOp>> = vec![Vec::new(); count as usize];
    for (op, shard) in ops.into_iter().zip(shards) {
        split[shard as usize].push(op);
    }
    Ok(split)
}

impl DeltaOp {
    /// The CPI this operation changes.
    pub fn cpi(&self) -> &Cpi {
        match self {
            Self::Upsert(m) => &m.mapping().fields.cpi,
            Self::OptOut(o) => &o.opt_out().cpi,
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
    /// Opt-outs stored.
    pub opt_outs: usize,
    /// Mappings and opt-outs removed by removals, or replaced by an opt-out or a mapping of
    /// the other kind.
    pub removed: usize,
    /// Removals that matched nothing.
    pub removals_unmatched: usize,
    /// Statements of the CPIs the delta names dropped because `not_after` had passed.
    pub expired_dropped: usize,
    /// PIR items re-encoded.
    pub items_reencoded: usize,
}

/// Counts of one record, to keep the header's totals.
#[derive(Default)]
struct Tally {
    mappings: u64,
    opt_outs: u64,
    bytes: u64,
    cpis: u64,
}

impl Tally {
    fn of(items: &[Item], record_len: usize) -> Self {
        if items.is_empty() {
            return Self::default();
        }
        let mappings = items
            .iter()
            .filter(|i| matches!(i, Item::Mapping(_)))
            .count() as u64;
        Self {
            mappings,
            opt_outs: items.len() as u64 - mappings,
            bytes: record_len as u64,
            cpis: 1,
        }
    }
}

/// Applies one operation to a CPI's items.
fn apply(items: &mut Vec<Item>, op: DeltaOp, now: u64, report: &mut UpdateReport) {
    let before = items.len();
    match op {
        DeltaOp::Remove { msp, .. } => {
            items.retain(|i| match (i, &msp) {
                (_, None) => false,
                (Item::Mapping(m), Some(msp)) => m.fields.msp != *msp,
                (Item::OptOut(_), Some(_)) => true,
            });
            report.removed += before - items.len();
            if items.len() == before {
                report.removals_unmatched += 1;
            }
        }
        DeltaOp::Upsert(m) => {
            let m = m.into_inner();
            let opt_outs = items
                .iter()
                .filter(|i| matches!(i, Item::OptOut(_)))
                .count();
            items.retain(|i| match i {
                Item::Mapping(old) => old.fields.msp != m.fields.msp,
                Item::OptOut(_) => false,
            });
            // Replacing the mapping for the same MSP is an upsert; the opt-outs it ends are
            // removals.
            report.removed += opt_outs;
            if m.fields.not_after < now {
                report.expired_dropped += 1;
            } else {
                let at = items
                    .iter()
                    .position(|i| matches!(i, Item::Mapping(o) if o.fields.msp > m.fields.msp))
                    .unwrap_or(items.len());
                items.insert(at, Item::Mapping(m));
                report.upserts += 1;
            }
        }
        DeltaOp::OptOut(o) => {
            let o = o.into_inner();
            let mappings = items
                .iter()
                .filter(|i| matches!(i, Item::Mapping(_)))
                .count();
            items.retain(|i| match i {
                Item::Mapping(_) => false,
                Item::OptOut(old) => old.issuer != o.issuer,
            });
            // Replacing the same issuer's opt-out is an upsert, as for a mapping of the same
            // MSP; the mappings it ends are removals.
            report.removed += mappings;
            if o.not_after < now {
                report.expired_dropped += 1;
            } else {
                let at = items
                    .iter()
                    .position(|i| matches!(i, Item::OptOut(old) if old.issuer > o.issuer))
                    .unwrap_or(items.len());
                items.insert(at, Item::OptOut(o));
                report.opt_outs += 1;
            }
        }
    }
}

impl Snapshot {
    /// Applies `ops` in order and returns the new snapshot at `opts.epoch`. `oprf` must be the
    /// key the snapshot was built with (its public key is in the layout). Only the items whose
    /// buckets change are re-encoded; the layout, parameters and clients' keys stay valid.
    pub fn update(
        mut self,
        ops: Vec<DeltaOp>,
        oprf: &OprfKey,
        opts: &UpdateOptions,
    ) -> Result<(Self, UpdateReport)> {
        if opts.epoch == self.header.epoch {
            return Err(CoreError::EpochUnchanged { epoch: opts.epoch });
        }
        if oprf.public() != self.header.layout.oprf_key {
            return Err(CoreError::OprfKeyMismatch {
                expected: self.header.layout.oprf_key.to_string(),
            });
        }
        extend_dictionaries(&mut self.header.layout, &ops)?;
        let layout = self.header.layout.clone();
        let dict = Dictionaries::of(&layout);
        let item_bytes = self.header.scheme.item_bytes();
        let mut by_cpi: BTreeMap<Cpi, Vec<DeltaOp>> = BTreeMap::new();
        for op in ops {
            by_cpi.entry(op.cpi().clone()).or_default().push(op);
        }
        let located = by_cpi
            .into_par_iter()
            .map(|(cpi, ops)| {
                let y = oprf.evaluate(&cpi)?;
                // A CPI stored in another shard could never be found there.
                if !layout.shard.holds(&y) {
                    return Err(CoreError::WrongShard {
                        cpi,
                        shard: layout.shard,
                        belongs: crate::keyword::shard_of(&y, layout.shard.count),
                    });
                }
                Ok((layout.locate(&y), cpi, ops))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut touched: BTreeMap<usize, Vec<_>> = BTreeMap::new();
        for (secrets, cpi, ops) in located {
            touched
                .entry(secrets.location().bucket.0 as usize)
                .or_default()
                .push((secrets, cpi, ops));
        }

        let mut report = UpdateReport::default();
        let now = opts.now;
        let h = &mut self.header;
        for (&index, cpis) in &mut touched {
            let item = &mut self.plaintext[index * item_bytes..(index + 1) * item_bytes];
            let mut bucket = Bucket::decode(item)?;
            let old_len = bucket.encoded_len() as u64;
            for (secrets, cpi, ops) in cpis.drain(..) {
                let (mut items, old) = match bucket.find(&secrets) {
                    Some((at, record)) => {
                        let items = entry::decode_record(&cpi, &record, &layout)?;
                        bucket.remove(at, &secrets.mask())?;
                        let old = Tally::of(&items, record.len());
                        (items, old)
                    }
                    None => (Vec::new(), Tally::default()),
                };
                let before = items.len();
                items.retain(|i| i.not_after() >= now);
                report.expired_dropped += before - items.len();
                for op in ops {
                    apply(&mut items, op, now, &mut report);
                }
                let new = if items.is_empty() {
                    Tally::default()
                } else {
                    let record = entry::encode_record(&items, &dict)?;
                    bucket.push(&secrets.mask(), &secrets.seal(&record)?)?;
                    Tally::of(&items, record.len())
                };
                h.mapping_count = h.mapping_count - old.mappings + new.mappings;
                h.opt_out_count = h.opt_out_count - old.opt_outs + new.opt_outs;
                h.record_bytes = h.record_bytes - old.bytes + new.bytes;
                h.cpi_count = h.cpi_count - old.cpis + new.cpis;
            }
            bucket.encode(item).map_err(|e| match e {
                CoreError::BucketOverflow(_) => CoreError::BucketOverflow(Overflow::Delta {
                    bucket: index,
                    item_bytes,
                }),
                other => other,
            })?;
            h.bucket_bytes = h.bucket_bytes - old_len + bucket.encoded_len() as u64;
        }
        let indices: Vec<usize> = touched.keys().copied().collect();
        report.items_reencoded = indices.len();
        if !self.db.is_loaded() {
            // Loaded for an update only: the result is a delta of the file it came from.
            if self.header.base.is_none() {
                self.header.base = Some(self.origin.clone().ok_or(CoreError::Internal(
                    "an update without a database needs its origin",
                ))?);
            }
        } else {
            self.db
                .encode_items(&self.plaintext, &indices, &|_, _| {})?;
        }
        if self.header.base.is_some() {
            self.delta_items.extend(indices);
        }
        self.header.epoch = opts.epoch;
        self.header.created_at = opts.now;
        self.seal()?;
        Ok((self, report))
    }

    pub(super) fn delta_payload(&self) -> Result<DeltaPayload> {
        let n = self.header.scheme.item_bytes();
        let indices: Vec<usize> = self.delta_items.iter().copied().collect();
        let mut plain = Vec::with_capacity(indices.len() * n);
        for &i in &indices {
            plain.extend_from_slice(&self.plaintext[i * n..(i + 1) * n]);
        }
        let words = match &self.header.scheme {
            Scheme::Spiral(params) => pir::item_words(params, &self.plaintext, &indices)?.concat(),
            Scheme::YpirSp(_) => Vec::new(),
        };
        Ok((indices, plain, words))
    }
}

/// Reads a delta file's payload and applies it to its loaded base.
pub(super) fn apply_delta_payload(
    r: &mut dyn Read,
    len: u64,
    base: &mut Snapshot,
    header: &SnapshotHeader,
    with_db: bool,
) -> Result<()> {
    let scheme = &header.scheme;
    let n = scheme.item_bytes();
    let per_item = scheme.spiral().map_or(0, pir::words_per_item);
    let mut count = [0u8; 4];
    read_exact_or(r, &mut count, "delta")?;
    let k = u32::from_le_bytes(count) as usize;
    if k > scheme.num_items() {
        return Err(CoreError::snapshot(SnapshotError::DeltaItemCount));
    }
    let header_len = encode_header(header)?.len() as u64;
    let expected =
        16 + header_len + 32 + 4 + 4 * k as u64 + (k * n) as u64 + (k * per_item * 8) as u64;
    if len != expected {
        return Err(CoreError::snapshot(SnapshotError::DeltaLength {
            items: k,
            expected,
            len,
        }));
    }
    let mut idx_bytes = vec![0u8; 4 * k];
    read_exact_or(r, &mut idx_bytes, "delta")?;
    let indices: Vec<usize> = idx_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if indices.windows(2).any(|w| w[0] >= w[1]) || indices.iter().any(|&i| i >= scheme.num_items())
    {
        return Err(CoreError::snapshot(SnapshotError::DeltaIndices));
    }
    let mut plain = vec![0u8; k * n];
    read_exact_or(r, &mut plain, "delta buckets")?;
    let mut h = blake3::Hasher::new();
    h.update(&count);
    h.update(&idx_bytes);
    h.update(&plain);
    if h.finalize().as_bytes() != &header.plaintext_checksum {
        return Err(CoreError::snapshot(SnapshotError::DeltaBucketChecksum));
    }
    if with_db {
        let mut words = vec![0u64; k * per_item];
        read_exact_or(r, bytemuck::cast_slice_mut(&mut words), "delta database")?;
        if words_checksum(&words) != header.db_checksum {
            return Err(CoreError::snapshot(SnapshotError::DeltaDatabaseChecksum));
        }
        base.db.scatter_items(&indices, &words, per_item)?;
    }
    for (j, &i) in indices.iter().enumerate() {
        base.plaintext[i * n..(i + 1) * n].copy_from_slice(&plain[j * n..(j + 1) * n]);
    }
    base.delta_items = indices.into_iter().collect();
    Ok(())
}

/// Appends to `layout`'s dictionaries the MSPs and issuers `ops` store that they lack, keeping
/// every index already used; refused when that would widen the indices (past 256 names), which
/// would change every record.
fn extend_dictionaries(layout: &mut KeywordLayout, ops: &[DeltaOp]) -> Result<()> {
    let width = crate::keyword::layout_index_width;
    let (msp_width, issuer_width) = (width(layout.msps.len()), width(layout.issuers.len()));
    for op in ops {
        let (msp, issuer) = match op {
            DeltaOp::Upsert(m) => (Some(&m.mapping().fields.msp), m.mapping().issuer),
            DeltaOp::OptOut(o) => (None, o.opt_out().issuer),
            DeltaOp::Remove { .. } => continue,
        };
        if let Some(msp) = msp
            && !layout.msps.contains(msp)
        {
            layout.msps.push(msp.clone());
        }
        if !layout.issuers.contains(&issuer.0) {
            layout.issuers.push(issuer.0);
        }
    }
    if width(layout.msps.len()) != msp_width || width(layout.issuers.len()) != issuer_width {
        return Err(Overflow::Dictionary.into());
    }
    layout.validate()
}
