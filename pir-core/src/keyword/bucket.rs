//! The bytes of one bucket (one PIR item), and the compact form of a mapping inside a record.
//!
//! ```text
//! bucket  = count:u16le || slot * count (sorted by tag) || zero padding to the item size
//! slot    = tag[8] || sealed[slot_bytes + 16]                 (entry.rs)
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

/// Writes `slots` (each `slot_len` bytes with its tag, in the order given) into `out`, one
/// item: refused if they do not fit.
pub(crate) fn encode_bucket<'a>(
    slots: impl ExactSizeIterator<Item = (Tag, &'a [u8])>,
    slot_len: usize,
    out: &mut [u8],
) -> Result<()> {
    let count = slots.len();
    let count16 =
        u16::try_from(count).map_err(|_| CoreError::BucketOverflow(Overflow::Entries { count }))?;
    let item_bytes = out.len();
    if BUCKET_HEADER_BYTES + count * slot_len > item_bytes {
        return Err(CoreError::BucketOverflow(Overflow::Bytes { item_bytes }));
    }
    out[..2].copy_from_slice(&count16.to_le_bytes());
    let mut pos = BUCKET_HEADER_BYTES;
    for (tag, sealed) in slots {
        if 8 + sealed.len() != slot_len {
            return Err(CoreError::Internal("a sealed slot of the wrong length"));
        }
        out[pos..pos + 8].copy_from_slice(&tag.0);
        out[pos + 8..pos + slot_len].copy_from_slice(sealed);
        pos += slot_len;
    }
    Ok(())
}

/// The slots of one item: (tag, sealed chunk) each. Refuses a count the item cannot hold and
/// two slots with one tag.
pub(crate) fn decode_bucket(
    item: &[u8],
    slot_len: usize,
) -> Result<Vec<(Tag, &[u8])>, BucketError> {
    let mut r = Reader::new(item);
    let count = r.u16()? as usize;
    if slot_len < 8 || count * slot_len > r.rest().len() {
        return Err(BucketError::Truncated);
    }
    let mut slots = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = Tag(r.array()?);
        slots.push((tag, r.take(slot_len - 8)?));
    }
    let mut tags: Vec<Tag> = slots.iter().map(|(t, _)| *t).collect();
    tags.sort_unstable();
    if tags.windows(2).any(|w| w[0] == w[1]) {
        return Err(BucketError::DuplicateTag);
    }
    Ok(slots)
}
