//! The key file: a client's secret and public keys, kept between runs.
//!
//! Generating keys takes hundreds of milliseconds and registering them uploads megabytes, so a
//! client that looks up often keeps them. The file holds the secret: it is created with
//! owner-only permissions (0o600) and replaced atomically (temporary file + rename), so a crash
//! never leaves a half-written key file behind.
//!
//! It also remembers the newest snapshot the client verified against the DP's keys (epoch and
//! header hash), so that a server cannot roll a client back to an older snapshot across runs.
//!
//! Format, version 2, all integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "PIRKEYS\0"
//!      8     4  format version (2)
//!     12    52  scheme parameters: n, nu_1, nu_2 (u32), p (u64), q2_bits, t_gsw, t_conv,
//!               t_exp_left, t_exp_right, instances, item_bytes, version (u32)
//!     64    32  secret (the seed of the secret keys)
//!     96     8  length L of the public keys
//!    104     L  public keys
//!  104+L     1  1 if a verified snapshot is remembered, else 0 (and the next 40 bytes are 0)
//!  105+L     8  its epoch: the highest verified so far
//!  113+L    32  its header hash (blake3 of the header's bytes)
//!  145+L    32  SHA-256("pir-discovery/key-file/v2\0" || every byte before)
//! ```
//!
//! Version 1 files (no snapshot record, `v1` in the checksum's context) are still read, and
//! rewritten as version 2 the next time the file is written.

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
/// The key file format version this crate writes (it also reads version 1).
pub const KEY_FILE_VERSION: u32 = 2;

const CHECKSUM_CONTEXT_V1: &[u8] = b"pir-discovery/key-file/v1\0";
const CHECKSUM_CONTEXT: &[u8] = b"pir-discovery/key-file/v2\0";
const PARAMS_LEN: usize = SchemeParams::ENCODED_LEN;
const HEADER_LEN: usize = 8 + 4 + PARAMS_LEN + 32 + 8;
/// The snapshot record after the public keys (version 2).
const SEEN_LEN: usize = 1 + 8 + 32;
const CHECKSUM_LEN: usize = 32;
/// Far above the largest vetted public keys (about 9 MB): refuse to read anything bigger.
const MAX_FILE_LEN: u64 = 256 << 20;

/// The newest snapshot a client verified against the DP's keys: it refuses older epochs, and
/// another header for this epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenSnapshot {
    /// The highest epoch verified.
    pub epoch: u64,
    /// blake3 of that snapshot's header bytes.
    pub header_hash: [u8; 32],
}

/// Everything a key file holds.
#[derive(Clone, Debug)]
pub struct KeyFileContents {
    /// The client's keys.
    pub keys: ClientKeys,
    /// The newest verified snapshot, if the client was ever given the DP's keys.
    pub seen: Option<SeenSnapshot>,
}

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
        self.read_contents().map(|c| c.keys)
    }

    /// Reads the file if it exists (`None` if it does not); a truncated or corrupted file is
    /// an error.
    pub fn load(&self) -> Result<Option<KeyFileContents>> {
        match self.read_contents() {
            Ok(contents) => Ok(Some(contents)),
            Err(ClientError::KeyFileIo { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads and checks everything the file holds.
    pub fn read_contents(&self) -> Result<KeyFileContents> {
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
        Ok(match self.load()? {
            Some(c) if c.keys.params() == params => StoredKeys::Matching(c.keys),
            Some(c) => StoredKeys::OtherParams(*c.keys.params()),
            None => StoredKeys::Missing,
        })
    }

    /// Writes the keys and the snapshot record, replacing any previous file atomically, with
    /// permissions 0o600.
    pub fn write(&self, keys: &ClientKeys, seen: Option<&SeenSnapshot>) -> Result<()> {
        let bytes = encode(keys, seen);
        let io = |path: &Path, source| ClientError::KeyFileIo {
            path: path.to_path_buf(),
            source,
        };
        pir_core::fs::write_atomic(&self.path, 0o600, io, |w| {
            w.write_all(&bytes).map_err(|e| io(&self.path, e))
        })
    }
}

fn checksum(context: &[u8], bytes: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(context)
        .chain_update(bytes)
        .finalize()
        .into()
}

/// The file's bytes for `keys` and `seen`.
fn encode(keys: &ClientKeys, seen: Option<&SeenSnapshot>) -> Vec<u8> {
    let public = keys.public_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + public.len() + SEEN_LEN + CHECKSUM_LEN);
    out.extend_from_slice(&KEY_FILE_MAGIC);
    out.extend_from_slice(&KEY_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&keys.params().to_le_bytes());
    out.extend_from_slice(&keys.secret().to_bytes());
    out.extend_from_slice(&(public.len() as u64).to_le_bytes());
    out.extend_from_slice(public);
    match seen {
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&s.epoch.to_le_bytes());
            out.extend_from_slice(&s.header_hash);
        }
        None => out.extend_from_slice(&[0; SEEN_LEN]),
    }
    let sum = checksum(CHECKSUM_CONTEXT, &out);
    out.extend_from_slice(&sum);
    out
}

/// Parses and checks a key file's bytes.
fn decode(bytes: &[u8]) -> Result<KeyFileContents, String> {
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
    let (context, seen_len) = match version {
        1 => (CHECKSUM_CONTEXT_V1, 0),
        KEY_FILE_VERSION => (CHECKSUM_CONTEXT, SEEN_LEN),
        _ => {
            return Err(format!(
                "format version {version}, this client reads versions 1 and {KEY_FILE_VERSION}"
            ));
        }
    };
    let params_bytes: [u8; SchemeParams::ENCODED_LEN] = r.array().map_err(truncated)?;
    let secret = ClientSecret::from_bytes(r.array().map_err(truncated)?);
    let public_len = r.u64().map_err(truncated)?;
    let expected_len = (HEADER_LEN + seen_len + CHECKSUM_LEN) as u64 + public_len;
    if bytes.len() as u64 != expected_len {
        return Err(format!(
            "{} bytes, but its header announces {expected_len}: truncated or corrupted",
            bytes.len()
        ));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(context, body) != sum {
        return Err("checksum mismatch: the file is corrupted".into());
    }
    // Only now, with the bytes known intact, are the parameters worth checking.
    let params = SchemeParams::from_le_bytes(&params_bytes)
        .map_err(|e| format!("stored parameters: {e}"))?;
    let sizes = params
        .message_sizes()
        .map_err(|e| format!("stored parameters: {e}"))?;
    // Keys made before the unused words were left out are still keys: kept as they are.
    if public_len != sizes.public_keys as u64 && public_len != sizes.legacy_public_keys as u64 {
        return Err(format!(
            "public keys are {public_len} bytes, its parameters need {}",
            sizes.public_keys
        ));
    }
    let public = r.take(public_len as usize).map_err(truncated)?.to_vec();
    let seen = if seen_len == 0 {
        None
    } else {
        let flag = r.u8().map_err(truncated)?;
        let epoch = r.u64().map_err(truncated)?;
        let header_hash: [u8; 32] = r.array().map_err(truncated)?;
        match flag {
            0 if epoch == 0 && header_hash == [0; 32] => None,
            1 => Some(SeenSnapshot { epoch, header_hash }),
            _ => return Err("the snapshot record is malformed".into()),
        }
    };
    Ok(KeyFileContents {
        keys: ClientKeys::from_parts(params, secret, public),
        seen,
    })
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
        file.write(keys(), None).unwrap();
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
        let seen = SeenSnapshot {
            epoch: 0x0102_0304,
            header_hash: [9; 32],
        };
        let bytes = encode(keys(), Some(&seen));
        let public = keys().public_bytes().len();
        assert_eq!(&bytes[..8], b"PIRKEYS\0");
        assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &small().n.to_le_bytes());
        assert_eq!(&bytes[24..32], &small().p.to_le_bytes());
        assert_eq!(&bytes[64..96], &keys().secret().to_bytes());
        assert_eq!(&bytes[96..104], &(public as u64).to_le_bytes());
        assert_eq!(&bytes[104..104 + public], keys().public_bytes());
        assert_eq!(bytes[104 + public], 1);
        assert_eq!(
            &bytes[105 + public..113 + public],
            &seen.epoch.to_le_bytes()
        );
        assert_eq!(&bytes[113 + public..145 + public], &[9; 32]);
        assert_eq!(bytes.len(), 145 + public + 32);
        let none = encode(keys(), None);
        assert_eq!(&none[104 + public..145 + public], &[0; 41]);
    }

    #[test]
    fn the_seen_snapshot_round_trips_and_survives_new_keys() {
        let (_dir, file) = written();
        assert_eq!(file.load().unwrap().unwrap().seen, None);
        let seen = SeenSnapshot {
            epoch: 2000,
            header_hash: [3; 32],
        };
        file.write(keys(), Some(&seen)).unwrap();
        let back = file.load().unwrap().unwrap();
        assert_eq!(back.seen, Some(seen));
        assert_eq!(back.keys.id(), keys().id());
        assert!(
            KeyFile::new(file.path().with_file_name("absent"))
                .load()
                .unwrap()
                .is_none()
        );
    }

    /// Keys made before the words no answer reads were left out read back as they were.
    #[test]
    fn keys_in_the_legacy_form_are_read() {
        let (_dir, file) = written();
        let legacy = keys().danger_in_legacy_form().unwrap();
        assert_ne!(legacy.public_bytes().len(), keys().public_bytes().len());
        file.write(&legacy, None).unwrap();
        let back = file.read().unwrap();
        assert_eq!(back.public_bytes(), legacy.public_bytes());
        assert_eq!(back.id(), legacy.id());
    }

    /// A version 1 file (before the snapshot record) still reads, with no record.
    #[test]
    fn version_1_files_are_read() {
        let (_dir, file) = written();
        let k = keys();
        let mut v1 = Vec::new();
        v1.extend_from_slice(&KEY_FILE_MAGIC);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&k.params().to_le_bytes());
        v1.extend_from_slice(&k.secret().to_bytes());
        v1.extend_from_slice(&(k.public_bytes().len() as u64).to_le_bytes());
        v1.extend_from_slice(k.public_bytes());
        let sum = checksum(CHECKSUM_CONTEXT_V1, &v1);
        v1.extend_from_slice(&sum);
        fs::write(file.path(), &v1).unwrap();
        let back = file.load().unwrap().unwrap();
        assert_eq!((back.keys.id(), back.seen), (k.id(), None));
        // A version 1 body under the version 2 number is refused, not misread.
        v1[8] = 2;
        fs::write(file.path(), &v1).unwrap();
        assert!(invalid_reason(file.read().unwrap_err()).contains("announces"));
    }

    #[test]
    fn written_owner_only_and_replaced_atomically() {
        let (dir, file) = written();
        let mode = fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Overwriting a file that had loose permissions leaves an owner-only one.
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644)).unwrap();
        file.write(keys(), None).unwrap();
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
        bad[8] = 3;
        fs::write(file.path(), &bad).unwrap();
        assert!(invalid_reason(file.read().unwrap_err()).contains("version 3"));
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
