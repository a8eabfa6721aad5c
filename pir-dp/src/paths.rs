//! Where outputs may go: checked before any long work, so a wrong `--out` fails in a second
//! with its own sentence, not after a build with the error of a temporary file.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::error::DpError;

/// The directory a file is written into (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// Fails unless `out`'s directory exists.
pub(crate) fn check_out_dir(out: &Path) -> Result<(), DpError> {
    let dir = dir_of(out);
    if dir.is_dir() {
        return Ok(());
    }
    Err(DpError::NoSuchDirectory {
        out: out.to_path_buf(),
        dir: dir.to_path_buf(),
    })
}

/// Whether two files are in the same directory (a delta names its base by file name).
pub(crate) fn same_dir(a: &Path, b: &Path) -> bool {
    let dir = |p: &Path| std::fs::canonicalize(dir_of(p)).ok();
    dir(a).is_some() && dir(a) == dir(b)
}

/// Whether `a` and `b` name one existing file (through links or different spellings).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// The file a delta's header names as its base: beside the delta (spelt as the loader does).
pub(crate) fn base_beside(delta: &Path, base_name: &str) -> PathBuf {
    delta.parent().unwrap_or(Path::new("")).join(base_name)
}
