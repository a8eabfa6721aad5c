//! Epochs only rise. A server refuses a snapshot whose epoch is not above the one it serves, and
//! two builds under one epoch (each with its own salt) would make a long-lived client look CPIs
//! up in the wrong layout, silently. So `build` and `update` refuse an `--epoch` that is not
//! above the snapshots the new one follows, and by default pick one that is:
//!
//! ```text
//! update:  floor = epoch of --snapshot, and of --out if it exists
//! build:   floor = epoch of --out if it exists, and of --replaces (the snapshot served today)
//! epoch  = --epoch, refused unless above the floor; by default the later of now and floor + 1
//! ```

use std::{fmt, path::Path, path::PathBuf};

use pir_core::Snapshot;

use crate::error::DpError;

/// Which snapshot an epoch must rise above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpochFloor {
    /// The snapshot an update starts from (`--snapshot`).
    Updated,
    /// The snapshot already at `--out`, which the new one replaces.
    Out,
    /// The snapshot named by `build --replaces`.
    Replaces,
}

impl fmt::Display for EpochFloor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Updated => "the snapshot this update starts from",
            Self::Out => "which --out would replace",
            Self::Replaces => "named by --replaces",
        })
    }
}

/// An epoch the new snapshot must rise above, and where it comes from.
#[derive(Clone, Debug)]
pub(crate) struct Floor {
    epoch: u64,
    path: PathBuf,
    role: EpochFloor,
}

impl Floor {
    /// The epoch of `path`'s header (read only: fast), as `role`.
    pub(crate) fn of(path: &Path, role: EpochFloor) -> Result<Self, DpError> {
        Ok(Self::known(Snapshot::read_header(path)?.epoch, path, role))
    }

    /// `epoch`, already read from `path`'s header.
    pub(crate) fn known(epoch: u64, path: &Path, role: EpochFloor) -> Self {
        Self {
            epoch,
            path: path.to_path_buf(),
            role,
        }
    }

    /// The snapshot at `out`, if there is one to replace. An `--out` that does not read as a
    /// snapshot (missing, damaged, not a regular file) has no epoch to rise above: it is
    /// replaced as before.
    pub(crate) fn existing_out(out: &Path) -> Option<Self> {
        Self::of(out, EpochFloor::Out).ok()
    }
}

/// The new snapshot's epoch: `explicit` if above every floor (else refused), by default the
/// later of `now` and the highest floor + 1.
pub(crate) fn choose(
    explicit: Option<u64>,
    now: u64,
    floors: impl IntoIterator<Item = Floor>,
) -> Result<u64, DpError> {
    let highest = floors.into_iter().max_by_key(|f| f.epoch);
    let refuse = |epoch: u64, floor: Floor| DpError::EpochNotRising {
        epoch,
        floor: floor.epoch,
        path: floor.path,
        role: floor.role,
    };
    match (explicit, highest) {
        (Some(epoch), Some(floor)) if epoch <= floor.epoch => Err(refuse(epoch, floor)),
        (Some(epoch), _) => Ok(epoch),
        (None, None) => Ok(now),
        (None, Some(floor)) => match floor.epoch.checked_add(1) {
            Some(next) => Ok(now.max(next)),
            None => Err(refuse(floor.epoch, floor)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(epoch: u64) -> Floor {
        Floor::known(epoch, Path::new("db.pirsnap"), EpochFloor::Out)
    }

    #[test]
    fn an_explicit_epoch_must_rise_above_every_floor() {
        assert_eq!(choose(Some(5), 100, []).unwrap(), 5);
        assert_eq!(choose(Some(21), 100, [floor(20), floor(3)]).unwrap(), 21);
        for epoch in [20, 19, 0] {
            let err = choose(Some(epoch), 100, [floor(3), floor(20)]).unwrap_err();
            assert!(
                matches!(err, DpError::EpochNotRising { floor: 20, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn the_default_is_now_or_just_above_the_highest_floor() {
        assert_eq!(choose(None, 100, []).unwrap(), 100);
        assert_eq!(choose(None, 100, [floor(20)]).unwrap(), 100);
        assert_eq!(choose(None, 100, [floor(100)]).unwrap(), 101);
        assert_eq!(choose(None, 100, [floor(500), floor(7)]).unwrap(), 501);
        assert!(choose(None, 100, [floor(u64::MAX)]).is_err());
    }
}
