//! Delta updates: what clients see equals a full rebuild, removals, replacements, opt-outs,
//! expiry, the dictionaries, overflow, the OPRF key, signatures.

use pir_core::{
    BuildOptions, CoreError, Cpi, DpKey, ErrorClass, Mapping, Snapshot, SnapshotHeader,
    UpdateOptions, VerifiedMapping,
    error::{Overflow, SnapshotError},
    identity::{OptOut, VerifiedOptOut},
    oprf::OprfKey,
    snapshot::DeltaOp,
    testing::{
        build_records, dp_key, dp_keys_of, file_bytes, issuer, lookup_result, lookup_with,
        mapping_valid, oprf_key, small_scheme, trust,
    },
};

/// The base's build time; an update while everything in it is still valid; a day later, when
/// dave's mapping has expired.
const T0: u64 = 1_800_000_000;
const TU: u64 = T0 + 5;
const T1: u64 = T0 + 86_400;

fn m(cpi: &str, msp: &str, psi: Option<&str>, not_after: u64) -> Mapping {
    mapping_valid(cpi, msp, psi, None, (0, not_after), None)
}

fn opts(epoch: u64, now: u64) -> BuildOptions {
    BuildOptions {
        epoch,
        now,
        salt: Some([4; 32]),
        scheme: Some(small_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    }
}

fn build(mappings: Vec<Mapping>, opts: &BuildOptions) -> Snapshot {
    Snapshot::build(mappings, &trust(), &oprf_key(), opts)
        .unwrap()
        .0
}

fn update(
    snapshot: Snapshot,
    ops: Vec<DeltaOp>,
    epoch: u64,
    now: u64,
) -> pir_core::Result<(Snapshot, pir_core::snapshot::UpdateReport)> {
    snapshot.update(ops, &oprf_key(), &UpdateOptions { epoch, now })
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

fn opt_out_op(o: OptOut) -> DeltaOp {
    DeltaOp::OptOut(Box::new(VerifiedOptOut::new(o, &trust()).unwrap()))
}

fn opt_out(cpi: &str) -> OptOut {
    OptOut::sign(Cpi::parse(cpi).unwrap(), 0, u64::MAX, &issuer()).unwrap()
}

fn remove(cpi: &str, msp: Option<&str>) -> DeltaOp {
    DeltaOp::Remove {
        cpi: Cpi::parse(cpi).unwrap(),
        msp: msp.map(str::to_owned),
    }
}

/// The CPIs the deltas below name, and some of the bulk ones (a PIR lookup each: all 300
/// would be slow).
fn all_cpis() -> Vec<String> {
    let mut cpis: Vec<String> = base()
        .iter()
        .take(12)
        .map(|m| m.fields.cpi.as_str().to_owned())
        .collect();
    cpis.extend(
        [
            "mailto:erin@example.org",
            "mailto:frank@example.org",
            "mailto:new@example.org",
            "mailto:nobody@example.org",
        ]
        .map(String::from),
    );
    cpis.dedup();
    cpis
}

/// Asserts that a client sees the same for those CPIs in `a` and `b` at `now`: an update is a
/// rebuild's equal in everything a lookup shows (the layouts differ: a rebuild balances its
/// buckets anew and sorts its dictionaries).
fn same_answers(a: &Snapshot, b: &Snapshot, now: u64) {
    for cpi in all_cpis() {
        let (x, y) = (
            lookup_result(a, trust(), &cpi, now).unwrap(),
            lookup_result(b, trust(), &cpi, now).unwrap(),
        );
        assert_eq!(x, y, "{cpi}");
    }
}

/// The (MSP, PSI) a client sees for `cpi` at `now`.
fn msps(snapshot: &Snapshot, cpi: &str, now: u64) -> Vec<(String, Option<String>)> {
    lookup_with(snapshot, trust(), cpi, now).unwrap()
}

#[test]
fn update_equals_a_full_rebuild_and_changes_what_clients_see() {
    let old = build(base(), &opts(1, T0));
    let old_layout = old.config().layout().clone();
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
    let (new, report) = update(old, delta, 2, TU).unwrap();
    assert_eq!(report.upserts, 2);
    assert_eq!(report.removed, 2);
    assert_eq!(report.removals_unmatched, 1);
    assert_eq!(report.expired_dropped, 1, "frank's, expired before it came");
    assert!(report.items_reencoded <= 7, "{report:?}");
    // The same layout, but for wire.example appended to the MSP dictionary.
    assert_ne!(new.config().layout(), &old_layout);
    assert!(new.config().layout().extends(&old_layout));
    assert_eq!(
        new.config().layout().msps.last().map(String::as_str),
        Some("wire.example")
    );
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
    let rebuilt = build(expected, &opts(2, TU));
    assert_eq!(counts(rebuilt.header()), counts(new.header()));
    same_answers(&rebuilt, &new, TU);

    assert_eq!(
        msps(&new, "tel:+14155550100", TU),
        [
            ("chat.example".to_string(), Some("new".to_string())),
            ("talk.example".to_string(), None)
        ]
    );
    assert!(msps(&new, "mailto:bob@example.org", TU).is_empty());
    assert_eq!(
        msps(&new, "mailto:carol@example.org", TU),
        [("chat.example".to_string(), None)]
    );
    assert_eq!(
        msps(&new, "mailto:erin@example.org", TU),
        [("wire.example".to_string(), None)]
    );
    assert!(msps(&new, "mailto:frank@example.org", TU).is_empty());
}

/// An update opens only the records of the CPIs its delta names: an expired mapping of any
/// other CPI stays stored (and counted in the header) until the next full build, and clients
/// report it as outside its validity window, not as found. Naming the CPI sweeps it.
#[test]
fn expired_statements_of_cpis_the_delta_does_not_name_stay_until_a_rebuild() {
    let dave = "mailto:dave@example.org";
    let old = build(base(), &opts(1, T0));
    assert_eq!(msps(&old, dave, T0).len(), 1);
    let (new, report) = update(
        old,
        vec![verified(m(
            "mailto:erin@example.org",
            "wire.example",
            None,
            u64::MAX,
        ))],
        2,
        T1,
    )
    .unwrap();
    assert_eq!(report.expired_dropped, 0, "dave's record was not opened");

    // The stored set is still the base's (dave included) plus erin: as a rebuild at a time
    // when dave's mapping was valid would store it, but stamped T1.
    let mut stored = base();
    stored.push(m("mailto:erin@example.org", "wire.example", None, u64::MAX));
    let with_dave = build(stored.clone(), &opts(2, TU));
    let without_dave = build(stored.clone(), &opts(2, T1));
    let h = new.header();
    assert_eq!(h.created_at, T1);
    assert_eq!(counts(h), counts(with_dave.header()));
    assert_eq!(h.mapping_count, without_dave.header().mapping_count + 1);
    assert_eq!(h.cpi_count, without_dave.header().cpi_count + 1);
    // What clients see is what the rebuild that keeps dave shows.
    same_answers(&new, &with_dave, T0);

    // A client at T1 is told the mapping exists but is out of its window.
    let result = lookup_result(&new, trust(), dave, T1).unwrap();
    assert!(!result.found() && !result.opted_out(), "{result:?}");
    assert_eq!(result.outside_validity, 1);
    assert!(result.untrusted.is_empty());
    // At T0 (a client whose clock is behind) it still verifies: it is genuine, only old.
    assert!(lookup_result(&new, trust(), dave, T0).unwrap().found());

    // A delta that names dave opens his record and drops the expired mapping with it.
    let (swept, report) = update(new, vec![remove(dave, Some("other.example"))], 3, T1).unwrap();
    assert_eq!(report.expired_dropped, 1);
    assert_eq!(report.removals_unmatched, 1);
    assert_eq!(counts(swept.header()), counts(without_dave.header()));
    let result = lookup_result(&swept, trust(), dave, T1).unwrap();
    assert_eq!(result.outside_validity, 0);

    // So does a full rebuild at T1.
    let (_, report) = Snapshot::build(stored, &trust(), &oprf_key(), &opts(3, T1)).unwrap();
    assert_eq!(report.expired_dropped, 1);
}

/// The header's counts of what a snapshot stores.
fn counts(h: &SnapshotHeader) -> [u64; 5] {
    [
        h.mapping_count,
        h.opt_out_count,
        h.cpi_count,
        h.bucket_bytes,
        h.record_bytes,
    ]
}

/// Opt-outs through updates: an opt-out replaces a CPI's mappings, a later mapping replaces the
/// opt-out, a removal of every MSP removes an opt-out too, one of a single MSP does not. After
/// each step the header's counts, and every lookup, equal a full rebuild of the same set.
#[test]
fn opt_outs_replace_mappings_and_are_replaced_by_them() {
    let alice = "tel:+14155550100";
    let carol = "mailto:carol@example.org";
    let without = |cpis: &[&str]| -> Vec<Mapping> {
        base()
            .into_iter()
            .filter(|m| !cpis.contains(&m.fields.cpi.as_str()))
            .collect()
    };
    let check = |snapshot: &Snapshot, mappings: Vec<Mapping>, opt_outs: Vec<OptOut>| {
        let h = snapshot.header();
        let rebuilt = build_records(mappings, opt_outs, &opts(h.epoch, TU));
        assert_eq!(counts(h), counts(rebuilt.header()), "epoch {}", h.epoch);
        same_answers(snapshot, &rebuilt, TU);
    };
    let state = |snapshot: &Snapshot, cpi: &str| {
        let r = lookup_result(snapshot, trust(), cpi, TU).unwrap();
        (r.msps().len(), r.opted_out())
    };

    let old = build(base(), &opts(1, T0));
    // Alice and carol opt out; a CPI never seen opts out too.
    let (s2, report) = update(
        old,
        vec![
            opt_out_op(opt_out(alice)),
            opt_out_op(opt_out(carol)),
            opt_out_op(opt_out("mailto:new@example.org")),
        ],
        2,
        TU,
    )
    .unwrap();
    assert_eq!(report.opt_outs, 3);
    assert_eq!(report.removed, 4, "alice's two mappings and carol's two");
    assert_eq!(s2.header().opt_out_count, 3);
    assert_eq!(state(&s2, alice), (0, true));
    assert_eq!(state(&s2, carol), (0, true));
    assert_eq!(state(&s2, "mailto:new@example.org"), (0, true));
    assert_eq!(state(&s2, "mailto:bob@example.org"), (1, false));
    let opted = || {
        vec![
            opt_out(alice),
            opt_out(carol),
            opt_out("mailto:new@example.org"),
        ]
    };
    check(&s2, without(&[alice, carol]), opted());

    // A mapping for alice replaces her opt-out; removing one MSP of carol's leaves hers.
    let (s3, report) = update(
        s2,
        vec![
            verified(m(alice, "chat.example", Some("back"), u64::MAX)),
            remove(carol, Some("chat.example")),
        ],
        3,
        TU,
    )
    .unwrap();
    assert_eq!(report.upserts, 1);
    assert_eq!(report.removed, 1, "alice's opt-out");
    assert_eq!(
        report.removals_unmatched, 1,
        "carol has an opt-out, not a mapping"
    );
    assert_eq!(state(&s3, alice), (1, false));
    assert_eq!(state(&s3, carol), (0, true));
    let mut mappings = without(&[alice, carol]);
    mappings.push(m(alice, "chat.example", Some("back"), u64::MAX));
    check(&s3, mappings.clone(), opted()[1..].to_vec());

    // Removing everything of a CPI removes its opt-out, and of another its mappings.
    let (s4, report) = update(s3, vec![remove(carol, None), remove(alice, None)], 4, TU).unwrap();
    assert_eq!(report.removed, 2);
    assert_eq!(state(&s4, alice), (0, false));
    assert_eq!(state(&s4, carol), (0, false));
    assert_eq!(s4.header().opt_out_count, 1);
    check(
        &s4,
        without(&[alice, carol]),
        vec![opt_out("mailto:new@example.org")],
    );
}

/// An update keyed by another OPRF key than the snapshot's would seal the named CPIs' records
/// where no client looks: it is refused, naming the key the snapshot needs.
#[test]
fn an_update_with_another_oprf_key_is_refused() {
    let old = build(base(), &opts(1, T0));
    let expected = old.header().layout.oprf_key.to_string();
    let other = OprfKey::derive(&[0x42; 32], b"another DP").unwrap();
    let err = old
        .update(
            vec![verified(m(
                "mailto:erin@example.org",
                "wire.example",
                None,
                u64::MAX,
            ))],
            &other,
            &UpdateOptions { epoch: 2, now: TU },
        )
        .unwrap_err();
    match &err {
        CoreError::OprfKeyMismatch { expected: named } => assert_eq!(*named, expected),
        other => panic!("wrong error: {other}"),
    }
    assert_eq!(err.class(), ErrorClass::Misuse);
    assert!(err.to_string().contains(&expected), "{err}");
    // Even an empty delta: the key is checked first.
    let old = build(base(), &opts(1, T0));
    assert!(matches!(
        old.update(vec![], &other, &UpdateOptions { epoch: 2, now: TU }),
        Err(CoreError::OprfKeyMismatch { .. })
    ));
}

#[test]
fn same_epoch_and_overflow_are_clear_errors() {
    let old = build(base(), &opts(1, T0));
    let err = update(old, vec![], 1, T0).unwrap_err();
    assert!(
        matches!(err, CoreError::EpochUnchanged { epoch: 1 }),
        "{err}"
    );

    // 120 MSPs for one CPI cannot fit one 8 KiB bucket.
    let old = build(base(), &opts(1, T0));
    let delta = (0..120)
        .map(|i| {
            verified(m(
                "tel:+14155550100",
                &format!("msp{i}.example"),
                None,
                u64::MAX,
            ))
        })
        .collect();
    let err = update(old, delta, 2, T0).unwrap_err();
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
    let mut snapshot = build(base(), &opts(1, T0));
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
    let (updated, _) = update(
        snapshot,
        vec![remove("mailto:bob@example.org", None)],
        2,
        T0,
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
    let full = build(base(), &opts(1, T0));
    let base_path = dir.join("base.pirsnap");
    full.write(&base_path).unwrap();

    // An update that never loads the database: a delta of base.pirsnap.
    let old = Snapshot::load_plaintext(&base_path).unwrap();
    let (mut new, report) = update(
        old,
        vec![
            verified(m("mailto:erin@example.org", "wire.example", None, u64::MAX)),
            remove("mailto:bob@example.org", None),
        ],
        2,
        TU,
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
    let rebuilt = build(expected.clone(), &opts(2, TU));
    assert_eq!(loaded.header().epoch, 2);
    assert_eq!(counts(loaded.header()), counts(rebuilt.header()));
    assert!(msps(&loaded, "mailto:bob@example.org", TU).is_empty());
    assert_eq!(
        msps(&loaded, "mailto:erin@example.org", TU),
        [("wire.example".to_string(), None)]
    );
    same_answers(&loaded, &rebuilt, TU);
    // The delta's layout is its base's with wire.example appended to the dictionary.
    assert!(
        loaded
            .header()
            .layout
            .extends(&Snapshot::read_header(&base_path).unwrap().layout)
    );

    // A delta of the delta still refers to the full base and accumulates the changes.
    let (again, _) = update(
        Snapshot::load_plaintext(&delta_path).unwrap(),
        vec![remove("mailto:carol@example.org", Some("ring.example"))],
        3,
        TU,
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
    let rebuilt3 = build(expected, &opts(3, TU));
    assert_eq!(counts(loaded3.header()), counts(rebuilt3.header()));
    same_answers(&loaded3, &rebuilt3, TU);
    // Folded into a full file, it answers the same.
    let folded = pir_core::testing::read_bytes(&full_bytes(loaded3)).unwrap();
    same_answers(&folded, &rebuilt3, TU);

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
    let other = build(base(), &opts(9, T0));
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

/// A delta may name MSPs the snapshot has not seen: they are appended to its dictionary (the
/// indices used stay), up to 256 names; one more would widen every index, so that delta is
/// refused with the advice to rebuild, and the rebuild takes it.
#[test]
fn new_msps_extend_the_dictionary_until_it_would_widen() {
    let old = build(base(), &opts(1, T0));
    assert_eq!(old.header().layout.msps.len(), 4);
    let new_msps = |n: usize| -> Vec<DeltaOp> {
        (0..n)
            .map(|i| {
                verified(m(
                    &format!("mailto:w{i}@example.com"),
                    &format!("new{i}.example"),
                    None,
                    u64::MAX,
                ))
            })
            .collect()
    };
    let old_layout = old.header().layout.clone();
    let (grown, _) = update(old, new_msps(252), 2, TU).unwrap();
    assert_eq!(grown.header().layout.msps.len(), 256);
    assert!(grown.header().layout.extends(&old_layout));
    assert_eq!(
        msps(&grown, "mailto:w251@example.com", TU),
        [("new251.example".to_string(), None)]
    );
    assert_eq!(msps(&grown, "mailto:bob@example.org", TU).len(), 1);
    let old = build(base(), &opts(1, T0));
    let err = update(old, new_msps(253), 2, TU).unwrap_err();
    assert!(
        matches!(err, CoreError::BucketOverflow(Overflow::Dictionary)),
        "{err}"
    );
    assert!(err.to_string().contains("rebuild"), "{err}");
}
