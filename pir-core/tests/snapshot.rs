//! Snapshot files: round trip, refusal of damaged files, and format stability.

use std::path::PathBuf;

use pir_core::{
    CoreError, Snapshot,
    error::SnapshotError,
    snapshot::SNAPSHOT_FORMAT_VERSION,
    testing::{
        FIXTURE_V1_CREATED_AT, NOW, file_bytes as to_bytes, fixture_v1_snapshot as build_fixture,
        msps, read_bytes as read, tiny_scheme,
    },
};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-v1.pirsnap")
}

/// Regenerates the committed fixture. Only after a deliberate format version bump:
/// `cargo test -p pir-core --test snapshot -- --ignored regenerate_fixture`
#[test]
#[ignore]
fn regenerate_fixture() {
    build_fixture().write(&fixture_path()).unwrap();
}

#[test]
fn committed_fixture_keeps_loading_and_answering() {
    let bytes = std::fs::read(fixture_path()).expect("fixture is committed");
    let snapshot = Snapshot::load(&fixture_path()).unwrap();
    let h = snapshot.header();
    assert_eq!(
        SNAPSHOT_FORMAT_VERSION, 1,
        "bump the fixture with the version"
    );
    assert_eq!(h.epoch, 3);
    assert_eq!(h.created_at, FIXTURE_V1_CREATED_AT);
    assert_eq!(h.mapping_count, 3);
    assert_eq!(h.cpi_count, 2);
    assert_eq!(h.scheme, tiny_scheme());
    assert_eq!(h.layout.salt, [9; 32]);
    // Writing what was read gives the same bytes: the encoding is pinned both ways.
    assert_eq!(to_bytes(&snapshot), bytes);
    // And today's builder produces the same file from the same input.
    assert_eq!(to_bytes(&build_fixture()), bytes);
    assert_eq!(
        msps(&snapshot, "tel:+14155550100", NOW),
        ["chat.example", "talk.example"]
    );
    assert_eq!(
        msps(&snapshot, "mailto:carol@example.com", NOW),
        ["mail.example"]
    );
    assert!(msps(&snapshot, "mailto:dave@example.com", NOW).is_empty());
}

#[test]
fn file_round_trip() {
    let dir = std::env::temp_dir().join(format!("pir-core-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.pirsnap");
    let snapshot = build_fixture();
    snapshot.write(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        snapshot.file_len().unwrap()
    );
    let loaded = Snapshot::load(&path).unwrap();
    assert_eq!(loaded.header(), snapshot.header());
    assert_eq!(
        msps(&loaded, "mailto:carol@example.com", NOW),
        ["mail.example"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn expect_invalid(bytes: &[u8], expected: fn(&SnapshotError) -> bool) {
    match read(bytes) {
        Err(CoreError::Snapshot { reason, .. }) => {
            assert!(expected(&reason), "wrong reason {reason}")
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("damaged snapshot accepted"),
    }
}

#[test]
fn damaged_files_are_refused_with_a_clear_error() {
    use SnapshotError as E;
    let good = to_bytes(&build_fixture());
    let header_len = u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
    let payload = 16 + header_len + 32;

    expect_invalid(&good[..5], |e| {
        matches!(e, E::Truncated { part: "preamble" })
    });
    expect_invalid(&good[..payload + 10], |e| matches!(e, E::Short { .. }));
    expect_invalid(&good[..good.len() - 1], |e| matches!(e, E::Short { .. }));
    expect_invalid(&[good.clone(), vec![0]].concat(), |e| {
        matches!(e, E::TrailingBytes { extra: 1 })
    });

    let mut bad = good.clone();
    bad[0] = b'X';
    expect_invalid(&bad, |e| matches!(e, E::BadMagic));

    let mut bad = good.clone();
    bad[8] = 2;
    expect_invalid(&bad, |e| {
        matches!(
            e,
            E::Version {
                found: 2,
                supported: 1
            }
        )
    });

    let mut bad = good.clone();
    bad[20] ^= 1;
    expect_invalid(&bad, |e| matches!(e, E::HeaderChecksum));

    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_invalid(&bad, |e| matches!(e, E::HeaderLength));

    // One flipped bit in a bucket, then one in the NTT words.
    let mut bad = good.clone();
    bad[payload + 3] ^= 0x10;
    expect_invalid(&bad, |e| matches!(e, E::BucketChecksum));
    let mut bad = good.clone();
    bad[good.len() - 4] ^= 0x10;
    expect_invalid(&bad, |e| matches!(e, E::DatabaseChecksum));
}
