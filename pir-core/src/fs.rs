//! Files: the one atomic write (a temporary file beside the destination, synced, then renamed
//! into place, so a crash never leaves a half-written snapshot or key file behind), and the one
//! way a secret file is read (only when it is its owner's alone).

use std::{
    fs::{self, File, Permissions},
    io::{self, BufWriter, Read, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// What an atomic write does when its destination exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (a symlink there is replaced, never written through).
    Replace,
    /// Fail with [`io::ErrorKind::AlreadyExists`] (also for a symlink, dangling or not).
    Refuse,
}

/// Writes `path` through `write`, atomically, replacing any file there; see [`write_atomic_with`].
pub fn write_atomic<E>(
    path: &Path,
    mode: u32,
    io_error: impl Fn(&Path, io::Error) -> E,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
) -> Result<(), E> {
    write_atomic_with(path, mode, Existing::Replace, io_error, write)
}

/// Writes `path` through `write`, atomically, with permission bits `mode` from the file's
/// creation (`0o600` for secrets, `0o640` for snapshots and mapping files; the process umask can
/// only narrow them), never the mode of a file it replaces.
///
/// The temporary file has a unique random name in `path`'s directory and is created new
/// (`O_CREAT | O_EXCL`: never following a planted symlink or reusing another file), synced, then
/// renamed onto `path` (`existing` says whether an existing `path` may be replaced; a symlink at
/// `path` is itself replaced, its target is never written). It is removed on failure. I/O errors
/// are handed to `io_error` with the file they concern (the temporary file's name is not worth
/// showing: it is `path`).
pub fn write_atomic_with<E>(
    path: &Path,
    mode: u32,
    existing: Existing,
    io_error: impl Fn(&Path, io::Error) -> E,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
) -> Result<(), E> {
    let name = path.file_name().ok_or_else(|| {
        io_error(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (file, tmp) = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| io_error(path, e))?
        .into_parts();
    // From here on, dropping `tmp` (an error below) removes the temporary file.
    let mut w = BufWriter::with_capacity(1 << 22, file);
    write(&mut w)?;
    w.flush().map_err(|e| io_error(path, e))?;
    let file = w.into_inner().map_err(|e| io_error(path, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(path, e))?;
    drop(file);
    match existing {
        Existing::Replace => tmp.persist(path),
        Existing::Refuse => tmp.persist_noclobber(path),
    }
    .map_err(|e| io_error(path, e.error))?;
    // Make the rename durable; not every filesystem lets a directory be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A secret file that its group or others may access: what [`read_secret`] refuses. It comes
/// as the source of an [`io::ErrorKind::PermissionDenied`] error, so that every caller's
/// message names the flag and the file as it does for other I/O errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsecureSecret {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl std::fmt::Display for InsecureSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a secret file that group or others may access (mode {:04o}) is refused: run \
             chmod 600 {}",
            self.mode,
            self.path.display()
        )
    }
}

impl std::error::Error for InsecureSecret {}

/// Reads a secret file (a private key, a token) whole, refusing it when its group or others
/// have any access (mode `& 0o077`, as OpenSSH does) with an [`InsecureSecret`]. The mode is
/// that of the file opened (a symlink is followed, and its target's mode counts).
pub fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    check_owner_only(path, &meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 20));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The check of [`read_secret`] on the metadata of an opened file, for a reader that first
/// makes sure the file is a secret at all (a public key given for a secret one is reported as
/// that, not as readable by others).
pub fn check_owner_only(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let mode = meta.mode() & 0o7777;
    if meta.is_file() && mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            InsecureSecret {
                path: path.to_path_buf(),
                mode,
            },
        ));
    }
    Ok(())
}

/// [`read_secret`] for a text file.
pub fn read_secret_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_secret(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Whether `err` is a [`read_secret`] refusal, and of which file.
pub fn insecure_secret(err: &io::Error) -> Option<&InsecureSecret> {
    err.get_ref()?.downcast_ref()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_atomically_and_cleans_up_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let io = |_: &Path, e: io::Error| e;
        write_atomic(&path, 0o600, io, |w| w.write_all(b"one")).unwrap();
        write_atomic(&path, 0o600, io, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        let err = write_atomic(&path, 0o600, io, |_| Err(io::Error::other("stop")));
        assert!(err.is_err());
        assert_eq!(
            fs::read(&path).unwrap(),
            b"two",
            "a failed write leaves the old file"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn the_new_file_has_its_own_mode_not_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let io = |_: &Path, e: io::Error| e;
        write_atomic(&path, 0o600, io, |w| w.write_all(b"new")).unwrap();
        assert_eq!(mode(&path), 0o600);
        write_atomic(&path, 0o640, io, |w| w.write_all(b"snapshot")).unwrap();
        assert_eq!(mode(&path) & !0o640, 0, "never wider than asked");
    }

    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "precious").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        let io = |_: &Path, e: io::Error| e;
        let refused = write_atomic_with(&link, 0o600, Existing::Refuse, io, |w| {
            w.write_all(b"secret")
        })
        .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
        write_atomic(&link, 0o600, io, |w| w.write_all(b"secret")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(fs::read(&link).unwrap(), b"secret");
        // A dangling symlink is not followed either.
        let dangling = dir.path().join("dangling");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let refused = write_atomic_with(&dangling, 0o600, Existing::Refuse, io, |w| {
            w.write_all(b"secret")
        })
        .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn concurrent_writers_use_distinct_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    write_atomic(path, 0o640, |_, e| e, |w| w.write_all(&[i; 4096])).unwrap()
                });
            }
        });
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "one writer's bytes");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn secrets_others_may_read_are_refused_with_the_remedy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "hunter2").unwrap();
        for bad in [0o644, 0o640, 0o604, 0o660, 0o620] {
            fs::set_permissions(&path, Permissions::from_mode(bad)).unwrap();
            let err = read_secret(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
            let refusal = insecure_secret(&err).unwrap();
            assert_eq!(refusal.mode, bad);
            assert_eq!(
                err.to_string(),
                format!(
                    "a secret file that group or others may access (mode 0{bad:o}) is refused: \
                     run chmod 600 {}",
                    path.display()
                )
            );
        }
        for good in [0o600, 0o400] {
            fs::set_permissions(&path, Permissions::from_mode(good)).unwrap();
            assert_eq!(read_secret_text(&path).unwrap(), "hunter2");
        }
    }
}
