//! Entry points into internal decoders, for fuzz targets and hostile-input tests only.
//!
//! Not part of the supported API: names and signatures may change at any time.

use crate::{
    Cpi, Mapping, Result,
    keyword::{bucket, entry},
};

/// Decodes a bucket's bytes into its slots of `slot_len` bytes; returns how many there are.
pub fn decode_bucket(item: &[u8], slot_len: usize) -> Result<usize> {
    Ok(bucket::decode_bucket(item, slot_len)?.len())
}

/// Decodes an opened record for a known CPI; returns how many statements it holds.
pub fn decode_record(cpi: &Cpi, record: &[u8]) -> Result<usize> {
    Ok(entry::decode_record(cpi, record)?.len())
}

/// Decodes a compact mapping for a known CPI.
pub fn decode_compact(cpi: &Cpi, bytes: &[u8]) -> Result<Mapping> {
    bucket::decode_compact(cpi, bytes)
}

/// Encodes a mapping in its compact form.
pub fn encode_compact(mapping: &Mapping) -> Vec<u8> {
    bucket::encode_compact(mapping)
}
