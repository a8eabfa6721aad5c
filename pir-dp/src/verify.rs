//! `verify`: check a snapshot file completely and, given trusted DP keys, its DP signature.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use pir_core::{SnapshotHeader, identity::IssuerId};
use serde::Serialize;

use crate::{error::DpError, progress::load_snapshot, report};

/// What was found of the DP's signature (serialised `trusted` or `not_checked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DpSignature {
    /// Signed by one of the trusted DP keys.
    Trusted,
    /// Not checked: no trusted DP keys were given (the header says whether it is signed).
    NotChecked,
}

/// A snapshot file found intact (structure and checksums), and what is known of its DP
/// signature. Displays as `pir-server verify` reports it.
#[derive(Debug, Serialize)]
pub struct Verified {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    #[serde(serialize_with = "report::header")]
    pub header: SnapshotHeader,
    /// Whether its DP signature was checked.
    pub dp_signature: DpSignature,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: intact (structure and checksums), epoch {}, ",
            self.path.display(),
            self.header.epoch
        )?;
        let key = self.header.signature.as_ref().map(|s| IssuerId(s.key_id));
        match (self.dp_signature, key) {
            (DpSignature::Trusted, Some(key)) => write!(f, "signed by trusted DP key {key}"),
            (DpSignature::Trusted, None) => f.write_str("signed by a trusted DP key"),
            (DpSignature::NotChecked, Some(key)) => write!(
                f,
                "signed by DP key {key}; the signature was NOT checked (pass --dp-pub to check it)"
            ),
            (DpSignature::NotChecked, None) => f.write_str(
                "not signed by a DP key; no signature was checked (sign with build --dp-key)",
            ),
        }
    }
}

/// `pir-server verify`: checks a snapshot file completely (structure, checksums: the whole file
/// is loaded, a delta with its base) and, when `dp_pub` is given, its DP signature against the
/// keys in it. With `progress`, shows the loading.
pub fn verify(path: &Path, dp_pub: Option<&Path>, progress: bool) -> Result<Verified, DpError> {
    let keys = dp_pub.map(crate::keys::read_dp_pub).transpose()?;
    let snapshot = load_snapshot(path, true, progress)?;
    let dp_signature = match (&keys, dp_pub) {
        (Some(keys), Some(dp_pub)) => {
            snapshot
                .header()
                .verify_signature(keys)
                .map_err(|reason| DpError::Refused {
                    path: path.to_path_buf(),
                    reason: Box::new(reason),
                    dp_pub: dp_pub.to_path_buf(),
                })?;
            DpSignature::Trusted
        }
        _ => DpSignature::NotChecked,
    };
    Ok(Verified {
        path: path.to_path_buf(),
        header: snapshot.header().clone(),
        dp_signature,
    })
}
