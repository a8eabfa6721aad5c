//! Load in place (issue 17, item 5): the snapshot loader, which reads the database words straight
//! into their final buffer while hashing them, against mapping the file (memmap2, MAP_POPULATE)
//! and hashing the mapped regions with the same blake3 calls, each set beside a plain read of the
//! same file. One run, the variants alternating, the page cache warm; medians reported.
//!
//! `cargo run --release -p pir-benches --bin load_mmap -- --snapshot db.pirsnap --repeat 5`
//!
//! The mapped variants check everything the loader checks that costs time (the header's hash,
//! the buckets' and the words' checksums); they skip only the loader's file-type checks (a few
//! system calls). A mapping's words are usable as `&[u64]` only if their file offset is a
//! multiple of 8 (a mapping starts on a page); the tool says whether this file's is, and also
//! times mapping, hashing and then copying the words into an aligned buffer, which is what an
//! unaligned offset would take without a change of file format.

#![allow(clippy::print_stdout)]
// Mapping a file is an unsafe call in memmap2: the file must not change while it is mapped.
#![allow(unsafe_code)]

use std::{fs::File, hint::black_box, ops::Range, path::PathBuf};

use clap::Parser;
use memmap2::{Mmap, MmapOptions};
use pir_benches::{median, timed};
use pir_core::{
    Snapshot, SnapshotHeader,
    snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC},
};

type Error = Box<dyn std::error::Error>;

#[derive(Parser)]
struct Args {
    /// A full snapshot file (not a delta), e.g. built by `pir-server synth` and `pir-server build`.
    #[arg(long)]
    snapshot: PathBuf,
    /// Repetitions of each variant, alternating (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

/// Where the parts of a full snapshot file lie (`pir-core/src/snapshot/file.rs`: magic and
/// version, header length, header, its blake3, buckets, words; nothing pads them).
struct Layout {
    header: Range<usize>,
    header_hash: Range<usize>,
    buckets: Range<usize>,
    words: Range<usize>,
}

impl Layout {
    /// The layout the file's first bytes give, checked against its length.
    fn of(bytes: &[u8]) -> Result<(Self, SnapshotHeader), Error> {
        if bytes.len() < 16 || bytes[..8] != SNAPSHOT_MAGIC {
            return Err("not a snapshot file".into());
        }
        if u32::from_le_bytes(bytes[8..12].try_into()?) != SNAPSHOT_FORMAT_VERSION {
            return Err("a snapshot of another format version".into());
        }
        let header_len = u32::from_le_bytes(bytes[12..16].try_into()?) as usize;
        let header = 16..16 + header_len;
        let header_hash = header.end..header.end + 32;
        if bytes.len() < header_hash.end {
            return Err("file shorter than its header".into());
        }
        let decoded = SnapshotHeader::from_bytes(&bytes[header.clone()])?;
        if decoded.base.is_some() {
            return Err("a delta file: give its full base snapshot".into());
        }
        let scheme = &decoded.scheme;
        let buckets = header_hash.end..header_hash.end + scheme.num_items() * scheme.item_bytes();
        let words = buckets.end..buckets.end + scheme.spiral().map_or(0, |p| p.db_words()) * 8;
        if bytes.len() != words.end {
            return Err(format!(
                "file of {} bytes, its header says {}",
                bytes.len(),
                words.end
            )
            .into());
        }
        let layout = Self {
            header,
            header_hash,
            buckets,
            words,
        };
        Ok((layout, decoded))
    }
}

/// The loader's checksums, computed as it computes them: the buckets in one `update_rayon`, the
/// words in 16 MiB chunks (`read_full_payload` in `file.rs`).
fn check_payload(
    bytes: &[u8],
    layout: &Layout,
    header: &SnapshotHeader,
) -> Result<(), &'static str> {
    if blake3::hash(&bytes[layout.header.clone()]).as_bytes()[..]
        != bytes[layout.header_hash.clone()]
    {
        return Err("header checksum");
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(&bytes[layout.buckets.clone()]);
    if hasher.finalize().as_bytes() != &header.plaintext_checksum {
        return Err("bucket checksum");
    }
    let mut hasher = blake3::Hasher::new();
    for chunk in bytes[layout.words.clone()].chunks(1 << 24) {
        hasher.update_rayon(chunk);
    }
    if hasher.finalize().as_bytes() != &header.db_checksum {
        return Err("database checksum");
    }
    Ok(())
}

/// Maps the whole file read-only (populated up front or not), decodes its header and checks
/// every checksum before returning the mapping: what a mapped loader must do before serving.
fn map_checked(path: &PathBuf, populate: bool) -> Result<(Mmap, Layout), Error> {
    let file = File::open(path)?;
    let mut options = MmapOptions::new();
    if populate {
        options.populate();
    }
    // SAFETY: nothing writes the file while this tool runs; a server would rely on the rule in
    // docs/performance.md ("Swapping a mapped snapshot"): files are replaced by rename only.
    let map = unsafe { options.map(&file)? };
    let (layout, header) = Layout::of(&map)?;
    check_payload(&map, &layout, &header)?;
    Ok((map, layout))
}

/// The words as `u64`s, in place when their address allows it.
fn words_in_place(bytes: &[u8]) -> Option<&[u64]> {
    bytemuck::try_cast_slice(bytes).ok()
}

/// One single-threaded pass over the words (their wrapping sum): what a scan of the database
/// costs from this memory, anonymous or mapped.
fn sum_words(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .fold(0u64, u64::wrapping_add)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let path = &args.snapshot;
    // Warm the page cache (and fail early on a file that is not a full snapshot).
    let warm = std::fs::read(path)?;
    let (layout, header) = Layout::of(&warm)?;
    check_payload(&warm, &layout, &header)?;
    drop(warm);

    let (mut read, mut load, mut map_pop, mut map_lazy, mut map_copy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut map_only, mut scan_heap, mut scan_map) = (Vec::new(), Vec::new(), Vec::new());
    let mut aligned_in_map = None;
    for _ in 0..args.repeat.max(1) {
        // (a) A plain read of the whole file into a Vec.
        let (bytes, s) = timed(|| std::fs::read(path));
        let bytes = bytes?;
        read.push(s);
        let (sum, s) = timed(|| sum_words(&bytes[layout.words.clone()]));
        black_box(sum);
        scan_heap.push(s);
        drop(bytes);

        // (b) The real loader, checksums checked.
        let (snapshot, s) = timed(|| Snapshot::load(path));
        drop(snapshot?);
        load.push(s);

        // (c) Mapped with MAP_POPULATE, every checksum checked from the mapping.
        let (mapped, s) = timed(|| map_checked(path, true));
        let (map, _) = mapped?;
        map_pop.push(s);
        aligned_in_map = Some(words_in_place(&map[layout.words.clone()]).is_some());
        let (sum, s) = timed(|| sum_words(&map[layout.words.clone()]));
        black_box(sum);
        scan_map.push(s);
        drop(map);

        // (d) Mapped without MAP_POPULATE: the hashing takes the page faults.
        let (mapped, s) = timed(|| map_checked(path, false));
        drop(mapped?);
        map_lazy.push(s);

        // (e) (c), then the words copied into an aligned buffer: what serving a mapping whose
        // words are not 8-byte aligned would take without padding the file format.
        let (copied, s) = timed(|| -> Result<(Mmap, Vec<u64>), Error> {
            let (map, layout) = map_checked(path, true)?;
            let mut words = vec![0u64; layout.words.len() / 8];
            bytemuck::cast_slice_mut::<u64, u8>(&mut words).copy_from_slice(&map[layout.words]);
            Ok((map, words))
        });
        drop(copied?);
        map_copy.push(s);

        // (f) Mapping with MAP_POPULATE alone, nothing hashed: what (c) spends outside blake3.
        let (mapped, s) = timed(|| -> Result<Mmap, Error> {
            let file = File::open(path)?;
            // SAFETY: as in `map_checked`.
            Ok(unsafe { MmapOptions::new().populate().map(&file)? })
        });
        drop(mapped?);
        map_only.push(s);
    }

    let n = read.len();
    let samples = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = [
        ("read", &read),
        ("load", &load),
        ("map populate", &map_pop),
        ("map lazy", &map_lazy),
        ("map + copy", &map_copy),
        ("map only", &map_only),
        ("scan heap", &scan_heap),
        ("scan map", &scan_map),
    ]
    .map(|(name, xs)| format!("{name}: {}", samples(xs)));
    let [
        read,
        load,
        map_pop,
        map_lazy,
        map_copy,
        map_only,
        scan_heap,
        scan_map,
    ] = [
        read, load, map_pop, map_lazy, map_copy, map_only, scan_heap, scan_map,
    ]
    .map(median);

    let offset = layout.words.start;
    println!(
        "## Load in place: {} ({} items x {} B), file {:.0} MiB\n",
        path.display(),
        header.scheme.num_items(),
        header.scheme.item_bytes(),
        mib(layout.words.end)
    );
    println!(
        "Header {} B, buckets {:.0} MiB, words {:.0} MiB at file offset {offset} (offset mod 8 = \
         {}, mod 4096 = {}): the mapped words {} usable in place as u64.\n",
        layout.header.len(),
        mib(layout.buckets.len()),
        mib(layout.words.len()),
        offset % 8,
        offset % 4096,
        if aligned_in_map == Some(true) {
            "are"
        } else {
            "are NOT"
        },
    );
    println!("| step (median of {n}, page cache warm) | seconds | ratio |");
    println!("| --- | ---: | --- |");
    println!("| (a) plain sequential read of the file into a Vec | {read:.3} | 1 |");
    println!(
        "| (b) `Snapshot::load`: read into the final buffers while hashing, checksums checked | \
         {load:.3} | load / read = {:.2}x |",
        load / read
    );
    println!(
        "| (c) mmap, MAP_POPULATE, header + buckets + words hashed from the mapping | \
         {map_pop:.3} | map / read = {:.2}x |",
        map_pop / read
    );
    println!(
        "| (d) mmap without MAP_POPULATE, hashed (faults taken while hashing) | {map_lazy:.3} | \
         {:.2}x |",
        map_lazy / read
    );
    println!(
        "| (e) (c), then the words copied to an aligned Vec<u64> | {map_copy:.3} | {:.2}x |",
        map_copy / read
    );
    println!(
        "| (f) mmap with MAP_POPULATE alone, nothing hashed | {map_only:.3} | {:.2}x |",
        map_only / read
    );
    println!(
        "| one pass over the words (sum, 1 thread), heap buffer of (a) | {scan_heap:.3} | 1 |"
    );
    println!(
        "| one pass over the words (sum, 1 thread), mapping of (c) | {scan_map:.3} | \
         map / heap = {:.2}x |",
        scan_map / scan_heap
    );
    println!("\nSamples (s): {}", all.join("; "));
    Ok(())
}
