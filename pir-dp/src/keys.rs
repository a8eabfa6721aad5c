//! Ed25519 key files (an issuer's or the DP's): the owner-only secret and the public key beside
//! it.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use pir_core::{DpKey, IssuerKey};

use crate::{
    error::{DpError, IoOp},
    paths::check_out_dir,
};

/// Writes `text` to a new file readable by its owner only (over an existing one only with
/// `overwrite`).
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), DpError> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    check_out_dir(path)?;
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => DpError::KeyFileExists {
            path: path.to_path_buf(),
        },
        _ => DpError::io(IoOp::Creating, path, e),
    })?;
    f.write_all(text.as_bytes())
        .map_err(|e| DpError::io(IoOp::Writing, path, e))
}

/// The public key file beside a secret key file: `issuer.key` -> `issuer.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    secret.with_extension("pub")
}

/// Generates an issuer's Ed25519 key: the secret at `out` (mode 0600) and the public key beside
/// it (`.pub`, a trust file with this one key).
pub fn issuer_keygen(out: &Path, overwrite: bool) -> Result<IssuerKey, DpError> {
    let key = IssuerKey::generate();
    write_pair(out, overwrite, &key.to_secret_text(), &key.to_public_text())?;
    Ok(key)
}

/// Generates the DP's Ed25519 signing key, as [`issuer_keygen`] does an issuer's.
pub fn dp_keygen(out: &Path, overwrite: bool) -> Result<DpKey, DpError> {
    let key = DpKey::generate();
    write_pair(out, overwrite, &key.to_secret_text(), &key.to_public_text())?;
    Ok(key)
}

fn write_pair(out: &Path, overwrite: bool, secret: &str, public: &str) -> Result<(), DpError> {
    write_private(out, secret, overwrite)?;
    let path = public_key_path(out);
    std::fs::write(&path, public).map_err(|e| DpError::io(IoOp::Writing, &path, e))
}

fn read_text(path: &Path) -> Result<String, DpError> {
    std::fs::read_to_string(path).map_err(|e| DpError::io(IoOp::Reading, path, e))
}

/// Reads an issuer's secret key file.
pub fn read_issuer_key(path: &Path) -> Result<IssuerKey, DpError> {
    Ok(IssuerKey::parse_secret(&read_text(path)?)?)
}

/// Reads the DP's secret key file.
pub fn read_dp_key(path: &Path) -> Result<DpKey, DpError> {
    Ok(DpKey::parse_secret(&read_text(path)?)?)
}
