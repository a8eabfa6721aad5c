//! What a snapshot says about itself: the header, its fixed binary encoding, and the reference a
//! delta keeps to its base.

use bincode::{Decode, Encode};

use crate::{
    error::{CoreError, Result, SnapshotError},
    keyword::{KeywordLayout, LookupConfig},
    pir::Scheme,
};

/// Largest header: room for a choice table of [`crate::keyword::MAX_GROUPS`] groups (1 MiB)
/// and full dictionaries. A shard of 1M mappings has a header of about 50 KB.
pub(super) const MAX_HEADER_LEN: u32 = 4 << 20;

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
    /// The database's engine and shape.
    pub scheme: Scheme,
    /// Keyword-to-bucket layout.
    pub layout: KeywordLayout,
    /// Version of the content; clients quote it with each query.
    pub epoch: u64,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Mappings stored.
    pub mapping_count: u64,
    /// Opt-outs stored.
    pub opt_out_count: u64,
    /// Distinct CPIs stored (with mappings or an opt-out).
    pub cpi_count: u64,
    /// Bytes the buckets fill, in all items: their headers, locators and sealed records.
    pub bucket_bytes: u64,
    /// Bytes of the CPIs' records before padding and sealing: what the database holds that a
    /// client can use.
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

    /// The header's fixed encoding, signature included: the bytes a snapshot file holds and
    /// `pir.v1.GetConfigResponse.snapshot_header` carries.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode_header(self)
    }

    /// Decodes and checks a header's fixed encoding (from the wire: nothing is trusted): its
    /// length, its parameters, that nothing follows its fields, and that its layout fits its
    /// parameters. The DP's signature is checked separately ([`Self::verify_signature`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let invalid = CoreError::snapshot;
        if bytes.len() > MAX_HEADER_LEN as usize {
            return Err(invalid(SnapshotError::HeaderLength));
        }
        // The header opens with the scheme in its fixed encoding: check it first, so that a
        // bad shape is reported as such rather than as an undecodable header.
        if let Some(scheme) = bytes.first_chunk::<{ Scheme::ENCODED_LEN }>() {
            Scheme::check_le_bytes(scheme).map_err(|e| invalid(SnapshotError::Params(e)))?;
        }
        let (header, used): (Self, usize) = bincode::decode_from_slice(bytes, bincode_config())
            .map_err(|e| invalid(SnapshotError::HeaderDecode(e)))?;
        if used != bytes.len() {
            return Err(invalid(SnapshotError::HeaderTrailingBytes));
        }
        LookupConfig::new(header.scheme, header.layout.clone(), header.epoch).map_err(|e| {
            invalid(match e {
                CoreError::Layout(reason) => SnapshotError::Layout(reason),
                _ => SnapshotError::BucketCount,
            })
        })?;
        Ok(header)
    }

    /// blake3 of [`Self::to_bytes`]: the hash a snapshot file stores after its header, which a
    /// delta names its base by, and which identifies a snapshot to a client (two builds with
    /// the same epoch have different hashes).
    pub fn hash(&self) -> Result<[u8; 32]> {
        Ok(Self::hash_bytes(&self.to_bytes()?))
    }

    /// blake3 of a header's encoding, as [`Self::hash`].
    pub fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
        *blake3::hash(bytes).as_bytes()
    }
}

pub(super) fn encode_header(h: &SnapshotHeader) -> Result<Vec<u8>> {
    bincode::encode_to_vec(h, bincode_config())
        .map_err(|_| CoreError::Internal("a header always encodes"))
}
