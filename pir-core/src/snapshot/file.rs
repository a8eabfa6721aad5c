//! The file format: writing, loading (full files and deltas beside their base), checking.

use std::{
    fs::File,
    io::{BufReader, Read, Write},
    path::Path,
};

use super::{
    Payload, Snapshot,
    delta::apply_delta_payload,
    header::{BaseRef, MAX_HEADER_LEN, SnapshotHeader, encode_header},
};
use crate::{
    error::{CoreError, Result, SnapshotError},
    pir::{Database, Scheme, SchemeParams},
};

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PIRSNAP\0";
/// Version of the file format this build reads and writes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 4;

impl Snapshot {
    /// Writes the snapshot to `path` (through a temporary file, renamed into place), mode 0640:
    /// the server's group may read it, others may not.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fs::write_atomic(
            path,
            0o640,
            |p: &Path, e| CoreError::io(p, e),
            |w| self.write_to(w).map_err(|e| e.in_file(path)),
        )
    }

    /// Writes the snapshot's bytes to any writer: a full file, or a delta file when this
    /// snapshot is a delta of a full one.
    pub fn write_to(&self, w: &mut impl Write) -> Result<()> {
        let header = encode_header(&self.header)?;
        let io = |e| CoreError::io("<snapshot>", e);
        w.write_all(&SNAPSHOT_MAGIC).map_err(io)?;
        w.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())
            .map_err(io)?;
        w.write_all(&(header.len() as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        w.write_all(blake3::hash(&header).as_bytes()).map_err(io)?;
        if self.header.base.is_some() {
            let computed;
            let (indices, plain, words) = match &self.sealed_delta {
                Some(payload) => payload,
                None => {
                    computed = self.delta_payload()?;
                    &computed
                }
            };
            w.write_all(&(indices.len() as u32).to_le_bytes())
                .map_err(io)?;
            for i in indices {
                w.write_all(&(*i as u32).to_le_bytes()).map_err(io)?;
            }
            w.write_all(plain).map_err(io)?;
            w.write_all(bytemuck::cast_slice(words)).map_err(io)?;
        } else {
            if !self.db.is_loaded() {
                return Err(CoreError::Internal(
                    "a full snapshot needs its database loaded",
                ));
            }
            w.write_all(&self.plaintext).map_err(io)?;
            w.write_all(bytemuck::cast_slice(self.db.words()))
                .map_err(io)?;
        }
        w.flush().map_err(io)
    }

    /// Loads a snapshot file, checking its structure and checksums. Never redoes the NTT.
    /// A delta file loads its base (found beside it) and applies its items.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_impl(path, true)
    }

    /// Loads only what an update needs: the header and the buckets (checked), not the
    /// database. The result can be updated and written as a delta of `path` (or of its base).
    pub fn load_plaintext(path: &Path) -> Result<Self> {
        Self::load_impl(path, false)
    }

    /// Loads a snapshot file as [`Snapshot::load`] does, but first shows its header to `accept`,
    /// before anything beyond the header is read: a refusal there (a DP signature that does not
    /// verify, an epoch the caller will not take) costs a few milliseconds whatever the file's
    /// size, and nothing of its payload is read into memory. The header accepted is the one of
    /// the snapshot returned: the file is opened once and read from that one descriptor.
    pub fn load_verified<E: From<CoreError>>(
        path: &Path,
        accept: impl FnOnce(&SnapshotHeader) -> std::result::Result<(), E>,
    ) -> std::result::Result<Self, E> {
        let opened = Opened::open(path)?;
        accept(&opened.header)?;
        Ok(opened.finish(true)?)
    }

    /// [`Snapshot::load_plaintext`], showing the header to `accept` first as
    /// [`Snapshot::load_verified`] does.
    pub fn load_plaintext_verified<E: From<CoreError>>(
        path: &Path,
        accept: impl FnOnce(&SnapshotHeader) -> std::result::Result<(), E>,
    ) -> std::result::Result<Self, E> {
        let opened = Opened::open(path)?;
        accept(&opened.header)?;
        Ok(opened.finish(false)?)
    }

    fn load_impl(path: &Path, with_db: bool) -> Result<Self> {
        Opened::open(path)?.finish(with_db)
    }

    /// Reads and checks only the header of a snapshot file (fast: skips the database).
    pub fn read_header(path: &Path) -> Result<SnapshotHeader> {
        Ok(Opened::open(path)?.header)
    }

    /// Reads a full snapshot of `len` bytes from a reader (a delta needs its file: see
    /// [`Snapshot::load`]).
    pub fn read_from(mut r: impl Read, len: u64) -> Result<Self> {
        let (header, _) = read_header_from(&mut r, len)?;
        if header.base.is_some() {
            return Err(CoreError::snapshot(SnapshotError::DeltaNeedsFile));
        }
        read_full_payload(&mut r, header, true)
    }
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| CoreError::snapshot(SnapshotError::NoFileName).in_file(path))
}

/// A snapshot file opened (a regular file only) with its header read and checked; nothing of
/// the payload is read yet.
struct Opened<'a> {
    path: &'a Path,
    reader: BufReader<File>,
    len: u64,
    header: SnapshotHeader,
    header_hash: [u8; 32],
}

impl<'a> Opened<'a> {
    fn open(path: &'a Path) -> Result<Self> {
        let (file, len) = open_regular(path)?;
        // Small: reading the header must not read ahead into a payload that may be refused.
        // The payload's large reads bypass the buffer.
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let (header, header_hash) =
            read_header_from(&mut reader, len).map_err(|e| e.in_file(path))?;
        Ok(Self {
            path,
            reader,
            len,
            header,
            header_hash,
        })
    }

    /// Reads the payload (a delta's base too) and checks it against the header.
    fn finish(self, with_db: bool) -> Result<Snapshot> {
        let Self {
            path,
            mut reader,
            len,
            header,
            header_hash,
        } = self;
        let in_file = |e: CoreError| e.in_file(path);
        let Some(base) = header.base.clone() else {
            let mut s = read_full_payload(&mut reader, header, with_db).map_err(in_file)?;
            s.origin = Some(BaseRef {
                file: file_name(path)?,
                epoch: s.header.epoch,
                header_hash,
            });
            return Ok(s);
        };
        // A plain file name beside the delta: no directories, no way out of this one.
        if base.file.is_empty()
            || base.file == "."
            || base.file == ".."
            || base.file.contains(['/', '\\'])
        {
            return Err(in_file(CoreError::snapshot(SnapshotError::BaseName {
                name: base.file,
            })));
        }
        let base_path = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&base.file);
        // Checked before its payload is read, so a delta naming itself (or another delta)
        // cannot recurse.
        let base_file = Opened::open(&base_path)?;
        if base_file.header.base.is_some() {
            return Err(in_file(CoreError::snapshot(SnapshotError::BaseIsDelta {
                base: base_path,
            })));
        }
        if base_file.header_hash != base.header_hash {
            return Err(in_file(CoreError::snapshot(SnapshotError::BaseDiffers {
                base: base_path,
            })));
        }
        let mut full = base_file.finish(with_db)?;
        // An update keeps the layout, but for names it appends to the dictionaries.
        if full.header.scheme != header.scheme || !header.layout.extends(&full.header.layout) {
            return Err(in_file(CoreError::snapshot(SnapshotError::BaseShape)));
        }
        apply_delta_payload(&mut reader, len, &mut full, &header, with_db).map_err(in_file)?;
        full.header = header;
        full.origin = Some(base);
        Ok(full)
    }
}

/// Opens `path` for reading if it is a regular file (through symbolic links), and returns it
/// with its length. Anything else is refused before it can block: opening a FIFO waits for a
/// writer, reading a device may never end. The type is checked on the name first, then on the
/// descriptor opened (without blocking, so a FIFO swapped in meanwhile is refused too).
fn open_regular(path: &Path) -> Result<(File, u64)> {
    let refuse = |kind| CoreError::snapshot(SnapshotError::NotRegularFile { kind }).in_file(path);
    let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
    if !meta.is_file() {
        return Err(refuse(file_kind(&meta)));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // No effect on a regular file's reads; makes the open of a FIFO return at once.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| CoreError::io(path, e))?;
    let meta = file.metadata().map_err(|e| CoreError::io(path, e))?;
    if !meta.is_file() {
        return Err(refuse(file_kind(&meta)));
    }
    Ok((file, meta.len()))
}

/// What a file that is not a regular one is, in words.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    "a special file"
}

/// Reads a full file's buckets and (if wanted) database, checking both checksums.
fn read_full_payload(r: &mut dyn Read, header: SnapshotHeader, with_db: bool) -> Result<Snapshot> {
    let plain_len = header.scheme.num_items() * header.scheme.item_bytes();
    let mut plaintext = vec![0u8; plain_len];
    read_exact_or(r, &mut plaintext, "buckets")?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(&plaintext);
    if hasher.finalize().as_bytes() != &header.plaintext_checksum {
        return Err(CoreError::snapshot(SnapshotError::BucketChecksum));
    }
    let db = match header.scheme {
        Scheme::Spiral(params) if with_db => {
            Payload::Spiral(read_words(r, params, &header.db_checksum)?)
        }
        // A YPIR+SP file holds no words: its database derives from the buckets.
        Scheme::YpirSp(_) if header.db_checksum != words_checksum(&[]) => {
            return Err(CoreError::snapshot(SnapshotError::DatabaseChecksum));
        }
        Scheme::YpirSp(params) if with_db => Payload::ypir(params),
        scheme => Payload::not_loaded(scheme),
    };
    Ok(Snapshot::from_parts(header, plaintext, db))
}

/// Reads a Spiral database's words, checking their checksum.
fn read_words(r: &mut dyn Read, params: SchemeParams, checksum: &[u8; 32]) -> Result<Database> {
    {
        let mut db = vec![0u64; params.db_words()];
        let mut hasher = blake3::Hasher::new();
        for chunk in bytemuck::cast_slice_mut::<u64, u8>(&mut db).chunks_mut(1 << 24) {
            read_exact_or(r, chunk, "database")?;
            hasher.update_rayon(chunk);
        }
        if hasher.finalize().as_bytes() != checksum {
            return Err(CoreError::snapshot(SnapshotError::DatabaseChecksum));
        }
        Database::from_words(params, db)
    }
}

pub(super) fn read_exact_or(r: &mut dyn Read, buf: &mut [u8], part: &'static str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CoreError::snapshot(SnapshotError::Truncated { part }),
        _ => CoreError::io("<snapshot>", e),
    })
}

/// Reads and checks the preamble and header; returns the header and the hash of its bytes.
fn read_header_from(r: &mut dyn Read, len: u64) -> Result<(SnapshotHeader, [u8; 32])> {
    let invalid = CoreError::snapshot;
    let mut fixed = [0u8; 16];
    read_exact_or(r, &mut fixed, "preamble")?;
    if fixed[..8] != SNAPSHOT_MAGIC {
        return Err(invalid(SnapshotError::BadMagic));
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().unwrap_or_default());
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(invalid(SnapshotError::Version {
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        }));
    }
    let header_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap_or_default());
    if header_len > MAX_HEADER_LEN {
        return Err(invalid(SnapshotError::HeaderLength));
    }
    let mut header_bytes = vec![0u8; header_len as usize];
    read_exact_or(r, &mut header_bytes, "header")?;
    let mut header_hash = [0u8; 32];
    read_exact_or(r, &mut header_hash, "header")?;
    if blake3::hash(&header_bytes).as_bytes() != &header_hash {
        return Err(invalid(SnapshotError::HeaderChecksum));
    }
    let header = SnapshotHeader::from_bytes(&header_bytes)?;
    if header.base.is_some() {
        // A delta's length depends on its item count, checked when its payload is read.
        return Ok((header, header_hash));
    }
    let plain_len = header.scheme.num_items() * header.scheme.item_bytes();
    let words = header.scheme.spiral().map_or(0, |p| p.db_words());
    let expected = 16 + header_len as u64 + 32 + plain_len as u64 + words as u64 * 8;
    if len < expected {
        return Err(invalid(SnapshotError::Short { len, expected }));
    }
    if len > expected {
        return Err(invalid(SnapshotError::TrailingBytes {
            extra: len - expected,
        }));
    }
    Ok((header, header_hash))
}

pub(super) fn words_checksum(words: &[u64]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for chunk in bytemuck::cast_slice::<u64, u8>(words).chunks(1 << 24) {
        hasher.update_rayon(chunk);
    }
    *hasher.finalize().as_bytes()
}
