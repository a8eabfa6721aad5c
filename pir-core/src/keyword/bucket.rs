//! The plaintext of one bucket: the entries of every CPI that hashes there.
//!
//! ```text
//! bucket  = count:u16le || entry * count || zero padding to the item size
//! entry   = tag[8] || len:u16le || compact[len]
//! compact = flags:u8 (1 psi, 2 context, 4 user consent)
//!           || msp_len:u8 || msp || [psi_len:u8 || psi] || [ctx_len:u8 || context]
//!           || not_before:u64le || not_after:u64le || issuer[8] || issuer_sig[64]
//!           || [user_key[32] || user_sig[64]]
//! ```
//!
//! The CPI itself is not stored: the client knows it, rebuilds the signed bytes with it and so
//! verifies both that the entry is genuine and that it belongs to this CPI.

use super::layout::Tag;
use crate::bytes::Reader;
use crate::{
    error::{BucketError, CoreError, Overflow, Result},
    identity::{Cpi, IssuerId, Mapping, MappingFields, UserConsent},
};

/// Bytes a bucket spends before its entries.
pub(crate) const BUCKET_HEADER_BYTES: usize = 2;
/// Bytes an entry spends besides its compact mapping.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 8 + 2;

const FLAG_PSI: u8 = 1;
const FLAG_CONTEXT: u8 = 2;
const FLAG_USER: u8 = 4;

/// The compact encoding of a mapping without its CPI.
pub(crate) fn encode_compact(m: &Mapping) -> Vec<u8> {
    let f = &m.fields;
    let mut flags = 0;
    if f.psi.is_some() {
        flags |= FLAG_PSI;
    }
    if f.context.is_some() {
        flags |= FLAG_CONTEXT;
    }
    if m.user.is_some() {
        flags |= FLAG_USER;
    }
    let mut out = Vec::with_capacity(128);
    out.push(flags);
    // Validated lengths: msp <= 253, psi <= 255, context <= 32.
    for s in [Some(&f.msp), f.psi.as_ref(), f.context.as_ref()]
        .into_iter()
        .flatten()
    {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&f.not_before.to_le_bytes());
    out.extend_from_slice(&f.not_after.to_le_bytes());
    out.extend_from_slice(&m.issuer.0);
    out.extend_from_slice(&m.issuer_sig);
    if let Some(u) = &m.user {
        out.extend_from_slice(&u.key);
        out.extend_from_slice(&u.sig);
    }
    out
}

fn short_str(r: &mut Reader<'_>) -> Result<String, BucketError> {
    let len = r.u8()? as usize;
    String::from_utf8(r.take(len)?.to_vec()).map_err(|_| BucketError::NotUtf8)
}

/// Decodes a compact mapping for a known CPI.
pub(crate) fn decode_compact(cpi: &Cpi, bytes: &[u8]) -> Result<Mapping> {
    let mapping = parse_compact(cpi, bytes)?;
    mapping.fields.validate()?;
    Ok(mapping)
}

fn parse_compact(cpi: &Cpi, bytes: &[u8]) -> Result<Mapping, BucketError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8()?;
    if flags & !(FLAG_PSI | FLAG_CONTEXT | FLAG_USER) != 0 {
        return Err(BucketError::UnknownFlags(flags));
    }
    let msp = short_str(&mut r)?;
    let psi = (flags & FLAG_PSI != 0)
        .then(|| short_str(&mut r))
        .transpose()?;
    let context = (flags & FLAG_CONTEXT != 0)
        .then(|| short_str(&mut r))
        .transpose()?;
    let not_before = r.u64()?;
    let not_after = r.u64()?;
    let issuer = IssuerId(r.array()?);
    let issuer_sig = r.array()?;
    let user = if flags & FLAG_USER != 0 {
        Some(UserConsent {
            key: r.array()?,
            sig: r.array()?,
        })
    } else {
        None
    };
    if !r.rest().is_empty() {
        return Err(BucketError::TrailingBytes);
    }
    let fields = MappingFields {
        cpi: cpi.clone(),
        msp,
        psi,
        context,
        not_before,
        not_after,
    };
    Ok(Mapping {
        fields,
        issuer,
        issuer_sig,
        user,
    })
}

/// Bytes an entry holding this compact mapping takes in a bucket.
pub(crate) fn entry_len(compact_len: usize) -> usize {
    ENTRY_OVERHEAD_BYTES + compact_len
}

/// Writes a bucket's entries into `out` (an item, already zeroed). Fails if they do not fit.
///
/// Entries must come sorted by (tag, compact bytes): the order is then a function of the
/// bucket's content alone, so an update and a full build of the same mappings agree byte for
/// byte.
pub(crate) fn encode_bucket<'a>(
    entries: impl ExactSizeIterator<Item = (Tag, &'a [u8])>,
    out: &mut [u8],
) -> Result<()> {
    let count = entries.len();
    let count16 =
        u16::try_from(count).map_err(|_| CoreError::BucketOverflow(Overflow::Entries { count }))?;
    let mut pos = BUCKET_HEADER_BYTES;
    let item_bytes = out.len();
    let too_small = || CoreError::BucketOverflow(Overflow::Bytes { item_bytes });
    if out.len() < pos {
        return Err(too_small());
    }
    out[..2].copy_from_slice(&count16.to_le_bytes());
    for (tag, compact) in entries {
        let len = u16::try_from(compact.len())
            .map_err(|_| CoreError::Internal("entry longer than 64 KiB"))?;
        let end = pos + entry_len(compact.len());
        if end > out.len() {
            return Err(too_small());
        }
        out[pos..pos + 8].copy_from_slice(&tag.0);
        out[pos + 8..pos + 10].copy_from_slice(&len.to_le_bytes());
        out[pos + 10..end].copy_from_slice(compact);
        pos = end;
    }
    Ok(())
}

/// Splits a bucket into (tag, compact mapping) entries.
pub(crate) fn decode_bucket(item: &[u8]) -> Result<Vec<(Tag, &[u8])>, BucketError> {
    let mut r = Reader::new(item);
    let count = r.u16()?;
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let tag = Tag(r.array()?);
        let len = r.u16()? as usize;
        entries.push((tag, r.take(len)?));
    }
    Ok(entries)
}

/// The MSP and `not_after` of a compact mapping, read without its CPI.
pub(crate) fn compact_msp_and_expiry(bytes: &[u8]) -> Result<(&[u8], u64), BucketError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8()?;
    let msp_len = r.u8()? as usize;
    let msp = r.take(msp_len)?;
    for flag in [FLAG_PSI, FLAG_CONTEXT] {
        if flags & flag != 0 {
            let len = r.u8()? as usize;
            r.take(len)?;
        }
    }
    let _not_before = r.u64()?;
    Ok((msp, r.u64()?))
}

/// What a bucket holds: entries, distinct tags (CPIs), and bytes of entries.
pub(crate) fn bucket_stats(item: &[u8]) -> Result<(u64, u64, u64)> {
    let entries = decode_bucket(item)?;
    let mut tags: Vec<Tag> = entries.iter().map(|(t, _)| *t).collect();
    tags.sort_unstable();
    tags.dedup();
    let bytes = entries.iter().map(|(_, c)| entry_len(c.len()) as u64).sum();
    Ok((entries.len() as u64, tags.len() as u64, bytes))
}
