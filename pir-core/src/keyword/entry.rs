//! A CPI's record: every signed statement stored for it (its mappings, or its opt-outs), in
//! compact form, sealed as one piece into its bucket (bucket.rs).
//!
//! ```text
//! record  = item+                                   (as many as the sealed length holds)
//! item    = u8(head) || body
//!   head 0x00..=0x07: a mapping; flags 0x01 psi, 0x02 context, 0x04 user consent
//!     body = idx(msp) || [str8(psi)] || [str8(context)] || u64le(not_before)
//!            || u64le(not_after) || idx(issuer) || sig[64] || [user_key[32] || user_sig[64]]
//!   head 0x80: an opt-out
//!     body = u64le(not_before) || u64le(not_after) || idx(issuer) || sig[64]
//! idx     = the name's index in the layout's dictionary: u8 when it holds at most 256 names,
//!           else u16le
//! ```
//!
//! The CPI is never stored: the client knows it and rebuilds the signed bytes with it, and the
//! MSP name and issuer id with the layout's dictionaries.

use std::collections::HashMap;

use super::{KeywordLayout, layout::index_width};
use crate::{
    bytes::Reader,
    error::{BucketError, CoreError, Overflow, Result},
    identity::{Cpi, IssuerId, Mapping, MappingFields, OptOut, UserConsent},
};

const HEAD_OPT_OUT: u8 = 0x80;
const FLAG_PSI: u8 = 1;
const FLAG_CONTEXT: u8 = 2;
const FLAG_USER: u8 = 4;

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

    /// The issuer that signed it.
    pub(crate) fn issuer(&self) -> IssuerId {
        match self {
            Self::Mapping(m) => m.issuer,
            Self::OptOut(o) => o.issuer,
        }
    }
}

/// A layout's dictionaries, indexed for encoding.
pub(crate) struct Dictionaries {
    msps: HashMap<String, usize>,
    issuers: HashMap<[u8; 8], usize>,
    msp_width: usize,
    issuer_width: usize,
}

impl Dictionaries {
    /// The dictionaries of `layout`.
    pub(crate) fn of(layout: &KeywordLayout) -> Self {
        Self::new(&layout.msps, &layout.issuers)
    }

    /// Dictionaries of these names.
    pub(crate) fn new(msps: &[String], issuers: &[[u8; 8]]) -> Self {
        Self {
            msps: msps
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), i))
                .collect(),
            issuers: issuers.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            msp_width: index_width(msps.len()),
            issuer_width: index_width(issuers.len()),
        }
    }

    fn index(out: &mut Vec<u8>, index: Option<&usize>, width: usize) -> Result<()> {
        let index = *index.ok_or(CoreError::BucketOverflow(Overflow::Dictionary))?;
        match width {
            1 => out.push(u8::try_from(index).map_err(|_| Overflow::Dictionary)?),
            _ => out.extend_from_slice(
                &u16::try_from(index)
                    .map_err(|_| Overflow::Dictionary)?
                    .to_le_bytes(),
            ),
        }
        Ok(())
    }
}

/// The record of a CPI's items (at least one), with `dict`'s indices.
pub(crate) fn encode_record(items: &[Item], dict: &Dictionaries) -> Result<Vec<u8>> {
    if items.is_empty() {
        return Err(CoreError::Internal("a record of no statement"));
    }
    let mut out = Vec::with_capacity(128 * items.len());
    for item in items {
        match item {
            Item::Mapping(m) => encode_compact(m, dict, &mut out)?,
            Item::OptOut(o) => {
                out.push(HEAD_OPT_OUT);
                out.extend_from_slice(&o.not_before.to_le_bytes());
                out.extend_from_slice(&o.not_after.to_le_bytes());
                Dictionaries::index(&mut out, dict.issuers.get(&o.issuer.0), dict.issuer_width)?;
                out.extend_from_slice(&o.issuer_sig);
            }
        }
    }
    Ok(out)
}

/// The compact encoding of a mapping without its CPI.
fn encode_compact(m: &Mapping, dict: &Dictionaries, out: &mut Vec<u8>) -> Result<()> {
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
    out.push(flags);
    Dictionaries::index(out, dict.msps.get(&f.msp), dict.msp_width)?;
    // Validated lengths: psi <= 255, context <= 32.
    for s in [f.psi.as_ref(), f.context.as_ref()].into_iter().flatten() {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&f.not_before.to_le_bytes());
    out.extend_from_slice(&f.not_after.to_le_bytes());
    Dictionaries::index(out, dict.issuers.get(&m.issuer.0), dict.issuer_width)?;
    out.extend_from_slice(&m.issuer_sig);
    if let Some(u) = &m.user {
        out.extend_from_slice(&u.key);
        out.extend_from_slice(&u.sig);
    }
    Ok(())
}

fn short_str(r: &mut Reader<'_>) -> Result<String, BucketError> {
    let len = r.u8()? as usize;
    String::from_utf8(r.take(len)?.to_vec()).map_err(|_| BucketError::NotUtf8)
}

fn index<'a, T>(r: &mut Reader<'_>, dict: &'a [T]) -> Result<&'a T, BucketError> {
    let i = match index_width(dict.len()) {
        1 => r.u8()? as usize,
        _ => r.u16()? as usize,
    };
    dict.get(i).ok_or(BucketError::DictionaryIndex {
        index: i,
        len: dict.len(),
    })
}

/// The items of a record, rebuilt with the CPI it belongs to and `layout`'s dictionaries.
/// Every mapping's fields are checked again (section 3); signatures are the caller's.
pub(crate) fn decode_record(cpi: &Cpi, record: &[u8], layout: &KeywordLayout) -> Result<Vec<Item>> {
    let mut r = Reader::new(record);
    let mut items = Vec::new();
    while !r.rest().is_empty() {
        let head = r.u8().map_err(BucketError::from)?;
        items.push(if head == HEAD_OPT_OUT {
            Item::OptOut(OptOut {
                cpi: cpi.clone(),
                not_before: r.u64().map_err(BucketError::from)?,
                not_after: r.u64().map_err(BucketError::from)?,
                issuer: IssuerId(*index(&mut r, &layout.issuers)?),
                issuer_sig: r.array().map_err(BucketError::from)?,
            })
        } else if head & !(FLAG_PSI | FLAG_CONTEXT | FLAG_USER) == 0 {
            let mapping = decode_compact(cpi, head, &mut r, layout)?;
            mapping.fields.validate()?;
            Item::Mapping(mapping)
        } else {
            return Err(BucketError::UnknownKind(head).into());
        });
    }
    if items.is_empty() {
        return Err(BucketError::RecordLength.into());
    }
    Ok(items)
}

fn decode_compact(
    cpi: &Cpi,
    flags: u8,
    r: &mut Reader<'_>,
    layout: &KeywordLayout,
) -> Result<Mapping, BucketError> {
    let msp = index(r, &layout.msps)?.clone();
    let psi = (flags & FLAG_PSI != 0).then(|| short_str(r)).transpose()?;
    let context = (flags & FLAG_CONTEXT != 0)
        .then(|| short_str(r))
        .transpose()?;
    let not_before = r.u64()?;
    let not_after = r.u64()?;
    let issuer = IssuerId(*index(r, &layout.issuers)?);
    let issuer_sig = r.array()?;
    let user = if flags & FLAG_USER != 0 {
        Some(UserConsent {
            key: r.array()?,
            sig: r.array()?,
        })
    } else {
        None
    };
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::identity::IssuerKey;

    #[test]
    fn records_round_trip_through_the_dictionaries() {
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let m = |msp: &str| {
            MappingFields::new(cpi.clone(), msp, Some("@a:b"), None, 1, 9)
                .unwrap()
                .sign(&issuer, None)
                .unwrap()
        };
        let items = vec![
            Item::Mapping(m("a.example")),
            Item::Mapping(m("b.example")),
            Item::OptOut(OptOut::sign(cpi.clone(), 2, 8, &issuer).unwrap()),
        ];
        let layout = KeywordLayout::new(
            [5; 32],
            8,
            8,
            crate::oprf::OprfKey::derive(&[1; 32], b"t")
                .unwrap()
                .public(),
        )
        .unwrap()
        .with_dictionaries(
            vec!["b.example".into(), "a.example".into()],
            vec![issuer.id()],
        )
        .unwrap();
        let record = encode_record(&items, &Dictionaries::of(&layout)).unwrap();
        assert_eq!(decode_record(&cpi, &record, &layout).unwrap(), items);
        // The MSP is one byte: index 1 for a.example.
        assert_eq!(record[..2], [FLAG_PSI, 1]);

        // An index beyond the dictionary, an unknown head, a truncation: refused.
        let mut beyond = record.clone();
        beyond[1] = 2;
        assert!(matches!(
            decode_record(&cpi, &beyond, &layout),
            Err(CoreError::Bucket(BucketError::DictionaryIndex {
                index: 2,
                len: 2
            }))
        ));
        let mut head = record.clone();
        head[0] = 0x08;
        assert!(decode_record(&cpi, &head, &layout).is_err());
        assert!(decode_record(&cpi, &record[..record.len() - 1], &layout).is_err());
        assert!(decode_record(&cpi, &[], &layout).is_err());
        // A name the dictionary lacks cannot be encoded.
        let other = Item::Mapping(m("c.example"));
        assert!(matches!(
            encode_record(&[other], &Dictionaries::of(&layout)),
            Err(CoreError::BucketOverflow(Overflow::Dictionary))
        ));
    }
}
