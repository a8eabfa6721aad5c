//! `verify`: check a snapshot file completely and its DP signature.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use pir_core::{DpKeys, Snapshot, SnapshotHeader};
use serde::Serialize;

use crate::{error::DpError, report};

/// A snapshot file found intact and signed by a trusted DP key. Displays as `pir-server verify`
/// reports it.
#[derive(Debug, Serialize)]
pub struct Verified {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    #[serde(serialize_with = "report::header")]
    pub header: SnapshotHeader,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: intact, epoch {}, signed by trusted DP key",
            self.path.display(),
            self.header.epoch
        )
    }
}

/// `pir-server verify`: checks a snapshot file completely (structure, checksums: the whole file
/// is loaded) and its DP signature against the keys in `dp_pub`.
pub fn verify(path: &Path, dp_pub: &Path) -> Result<Verified, DpError> {
    let keys = DpKeys::from_file(dp_pub)?;
    let snapshot = Snapshot::load(path)?;
    snapshot
        .header()
        .verify_signature(&keys)
        .map_err(|reason| DpError::Refused {
            path: path.to_path_buf(),
            reason,
        })?;
    Ok(Verified {
        path: path.to_path_buf(),
        header: snapshot.header().clone(),
    })
}
