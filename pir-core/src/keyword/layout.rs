//! The keyword layout: which bucket (PIR item) holds a CPI, and the short tag that tells its
//! entries apart from other CPIs' in that bucket.
//!
//! One function, [`KeywordLayout::locate`], used by the builder and the client alike:
//!
//! ```text
//! h      = SHA-256("pir-discovery/keyword/v1\0" || salt[32] || cpi)
//! bucket = (u64_le(h[0..8]) * num_buckets) >> 64        (128-bit integer product)
//! tag    = h[8..16]
//! ```
//!
//! Integer maths only, so every platform and language agrees; the answers are pinned in
//! `test_vectors/keyword_layout.json`.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::{
    error::{CoreError, LayoutError, Result},
    identity::Cpi,
};

/// Version of the keyword-to-bucket function.
pub const LAYOUT_VERSION: u32 = 1;
const LAYOUT_CONTEXT: &[u8] = b"pir-discovery/keyword/v1\0";

/// Index of a bucket, which is also the index of the PIR item that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketIndex(pub u32);

/// Short per-CPI tag that marks a CPI's entries inside its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub [u8; 8]);

/// Where a CPI lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Its bucket.
    pub bucket: BucketIndex,
    /// Its tag within the bucket.
    pub tag: Tag,
}

/// The parameters of the keyword-to-bucket function for one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct KeywordLayout {
    /// [`LAYOUT_VERSION`] when built.
    pub version: u32,
    /// Per-snapshot hashing salt.
    pub salt: [u8; 32],
    /// Number of buckets (equal to the number of PIR items).
    pub num_buckets: u32,
}

impl KeywordLayout {
    /// A layout of the current version.
    pub fn new(salt: [u8; 32], num_buckets: u32) -> Result<Self> {
        let layout = Self {
            version: LAYOUT_VERSION,
            salt,
            num_buckets,
        };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks the version and bucket count.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(CoreError::Layout)
    }

    /// [`KeywordLayout::validate`], with the bare reason.
    pub(crate) fn check(&self) -> Result<(), LayoutError> {
        if self.version != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                found: self.version,
                supported: LAYOUT_VERSION,
            });
        }
        if self.num_buckets == 0 {
            return Err(LayoutError::ZeroBuckets);
        }
        Ok(())
    }

    /// The bucket and tag of a CPI.
    pub fn locate(&self, cpi: &Cpi) -> Location {
        let h = Sha256::new()
            .chain_update(LAYOUT_CONTEXT)
            .chain_update(self.salt)
            .chain_update(cpi.as_bytes())
            .finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&h[..8]);
        let x = u64::from_le_bytes(word) as u128;
        let bucket = ((x * self.num_buckets as u128) >> 64) as u32;
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&h[8..16]);
        Location {
            bucket: BucketIndex(bucket),
            tag: Tag(tag),
        }
    }
}
