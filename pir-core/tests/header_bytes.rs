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

/// The layout a client takes from `GetConfig` is checked as a file's is: its version, its
/// bucket and group counts, its choice table, its dictionaries and the OPRF public key every
/// evaluation is proven against. Each forged header below is refused with its reason, never
/// a panic.
#[test]
fn header_layouts_from_the_wire_are_checked() {
    let snapshot = tiny_snapshot();
    let good = snapshot.header().clone();
    assert_eq!(good.layout.version, 3);
    assert_eq!(
        good.layout.choices.len(),
        good.layout.num_groups.div_ceil(4) as usize
    );
    let refusal = |edit: &dyn Fn(&mut SnapshotHeader)| {
        let mut h = good.clone();
        edit(&mut h);
        match SnapshotHeader::from_bytes(&h.to_bytes().unwrap()) {
            Err(CoreError::Snapshot { reason, .. }) => reason,
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("forged layout accepted"),
        }
    };
    let layout = |r: SnapshotError| match r {
        SnapshotError::Layout(reason) => reason,
        other => panic!("not a layout refusal: {other}"),
    };
    assert_eq!(
        layout(refusal(&|h| h.layout.version = 2)),
        LayoutError::Version {
            found: 2,
            supported: 3
        }
    );
    assert_eq!(
        layout(refusal(&|h| h.layout.num_groups = 0)),
        LayoutError::Groups { got: 0 }
    );
    assert_eq!(
        layout(refusal(&|h| h.layout.num_groups = (1 << 22) + 1)),
        LayoutError::Groups { got: (1 << 22) + 1 }
    );
    // A table one byte short, one byte long, or for other group counts.
    let expected = good.layout.choices.len();
    for got in [0, expected - 1, expected + 1, 1000] {
        assert_eq!(
            layout(refusal(&|h| h.layout.choices.resize(got, 0))),
            LayoutError::ChoiceTable { expected, got }
        );
    }
    // Bits past the last group (the tiny layout has 8 groups: use 7).
    assert_eq!(
        layout(refusal(&|h| {
            h.layout.num_groups = 7;
            h.layout.choices[1] = 0b1100_0000;
        })),
        LayoutError::ChoiceTablePadding
    );
    assert_eq!(
        layout(refusal(&|h| h.layout.msps[0] = "Chat.Example".into())),
        LayoutError::DictionaryName
    );
    assert_eq!(
        layout(refusal(&|h| h.layout.msps[0] = "not a domain".into())),
        LayoutError::DictionaryName
    );
    assert_eq!(
        layout(refusal(&|h| {
            let first = h.layout.msps[0].clone();
            h.layout.msps.push(first);
        })),
        LayoutError::DictionaryDuplicate
    );
    assert_eq!(
        layout(refusal(&|h| {
            let first = h.layout.issuers[0];
            h.layout.issuers.push(first);
        })),
        LayoutError::DictionaryDuplicate
    );
    assert_eq!(
        // Short names, so that the header stays within its 1 MiB bound.
        layout(refusal(
            &|h| h.layout.msps = (0..65_537).map(|i| format!("a{i}")).collect()
        )),
        LayoutError::DictionarySize
    );
    assert!(matches!(
        refusal(&|h| h.layout.num_buckets = 16),
        SnapshotError::BucketCount
    ));

    // Not a canonical element, and the identity: refused while decoding.
    let bytes = good.to_bytes().unwrap();
    let key = oprf_key().public().to_bytes();
    let at = bytes
        .windows(32)
        .position(|w| w == key)
        .expect("the OPRF public key, raw");
    let mut non_canonical = key;
    non_canonical[31] |= 0x80;
    for key in [non_canonical, [0u8; 32]] {
        let mut b = bytes.clone();
        b[at..at + 32].copy_from_slice(&key);
        assert!(matches!(
            SnapshotHeader::from_bytes(&b),
            Err(CoreError::Snapshot {
                reason: SnapshotError::HeaderDecode(_),
                ..
            })
        ));
    }
    // Another valid key decodes: the key is data, whose evaluations clients then check.
    let mut other = bytes.clone();
    let another = pir_core::oprf::OprfKey::derive(&[1; 32], b"x").unwrap();
    other[at..at + 32].copy_from_slice(&another.public().to_bytes());
    let header = SnapshotHeader::from_bytes(&other).unwrap();
    assert_eq!(header.layout.oprf_key, another.public());
    // A huge choice-table length prefix is refused by the decoder's limit, not allocated.
    let table_len_at = bytes
        .windows(8)
        .position(|w| w == (expected as u64).to_le_bytes())
        .unwrap();
    let mut huge = bytes.clone();
    huge[table_len_at..table_len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(SnapshotHeader::from_bytes(&huge).is_err());
}
