//! Ed25519 key files (an issuer's or the DP's): the owner-only secret and the public key beside
//! it.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use pir_core::IssuerKey;

use crate::error::{DpError, IoOp};

/// Writes `text` to a new file readable by its owner only.
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), DpError> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| DpError::io(IoOp::Creating, path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| DpError::io(IoOp::Writing, path, e))
}

/// The public key file beside a secret key file: `issuer.key` -> `issuer.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    secret.with_extension("pub")
}

/// Generates an Ed25519 key (an issuer's or a DP's): the secret at `out` (mode 0600) and the
/// public key beside it (`.pub`, a trust file with this one key).
pub fn issuer_keygen(out: &Path, overwrite: bool) -> Result<IssuerKey, DpError> {
    let key = IssuerKey::generate();
    write_private(out, &key.to_secret_text(), overwrite)?;
    let public = public_key_path(out);
    std::fs::write(&public, key.to_public_text())
        .map_err(|e| DpError::io(IoOp::Writing, &public, e))?;
    Ok(key)
}

/// Reads a secret key file (issuer or DP).
pub fn read_issuer_key(path: &Path) -> Result<IssuerKey, DpError> {
    let text = std::fs::read_to_string(path).map_err(|e| DpError::io(IoOp::Reading, path, e))?;
    Ok(IssuerKey::parse_secret(&text)?)
}
