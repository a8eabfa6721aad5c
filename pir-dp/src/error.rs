//! The crate's one error type.

use std::{fmt, path::PathBuf};

use pir_core::CoreError;

use crate::epochs::EpochFloor;

/// Everything that can go wrong in the DP's tooling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// Lines of a mappings or delta file that failed validation (none are left out unless asked).
    #[error("{} invalid line(s) in {}:\n{}", lines.len(), file.display(), InvalidLinesDetails(lines))]
    InvalidLines {
        /// The file.
        file: PathBuf,
        /// Every line that failed, in file order.
        lines: Vec<InvalidLine>,
    },
    /// A file could not be opened, created, read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done to the file.
        op: IoOp,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An update asked to write a delta away from the snapshot it applies to (a delta names its
    /// base by file name, in its own directory).
    #[error(
        "a delta is written beside the snapshot it applies to: put {} in the directory of {}, \
         or use --full",
        out.display(),
        snapshot.display()
    )]
    DeltaNotBeside {
        /// Where the delta was to be written.
        out: PathBuf,
        /// The snapshot it applies to.
        snapshot: PathBuf,
    },
    /// A snapshot that is intact but not signed by one of the trusted DP keys.
    #[error("refused: {}: {reason}; {}", path.display(), RefusalHint { reason, dp_pub })]
    Refused {
        /// The snapshot file.
        path: PathBuf,
        /// Why its signature does not count (unsigned, unknown key, bad signature).
        reason: Box<CoreError>,
        /// The file of trusted DP keys it was checked against (`--dp-pub`).
        dp_pub: PathBuf,
    },
    /// A key file that exists, without leave to overwrite it.
    #[error("{} already exists: pass --force to overwrite it (the key in it is then lost)", path.display())]
    KeyFileExists {
        /// The secret key file.
        path: PathBuf,
    },
    /// An output file in a directory that does not exist.
    #[error("cannot write {}: the directory {} does not exist (create it first)", out.display(), dir.display())]
    NoSuchDirectory {
        /// The file to write.
        out: PathBuf,
        /// Its missing directory.
        dir: PathBuf,
    },
    /// An update asked to write over a snapshot file it reads.
    #[error(
        "refusing to write {}, which this update reads: write to a new name and rename it into \
         place once written (a delta needs the file it applies to, so a delta written over it \
         destroys both)",
        OverInput { out, input }
    )]
    OutputIsInput {
        /// Where the new snapshot was to be written.
        out: PathBuf,
        /// The snapshot (or its base) that the update reads, the same file.
        input: PathBuf,
    },
    // ---- epochs only rise, and what is signed is verified (issue 15, items 4 and 9) ----------
    /// An `--epoch` not above that of a snapshot the new one follows: a server serving that one
    /// refuses it, and the same epoch with a new salt would make clients' lookups fail silently.
    #[error(
        "--epoch {epoch} is not above epoch {floor} of {} ({role}): give a higher --epoch, or \
         leave it out (the default is the later of now and {})",
        path.display(),
        floor.saturating_add(1)
    )]
    EpochNotRising {
        /// The epoch asked for.
        epoch: u64,
        /// The epoch it must rise above.
        floor: u64,
        /// The snapshot holding that epoch.
        path: PathBuf,
        /// What that snapshot is to this one.
        role: EpochFloor,
    },
    /// `update --dp-key` without `--dp-pub`: the signature would vouch for everything carried
    /// over from a snapshot nobody checked.
    #[error(
        "update --dp-key signs the new snapshot, which vouches for everything it carries over \
         from {}: pass the DP's public keys with --dp-pub so that it is verified first",
        snapshot.display()
    )]
    SigningUnverified {
        /// The snapshot the update starts from.
        snapshot: PathBuf,
    },
    /// `build --shard-index` without `--epoch`: every machine building a shard of one directory
    /// must use the same epoch, or the shards will not make one manifest.
    #[error(
        "build --shard-index needs --epoch: every shard of one build must have the same epoch \
         (and --shards), or their manifest cannot be assembled"
    )]
    ShardIndexNeedsEpoch,

    /// An engine error (key and trust files, snapshot files, building, updating).
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl DpError {
    /// True when a snapshot failed a check: damaged (structure, checksums, a delta without its
    /// base) or not signed by a trusted DP key. `pir-server` exits with its own code for these.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Refused { .. } => true,
            Self::Core(e) => matches!(
                e,
                CoreError::Snapshot { .. }
                    | CoreError::Manifest { .. }
                    | CoreError::UnsignedSnapshot
                    | CoreError::UnknownDpKey(_)
                    | CoreError::BadSnapshotSignature
            ),
            _ => false,
        }
    }

    pub(crate) fn io(op: IoOp, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What was being done to a file when an I/O error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoOp {
    /// Opening it for reading.
    Opening,
    /// Creating it.
    Creating,
    /// Reading it (or its metadata).
    Reading,
    /// Writing it.
    Writing,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Opening => "opening",
            Self::Creating => "creating",
            Self::Reading => "reading",
            Self::Writing => "writing",
        })
    }
}

/// One line of an input file that failed validation.
#[derive(Debug)]
pub struct InvalidLine {
    /// Its line number, from 1.
    pub line: usize,
    /// Why it was refused.
    pub reason: CoreError,
}

/// Lines shown in an [`DpError::InvalidLines`] message; the rest are counted.
const SHOWN: usize = 20;

/// The indented details of [`DpError::InvalidLines`]: the first lines, a count of the rest, and
/// the remedy.
struct InvalidLinesDetails<'a>(&'a [InvalidLine]);

impl fmt::Display for InvalidLinesDetails<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.0.iter().take(SHOWN) {
            writeln!(f, "  line {}: {}", l.line, l.reason)?;
        }
        if self.0.len() > SHOWN {
            writeln!(f, "  ... and {} more", self.0.len() - SHOWN)?;
        }
        f.write_str("  (use --skip-invalid to build without them)")
    }
}

/// What to do about a [`DpError::Refused`].
struct RefusalHint<'a> {
    reason: &'a CoreError,
    dp_pub: &'a PathBuf,
}

impl fmt::Display for RefusalHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dp_pub = self.dp_pub.display();
        match self.reason {
            CoreError::UnknownDpKey(_) => write!(
                f,
                "{dp_pub} does not hold that key: pass the DP's public key with --dp-pub"
            ),
            CoreError::UnsignedSnapshot => f.write_str(
                "sign it with --dp-key when building, or leave out --dp-pub to check only its \
                 structure and checksums",
            ),
            _ => f.write_str(
                "the header was changed after it was signed: rebuild the snapshot, or restore \
                 the file the DP signed",
            ),
        }
    }
}

/// `out` of [`DpError::OutputIsInput`], and the input it is when spelt otherwise.
struct OverInput<'a> {
    out: &'a PathBuf,
    input: &'a PathBuf,
}

impl fmt::Display for OverInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.out.display())?;
        if self.out != self.input {
            write!(f, " (the same file as {})", self.input.display())?;
        }
        Ok(())
    }
}
