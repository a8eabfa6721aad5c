//! Entry points into internal decoders, for fuzz targets and hostile-input tests only.
//!
//! Not part of the supported API: names and signatures may change at any time.

use crate::{Cpi, Mapping, Result, keyword::bucket};

/// Decodes a bucket's plaintext into its entries; returns how many there are.
pub fn decode_bucket(item: &[u8]) -> Result<usize> {
    Ok(bucket::decode_bucket(item)?.len())
}

/// Decodes a compact bucket entry for a known CPI.
pub fn decode_compact(cpi: &Cpi, bytes: &[u8]) -> Result<Mapping> {
    bucket::decode_compact(cpi, bytes)
}

/// Encodes a mapping as a compact bucket entry.
pub fn encode_compact(mapping: &Mapping) -> Vec<u8> {
    bucket::encode_compact(mapping)
}

/// Reads an entry's MSP and expiry without its CPI.
pub fn compact_msp_and_expiry(bytes: &[u8]) -> Result<(Vec<u8>, u64)> {
    let (msp, expiry) = bucket::compact_msp_and_expiry(bytes)?;
    Ok((msp.to_vec(), expiry))
}
