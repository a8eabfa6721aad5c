//! The DP's signature over a snapshot header, which covers the content through its checksums.

use super::{
    Snapshot,
    header::{DpSignature, SnapshotHeader, encode_header},
};
use crate::{
    error::{CoreError, Result},
    identity::{DpKey, DpKeys, IssuerId},
};

const HEADER_SIG_CONTEXT: &[u8] = b"pir-discovery/snapshot-header/v1\0";

impl Snapshot {
    /// Signs the header (which covers the content through its checksum) with the DP's key.
    pub fn sign(&mut self, dp_key: &DpKey) -> Result<()> {
        self.header.signature = None;
        let message = [HEADER_SIG_CONTEXT, &encode_header(&self.header)?].concat();
        self.header.signature = Some(DpSignature {
            key_id: dp_key.id().0,
            sig: dp_key.sign_raw(&message),
        });
        Ok(())
    }
}

impl SnapshotHeader {
    /// Checks the DP's signature against trusted DP keys.
    pub fn verify_signature(&self, dp_keys: &DpKeys) -> Result<()> {
        let sig = self.signature.as_ref().ok_or(CoreError::UnsignedSnapshot)?;
        let key = dp_keys
            .get(&IssuerId(sig.key_id))
            .ok_or(CoreError::UnknownDpKey(IssuerId(sig.key_id)))?;
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        let message = [HEADER_SIG_CONTEXT, &encode_header(&unsigned)?].concat();
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig.sig))
            .map_err(|_| CoreError::BadSnapshotSignature)
    }
}
