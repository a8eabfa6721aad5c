//! Progress that long steps show on a terminal: bars over items or bytes, and a spinner for a
//! step that cannot count. indicatif draws on stderr only when it is a terminal, so pipes,
//! journald and `docker logs` get no escape codes.

use std::{fs::File, io::BufReader, path::Path, time::Duration};

use indicatif::{ProgressBar, ProgressBarIter, ProgressStyle};
use pir_core::{CoreError, Snapshot};

use crate::error::{DpError, IoOp};

const ITEMS: &str = "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta} left)";
const BYTES: &str =
    "{msg:>10} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({eta} left)";
const SPINNER: &str = "{spinner} {msg} [{elapsed_precise}]";

fn styled(bar: ProgressBar, template: &str, what: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Progress bar over `total` items, hidden when not wanted.
pub fn progress_bar(total: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    styled(ProgressBar::new(total), ITEMS, what)
}

/// Progress bar over `total` bytes, hidden when not wanted.
fn bytes_bar(total: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    styled(ProgressBar::new(total), BYTES, what)
}

/// A spinner with the elapsed time, for a step whose size is not known.
pub(crate) fn spinner(show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = styled(ProgressBar::new_spinner(), SPINNER, what);
    // No ticking thread when nothing would be drawn.
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

/// Opens a file to read behind a bar over its bytes; returns the reader, the bar and the
/// file's length.
pub(crate) fn open_behind_bar(
    path: &Path,
    show: bool,
    what: &str,
) -> Result<(ProgressBarIter<File>, ProgressBar, u64), DpError> {
    let file = File::open(path).map_err(|e| DpError::io(IoOp::Opening, path, e))?;
    let len = file
        .metadata()
        .map_err(|e| DpError::io(IoOp::Reading, path, e))?
        .len();
    let bar = bytes_bar(len, show, what);
    Ok((bar.wrap_read(file), bar, len))
}

/// Turns a spinner into a bar over `total` items (once the total is known).
pub(crate) fn count_on(bar: &ProgressBar, total: u64) {
    if bar.length() != Some(total) {
        bar.disable_steady_tick();
        if let Ok(style) = ProgressStyle::with_template(ITEMS) {
            bar.set_style(style);
        }
        bar.set_length(total);
    }
}

/// Loads a snapshot (`with_db`: the whole database, else only what an update needs), checking
/// structure and checksums as [`Snapshot::load`] does. A full file streams through a bar over
/// its bytes; a delta (which loads its base too) and a buckets-only load show a spinner.
pub(crate) fn load_snapshot(path: &Path, with_db: bool, show: bool) -> Result<Snapshot, DpError> {
    if with_db && Snapshot::read_header(path)?.base.is_none() {
        let (reader, bar, len) = open_behind_bar(path, show, "loading")?;
        let reader = BufReader::with_capacity(1 << 22, reader);
        let loaded = Snapshot::read_from(reader, len).map_err(|e| naming(e, path));
        bar.finish_and_clear();
        return Ok(loaded?);
    }
    let bar = spinner(show, &format!("loading {}", path.display()));
    let loaded = if with_db {
        Snapshot::load(path)
    } else {
        Snapshot::load_plaintext(path)
    };
    bar.finish_and_clear();
    Ok(loaded?)
}

/// Names the file in an error from reading a stream, as [`Snapshot::load`] does.
fn naming(e: CoreError, path: &Path) -> CoreError {
    match e {
        CoreError::Snapshot { path: None, reason } => CoreError::Snapshot {
            path: Some(path.to_path_buf()),
            reason,
        },
        CoreError::Io { source, .. } => CoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use pir_core::{error::SnapshotError, testing};

    use super::*;

    #[test]
    fn a_spinner_becomes_a_bar_once_the_count_is_known() {
        let bar = spinner(true, "laying out");
        assert_eq!(bar.length(), None);
        count_on(&bar, 256);
        assert_eq!(bar.length(), Some(256));
    }

    /// Loading through the bar checks what [`Snapshot::load`] checks, and names the file.
    #[test]
    fn loading_with_progress_is_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.pirsnap");
        let snapshot = testing::tiny_snapshot();
        snapshot.write(&path).unwrap();
        for show in [false, true] {
            let loaded = load_snapshot(&path, true, show).unwrap();
            assert_eq!(loaded.header(), snapshot.header());
            assert_eq!(testing::file_bytes(&loaded), testing::file_bytes(&snapshot));
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = load_snapshot(&path, true, true).unwrap_err();
        assert!(
            matches!(&err, DpError::Core(CoreError::Snapshot {
                path: Some(p),
                reason: SnapshotError::DatabaseChecksum,
            }) if p == &path),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            Snapshot::load(&path).unwrap_err().to_string(),
            "the same message as the server's load"
        );
        bytes.truncate(bytes.len() - 8);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            load_snapshot(&path, true, true).unwrap_err().to_string(),
            Snapshot::load(&path).unwrap_err().to_string()
        );
    }
}
