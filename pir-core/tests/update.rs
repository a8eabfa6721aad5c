//! Delta updates: equal to a full rebuild, removals, replacements, expiry, overflow, signatures.

use pir_core::{
    BuildOptions, CoreError, Cpi, DpKey, Mapping, Snapshot, UpdateOptions, VerifiedMapping,
    error::{Overflow, SnapshotError},
    snapshot::DeltaOp,
    testing::{dp_key, dp_keys_of, file_bytes, lookup_with, mapping_valid, small_scheme, trust},
};

const T0: u64 = 1_800_000_000;
const T1: u64 = T0 + 86_400;

fn m(cpi: &str, msp: &str, psi: Option<&str>, not_after: u64) -> Mapping {
    mapping_valid(cpi, msp, psi, None, (0, not_after), None)
}

fn opts(epoch: u64, now: u64) -> BuildOptions {
    BuildOptions {
        epoch,
        now,
        salt: Some([4; 32]),
        scheme: Some(small_scheme()),
    }
}

fn base() -> Vec<Mapping> {
    let mut v = vec![
        m("tel:+14155550100", "chat.example", Some("old"), u64::MAX),
        m("tel:+14155550100", "talk.example", None, u64::MAX),
        m("mailto:bob@example.org", "chat.example", None, u64::MAX),
        m("mailto:carol@example.org", "chat.example", None, u64::MAX),
        m("mailto:carol@example.org", "ring.example", None, u64::MAX),
        // Valid at T0, expired by T1.
        m("mailto:dave@example.org", "chat.example", None, T0 + 10),
    ];
    for i in 0..300 {
        v.push(m(
            &format!("mailto:u{i}@example.net"),
            "bulk.example",
            None,
            u64::MAX,
        ));
    }
    v
}

fn verified(m: Mapping) -> DeltaOp {
    DeltaOp::Upsert(Box::new(VerifiedMapping::new(m, &trust()).unwrap()))
}

fn remove(cpi: &str, msp: Option<&str>) -> DeltaOp {
    DeltaOp::Remove {
        cpi: Cpi::parse(cpi).unwrap(),
        msp: msp.map(str::to_owned),
    }
}

/// The (MSP, PSI) a client sees for `cpi` at `now`.
fn msps(snapshot: &Snapshot, cpi: &str, now: u64) -> Vec<(String, Option<String>)> {
    lookup_with(snapshot, trust(), cpi, now).unwrap()
}

#[test]
fn update_equals_a_full_rebuild_and_changes_what_clients_see() {
    let (old, _) = Snapshot::build(base(), &trust(), &opts(1, T0)).unwrap();
    let old_layout = *old.config().layout();
    let delta = vec![
        // Replace alice's chat.example mapping (new PSI), add a new CPI, remove one MSP of
        // carol's, remove bob entirely, and insert something already expired.
        verified(m("tel:+14155550100", "chat.example", Some("new"), u64::MAX)),
        verified(m("mailto:erin@example.org", "wire.example", None, u64::MAX)),
        remove("mailto:carol@example.org", Some("ring.example")),
        remove("mailto:bob@example.org", None),
        remove("mailto:nobody@example.org", None),
        verified(m("mailto:frank@example.org", "chat.example", None, T0)),
    ];
    let (new, report) = old
        .update(delta, &UpdateOptions { epoch: 2, now: T1 })
        .unwrap();
    assert_eq!(report.upserts, 2);
    assert_eq!(report.removed, 2);
    assert_eq!(report.removals_unmatched, 1);
    assert_eq!(report.expired_dropped, 2, "dave's (old) and frank's (new)");
    assert!(report.items_reencoded <= 7, "{report:?}");
    assert_eq!(*new.config().layout(), old_layout);
    assert_eq!(new.header().epoch, 2);

    // The same mapping set built from scratch, same layout, parameters, epoch and time.
    let mut expected: Vec<Mapping> = base()
        .into_iter()
        .filter(|m| {
            let cpi = m.fields.cpi.as_str();
            cpi != "mailto:bob@example.org"
                && !(cpi == "mailto:carol@example.org" && m.fields.msp == "ring.example")
        })
        .collect();
    expected.push(m("tel:+14155550100", "chat.example", Some("new"), u64::MAX));
    expected.push(m("mailto:erin@example.org", "wire.example", None, u64::MAX));
    let (rebuilt, _) = Snapshot::build(expected, &trust(), &opts(2, T1)).unwrap();
    assert_eq!(rebuilt.header(), new.header());
    assert!(
        file_bytes(&rebuilt) == file_bytes(&new),
        "update differs from a full rebuild"
    );

    assert_eq!(
        msps(&new, "tel:+14155550100", T1),
        [
            ("chat.example".to_string(), Some("new".to_string())),
            ("talk.example".to_string(), None)
        ]
    );
    assert!(msps(&new, "mailto:bob@example.org", T1).is_empty());
    assert_eq!(
        msps(&new, "mailto:carol@example.org", T1),
        [("chat.example".to_string(), None)]
    );
    assert_eq!(
        msps(&new, "mailto:erin@example.org", T1),
        [("wire.example".to_string(), None)]
    );
    assert!(msps(&new, "mailto:dave@example.org", T1).is_empty());
}

#[test]
fn same_epoch_and_overflow_are_clear_errors() {
    let (old, _) = Snapshot::build(base(), &trust(), &opts(1, T0)).unwrap();
    let err = old
        .update(vec![], &UpdateOptions { epoch: 1, now: T0 })
        .unwrap_err();
    assert!(
        matches!(err, CoreError::EpochUnchanged { epoch: 1 }),
        "{err}"
    );

    // 80 MSPs for one CPI cannot fit one 8 KiB bucket.
    let (old, _) = Snapshot::build(base(), &trust(), &opts(1, T0)).unwrap();
    let delta = (0..80)
        .map(|i| {
            verified(m(
                "tel:+14155550100",
                &format!("msp{i}.example"),
                None,
                u64::MAX,
            ))
        })
        .collect();
    let err = old
        .update(delta, &UpdateOptions { epoch: 2, now: T0 })
        .unwrap_err();
    assert!(
        matches!(err, CoreError::BucketOverflow(Overflow::Delta { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("rebuild"),
        "the remedy is named: {err}"
    );
}

#[test]
fn dp_signatures_cover_the_header_and_content() {
    let dp = dp_key();
    let dp_trust = dp_keys_of(&dp);
    let (mut snapshot, _) = Snapshot::build(base(), &trust(), &opts(1, T0)).unwrap();
    assert!(matches!(
        snapshot.header().verify_signature(&dp_trust),
        Err(CoreError::UnsignedSnapshot)
    ));
    snapshot.sign(&dp).unwrap();
    snapshot.header().verify_signature(&dp_trust).unwrap();

    // The signature survives a write and a load.
    let b = file_bytes(&snapshot);
    let loaded = Snapshot::read_from(&b[..], b.len() as u64).unwrap();
    loaded.header().verify_signature(&dp_trust).unwrap();

    // Another key, or a changed header, does not verify.
    let other = dp_keys_of(&DpKey::from_seed(&[51; 32]));
    assert!(matches!(
        snapshot.header().verify_signature(&other),
        Err(CoreError::UnknownDpKey(_))
    ));
    let mut h = snapshot.header().clone();
    h.epoch += 1;
    assert!(matches!(
        h.verify_signature(&dp_trust),
        Err(CoreError::BadSnapshotSignature)
    ));
    let mut h = snapshot.header().clone();
    h.db_checksum[0] ^= 1;
    assert!(matches!(
        h.verify_signature(&dp_trust),
        Err(CoreError::BadSnapshotSignature)
    ));

    // An update changes the content: the old signature is dropped, not carried over.
    let (updated, _) = snapshot
        .update(
            vec![remove("mailto:bob@example.org", None)],
            &UpdateOptions { epoch: 2, now: T0 },
        )
        .unwrap();
    assert!(updated.header().signature.is_none());
}

/// The self-contained file bytes of a snapshot (a delta is compacted first).
fn full_bytes(mut s: Snapshot) -> Vec<u8> {
    if s.is_delta() {
        s.compact().unwrap();
    }
    file_bytes(&s)
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "pir-update-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn deltas_written_from_buckets_only_equal_a_full_rebuild() {
    let dir = tempfile_dir();
    let (full, _) = Snapshot::build(base(), &trust(), &opts(1, T0)).unwrap();
    let base_path = dir.join("base.pirsnap");
    full.write(&base_path).unwrap();

    // An update that never loads the database: a delta of base.pirsnap.
    let old = Snapshot::load_plaintext(&base_path).unwrap();
    let (mut new, report) = old
        .update(
            vec![
                verified(m("mailto:erin@example.org", "wire.example", None, u64::MAX)),
                remove("mailto:bob@example.org", None),
            ],
            &UpdateOptions { epoch: 2, now: T1 },
        )
        .unwrap();
    assert!(new.is_delta());
    let dp = dp_key();
    new.sign(&dp).unwrap();
    let delta_path = dir.join("epoch2.pirsnap");
    new.write(&delta_path).unwrap();
    let delta_len = std::fs::metadata(&delta_path).unwrap().len();
    let full_len = std::fs::metadata(&base_path).unwrap().len();
    assert!(
        delta_len * 20 < full_len,
        "delta {delta_len} B of {} items vs full {full_len} B",
        report.items_reencoded
    );

    // Loading the delta loads its base and applies it: same content as a full rebuild.
    let loaded = Snapshot::load(&delta_path).unwrap();
    loaded.header().verify_signature(&dp_keys_of(&dp)).unwrap();
    let mut expected: Vec<Mapping> = base()
        .into_iter()
        .filter(|m| m.fields.cpi.as_str() != "mailto:bob@example.org")
        .collect();
    expected.push(m("mailto:erin@example.org", "wire.example", None, u64::MAX));
    let (rebuilt, _) = Snapshot::build(expected.clone(), &trust(), &opts(2, T1)).unwrap();
    assert_eq!(loaded.header().epoch, 2);
    assert_eq!(
        loaded.header().mapping_count,
        rebuilt.header().mapping_count
    );
    assert_eq!(loaded.header().cpi_count, rebuilt.header().cpi_count);
    assert!(msps(&loaded, "mailto:bob@example.org", T1).is_empty());
    assert_eq!(
        msps(&loaded, "mailto:erin@example.org", T1),
        [("wire.example".to_string(), None)]
    );
    assert!(
        full_bytes(loaded) == full_bytes(rebuilt),
        "delta differs from a rebuild"
    );

    // A delta of the delta still refers to the full base and accumulates the changes.
    let (again, _) = Snapshot::load_plaintext(&delta_path)
        .unwrap()
        .update(
            vec![remove("mailto:carol@example.org", Some("ring.example"))],
            &UpdateOptions { epoch: 3, now: T1 },
        )
        .unwrap();
    let path3 = dir.join("epoch3.pirsnap");
    again.write(&path3).unwrap();
    let loaded3 = Snapshot::load(&path3).unwrap();
    assert_eq!(loaded3.header().base.as_ref().unwrap().file, "base.pirsnap");
    assert_eq!(loaded3.header().base.as_ref().unwrap().epoch, 1);
    expected.retain(|m| {
        !(m.fields.cpi.as_str() == "mailto:carol@example.org" && m.fields.msp == "ring.example")
    });
    let (rebuilt3, _) = Snapshot::build(expected, &trust(), &opts(3, T1)).unwrap();
    assert!(
        full_bytes(loaded3) == full_bytes(rebuilt3),
        "second delta differs"
    );

    // A damaged delta, a missing base and a replaced base are refused.
    let mut b = std::fs::read(&path3).unwrap();
    let len = b.len();
    b[len - 10] ^= 1;
    let damaged = dir.join("damaged.pirsnap");
    std::fs::write(&damaged, &b).unwrap();
    let err = Snapshot::load(&damaged).unwrap_err();
    assert!(
        matches!(
            &err,
            CoreError::Snapshot {
                path: Some(p),
                reason: SnapshotError::DeltaDatabaseChecksum,
            } if *p == damaged
        ),
        "{err}"
    );
    let (other, _) = Snapshot::build(base(), &trust(), &opts(9, T0)).unwrap();
    other.write(&base_path).unwrap();
    let err = Snapshot::load(&path3).unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::Snapshot {
                reason: SnapshotError::BaseDiffers { .. },
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_file(&base_path).unwrap();
    assert!(Snapshot::load(&path3).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
