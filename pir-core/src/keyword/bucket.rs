//! The bytes of one bucket (one PIR item): the CPIs' sealed records, of varying length, each
//! behind a masked locator.
//!
//! ```text
//! bucket  = u16le(count) || u16le(blob_len) || locator * count || blob || zero padding
//! locator = u16le(offset + m0) || u16le(len + m1) || u16le(m2)      (additions mod 2^16)
//!           mask = m0 || m1 || m2 (derive.rs, from the CPI's y); offset and len: of the
//!           CPI's sealed record within blob
//! blob    = the sealed records, in the order of their locators
//! ```
//!
//! A client unmasks every locator with its own mask; one whose third field is its `m2` (about
//! 2^-16 of the others' do too) names a range of the blob, which it tries to open. A record's
//! length and place are hidden by the mask; the bucket shows how many records it holds and how
//! many bytes they take, not which CPI holds which or how long any one record is.

use super::derive::{EntrySecrets, MASK_BYTES, SEAL_OVERHEAD};
use crate::{
    bytes::Reader,
    error::{BucketError, CoreError, Overflow, Result},
};

/// Bytes a bucket spends before its locators.
pub(crate) const BUCKET_HEADER_BYTES: usize = 4;

/// Bytes of one locator.
pub const LOCATOR_BYTES: usize = MASK_BYTES;

fn word(bytes: &[u8; LOCATOR_BYTES], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

/// A locator for a record at `offset` of `len` bytes, masked with `mask`.
fn masked(mask: &[u8; MASK_BYTES], offset: u16, len: u16) -> [u8; LOCATOR_BYTES] {
    let mut out = [0u8; LOCATOR_BYTES];
    out[..2].copy_from_slice(&offset.wrapping_add(word(mask, 0)).to_le_bytes());
    out[2..4].copy_from_slice(&len.wrapping_add(word(mask, 1)).to_le_bytes());
    out[4..].copy_from_slice(&mask[4..]);
    out
}

/// The (offset, len) a locator names under `mask`, if its check matches.
fn unmask(mask: &[u8; MASK_BYTES], locator: &[u8; LOCATOR_BYTES]) -> Option<(usize, usize)> {
    (locator[4..] == mask[4..]).then(|| {
        (
            word(locator, 0).wrapping_sub(word(mask, 0)) as usize,
            word(locator, 1).wrapping_sub(word(mask, 1)) as usize,
        )
    })
}

/// Bytes a bucket of `count` records of `sealed` total sealed bytes takes.
pub(crate) fn bucket_len(count: usize, sealed: usize) -> usize {
    BUCKET_HEADER_BYTES + count * LOCATOR_BYTES + sealed
}

/// A bucket's records, decoded: the locators and the blob they point into.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bucket {
    locators: Vec<[u8; LOCATOR_BYTES]>,
    blob: Vec<u8>,
}

impl Bucket {
    /// A bucket of `records`, each (locator mask, sealed record). Records and locators are
    /// put in the order of the sealed bytes, which are pseudorandom: the order says nothing
    /// about which CPI a record belongs to.
    pub(crate) fn of_records(mut records: Vec<([u8; MASK_BYTES], Vec<u8>)>) -> Result<Self> {
        records.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let mut bucket = Self::default();
        for (mask, sealed) in records {
            bucket.push(&mask, &sealed)?;
        }
        Ok(bucket)
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        self.locators.len()
    }

    /// Bytes this bucket takes in an item.
    pub(crate) fn encoded_len(&self) -> usize {
        bucket_len(self.locators.len(), self.blob.len())
    }

    /// Appends a sealed record at the end of the blob.
    pub(crate) fn push(&mut self, mask: &[u8; MASK_BYTES], sealed: &[u8]) -> Result<()> {
        let too_big = || {
            CoreError::BucketOverflow(Overflow::Entries {
                count: self.len() + 1,
            })
        };
        let offset = u16::try_from(self.blob.len()).map_err(|_| too_big())?;
        let len = u16::try_from(sealed.len()).map_err(|_| too_big())?;
        u16::try_from(self.blob.len() + sealed.len()).map_err(|_| too_big())?;
        if self.locators.len() >= usize::from(u16::MAX) {
            return Err(too_big());
        }
        self.locators.push(masked(mask, offset, len));
        self.blob.extend_from_slice(sealed);
        Ok(())
    }

    /// The position and opened record of the CPI `secrets` belongs to: `None` when no locator
    /// leads to a range that opens under its key (the CPI has no record here).
    pub(crate) fn find(&self, secrets: &EntrySecrets) -> Option<(usize, Vec<u8>)> {
        let mask = secrets.mask();
        self.locators.iter().enumerate().find_map(|(i, locator)| {
            let (offset, len) = unmask(&mask, locator)?;
            if len <= SEAL_OVERHEAD {
                return None;
            }
            let sealed = self.blob.get(offset..offset.checked_add(len)?)?;
            secrets.open(sealed).ok().map(|record| (i, record))
        })
    }

    /// Removes the record at position `at` (found by [`Bucket::find`] under `mask`): its bytes
    /// leave the blob and the records after it move down, their locators' offsets with them
    /// (a masked offset moves by plain subtraction: no other CPI's mask is needed).
    pub(crate) fn remove(&mut self, at: usize, mask: &[u8; MASK_BYTES]) -> Result<()> {
        let (offset, len) = self
            .locators
            .get(at)
            .and_then(|l| unmask(mask, l))
            .ok_or(CoreError::Internal("removing a record that is not there"))?;
        if offset + len > self.blob.len() {
            return Err(CoreError::Internal("removing a record beyond its blob"));
        }
        self.blob.drain(offset..offset + len);
        self.locators.remove(at);
        let shift = len as u16;
        for locator in &mut self.locators[at..] {
            let moved = word(locator, 0).wrapping_sub(shift);
            locator[..2].copy_from_slice(&moved.to_le_bytes());
        }
        Ok(())
    }

    /// Writes the bucket into `out`, one item, zero-padded: refused if it does not fit.
    pub(crate) fn encode(&self, out: &mut [u8]) -> Result<()> {
        let item_bytes = out.len();
        if self.encoded_len() > item_bytes {
            return Err(CoreError::BucketOverflow(Overflow::Bytes { item_bytes }));
        }
        out.fill(0);
        // Both fit in u16: `push` checks them.
        out[..2].copy_from_slice(&(self.locators.len() as u16).to_le_bytes());
        out[2..4].copy_from_slice(&(self.blob.len() as u16).to_le_bytes());
        let mut pos = BUCKET_HEADER_BYTES;
        for locator in &self.locators {
            out[pos..pos + LOCATOR_BYTES].copy_from_slice(locator);
            pos += LOCATOR_BYTES;
        }
        out[pos..pos + self.blob.len()].copy_from_slice(&self.blob);
        Ok(())
    }

    /// Decodes an item's bytes: refused when its counts do not fit the item.
    pub(crate) fn decode(item: &[u8]) -> Result<Self, BucketError> {
        let mut r = Reader::new(item);
        let count = r.u16()? as usize;
        let blob_len = r.u16()? as usize;
        if bucket_len(count, blob_len) > item.len() {
            return Err(BucketError::Truncated);
        }
        let mut locators = Vec::with_capacity(count);
        for _ in 0..count {
            locators.push(r.array()?);
        }
        let blob = r.take(blob_len)?.to_vec();
        Ok(Self { locators, blob })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{keyword::KeywordLayout, oprf::OprfOutput};

    fn secrets(byte: u8) -> EntrySecrets {
        let layout = KeywordLayout::new(
            [5; 32],
            8,
            8,
            crate::oprf::OprfKey::derive(&[1; 32], b"t")
                .unwrap()
                .public(),
        )
        .unwrap();
        layout.locate(&OprfOutput([byte; 64]))
    }

    #[test]
    fn records_are_found_removed_and_appended_without_other_masks() {
        let all: Vec<EntrySecrets> = (1..=5).map(secrets).collect();
        let records: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(i, s)| (s.mask(), s.seal(&vec![i as u8 + 1; 10 + 7 * i]).unwrap()))
            .collect();
        let mut bucket = Bucket::of_records(records).unwrap();
        let mut item = vec![0u8; 400];
        bucket.encode(&mut item).unwrap();
        let decoded = Bucket::decode(&item).unwrap();
        for (i, s) in all.iter().enumerate() {
            let (_, record) = decoded.find(s).unwrap();
            assert_eq!(record, vec![i as u8 + 1; 10 + 7 * i]);
        }
        assert!(decoded.find(&secrets(9)).is_none());

        // Remove the third, change the first: every other record is still found.
        let (at, _) = bucket.find(&all[2]).unwrap();
        bucket.remove(at, &all[2].mask()).unwrap();
        let (at, _) = bucket.find(&all[0]).unwrap();
        bucket.remove(at, &all[0].mask()).unwrap();
        bucket
            .push(&all[0].mask(), &all[0].seal(b"changed").unwrap())
            .unwrap();
        bucket.encode(&mut item).unwrap();
        let decoded = Bucket::decode(&item).unwrap();
        assert_eq!(decoded.len(), 4);
        assert!(decoded.find(&all[2]).is_none());
        assert_eq!(decoded.find(&all[0]).unwrap().1, b"changed");
        for i in [1, 3, 4] {
            assert_eq!(
                decoded.find(&all[i]).unwrap().1,
                vec![i as u8 + 1; 10 + 7 * i]
            );
        }
        // Too small an item, or counts beyond it: refused.
        assert!(bucket.encode(&mut [0u8; 40]).is_err());
        let mut lying = item.clone();
        lying[2..4].copy_from_slice(&400u16.to_le_bytes());
        assert!(matches!(
            Bucket::decode(&lying),
            Err(BucketError::Truncated)
        ));
    }
}
