//! A CPI's record: every signed statement stored for it (its mappings, or its opt-out), framed
//! as one byte string, cut into fixed-size chunks and sealed one chunk per slot.
//!
//! ```text
//! record = u32le(len) || u16le(count) || item * count          len = bytes of the record
//! item   = u8(kind) || u16le(ilen) || body[ilen]
//!          kind 0: a mapping, body = compact mapping (bucket.rs)
//!          kind 1: an opt-out, body = u64le(not_before) || u64le(not_after) || issuer[8] || sig[64]
//! padded = record || zero bytes up to n * slot_bytes,           n = ceil(len / slot_bytes)
//! slot_i = tag_i || AES-256-GCM-SIV(key, nonce_i, padded[i*slot_bytes..][..slot_bytes], aad = tag_i)
//! ```
//!
//! The CPI is never stored: the client knows it and rebuilds the signed bytes with it. A slot
//! is as long as every other in the snapshot and its tag is unlinkable to the CPI's other
//! slots' tags, so a bucket shows how many slots it holds, not how many CPIs or mappings.

use super::{bucket, derive::EntrySecrets, layout::Tag};
use crate::{
    bytes::Reader,
    error::{BucketError, CoreError, Result},
    identity::{Cpi, IssuerId, Mapping, OptOut},
};

const KIND_MAPPING: u8 = 0;
const KIND_OPT_OUT: u8 = 1;
const RECORD_HEADER_BYTES: usize = 4 + 2;

/// One signed statement stored for a CPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// The CPI is reachable at an MSP.
    Mapping(Mapping),
    /// The CPI is not discoverable.
    OptOut(OptOut),
}

impl Item {
    /// Until when the statement holds.
    pub(crate) fn not_after(&self) -> u64 {
        match self {
            Self::Mapping(m) => m.fields.not_after,
            Self::OptOut(o) => o.not_after,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (kind, body) = match self {
            Self::Mapping(m) => (KIND_MAPPING, bucket::encode_compact(m)),
            Self::OptOut(o) => {
                let mut body = Vec::with_capacity(88);
                body.extend_from_slice(&o.not_before.to_le_bytes());
                body.extend_from_slice(&o.not_after.to_le_bytes());
                body.extend_from_slice(&o.issuer.0);
                body.extend_from_slice(&o.issuer_sig);
                (KIND_OPT_OUT, body)
            }
        };
        out.push(kind);
        // A compact mapping is at most about 700 bytes (section 3 bounds its fields).
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
    }
}

/// The record of a CPI's items, unpadded.
pub(crate) fn encode_record(items: &[Item]) -> Result<Vec<u8>> {
    let count = u16::try_from(items.len())
        .map_err(|_| CoreError::Internal("more than 65535 statements for one CPI"))?;
    let mut out = vec![0u8; RECORD_HEADER_BYTES];
    for item in items {
        item.encode(&mut out);
    }
    let len = u32::try_from(out.len()).map_err(|_| CoreError::Internal("a record over 4 GiB"))?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..6].copy_from_slice(&count.to_le_bytes());
    Ok(out)
}

/// Slots a record of `len` bytes fills.
pub(crate) fn slots_for(len: usize, slot_bytes: usize) -> usize {
    len.div_ceil(slot_bytes).max(1)
}

/// The record's slots: (tag, sealed chunk) for slot 0, 1, ...
pub(crate) fn seal_record(
    secrets: &EntrySecrets,
    record: &[u8],
    slot_bytes: usize,
) -> Result<Vec<(Tag, Vec<u8>)>> {
    let n = slots_for(record.len(), slot_bytes);
    let mut padded = record.to_vec();
    padded.resize(n * slot_bytes, 0);
    padded
        .chunks_exact(slot_bytes)
        .enumerate()
        .map(|(i, chunk)| {
            let i = i as u32;
            Ok((secrets.slot_tag(i), secrets.seal_slot(i, chunk)?))
        })
        .collect()
}

/// The tags of the `n` slots of a record.
pub(crate) fn slot_tags(secrets: &EntrySecrets, n: usize) -> impl Iterator<Item = Tag> + '_ {
    (0..n as u32).map(|i| secrets.slot_tag(i))
}

/// Finds and opens the record of the CPI `secrets` belongs to among a bucket's slots: `None`
/// if its first slot is not there. A slot that is there but does not open, a missing later
/// slot or a malformed frame means the bucket was tampered with.
pub(crate) fn open_record(
    secrets: &EntrySecrets,
    slots: &[(Tag, &[u8])],
    slot_bytes: usize,
) -> Result<Option<Vec<u8>>> {
    let find = |tag: Tag| slots.iter().find(|(t, _)| *t == tag).map(|(_, s)| *s);
    let Some(first) = find(secrets.slot_tag(0)) else {
        return Ok(None);
    };
    let mut record = secrets.open_slot(0, first)?;
    let len = u32::from_le_bytes(
        record
            .first_chunk::<4>()
            .copied()
            .ok_or(BucketError::Truncated)?,
    ) as usize;
    if len < RECORD_HEADER_BYTES || len > slots.len() * slot_bytes {
        return Err(BucketError::RecordLength.into());
    }
    let n = slots_for(len, slot_bytes);
    for i in 1..n as u32 {
        let sealed = find(secrets.slot_tag(i)).ok_or(BucketError::MissingSlot)?;
        record.extend_from_slice(&secrets.open_slot(i, sealed)?);
    }
    if record[len..].iter().any(|&b| b != 0) {
        return Err(BucketError::TrailingBytes.into());
    }
    record.truncate(len);
    Ok(Some(record))
}

/// The items of a record, rebuilt with the CPI it belongs to.
pub(crate) fn decode_record(cpi: &Cpi, record: &[u8]) -> Result<Vec<Item>> {
    let mut r = Reader::new(record);
    let _len = r.u32().map_err(BucketError::from)?;
    let count = r.u16().map_err(BucketError::from)?;
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let kind = r.u8().map_err(BucketError::from)?;
        let len = r.u16().map_err(BucketError::from)? as usize;
        let body = r.take(len).map_err(BucketError::from)?;
        items.push(match kind {
            KIND_MAPPING => Item::Mapping(bucket::decode_compact(cpi, body)?),
            KIND_OPT_OUT => Item::OptOut(decode_opt_out(cpi, body)?),
            other => return Err(BucketError::UnknownKind(other).into()),
        });
    }
    if !r.rest().is_empty() {
        return Err(BucketError::TrailingBytes.into());
    }
    Ok(items)
}

fn decode_opt_out(cpi: &Cpi, body: &[u8]) -> Result<OptOut, BucketError> {
    let mut r = Reader::new(body);
    let opt_out = OptOut {
        cpi: cpi.clone(),
        not_before: r.u64()?,
        not_after: r.u64()?,
        issuer: IssuerId(r.array()?),
        issuer_sig: r.array()?,
    };
    if !r.rest().is_empty() {
        return Err(BucketError::TrailingBytes);
    }
    Ok(opt_out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{
        identity::{IssuerKey, MappingFields},
        oprf::OprfOutput,
    };

    fn items(cpi: &Cpi) -> Vec<Item> {
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let m = |msp: &str| {
            MappingFields::new(cpi.clone(), msp, Some("@a:b"), None, 1, 9)
                .unwrap()
                .sign(&issuer, None)
                .unwrap()
        };
        vec![
            Item::Mapping(m("a.example")),
            Item::Mapping(m("b.example")),
            Item::OptOut(OptOut::sign(cpi.clone(), 2, 8, &issuer).unwrap()),
        ]
    }

    #[test]
    fn records_round_trip_through_unlinkable_slots() {
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let items = items(&cpi);
        let record = encode_record(&items).unwrap();
        assert_eq!(
            u32::from_le_bytes(record[..4].try_into().unwrap()) as usize,
            record.len()
        );
        let secrets = EntrySecrets::derive(&OprfOutput([4; 64]), &[5; 32], 8);
        let slots = seal_record(&secrets, &record, 64).unwrap();
        assert_eq!(slots.len(), record.len().div_ceil(64));
        assert!(slots.iter().all(|(_, s)| s.len() == 64 + 16));
        // Tags differ slot to slot.
        let mut tags: Vec<_> = slots.iter().map(|(t, _)| *t).collect();
        tags.dedup();
        assert_eq!(tags.len(), slots.len());

        // Found in any order among other CPIs' slots.
        let other = EntrySecrets::derive(&OprfOutput([6; 64]), &[5; 32], 8);
        let mut bucket: Vec<(Tag, Vec<u8>)> = seal_record(&other, &record, 64).unwrap();
        bucket.extend(slots.iter().cloned());
        bucket.sort();
        let view: Vec<(Tag, &[u8])> = bucket.iter().map(|(t, s)| (*t, s.as_slice())).collect();
        let opened = open_record(&secrets, &view, 64).unwrap().unwrap();
        assert_eq!(decode_record(&cpi, &opened).unwrap(), items);

        // Absent: no first slot. A missing later slot or a swapped one: refused.
        let absent = EntrySecrets::derive(&OprfOutput([7; 64]), &[5; 32], 8);
        assert!(open_record(&absent, &view, 64).unwrap().is_none());
        let without_last: Vec<_> = view
            .iter()
            .filter(|(t, _)| *t != slots.last().unwrap().0)
            .copied()
            .collect();
        assert!(matches!(
            open_record(&secrets, &without_last, 64),
            Err(CoreError::Bucket(BucketError::MissingSlot))
        ));
        let mut swapped = view.clone();
        let i = swapped.iter().position(|(t, _)| *t == slots[1].0).unwrap();
        swapped[i].1 = slots[0].1.as_slice();
        assert!(matches!(
            open_record(&secrets, &swapped, 64),
            Err(CoreError::SealedEntry)
        ));
    }
}
