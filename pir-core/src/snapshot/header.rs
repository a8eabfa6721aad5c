//! What a snapshot says about itself: the header, its fixed binary encoding, and the reference a
//! delta keeps to its base.

use bincode::{Decode, Encode};

use crate::{
    error::{CoreError, Result},
    keyword::KeywordLayout,
    pir::SchemeParams,
};

pub(super) const MAX_HEADER_LEN: u32 = 1 << 20;

pub(super) fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ MAX_HEADER_LEN as usize }>()
}

/// A DP's signature over the header (reserved for provenance).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DpSignature {
    /// Id of the DP's key.
    pub key_id: [u8; 8],
    /// Ed25519 signature.
    pub sig: [u8; 64],
}

/// What a snapshot says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotHeader {
    /// Spiral parameters of the database.
    pub scheme: SchemeParams,
    /// Keyword-to-bucket layout.
    pub layout: KeywordLayout,
    /// Version of the content; clients quote it with each query.
    pub epoch: u64,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Mappings stored.
    pub mapping_count: u64,
    /// Distinct CPIs stored.
    pub cpi_count: u64,
    /// Bytes of bucket entries (tags, lengths and compact mappings).
    pub record_bytes: u64,
    /// For a delta file: the full snapshot it applies to. `None` for a full file.
    pub base: Option<BaseRef>,
    /// blake3 of the file's bucket plaintext (a delta's: its item count, indices and buckets).
    pub plaintext_checksum: [u8; 32],
    /// blake3 of the file's database words (a delta's: its items' words).
    pub db_checksum: [u8; 32],
    /// The DP's signature, if signed.
    pub signature: Option<DpSignature>,
}

/// The full snapshot a delta file applies to.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BaseRef {
    /// Its file name, in the delta file's directory.
    pub file: String,
    /// Its epoch.
    pub epoch: u64,
    /// blake3 of its header bytes, which cover its content through its checksums.
    pub header_hash: [u8; 32],
}

impl SnapshotHeader {
    /// Record bytes over database capacity.
    pub fn packing_efficiency(&self) -> f64 {
        self.record_bytes as f64 / self.scheme.capacity_bytes() as f64
    }
}

pub(super) fn encode_header(h: &SnapshotHeader) -> Result<Vec<u8>> {
    bincode::encode_to_vec(h, bincode_config())
        .map_err(|_| CoreError::Internal("a header always encodes"))
}
