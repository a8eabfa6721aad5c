//! The manifest of a sharded directory: which shard files make up one version of it, signed by
//! the DP.
//!
//! ```text
//! file = magic "PIRSHRD\0" || format_version:u32le || body_len:u32le
//!        || body[body_len]        (bincode, little-endian, fixed-width integers: `Manifest`)
//! ```
//!
//! A directory of N shards is N snapshot files (each header says which shard it is, of how
//! many) and one manifest naming them by file name, epoch and header hash. Every shard has the
//! same scheme parameters and OPRF key, so a client's one key set and one evaluation per CPI
//! serve every shard. The manifest's own epoch rises with every version of the directory; a
//! shard an update did not touch keeps its file and its epoch. `pir.v1.GetConfigResponse`
//! carries these bytes, so a client checks a shard server's header against the manifest the DP
//! signed.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use bincode::{Decode, Encode};

use super::header::{DpSignature, SnapshotHeader};
use crate::{
    Snapshot,
    error::{CoreError, ManifestError, Result},
    identity::{DpKey, DpKeys, IssuerId},
    keyword::ShardPosition,
    oprf::{OprfOutput, OprfPublicKey},
    pir::Scheme,
};

/// First bytes of every manifest file.
pub const MANIFEST_MAGIC: [u8; 8] = *b"PIRSHRD\0";
/// Version of the manifest format this build reads and writes.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The manifest's file name in a directory built with `--shards`.
pub const MANIFEST_FILE_NAME: &str = "manifest.pirman";
/// Largest manifest body read (a million shards of about 100 bytes each).
const MAX_MANIFEST_LEN: u32 = 128 << 20;
const MANIFEST_SIG_CONTEXT: &[u8] = b"pir-discovery/shard-manifest/v1\0";

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ MAX_MANIFEST_LEN as usize }>()
}

/// The file name of shard `index` in a fresh build: `shard-00003.pirsnap`.
pub fn shard_file_name(index: u32) -> String {
    format!("shard-{index:05}.pirsnap")
}

/// One shard of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ShardEntry {
    /// The shard's snapshot file, a plain name in the manifest's directory.
    pub file: String,
    /// Its epoch.
    pub epoch: u64,
    /// blake3 of its header bytes (which cover its content through its checksums).
    pub header_hash: [u8; 32],
    /// Mappings it stores.
    pub mapping_count: u64,
    /// CPIs it stores.
    pub cpi_count: u64,
}

/// The DP's list of the shard files that make up one version of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Manifest {
    /// Rises with every version of the directory; at least every shard's epoch.
    pub epoch: u64,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// The scheme every shard uses (one client key set fits them all).
    pub scheme: Scheme,
    /// The DP's OPRF public key every shard is keyed by.
    pub oprf_key: OprfPublicKey,
    /// The shards, shard `i` at index `i`.
    pub shards: Vec<ShardEntry>,
    /// The DP's signature, if signed.
    pub signature: Option<DpSignature>,
}

impl Manifest {
    /// The manifest of these shards (file name and header each, in any order), after checking
    /// that they are exactly shards 0 to N-1 of one directory: the same shard count, scheme and
    /// OPRF key. Its epoch is `epoch`, or the newest shard's when `None`. Unsigned.
    pub fn of_shards(
        shards: Vec<(String, SnapshotHeader)>,
        epoch: Option<u64>,
        created_at: u64,
    ) -> Result<Self> {
        let invalid = |reason| Err(CoreError::manifest(reason));
        let Some((_, first)) = shards.first() else {
            return invalid(ManifestError::NoShards);
        };
        let count = first.layout.shard.count;
        let (scheme, oprf_key) = (first.scheme, first.layout.oprf_key);
        let mut slots: Vec<Option<ShardEntry>> = vec![None; count as usize];
        for (file, h) in &shards {
            let position = h.layout.shard;
            if position.count != count {
                return invalid(ManifestError::ShardCounts {
                    file: file.clone(),
                    found: position.count,
                    expected: count,
                });
            }
            if h.scheme != scheme || h.layout.oprf_key != oprf_key {
                return invalid(ManifestError::ShardShape { file: file.clone() });
            }
            let slot = &mut slots[position.index as usize];
            if let Some(other) = slot {
                return invalid(ManifestError::DuplicateShard {
                    index: position.index,
                    files: [other.file.clone(), file.clone()],
                });
            }
            check_file_name(file)?;
            *slot = Some(ShardEntry {
                file: file.clone(),
                epoch: h.epoch,
                header_hash: h.hash()?,
                mapping_count: h.mapping_count,
                cpi_count: h.cpi_count,
            });
        }
        let missing: Vec<u32> = (0..count)
            .filter(|&i| slots[i as usize].is_none())
            .collect();
        if !missing.is_empty() {
            return invalid(ManifestError::MissingShards { count, missing });
        }
        let shards: Vec<ShardEntry> = slots.into_iter().flatten().collect();
        let newest = shards.iter().map(|s| s.epoch).max().unwrap_or(0);
        let manifest = Self {
            epoch: epoch.unwrap_or(newest),
            created_at,
            scheme,
            oprf_key,
            shards,
            signature: None,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// The manifest of the shard files of a fresh build in `dir` (`shard-NNNNN.pirsnap`, found
    /// by name; only their headers are read).
    pub fn assemble(dir: &Path, epoch: Option<u64>, created_at: u64) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))?;
        let mut shards = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CoreError::io(dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_shard = name
                .strip_prefix("shard-")
                .and_then(|n| n.strip_suffix(".pirsnap"))
                .is_some_and(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()));
            if is_shard {
                shards.push((name, Snapshot::read_header(&entry.path())?));
            }
        }
        Self::of_shards(shards, epoch, created_at).map_err(|e| e.in_file(dir))
    }

    /// Shards in the directory.
    pub fn count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The shard that holds the CPI whose OPRF output is `y`.
    pub fn shard_of(&self, y: &OprfOutput) -> u32 {
        crate::keyword::shard_of(y, self.count())
    }

    /// Mappings in all shards.
    pub fn mapping_count(&self) -> u64 {
        self.shards.iter().map(|s| s.mapping_count).sum()
    }

    /// The path of shard `index`'s file, for a manifest read from `manifest_path`.
    pub fn shard_path(&self, manifest_path: &Path, index: u32) -> Option<PathBuf> {
        let entry = self.shards.get(index as usize)?;
        Some(
            manifest_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(&entry.file),
        )
    }

    /// Checks that `header` is the one this manifest names for shard `index`: its hash (which
    /// covers its content), hence its shard position, scheme and key.
    pub fn check_shard(&self, index: u32, header: &SnapshotHeader) -> Result<()> {
        let entry = self.shards.get(index as usize).ok_or(CoreError::manifest(
            ManifestError::NoSuchShard {
                index,
                count: self.count(),
            },
        ))?;
        if header.hash()? != entry.header_hash
            || header.layout.shard != ShardPosition::new(index, self.count())?
        {
            return Err(CoreError::manifest(ManifestError::ShardDiffers {
                index,
                file: entry.file.clone(),
            }));
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let invalid = |reason| Err(CoreError::manifest(reason));
        if self.shards.is_empty() {
            return invalid(ManifestError::NoShards);
        }
        ShardPosition::new(0, self.count())?;
        self.scheme.validate()?;
        for s in &self.shards {
            check_file_name(&s.file)?;
            if s.epoch > self.epoch {
                return invalid(ManifestError::ShardEpoch {
                    file: s.file.clone(),
                    epoch: s.epoch,
                    manifest: self.epoch,
                });
            }
        }
        Ok(())
    }

    fn body(&self) -> Result<Vec<u8>> {
        bincode::encode_to_vec(self, bincode_config())
            .map_err(|_| CoreError::Internal("a manifest always encodes"))
    }

    /// The file's bytes, signature included: what `pir.v1.GetConfigResponse.manifest` carries.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = self.body()?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&l| l <= MAX_MANIFEST_LEN)
            .ok_or(CoreError::manifest(ManifestError::Length))?;
        Ok([
            &MANIFEST_MAGIC[..],
            &MANIFEST_FORMAT_VERSION.to_le_bytes(),
            &len.to_le_bytes(),
            &body,
        ]
        .concat())
    }

    /// Decodes and checks a manifest (from a file or the wire: nothing is trusted). The DP's
    /// signature is checked separately ([`Self::verify_signature`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let invalid = |reason| Err(CoreError::manifest(reason));
        let Some((preamble, body)) = bytes.split_first_chunk::<16>() else {
            return invalid(ManifestError::Truncated);
        };
        if preamble[..8] != MANIFEST_MAGIC {
            return invalid(ManifestError::BadMagic);
        }
        let version = u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]);
        if version != MANIFEST_FORMAT_VERSION {
            return invalid(ManifestError::Version {
                found: version,
                supported: MANIFEST_FORMAT_VERSION,
            });
        }
        let len = u32::from_le_bytes([preamble[12], preamble[13], preamble[14], preamble[15]]);
        if len > MAX_MANIFEST_LEN {
            return invalid(ManifestError::Length);
        }
        if body.len() != len as usize {
            return invalid(if body.len() < len as usize {
                ManifestError::Truncated
            } else {
                ManifestError::TrailingBytes
            });
        }
        let (manifest, used): (Self, usize) = bincode::decode_from_slice(body, bincode_config())
            .map_err(|e| CoreError::manifest(ManifestError::Decode(e.to_string())))?;
        if used != body.len() {
            return invalid(ManifestError::TrailingBytes);
        }
        manifest.check()?;
        Ok(manifest)
    }

    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
        if !meta.is_file() {
            return Err(CoreError::manifest(ManifestError::NotRegularFile).in_file(path));
        }
        if meta.len() > MAX_MANIFEST_LEN as u64 + 16 {
            return Err(CoreError::manifest(ManifestError::Length).in_file(path));
        }
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// Writes the manifest to `path` (through a temporary file renamed into place), 0640.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::fs::write_atomic(
            path,
            0o640,
            |p: &Path, e| CoreError::io(p, e),
            |w| w.write_all(&bytes).map_err(|e| CoreError::io(path, e)),
        )
    }

    fn signed_message(&self) -> Result<Vec<u8>> {
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        Ok([MANIFEST_SIG_CONTEXT, &unsigned.body()?].concat())
    }

    /// Signs the manifest with the DP's key.
    pub fn sign(&mut self, dp_key: &DpKey) -> Result<()> {
        let message = self.signed_message()?;
        self.signature = Some(DpSignature {
            key_id: dp_key.id().0,
            sig: dp_key.sign_raw(&message),
        });
        Ok(())
    }

    /// Checks the DP's signature against trusted DP keys.
    pub fn verify_signature(&self, dp_keys: &DpKeys) -> Result<()> {
        let sig = self.signature.as_ref().ok_or(CoreError::UnsignedSnapshot)?;
        let key = dp_keys
            .get(&IssuerId(sig.key_id))
            .ok_or(CoreError::UnknownDpKey(IssuerId(sig.key_id)))?;
        key.verify_strict(
            &self.signed_message()?,
            &ed25519_dalek::Signature::from_bytes(&sig.sig),
        )
        .map_err(|_| CoreError::BadSnapshotSignature)
    }
}

/// A shard's file is a plain name beside the manifest: no directories, no way out of it.
fn check_file_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(CoreError::manifest(ManifestError::FileName {
            name: name.to_owned(),
        }));
    }
    Ok(())
}
