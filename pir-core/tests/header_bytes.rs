//! A snapshot header's fixed encoding as `GetConfig` carries it: the bytes of the file's
//! header, decoded with the file's checks, and hashed as the file hashes them.

use pir_core::{
    CoreError, SnapshotHeader,
    error::{LayoutError, SnapshotError},
    testing::{dp_key, dp_keys_of, file_bytes, oprf_key, tiny_snapshot},
};

#[test]
fn header_bytes_are_the_files_and_round_trip() {
    let mut snapshot = tiny_snapshot();
    snapshot.sign(&dp_key()).unwrap();
    let header = snapshot.header();
    let bytes = header.to_bytes().unwrap();
    // The file: magic (8), version (4), header length (4), header, blake3(header).
    let file = file_bytes(&snapshot);
    let len = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    assert_eq!(&file[16..16 + len], bytes.as_slice());
    assert_eq!(&file[16 + len..16 + len + 32], &header.hash().unwrap());
    assert_eq!(SnapshotHeader::hash_bytes(&bytes), header.hash().unwrap());

    let back = SnapshotHeader::from_bytes(&bytes).unwrap();
    assert_eq!(&back, header);
    back.verify_signature(&dp_keys_of(&dp_key())).unwrap();
}

#[test]
fn header_bytes_from_the_wire_are_checked() {
    let bytes = tiny_snapshot().header().to_bytes().unwrap();
    let refused = |b: &[u8]| {
        matches!(
            SnapshotHeader::from_bytes(b),
            Err(CoreError::Snapshot { .. })
        )
    };
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(refused(&longer), "trailing byte");
    assert!(refused(&bytes[..bytes.len() - 1]), "truncated");
    assert!(refused(&[]), "empty");
    assert!(refused(&vec![0; (1 << 20) + 1]), "too long");
    let mut bad_scheme = bytes.clone();
    bad_scheme[0] ^= 0xff;
    assert!(refused(&bad_scheme), "bad scheme");
}

/// Where the layout sits in a header's encoding: `version:u32le || salt[32] ||
/// num_buckets:u32le || slot_bytes:u32le || oprf_key[32]`, found by the fixture's salt.
fn layout_at(bytes: &[u8]) -> usize {
    let salt = bytes
        .windows(32)
        .position(|w| w == [9u8; 32])
        .expect("the fixture's salt");
    salt - 4
}

/// The layout a client takes from `GetConfig` is checked as a file's is: its version, its slot
/// size, its bucket count and the OPRF public key every evaluation is proven against.
#[test]
fn header_layouts_from_the_wire_are_checked() {
    let snapshot = tiny_snapshot();
    let bytes = snapshot.header().to_bytes().unwrap();
    let at = layout_at(&bytes);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!(u32_at(at), 2, "layout version");
    assert_eq!(u32_at(at + 36), 8, "num_buckets");
    assert_eq!(u32_at(at + 40), snapshot.header().layout.slot_bytes);
    assert_eq!(
        bytes[at + 44..at + 76],
        oprf_key().public().to_bytes(),
        "the OPRF public key, raw"
    );

    let with = |offset: usize, new: &[u8]| {
        let mut b = bytes.clone();
        b[at + offset..at + offset + new.len()].copy_from_slice(new);
        match SnapshotHeader::from_bytes(&b) {
            Err(CoreError::Snapshot { reason, .. }) => reason,
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("forged layout accepted"),
        }
    };
    let reason = with(0, &1u32.to_le_bytes());
    assert!(
        matches!(
            reason,
            SnapshotError::Layout(LayoutError::Version {
                found: 1,
                supported: 2
            })
        ),
        "{reason}"
    );
    for slot_bytes in [0u32, 15, 4097] {
        let reason = with(40, &slot_bytes.to_le_bytes());
        assert!(
            matches!(reason, SnapshotError::Layout(LayoutError::SlotBytes { got }) if got == slot_bytes),
            "{reason}"
        );
    }
    let reason = with(36, &16u32.to_le_bytes());
    assert!(matches!(reason, SnapshotError::BucketCount), "{reason}");
    // Not a canonical element, and the identity: refused while decoding.
    let mut non_canonical = oprf_key().public().to_bytes();
    non_canonical[31] |= 0x80;
    for key in [non_canonical, [0u8; 32]] {
        let reason = with(44, &key);
        assert!(matches!(reason, SnapshotError::HeaderDecode(_)), "{reason}");
    }
    // Another valid key decodes: the key is data, whose evaluations clients then check.
    let mut other = bytes.clone();
    let another = pir_core::oprf::OprfKey::derive(&[1; 32], b"x").unwrap();
    other[at + 44..at + 76].copy_from_slice(&another.public().to_bytes());
    let header = SnapshotHeader::from_bytes(&other).unwrap();
    assert_eq!(header.layout.oprf_key, another.public());
}
