//! Checking a configuration before it is used: vetted parameters whose messages fit, and with
//! DP keys a signed snapshot header, neither older than nor a fork of the newest one verified.

use pir_core::{DpKeys, Scheme};
use pir_proto::ConfigIn;

use super::options::ClientOptions;
use crate::{
    error::{ClientError, ParamsRefusal, Result, SnapshotRefusal},
    keyfile::{KeyFile, SeenSnapshot},
};

/// Checks a configuration a client is about to use: its parameters, and with DP keys its
/// snapshot. Returns the snapshot to remember (`seen` unchanged without DP keys).
pub(super) fn accept(
    config: &ConfigIn,
    options: &ClientOptions,
    seen: Option<&SeenSnapshot>,
    key_file: Option<&KeyFile>,
) -> Result<Option<SeenSnapshot>> {
    let shard = config.lookup().layout().shard;
    if shard.is_sharded() {
        // Querying one shard of many would report the other shards' CPIs as absent.
        return Err(ClientError::ShardedDirectory {
            shard: shard.index,
            count: shard.count,
        });
    }
    if let Some(dp_keys) = &options.dp_keys {
        let verified = verify_snapshot(config, dp_keys, seen, key_file)?;
        check_params(config.lookup().scheme(), options)?;
        return Ok(Some(verified));
    }
    check_params(config.lookup().scheme(), options)?;
    Ok(seen.copied())
}

/// Checks a configuration's snapshot header against the DP keys, and against the newest
/// snapshot verified before (`seen`): the snapshot to remember once it is accepted.
pub(super) fn verify_snapshot(
    config: &ConfigIn,
    dp_keys: &DpKeys,
    seen: Option<&SeenSnapshot>,
    key_file: Option<&KeyFile>,
) -> Result<SeenSnapshot> {
    let refused = ClientError::SnapshotRefused;
    let (Some(header), Some(hash)) = (config.header(), config.header_hash()) else {
        return Err(refused(SnapshotRefusal::NoHeader));
    };
    header
        .verify_signature(dp_keys)
        .map_err(|e| refused(SnapshotRefusal::Signature(e)))?;
    let offered = SeenSnapshot {
        epoch: header.epoch,
        header_hash: hash,
    };
    not_older(offered, seen, key_file)
}

/// Refuses `offered` when it is older than the newest version verified before (`seen`), or
/// another one of that epoch: the version to remember once it is accepted.
pub(super) fn not_older(
    offered: SeenSnapshot,
    seen: Option<&SeenSnapshot>,
    key_file: Option<&KeyFile>,
) -> Result<SeenSnapshot> {
    let refused = ClientError::SnapshotRefused;
    let key_file = || key_file.map(|f| f.path().to_path_buf());
    match seen {
        Some(seen) if offered.epoch < seen.epoch => Err(refused(SnapshotRefusal::Rollback {
            offered: offered.epoch,
            seen: seen.epoch,
            key_file: key_file(),
        })),
        Some(seen) if offered.epoch == seen.epoch && offered.header_hash != seen.header_hash => {
            Err(refused(SnapshotRefusal::Fork {
                epoch: offered.epoch,
                offered: short_hash(&offered.header_hash),
                seen: short_hash(&seen.header_hash),
                key_file: key_file(),
            }))
        }
        _ => Ok(offered),
    }
}

/// The first 8 bytes of a hash, in hex: enough to tell two headers apart in a message.
fn short_hash(hash: &[u8; 32]) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses parameters that are not vetted (unless allowed) and any whose messages exceed the
/// client's limit, before a key is made for them.
pub(super) fn check_params(params: &Scheme, options: &ClientOptions) -> Result<()> {
    let refused = |reason| ClientError::RefusedParams {
        params: params.to_string(),
        reason,
    };
    // YPIR+SP's parameters are the engine's, whatever its shape: every shape is vetted.
    let vetted = params.spiral().is_none_or(|p| p.as_vetted().is_some());
    if !options.allow_custom_params && !vetted {
        let withdrawn = params.spiral().is_some_and(|p| p.is_withdrawn());
        return Err(refused(if withdrawn {
            ParamsRefusal::Withdrawn
        } else {
            ParamsRefusal::NotVetted
        }));
    }
    let sizes = params.message_sizes()?;
    let limit = options.max_message_bytes as u64;
    for (what, bytes) in [
        ("public keys", sizes.public_keys),
        ("queries", sizes.query),
        ("responses", sizes.response),
    ] {
        // A message of `bytes` plus its protobuf field header must fit.
        if bytes as u64 + 16 > limit {
            return Err(refused(ParamsRefusal::TooLarge {
                what,
                bytes: bytes as u64,
                limit,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pir_core::{SchemeFields, SchemeParams, testing::trust};

    use super::*;

    /// A withdrawn preset (2^10 x 8 KiB with the 1.5 MB keys) is refused by name; the preset
    /// the builder now picks for that shape is taken.
    #[test]
    fn withdrawn_presets_are_refused_by_name() {
        let current = SchemeParams::vetted_presets()
            .map(|p| p.params)
            .find(|p| p.num_items() == 1 << 10 && p.item_bytes == 8192)
            .unwrap();
        let withdrawn = SchemeParams::try_from(SchemeFields {
            t_gsw: 4,
            t_conv: 5,
            t_exp_left: 4,
            t_exp_right: 7,
            ..*current
        })
        .unwrap();
        assert!(withdrawn.is_withdrawn());
        let options = ClientOptions::new(trust());
        let err = check_params(&withdrawn.into(), &options).unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::RefusedParams {
                    reason: ParamsRefusal::Withdrawn,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("rebuild"), "{err}");
        check_params(&current.into(), &options).unwrap();
    }
}
