//! The DP's manifest of a sharded directory, as a client accepts it: signed by the DP keys
//! when the client has them, never older than (nor another of the epoch of) the newest one
//! seen; and a shard endpoint's configuration checked against it.

use pir_core::snapshot::Manifest;
use pir_proto::ConfigIn;
use sha2::{Digest, Sha256};

use super::super::{check::not_older, options::ClientOptions};
use crate::{
    error::{ClientError, Result, ShardRefusal, SnapshotRefusal},
    keyfile::{KeyFile, SeenSnapshot},
};

/// The version of the directory a manifest is, as remembered: its epoch, and SHA-256 of its
/// bytes (in the key file's place for a snapshot's header hash).
pub(super) fn version(manifest: &Manifest) -> Result<SeenSnapshot> {
    Ok(SeenSnapshot {
        epoch: manifest.epoch,
        header_hash: Sha256::digest(manifest.to_bytes()?).into(),
    })
}

/// Accepts a manifest: with DP keys, its signature; then that it is not older than `seen`
/// (nor another of its epoch). Returns the version to remember.
pub(super) fn accept(
    manifest: &Manifest,
    options: &ClientOptions,
    seen: Option<&SeenSnapshot>,
    key_file: Option<&KeyFile>,
) -> Result<SeenSnapshot> {
    if let Some(dp_keys) = &options.dp_keys {
        manifest
            .verify_signature(dp_keys)
            .map_err(|e| ClientError::SnapshotRefused(SnapshotRefusal::ManifestSignature(e)))?;
    }
    not_older(version(manifest)?, seen, key_file)
}

/// What a shard endpoint's configuration says about the directory.
pub(super) enum Offered<'a> {
    /// The manifest this client follows: the configuration is that shard's.
    Same,
    /// A newer manifest of the same shape (accepted by the caller with [`accept`]).
    Newer(&'a Manifest),
}

/// Checks the configuration an endpoint gave for shard `shard` against `ours`: a shard's
/// (with its manifest, which `ConfigIn` checked names its header), the one asked for, and of
/// our manifest or a newer one of the same shard count, scheme and OPRF key.
pub(super) fn offered<'a>(
    config: &'a ConfigIn,
    shard: u32,
    ours: &Manifest,
    url: &str,
) -> Result<Offered<'a>> {
    let refused = |reason| ClientError::ShardRefused {
        shard,
        url: url.to_owned(),
        reason,
    };
    let Some(theirs) = config.manifest() else {
        return Err(refused(ShardRefusal::NoManifest));
    };
    let got = config.lookup().layout().shard.index;
    if got != shard {
        return Err(refused(ShardRefusal::OtherShard { got }));
    }
    if theirs == ours {
        return Ok(Offered::Same);
    }
    if theirs.epoch < ours.epoch {
        return Err(refused(ShardRefusal::OlderManifest {
            offered: theirs.epoch,
            seen: ours.epoch,
        }));
    }
    if theirs.epoch == ours.epoch {
        return Err(refused(ShardRefusal::ManifestFork { epoch: ours.epoch }));
    }
    if (theirs.count(), theirs.scheme, theirs.oprf_key)
        != (ours.count(), ours.scheme, ours.oprf_key)
    {
        return Err(refused(ShardRefusal::Rebuilt {
            epoch: theirs.epoch,
        }));
    }
    Ok(Offered::Newer(theirs))
}
