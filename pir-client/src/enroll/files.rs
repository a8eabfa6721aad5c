//! The MSP operator's files: key pairs (the secret owner-only, the public key beside it as
//! `.pub`), reading the keys the flags name, and appending issued mappings to a mapping file.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use pir_core::{
    Mapping,
    fs::{Existing, write_atomic, write_atomic_with},
    identity::{MspKey, UserKey},
};

use super::error::{EnrollError, FileProblem};

/// Refuses a file to write in a directory that does not exist, with that said plainly (before
/// anything is asked of a prover, so that its answer has somewhere to go).
pub fn check_output_dir(path: &Path) -> Result<(), EnrollError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(EnrollError::file(
        path,
        FileProblem::NoSuchDirectory(dir.to_path_buf()),
    ))
}

/// The public key file beside a secret key file: `msp.key` -> `msp.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    secret.with_extension("pub")
}

/// Writes a key pair: the secret at `out`, mode 0600 from its creation (over an existing file
/// only with `overwrite`), then the public key beside it (`.pub`, mode 0644).
fn write_pair(out: &Path, overwrite: bool, secret: &str, public: &str) -> Result<(), EnrollError> {
    let public_path = public_key_path(out);
    if public_path == out {
        return Err(EnrollError::file(out, FileProblem::PubName));
    }
    check_output_dir(out)?;
    let existing = if overwrite {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    let error = |p: &Path, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::AlreadyExists => EnrollError::file(p, FileProblem::Exists),
        _ => EnrollError::io(p, e),
    };
    write_atomic_with(out, 0o600, existing, error, |w| {
        w.write_all(secret.as_bytes()).map_err(|e| error(out, e))
    })?;
    write_atomic(&public_path, 0o644, EnrollError::io, |w| {
        w.write_all(public.as_bytes())
            .map_err(|e| EnrollError::io(&public_path, e))
    })
}

/// Generates an MSP's signing key: the secret at `out` (mode 0600) and the public key beside
/// it (`.pub`), which the ID prover's operator keeps as `<msp domain>.pub` in the prover's
/// `--msp-keys` directory.
pub fn msp_keygen(out: &Path, overwrite: bool) -> Result<MspKey, EnrollError> {
    let key = MspKey::generate();
    write_pair(out, overwrite, &key.to_secret_text(), &key.to_public_text())?;
    Ok(key)
}

/// Generates a user's key, as [`msp_keygen`] does an MSP's (for demonstrations and tests: a
/// real user's key stays on their device).
pub fn user_keygen(out: &Path, overwrite: bool) -> Result<UserKey, EnrollError> {
    let key = UserKey::generate();
    write_pair(out, overwrite, &key.to_secret_text(), &key.to_public_text())?;
    Ok(key)
}

/// Reads the MSP's secret key file given with `--msp-key` (refused when group or others may
/// access it, or when it is a public key file), errors naming the flag and the file.
pub fn read_msp_key(path: &Path) -> Result<MspKey, EnrollError> {
    MspKey::from_file(path).map_err(|e| EnrollError::KeyFile(e.with_flag("--msp-key")))
}

/// Reads a user's secret key file given with `--user-key`, as [`read_msp_key`] does.
pub fn read_user_key(path: &Path) -> Result<UserKey, EnrollError> {
    UserKey::from_file(path).map_err(|e| EnrollError::KeyFile(e.with_flag("--user-key")))
}

/// Appends `mapping` as one line to the mapping file at `path` (created with mode 0640, as a
/// DP's mapping files are).
pub fn append_mapping(path: &Path, mapping: &Mapping) -> Result<(), EnrollError> {
    check_output_dir(path)?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| EnrollError::io(path, e))?;
    // One write of the whole line, so that concurrent appenders do not interleave.
    let line = format!("{}\n", mapping.to_json_line());
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| EnrollError::io(path, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn key_pairs_are_owner_only_and_public_beside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("msp.key");
        let key = msp_keygen(&out, false).unwrap();
        assert_eq!(mode(&out), 0o600);
        assert_eq!(mode(&dir.path().join("msp.pub")), 0o644);
        assert_eq!(read_msp_key(&out).unwrap().id(), key.id());
        let err = msp_keygen(&out, false).unwrap_err();
        assert!(
            matches!(
                &err,
                EnrollError::File {
                    problem: FileProblem::Exists,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read_msp_key(&out).unwrap().id(), key.id(), "not replaced");
        assert_ne!(msp_keygen(&out, true).unwrap().id(), key.id());
        assert!(matches!(
            user_keygen(&dir.path().join("user.pub"), false).unwrap_err(),
            EnrollError::File {
                problem: FileProblem::PubName,
                ..
            }
        ));
        let err = read_msp_key(&dir.path().join("msp.pub")).unwrap_err();
        assert!(err.to_string().starts_with("--msp-key "), "{err}");
    }

    #[test]
    fn mappings_are_appended_one_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mappings.jsonl");
        let a = pir_core::testing::mapping("tel:+14155550100", "chat.example", None);
        let b = pir_core::testing::mapping("tel:+14155550101", "chat.example", Some("@b"));
        append_mapping(&path, &a).unwrap();
        append_mapping(&path, &b).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text
            .lines()
            .map(|l| Mapping::from_json_line(l).unwrap())
            .collect();
        assert_eq!(lines, [a, b]);
        assert_eq!(mode(&path) & !0o640, 0);
    }
}
