//! Writing a file atomically: a temporary file beside it, synced, then renamed into place, so a
//! crash never leaves a half-written snapshot or key file behind.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Writes `path` through `write`, atomically, with permission bits `mode` (`0o600` for
/// secrets; the process umask still applies).
///
/// The temporary file is created new (never following a planted symlink or reusing another
/// file) in `path`'s directory, and removed on failure. I/O errors are handed to `io_error`
/// with the file they concern (the temporary file's name is not worth showing: it is `path`).
pub fn write_atomic<E>(
    path: &Path,
    mode: u32,
    io_error: impl Fn(&Path, io::Error) -> E,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temporary_beside(path).ok_or_else(|| {
        io_error(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| io_error(path, e))?;
        let mut w = BufWriter::with_capacity(1 << 22, file);
        write(&mut w)?;
        w.flush().map_err(|e| io_error(path, e))?;
        let file = w.into_inner().map_err(|e| io_error(path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(path, e))?;
        fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable; not every filesystem lets a directory be synced.
    if let Some(dir) = tmp.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `.NAME.PID.NANOS.tmp` in `path`'s directory.
fn temporary_beside(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Some(dir.join(format!(
        ".{}.{}.{nanos}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_atomically_and_cleans_up_on_failure() {
        let dir = tempfile_dir();
        let path = dir.join("f");
        let io = |_: &Path, e: io::Error| e;
        write_atomic(&path, 0o600, io, |w| w.write_all(b"one")).unwrap();
        write_atomic(&path, 0o600, io, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0);
        let err = write_atomic(&path, 0o600, io, |_| Err(io::Error::other("stop")));
        assert!(err.is_err());
        assert_eq!(
            fs::read(&path).unwrap(),
            b"two",
            "a failed write leaves the old file"
        );
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pir-core-fs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
