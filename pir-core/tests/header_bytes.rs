//! A snapshot header's fixed encoding as `GetConfig` carries it: the bytes of the file's
//! header, decoded with the file's checks, and hashed as the file hashes them.

use pir_core::{
    CoreError, SnapshotHeader,
    testing::{dp_key, dp_keys_of, file_bytes, tiny_snapshot},
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
