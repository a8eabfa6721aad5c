//! The delta feed: a JSON Lines file the prover appends to and the DP's `update --delta` reads.
//! Each line is a delta line of `docs/mapping-format.md` section 4.4: an issued mapping (an
//! upsert) or a removal `{"remove":{"cpi":…,"msp":…}}` when a mapping is revoked or expires.
//!
//! A line is appended (one `write` of the whole line, `O_APPEND`) and synced before the
//! request that made it is answered or the state store records it, so a crash can at worst
//! leave a line whose effect the store does not show yet; applying it again is harmless, since
//! replaying the whole feed is idempotent (an upsert replaces the same mapping, a removal of
//! nothing removes nothing). A DP may apply the whole feed to every build, or only the lines
//! past the last one it applied.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use pir_core::identity::DeltaLine;

/// The feed file, opened for appending.
#[derive(Debug)]
pub struct Feed {
    path: PathBuf,
    file: Mutex<File>,
}

/// Appending to the feed failed.
#[derive(Debug, thiserror::Error)]
#[error("delta feed {path}: {source}")]
pub struct FeedError {
    path: String,
    source: std::io::Error,
}

impl Feed {
    /// Opens `path` for appending, creating it (mode 0644: the feed holds signed mappings that
    /// the DP publishes anyway).
    pub fn open(path: &Path) -> Result<Self, FeedError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .map_err(|source| FeedError {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// The feed's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and syncs it to disk.
    pub fn append(&self, line: &DeltaLine) -> Result<(), FeedError> {
        let mut text = line.to_json_line();
        text.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|source| FeedError {
                path: self.path.display().to_string(),
                source,
            })
    }
}
