//! Key files: Ed25519 keys (an issuer's or the DP's: the owner-only secret, PKCS#8 PEM, and the
//! public key beside it, SPKI PEM) and the DP's OPRF secret key, and reading them for the flags
//! that name them.

use std::path::{Path, PathBuf};

use pir_core::{
    CoreError, DpKey, DpKeys, IssuerKey, TrustStore,
    fs::{Existing, write_atomic_with},
    oprf::OprfKey,
};

use crate::{
    error::{DpError, IoOp},
    paths::check_out_dir,
};

/// Writes `text` to a new file readable by its owner only, atomically and with mode 0600 from
/// its creation (over an existing file only with `overwrite`; a symlink at `path` is replaced,
/// never written through).
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), DpError> {
    check_out_dir(path)?;
    let existing = if overwrite {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    let error = |p: &Path, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::AlreadyExists => DpError::KeyFileExists {
            path: p.to_path_buf(),
        },
        _ => DpError::io(IoOp::Writing, p, e),
    };
    write_atomic_with(path, 0o600, existing, error, |w| {
        std::io::Write::write_all(w, text.as_bytes()).map_err(|e| error(path, e))
    })
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
    let path = public_key_path(out);
    if path == out {
        return Err(DpError::io(
            IoOp::Writing,
            out,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the secret key file must not end in .pub (the public key is written beside it \
                 as .pub)",
            ),
        ));
    }
    write_private(out, secret, overwrite)?;
    let error = |p: &Path, e| DpError::io(IoOp::Writing, p, e);
    pir_core::fs::write_atomic(&path, 0o644, error, |w| {
        std::io::Write::write_all(w, public.as_bytes()).map_err(|e| error(&path, e))
    })
}

/// Generates the DP's OPRF key (RFC 9497 VOPRF, ristretto255-SHA512): the secret at `out`
/// (mode 0600). Its public key goes into every snapshot built with it; there is no public file.
pub fn oprf_keygen(out: &Path, overwrite: bool) -> Result<OprfKey, DpError> {
    let key = OprfKey::generate(&mut rand::rngs::OsRng)?;
    write_private(out, &key.to_secret_text(), overwrite)?;
    Ok(key)
}

/// Reads the DP's OPRF secret key file, given with `--oprf-key`.
pub fn read_oprf_key(path: &Path) -> Result<OprfKey, DpError> {
    Ok(OprfKey::from_file(path).map_err(|e| e.with_flag("--oprf-key"))?)
}

/// Reads an issuer's secret key file, given with `--issuer-key` (refused when group or others
/// may access it, or when it is a public key).
pub fn read_issuer_key(path: &Path) -> Result<IssuerKey, DpError> {
    Ok(IssuerKey::from_file(path).map_err(|e| e.with_flag("--issuer-key"))?)
}

/// Reads the DP's secret key file, given with `--dp-key`.
pub fn read_dp_key(path: &Path) -> Result<DpKey, DpError> {
    Ok(DpKey::from_file(path).map_err(|e| e.with_flag("--dp-key"))?)
}

/// Reads a trust file of issuer public keys, given with `--trust`.
pub fn read_trust(path: &Path) -> Result<TrustStore, DpError> {
    Ok(TrustStore::from_file(path).map_err(|e| e.with_flag("--trust"))?)
}

/// Reads a trust file of DP public keys, given with `--dp-pub`.
pub fn read_dp_pub(path: &Path) -> Result<DpKeys, DpError> {
    Ok(DpKeys::from_file(path).map_err(|e: CoreError| e.with_flag("--dp-pub"))?)
}
