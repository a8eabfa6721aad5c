//! Entry points into internal decoders, for fuzz targets and hostile-input tests only.
//!
//! Not part of the supported API: names and signatures may change at any time.

use crate::{
    Cpi, KeywordLayout, Result,
    keyword::{
        bucket::Bucket,
        entry::{self, Dictionaries},
    },
};

/// Decodes a bucket's bytes; returns how many records it holds.
pub fn decode_bucket(item: &[u8]) -> Result<usize> {
    Ok(Bucket::decode(item)?.len())
}

/// Decodes an opened record for a known CPI with `layout`'s dictionaries; returns how many
/// statements it holds.
pub fn decode_record(cpi: &Cpi, record: &[u8], layout: &KeywordLayout) -> Result<usize> {
    Ok(entry::decode_record(cpi, record, layout)?.len())
}

/// Decodes an opened record and encodes its statements again (the encoding is canonical: a
/// record that decodes re-encodes to its own bytes).
pub fn reencode_record(cpi: &Cpi, record: &[u8], layout: &KeywordLayout) -> Result<Vec<u8>> {
    let items = entry::decode_record(cpi, record, layout)?;
    entry::encode_record(&items, &Dictionaries::of(layout))
}

/// The record of `mappings` (at least one) with `layout`'s dictionaries.
pub fn encode_record(mappings: &[crate::Mapping], layout: &KeywordLayout) -> Result<Vec<u8>> {
    let items: Vec<entry::Item> = mappings.iter().cloned().map(entry::Item::Mapping).collect();
    entry::encode_record(&items, &Dictionaries::of(layout))
}
