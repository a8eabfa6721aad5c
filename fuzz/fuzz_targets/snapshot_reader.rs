//! `Snapshot::read_from` on arbitrary bytes: `Ok` or `Err`, never a panic or a hang.
//!
//! Each input is read twice: as given, and with its magic, version and all three checksums fixed
//! up (they are plain hashes, so an attacker can recompute them too). The second read is what lets
//! mutations reach the header decoder and its validation instead of dying at the checksum.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pir_core::{
    Snapshot,
    snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC},
};

/// Preamble: magic (8), format version (4), header length (4).
const PREAMBLE_LEN: usize = 16;
/// A full, unsigned header ends with `base: None` (one zero byte), blake3 of the buckets, blake3
/// of the database words and `signature: None` (one zero byte).
const TAIL_LEN: usize = 1 + 32 + 32 + 1;
/// Offsets in the header of `nu_1`, `nu_2` and `item_bytes` (bincode, fixed-width integers).
const NU_1_AT: usize = 4;
const NU_2_AT: usize = 8;
const ITEM_BYTES_AT: usize = 44;

/// Reads a snapshot and pokes at what was read; true if it was accepted.
fn read(bytes: &[u8]) -> bool {
    let Ok(snapshot) = Snapshot::read_from(bytes, bytes.len() as u64) else {
        return false;
    };
    let _ = snapshot.message_sizes();
    let _ = snapshot.header().packing_efficiency();
    let items = snapshot.header().scheme.num_items();
    assert!(snapshot.bucket(items - 1).is_some());
    // Not usize::MAX / 2: `Snapshot::bucket` overflows on huge indices (a known bug, see
    // `bucket_with_huge_index_is_none` in pir-core/tests/hostile.rs).
    assert!(snapshot.bucket(items).is_none());
    true
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The input with a valid preamble and recomputed checksums, if it is long enough to have them.
fn fix_up(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = data.to_vec();
    out.get_mut(..12)?
        .copy_from_slice(&[&SNAPSHOT_MAGIC[..], &SNAPSHOT_FORMAT_VERSION.to_le_bytes()].concat());
    let header_len = u32_at(&out, 12)?;
    let header_end = PREAMBLE_LEN.checked_add(header_len)?;
    let payload_start = header_end.checked_add(32)?;
    if payload_start > out.len() {
        return None;
    }
    let header = &out[PREAMBLE_LEN..header_end];
    // The payload's split into buckets and words follows the header's shape.
    let plain_len = u32_at(header, NU_1_AT)
        .zip(u32_at(header, NU_2_AT))
        .and_then(|(a, b)| 1usize.checked_shl(u32::try_from(a.checked_add(b)?).ok()?))
        .zip(u32_at(header, ITEM_BYTES_AT))
        .and_then(|(items, item_bytes)| items.checked_mul(item_bytes));
    let payload_len = out.len() - payload_start;
    if let Some(plain_len) = plain_len.filter(|&p| p <= payload_len)
        && header_len >= TAIL_LEN
        && out[header_end - 1] == 0
    {
        let (plain, words) = out[payload_start..].split_at(plain_len);
        let (plain, words) = (blake3::hash(plain), blake3::hash(words));
        let tail = header_end - TAIL_LEN;
        out[tail] = 0;
        out[tail + 1..tail + 33].copy_from_slice(plain.as_bytes());
        out[tail + 33..tail + 65].copy_from_slice(words.as_bytes());
    }
    let header = blake3::hash(&out[PREAMBLE_LEN..header_end]);
    out[header_end..payload_start].copy_from_slice(header.as_bytes());
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let valid = read(data);
    if let Some(fixed) = fix_up(data) {
        // Fixing up a valid file changes nothing: the fix-up knows the format.
        assert!(!valid || fixed == data, "fix-up changed a valid file");
        read(&fixed);
    }
});
