//! The key file: a client's secret and public keys, kept between runs.
//!
//! Generating keys takes hundreds of milliseconds and registering them uploads megabytes, so a
//! client that looks up often keeps them. The file holds the secret: it is created with
//! owner-only permissions (0o600) and replaced atomically (temporary file + rename), so a crash
//! never leaves a half-written key file behind.
//!
//! Format, version 1, all integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "PIRKEYS\0"
//!      8     4  format version (1)
//!     12    52  scheme parameters: n, nu_1, nu_2 (u32), p (u64), q2_bits, t_gsw, t_conv,
//!               t_exp_left, t_exp_right, instances, item_bytes, version (u32)
//!     64    32  secret (the seed of the secret keys)
//!     96     8  length L of the public keys
//!    104     L  public keys
//!  104+L    32  SHA-256("pir-discovery/key-file/v1\0" || every byte before)
//! ```

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use pir_core::{ClientKeys, ClientSecret, SchemeParams, bytes::Reader};
use sha2::{Digest, Sha256};

use crate::error::{ClientError, Result};

/// The first bytes of every key file.
pub const KEY_FILE_MAGIC: [u8; 8] = *b"PIRKEYS\0";
/// The key file format version this crate writes and reads.
pub const KEY_FILE_VERSION: u32 = 1;

const CHECKSUM_CONTEXT: &[u8] = b"pir-discovery/key-file/v1\0";
const PARAMS_LEN: usize = SchemeParams::ENCODED_LEN;
const HEADER_LEN: usize = 8 + 4 + PARAMS_LEN + 32 + 8;
const CHECKSUM_LEN: usize = 32;
/// Far above the largest vetted public keys (about 9 MB): refuse to read anything bigger.
const MAX_FILE_LEN: u64 = 256 << 20;

/// What a key file holds, compared with the parameters a server uses.
#[derive(Debug)]
pub enum StoredKeys {
    /// There is no key file yet.
    Missing,
    /// Keys for exactly these parameters: reuse them.
    Matching(ClientKeys),
    /// Valid keys, but for other parameters (the server changed its database shape).
    OtherParams(SchemeParams),
}

/// A key file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The key file at `path` (nothing is read yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the keys; a missing, truncated or corrupted file is an error.
    pub fn read(&self) -> Result<ClientKeys> {
        let io = |source| ClientError::KeyFileIo {
            path: self.path.clone(),
            source,
        };
        let file = fs::File::open(&self.path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %self.path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "key file is readable by others: it holds a secret, chmod 600 it"
            );
        }
        if meta.len() > MAX_FILE_LEN {
            return Err(ClientError::key_file(
                &self.path,
                format!("{} bytes: too large to be a key file", meta.len()),
            ));
        }
        let bytes = fs::read(&self.path).map_err(io)?;
        decode(&bytes).map_err(|reason| ClientError::key_file(&self.path, reason))
    }

    /// Reads the keys if the file exists, and compares their parameters with `params`.
    pub fn read_for(&self, params: &SchemeParams) -> Result<StoredKeys> {
        match self.read() {
            Ok(keys) if keys.params() == params => Ok(StoredKeys::Matching(keys)),
            Ok(keys) => Ok(StoredKeys::OtherParams(*keys.params())),
            Err(ClientError::KeyFileIo { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(StoredKeys::Missing)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the keys, replacing any previous file atomically, with permissions 0o600.
    pub fn write(&self, keys: &ClientKeys) -> Result<()> {
        let bytes = encode(keys);
        let io = |path: &Path, source| ClientError::KeyFileIo {
            path: path.to_path_buf(),
            source,
        };
        pir_core::fs::write_atomic(&self.path, 0o600, io, |w| {
            w.write_all(&bytes).map_err(|e| io(&self.path, e))
        })
    }
}

fn checksum(bytes: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(CHECKSUM_CONTEXT)
        .chain_update(bytes)
        .finalize()
        .into()
}

/// The file's bytes for `keys`.
fn encode(keys: &ClientKeys) -> Vec<u8> {
    let public = keys.public_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + public.len() + CHECKSUM_LEN);
    out.extend_from_slice(&KEY_FILE_MAGIC);
    out.extend_from_slice(&KEY_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&keys.params().to_le_bytes());
    out.extend_from_slice(&keys.secret().to_bytes());
    out.extend_from_slice(&(public.len() as u64).to_le_bytes());
    out.extend_from_slice(public);
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    out
}

/// Parses and checks a key file's bytes.
fn decode(bytes: &[u8]) -> Result<ClientKeys, String> {
    if bytes.len() < KEY_FILE_MAGIC.len() || bytes[..KEY_FILE_MAGIC.len()] != KEY_FILE_MAGIC {
        return Err("not a key file (bad magic)".into());
    }
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(format!(
            "truncated: {} bytes, a key file has at least {}",
            bytes.len(),
            HEADER_LEN + CHECKSUM_LEN
        ));
    }
    let truncated = |_| "truncated".to_string();
    let mut r = Reader::new(&bytes[KEY_FILE_MAGIC.len()..]);
    let version = r.u32().map_err(truncated)?;
    if version != KEY_FILE_VERSION {
        return Err(format!(
            "format version {version}, this client reads version {KEY_FILE_VERSION}"
        ));
    }
    let params_bytes: [u8; SchemeParams::ENCODED_LEN] = r.array().map_err(truncated)?;
    let secret = ClientSecret::from_bytes(r.array().map_err(truncated)?);
    let public_len = r.u64().map_err(truncated)?;
    let expected_len = (HEADER_LEN + CHECKSUM_LEN) as u64 + public_len;
    if bytes.len() as u64 != expected_len {
        return Err(format!(
            "{} bytes, but its header announces {expected_len}: truncated or corrupted",
            bytes.len()
        ));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(body) != sum {
        return Err("checksum mismatch: the file is corrupted".into());
    }
    // Only now, with the bytes known intact, are the parameters worth checking.
    let params = SchemeParams::from_le_bytes(&params_bytes)
        .map_err(|e| format!("stored parameters: {e}"))?;
    let sizes = params
        .message_sizes()
        .map_err(|e| format!("stored parameters: {e}"))?;
    if public_len != sizes.public_keys as u64 {
        return Err(format!(
            "public keys are {public_len} bytes, its parameters need {}",
            sizes.public_keys
        ));
    }
    let public = r.take(sizes.public_keys).map_err(truncated)?.to_vec();
    Ok(ClientKeys::from_parts(params, secret, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SchemeParams {
        SchemeParams::danger_test_only_small()
    }

    /// Real keys are slow to make: one set for the whole module.
    fn keys() -> &'static ClientKeys {
        static KEYS: std::sync::OnceLock<ClientKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| ClientKeys::generate(&small()).unwrap())
    }

    fn written() -> (tempfile::TempDir, KeyFile) {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(dir.path().join("client.keys"));
        file.write(keys()).unwrap();
        (dir, file)
    }

    fn invalid_reason(err: ClientError) -> String {
        match err {
            ClientError::InvalidKeyFile { reason, .. } => reason,
            other => panic!("expected InvalidKeyFile, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let (_dir, file) = written();
        let back = file.read().unwrap();
        assert_eq!(back.params(), keys().params());
        assert_eq!(back.secret(), keys().secret());
        assert_eq!(back.public_bytes(), keys().public_bytes());
        assert_eq!(back.id(), keys().id());
    }

    #[test]
    fn layout_is_pinned() {
        let bytes = encode(keys());
        let public = keys().public_bytes().len();
        assert_eq!(&bytes[..8], b"PIRKEYS\0");
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &small().n.to_le_bytes());
        assert_eq!(&bytes[24..32], &small().p.to_le_bytes());
        assert_eq!(&bytes[64..96], &keys().secret().to_bytes());
        assert_eq!(&bytes[96..104], &(public as u64).to_le_bytes());
        assert_eq!(&bytes[104..104 + public], keys().public_bytes());
        assert_eq!(bytes.len(), 104 + public + 32);
    }

    #[test]
    fn written_owner_only_and_replaced_atomically() {
        let (dir, file) = written();
        let mode = fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Overwriting a file that had loose permissions leaves an owner-only one.
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644)).unwrap();
        file.write(keys()).unwrap();
        let mode = fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("client.keys")]);
    }

    #[test]
    fn truncated_file_is_refused() {
        let (_dir, file) = written();
        let bytes = fs::read(file.path()).unwrap();
        for len in [0, 5, 8, 40, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
            fs::write(file.path(), &bytes[..len]).unwrap();
            let reason = invalid_reason(file.read().unwrap_err());
            assert!(
                reason.contains("truncated") || reason.contains("magic"),
                "{len}: {reason}"
            );
        }
    }

    #[test]
    fn corrupted_file_is_refused() {
        let (_dir, file) = written();
        let bytes = fs::read(file.path()).unwrap();
        // A flipped bit anywhere after the length field is caught by the checksum.
        for pos in [70, 200, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[pos] ^= 1;
            fs::write(file.path(), &bad).unwrap();
            let reason = invalid_reason(file.read().unwrap_err());
            assert!(reason.contains("checksum"), "{pos}: {reason}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        fs::write(file.path(), &bad).unwrap();
        assert!(invalid_reason(file.read().unwrap_err()).contains("magic"));
        let mut bad = bytes.clone();
        bad[8] = 2;
        fs::write(file.path(), &bad).unwrap();
        assert!(invalid_reason(file.read().unwrap_err()).contains("version 2"));
        // A corrupted length field: the announced size no longer matches.
        let mut bad = bytes;
        bad[100] ^= 1;
        fs::write(file.path(), &bad).unwrap();
        assert!(invalid_reason(file.read().unwrap_err()).contains("announces"));
    }

    #[test]
    fn error_names_the_file() {
        let (_dir, file) = written();
        fs::write(file.path(), b"hello").unwrap();
        let msg = file.read().unwrap_err().to_string();
        assert!(msg.contains("client.keys"), "{msg}");
    }

    #[test]
    fn params_mismatch_is_detected() {
        let (_dir, file) = written();
        match file.read_for(&small()).unwrap() {
            StoredKeys::Matching(k) => assert_eq!(k.id(), keys().id()),
            s => panic!("expected Matching, got {s:?}"),
        }
        let other = SchemeParams::try_from(pir_core::SchemeFields {
            nu_2: 3,
            ..*small()
        })
        .unwrap();
        match file.read_for(&other).unwrap() {
            StoredKeys::OtherParams(stored) => assert_eq!(stored, small()),
            s => panic!("expected OtherParams, got {s:?}"),
        }
        let missing = KeyFile::new(file.path().with_file_name("absent.keys"));
        assert!(matches!(
            missing.read_for(&small()).unwrap(),
            StoredKeys::Missing
        ));
    }

    #[test]
    fn unreadable_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let err = KeyFile::new(dir.path()).read().unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::KeyFileIo { .. } | ClientError::InvalidKeyFile { .. }
            ),
            "{err:?}"
        );
    }
}
