//! Updates: a delta of signed mappings and removals re-encodes only the items it changes.

use std::{collections::BTreeMap, io::Read};

use rayon::prelude::*;

use super::{
    DeltaPayload, Snapshot,
    file::{read_exact_or, words_checksum},
    header::{SnapshotHeader, encode_header},
};
use crate::{
    error::{CoreError, Overflow, Result, SnapshotError},
    identity::{Cpi, VerifiedMapping},
    keyword::{Tag, bucket},
    pir,
};

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
            return Err(CoreError::EpochUnchanged { epoch: opts.epoch });
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
                    CoreError::BucketOverflow(_) => CoreError::BucketOverflow(Overflow::Delta {
                        bucket: index,
                        item_bytes,
                    }),
                    other => other,
                },
            )?;
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

    /// A delta's payload: its item indices, their buckets, and their words (recomputed from the
    /// buckets: the NTT is a function of them).
    pub(super) fn delta_payload(&self) -> Result<DeltaPayload> {
        let n = self.header.scheme.item_bytes as usize;
        let indices: Vec<usize> = self.delta_items.iter().copied().collect();
        let mut plain = Vec::with_capacity(indices.len() * n);
        for &i in &indices {
            plain.extend_from_slice(&self.plaintext[i * n..(i + 1) * n]);
        }
        let words = pir::item_words(&self.header.scheme, &self.plaintext, &indices)?.concat();
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
    let n = scheme.item_bytes as usize;
    let per_item = pir::words_per_item(scheme);
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
        let chunks: Vec<&[u64]> = words.chunks_exact(per_item).collect();
        base.db.scatter_items(&indices, &chunks)?;
    }
    for (j, &i) in indices.iter().enumerate() {
        base.plaintext[i * n..(i + 1) * n].copy_from_slice(&plain[j * n..(j + 1) * n]);
    }
    base.delta_items = indices.into_iter().collect();
    Ok(())
}
