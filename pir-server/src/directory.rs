//! What one server process serves: one snapshot, or some shards of a DP's sharded directory
//! (its manifest and the shard files it names), loaded, checked and swapped together.
//!
//! ```text
//! --snapshot FILE                 one snapshot: shard 0 of 1
//! --manifest M --shards 0-3,7     the manifest (DP signature checked with --dp-pub), then each
//!                                 shard named: its header must hash to the manifest's entry
//!                                 (checked before its payload is read)
//! --manifest M --shards none      no shard: evaluations (--oprf-key) and GetConfig only
//! ```

use std::{path::Path, str::FromStr, sync::Arc};

use pir_core::{DpKeys, Snapshot, SnapshotHeader, snapshot::Manifest};

use crate::error::ServerError;

/// Which shards of a manifest a process serves (`--shards`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardSelection {
    /// Every shard of the manifest.
    All,
    /// No shard: this process answers evaluations and GetConfig only.
    None,
    /// These shards (ascending, no duplicates).
    Some(Vec<u32>),
}

impl FromStr for ShardSelection {
    type Err = String;

    /// `all`, `none`, or indices and ranges: `3`, `0-3`, `0,2-3,7`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "all" => return Ok(Self::All),
            "none" => return Ok(Self::None),
            _ => {}
        }
        let mut shards = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let bad = || format!("{part:?}: expected a shard index or a range such as 0-3");
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let from: u32 = from.parse().map_err(|_| bad())?;
            let to: u32 = to.parse().map_err(|_| bad())?;
            if to < from || to - from >= pir_core::keyword::ShardPosition::MAX_COUNT {
                return Err(bad());
            }
            shards.extend(from..=to);
        }
        shards.sort_unstable();
        shards.dedup();
        Ok(Self::Some(shards))
    }
}

impl ShardSelection {
    /// The indices selected among `count` shards; an index beyond them is refused.
    fn indices(&self, count: u32) -> Result<Vec<u32>, ServerError> {
        match self {
            Self::All => Ok((0..count).collect()),
            Self::None => Ok(Vec::new()),
            Self::Some(v) => match v.iter().find(|&&i| i >= count) {
                Some(&index) => Err(ServerError::NoSuchShard { index, count }),
                None => Ok(v.clone()),
            },
        }
    }
}

/// A manifest and its bytes as read (what GetConfig sends).
#[derive(Debug)]
pub struct ManifestRef {
    /// The manifest.
    pub manifest: Manifest,
    /// Its file's bytes.
    pub bytes: Vec<u8>,
}

/// A snapshot, or some shards of a manifest, ready to install.
#[derive(Debug)]
pub struct Directory {
    /// The manifest, for a sharded directory.
    pub(crate) manifest: Option<Arc<ManifestRef>>,
    /// The shards served, ascending by index.
    pub(crate) shards: Vec<(u32, Arc<Snapshot>)>,
    /// For a process that serves no shard: a shard's header, so that GetConfig can describe
    /// the directory (its scheme, layout and OPRF key).
    pub(crate) described: Option<(u32, SnapshotHeader)>,
}

impl From<Snapshot> for Directory {
    fn from(snapshot: Snapshot) -> Self {
        let index = snapshot.header().layout.shard.index;
        Self {
            manifest: None,
            shards: vec![(index, Arc::new(snapshot))],
            described: None,
        }
    }
}

impl Directory {
    /// The epoch clients see first: the manifest's, or the one snapshot's.
    pub fn epoch(&self) -> u64 {
        match (&self.manifest, self.shards.first()) {
            (Some(m), _) => m.manifest.epoch,
            (None, Some((_, s))) => s.header().epoch,
            (None, None) => 0,
        }
    }

    /// The shards served, ascending.
    pub fn served(&self) -> Vec<u32> {
        self.shards.iter().map(|(i, _)| *i).collect()
    }

    /// Mappings in the shards served.
    pub fn mapping_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|(_, s)| s.header().mapping_count)
            .sum()
    }

    /// Loads the manifest at `path` and the shards `selection` names. With DP keys the
    /// manifest must verify; each shard's header must be the one the manifest names (checked
    /// before its payload is read). An epoch not above `serving` is refused.
    pub fn load_sharded(
        path: &Path,
        selection: &ShardSelection,
        dp_keys: Option<&DpKeys>,
        serving: Option<u64>,
    ) -> Result<Self, ServerError> {
        // A regular file of bounded size only (`Manifest::load`); its encoding is canonical, so
        // the bytes GetConfig sends are the file's.
        let manifest = Manifest::load(path).map_err(|e| ServerError::Refused {
            path: path.to_path_buf(),
            reason: e,
        })?;
        let bytes = manifest.to_bytes()?;
        if let Some(keys) = dp_keys {
            manifest
                .verify_signature(keys)
                .map_err(|reason| ServerError::Refused {
                    path: path.to_path_buf(),
                    reason,
                })?;
        }
        if let Some(serving) = serving
            && manifest.epoch <= serving
        {
            return Err(ServerError::EpochNotRising {
                path: path.to_path_buf(),
                epoch: manifest.epoch,
                serving,
            });
        }
        let indices = selection.indices(manifest.count())?;
        let shard_path = |i| {
            manifest
                .shard_path(path, i)
                .ok_or(ServerError::NoSuchShard {
                    index: i,
                    count: manifest.count(),
                })
        };
        let mut shards = Vec::with_capacity(indices.len());
        for &i in &indices {
            let file = shard_path(i)?;
            let snapshot = Snapshot::load_verified(&file, |h: &SnapshotHeader| {
                manifest
                    .check_shard(i, h)
                    .map_err(|reason| ServerError::Refused {
                        path: file.clone(),
                        reason,
                    })
            })?;
            shards.push((i, Arc::new(snapshot)));
        }
        let described = if shards.is_empty() {
            let file = shard_path(0)?;
            let header = Snapshot::read_header(&file)?;
            manifest
                .check_shard(0, &header)
                .map_err(|reason| ServerError::Refused {
                    path: file.clone(),
                    reason,
                })?;
            Some((0, header))
        } else {
            None
        };
        Ok(Self {
            manifest: Some(Arc::new(ManifestRef { manifest, bytes })),
            shards,
            described,
        })
    }
}
