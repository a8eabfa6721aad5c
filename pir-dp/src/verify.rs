//! `verify`: check a snapshot file completely and its DP signature.

use std::path::Path;

use pir_core::{Snapshot, SnapshotHeader, TrustStore};

use crate::error::DpError;

/// `pir-server verify`: checks a snapshot file completely (structure, checksums: the whole file
/// is loaded) and its DP signature against the keys in `dp_pub`. Returns the header.
pub fn verify(path: &Path, dp_pub: &Path) -> Result<SnapshotHeader, DpError> {
    let keys = TrustStore::from_file(dp_pub)?;
    let snapshot = Snapshot::load(path)?;
    snapshot
        .header()
        .verify_signature(&keys)
        .map_err(|reason| DpError::Refused {
            path: path.to_path_buf(),
            reason,
        })?;
    Ok(snapshot.header().clone())
}
