//! End-to-end private lookups, in process: build, query, answer, decode, verify.

use pir_core::{
    BuildOptions, CoreError, Cpi, EvalKeys, LookupClient, Mapping, Snapshot, TrustStore,
    error::{OprfError, PirMessage},
    identity::OptOut,
    oprf::{Evaluated, OprfKey},
    snapshot::BuildReport,
    testing::{
        NOW, build_records, evaluate, evaluate_with, issuer, malformed, mapping, mapping_valid,
        oprf_key, opt_out, other_issuer, record_span, small_scheme, trust, user_key,
    },
};

fn sample() -> Vec<Mapping> {
    let mut v = vec![
        mapping(
            "tel:+14155550100",
            "chat.example",
            Some("@alice:chat.example"),
        ),
        mapping("tel:+14155550100", "talk.example", None),
        mapping("tel:+14155550100", "ring.example", Some("alice")),
        mapping("mailto:bob@example.org", "chat.example", None),
    ];
    v.push(mapping_valid(
        "tel:+442079460958",
        "mail.example",
        None,
        Some("work"),
        (NOW - 10, NOW + 10),
        Some(&user_key()),
    ));
    for i in 0..200 {
        v.push(mapping(
            &format!("mailto:user{i}@example.net"),
            "bulk.example",
            None,
        ));
    }
    v
}

fn opts() -> BuildOptions {
    BuildOptions {
        epoch: 7,
        now: NOW,
        salt: Some([1; 32]),
        scheme: Some(small_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    }
}

fn build(mappings: Vec<Mapping>) -> Snapshot {
    Snapshot::build(mappings, &trust(), &oprf_key(), &opts())
        .unwrap()
        .0
}

/// The CPI with its OPRF output from the fixtures' DP key, as a client obtains it.
fn evaluated(cpi: &str) -> Evaluated {
    evaluate(&Cpi::parse(cpi).unwrap())
}

fn lookup(snapshot: &Snapshot, client: &LookupClient, cpi: &str) -> pir_core::Result<Vec<String>> {
    let keys = EvalKeys::parse(
        snapshot.config().scheme().spiral().unwrap(),
        client.keys().unwrap().public_bytes(),
    )?;
    let pending = client.query(&evaluate(&Cpi::parse(cpi)?))?;
    let response = snapshot
        .database()
        .unwrap()
        .answer(&keys, pending.query())?;
    let result = client.decode(pending, &response, NOW)?;
    let mut msps: Vec<String> = result
        .mappings
        .iter()
        .map(|m| m.fields.msp.clone())
        .collect();
    msps.sort();
    Ok(msps)
}

#[test]
fn found_not_found_and_several_msps() {
    let snapshot = build(sample());
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    assert_eq!(
        lookup(&snapshot, &client, "tel:+1 (415) 555-0100").unwrap(),
        ["chat.example", "ring.example", "talk.example"]
    );
    assert_eq!(
        lookup(&snapshot, &client, "mailto:bob@EXAMPLE.org").unwrap(),
        ["chat.example"]
    );
    assert_eq!(
        lookup(&snapshot, &client, "tel:+442079460958").unwrap(),
        ["mail.example"]
    );
    assert!(
        lookup(&snapshot, &client, "mailto:nobody@example.org")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        lookup(&snapshot, &client, "mailto:user123@example.net").unwrap(),
        ["bulk.example"]
    );
}

#[test]
fn builder_refuses_a_mapping_that_does_not_verify() {
    let mut mappings = sample();
    mappings[3].fields.msp = "evil.example".into();
    let err = Snapshot::build(
        mappings,
        &trust(),
        &oprf_key(),
        &BuildOptions {
            now: NOW,
            scheme: Some(small_scheme().into()),
            engine: pir_core::Engine::Spiral,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, CoreError::InvalidMapping { index: 3, .. }),
        "{err}"
    );
}

/// A fill limit outside 1 to 100 percent is refused before anything is built; a low one
/// leaves every bucket that much room, or moves to a larger shape.
#[test]
fn builder_refuses_fill_limits_out_of_range_and_keeps_the_room_asked_for() {
    for fill in [0u8, 101, 255] {
        let opts = BuildOptions {
            fill_percent: Some(fill),
            ..opts()
        };
        assert!(Snapshot::build(sample(), &trust(), &oprf_key(), &opts).is_err());
    }
    // 1% of any item is less than one record: no shape takes it.
    let tight = BuildOptions {
        fill_percent: Some(1),
        scheme: None,
        engine: pir_core::Engine::Spiral,
        ..opts()
    };
    let err = Snapshot::build(sample(), &trust(), &oprf_key(), &tight).unwrap_err();
    assert!(matches!(err, CoreError::TooLargeForPresets { .. }), "{err}");
    for fill in [25u8, 60, 100] {
        let opts = BuildOptions {
            fill_percent: Some(fill),
            scheme: None,
            engine: pir_core::Engine::Spiral,
            ..opts()
        };
        let (snapshot, report) = Snapshot::build(sample(), &trust(), &oprf_key(), &opts).unwrap();
        let item = snapshot.header().scheme.item_bytes();
        assert!(
            report.fullest_bucket_bytes <= 4 + (item - 4) * usize::from(fill) / 100,
            "{fill}: {report:?}"
        );
    }
}

/// Rewrites `cpi`'s record in its bucket in place, as a host holding the CPI's OPRF output (the
/// DP itself, or whoever it evaluated the CPI for) could: the record opened, `edit` applied,
/// sealed again under the CPI's key at the same place.
fn reseal_record(snapshot: &mut Snapshot, cpi: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let layout = snapshot.config().layout().clone();
    let secrets = layout.locate(evaluated(cpi).output());
    snapshot
        .danger_overwrite_bucket(secrets.location().bucket.0 as usize, |item| {
            let (_, at, len) = record_span(item, &secrets).expect("the CPI's record");
            let mut record = secrets.open(&item[at..at + len]).unwrap();
            let before = record.len();
            edit(&mut record);
            assert_eq!(record.len(), before, "the edit keeps the record's length");
            item[at..at + len].copy_from_slice(&secrets.seal(&record).unwrap());
        })
        .unwrap();
}

/// The sealed bytes of a CPI's record are authenticated: a flipped bit, or another CPI's record
/// under this CPI's locator, never reads as a record of this CPI. (A record that does not open
/// reads as absent: one in 2^16 foreign locators matches a CPI's check, so a record that does
/// not open cannot be called a lie; a host that damages a record makes its CPI not found, as
/// it could by dropping it.)
#[test]
fn record_tampered_after_building_never_reads_as_a_record() {
    let mut snapshot = build(sample());
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let layout = snapshot.config().layout().clone();
    let bob = layout.locate(evaluated("mailto:bob@example.org").output());
    let bucket = bob.location().bucket.0 as usize;
    assert_eq!(
        lookup(&snapshot, &client, "mailto:bob@example.org").unwrap(),
        ["chat.example"]
    );
    // The bucket holds the record sealed: no MSP in clear.
    let item = snapshot.bucket(bucket).unwrap();
    assert!(!item.windows(12).any(|w| w == b"chat.example"));
    let (_, at, len) = record_span(item, &bob).unwrap();
    // A dishonest host flips one bit of Bob's record.
    snapshot
        .danger_overwrite_bucket(bucket, |item| item[at + len - 3] ^= 1)
        .unwrap();
    assert!(
        lookup(&snapshot, &client, "mailto:bob@example.org")
            .unwrap()
            .is_empty()
    );

    // Another CPI's record put where Bob's locator points: it does not open under Bob's key.
    let mut snapshot = build(sample());
    let other_cpi = (0..200)
        .map(|i| format!("mailto:user{i}@example.net"))
        .find(|c| layout.locate(evaluated(c).output()).location().bucket.0 as usize != bucket)
        .unwrap();
    let other = layout.locate(evaluated(&other_cpi).output());
    let other_item = snapshot.bucket(other.location().bucket.0 as usize).unwrap();
    let (_, from, from_len) = record_span(other_item, &other).unwrap();
    let foreign = other_item[from..from + from_len].to_vec();
    snapshot
        .danger_overwrite_bucket(bucket, |item| {
            let n = foreign.len().min(len);
            item[at..at + n].copy_from_slice(&foreign[..n]);
        })
        .unwrap();
    assert!(
        lookup(&snapshot, &client, "mailto:bob@example.org")
            .unwrap()
            .is_empty()
    );
}

/// Whoever can seal a CPI's record still cannot make a client accept a mapping the issuer did
/// not sign: "chat.example" rewritten to "chet.example" inside a correctly sealed record fails
/// the issuer signature.
#[test]
fn mapping_rewritten_under_a_valid_seal_fails_its_signature() {
    let mut snapshot = build(sample());
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let talk = snapshot
        .header()
        .layout
        .msps
        .iter()
        .position(|m| m == "talk.example")
        .unwrap();
    reseal_record(&mut snapshot, "mailto:bob@example.org", |record| {
        // Bob's one mapping: its flags, then its MSP's index in the dictionary.
        assert_eq!(record[0], 0);
        record[1] = talk as u8;
    });
    let err = lookup(&snapshot, &client, "mailto:bob@example.org").unwrap_err();
    assert!(matches!(err, CoreError::BadIssuerSignature), "{err}");
    // An edit that changes nothing leaves the record as it was: the reseal itself is sound.
    let mut snapshot = build(sample());
    reseal_record(&mut snapshot, "mailto:bob@example.org", |_| {});
    assert_eq!(
        lookup(&snapshot, &client, "mailto:bob@example.org").unwrap(),
        ["chat.example"]
    );
}

/// A mapping from an issuer the client does not trust is skipped and counted by issuer, not
/// an error: trusting fewer issuers is the caller's choice. Trusted ones are still returned.
#[test]
fn mappings_of_untrusted_issuers_are_skipped_and_counted() {
    let snapshot = build(sample());
    let mut wrong_trust = TrustStore::new();
    wrong_trust.add(other_issuer().verifying_key()).unwrap();
    let client = LookupClient::new(snapshot.config(), wrong_trust).unwrap();
    let result = lookup_at(&snapshot, &client, "tel:+14155550100", NOW);
    assert!(!result.found());
    // The number has three mappings in the sample, all from the one issuer.
    assert_eq!(result.untrusted, [pir_core::testing::issuer().id(); 3]);
    // Trusting both issuers shows it again.
    let mut both = trust();
    both.add(other_issuer().verifying_key()).unwrap();
    let client_both = LookupClient::new(snapshot.config(), both).unwrap();
    let result = lookup_at(&snapshot, &client_both, "tel:+14155550100", NOW);
    assert!(result.found());
    assert!(result.untrusted.is_empty());
    // An absent CPI still answers "not found": nothing of it is in the bucket to distrust.
    assert!(
        lookup(&snapshot, &client, "mailto:nobody@example.org")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn expired_mappings_are_dropped_on_build_and_filtered_on_lookup() {
    let mut mappings = sample();
    mappings.push(mapping_valid(
        "mailto:old@example.org",
        "gone.example",
        None,
        None,
        (0, NOW - 1),
        None,
    ));
    let opts = BuildOptions {
        now: NOW,
        scheme: Some(small_scheme().into()),
        engine: pir_core::Engine::Spiral,
        ..Default::default()
    };
    let (snapshot, report) = Snapshot::build(mappings, &trust(), &oprf_key(), &opts).unwrap();
    assert_eq!(report.expired_dropped, 1);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    assert!(
        lookup(&snapshot, &client, "mailto:old@example.org")
            .unwrap()
            .is_empty()
    );
    // The user-consented mapping is valid NOW-10..NOW+10: a client clock past it filters it.
    let keys = EvalKeys::parse(
        snapshot.config().scheme().spiral().unwrap(),
        client.keys().unwrap().public_bytes(),
    )
    .unwrap();
    let pending = client.query(&evaluated("tel:+442079460958")).unwrap();
    let response = snapshot
        .database()
        .unwrap()
        .answer(&keys, pending.query())
        .unwrap();
    let late = client.decode(pending, &response, NOW + 11).unwrap();
    assert!(!late.found());
    assert_eq!(late.outside_validity, 1);
}

#[test]
fn malformed_query_and_key_bytes_are_errors_not_panics() {
    let snapshot = build(sample());
    let params = *snapshot.config().scheme().spiral().unwrap();
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let keys = EvalKeys::parse(&params, client.keys().unwrap().public_bytes()).unwrap();
    let pending = client.query(&evaluated("tel:+14155550100")).unwrap();

    for bad in [
        Vec::new(),
        vec![0u8; 7],
        pending.query()[..pending.query().len() - 1].to_vec(),
        [pending.query().to_vec(), vec![0]].concat(),
        {
            let mut q = pending.query().to_vec();
            let n = q.len();
            q[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
            q
        },
    ] {
        let err = snapshot
            .database()
            .unwrap()
            .answer(&keys, &bad)
            .unwrap_err();
        assert_eq!(malformed(&err), Some(PirMessage::Query), "{err}");
    }
    let public = client.keys().unwrap().public_bytes();
    for bad in [&public[..100], &[public, &[1u8][..]].concat()[..]] {
        let err = EvalKeys::parse(&params, bad).unwrap_err();
        assert_eq!(malformed(&err), Some(PirMessage::PublicKeys), "{err}");
    }
    let err = client.decode(pending, &[0u8; 10], NOW).unwrap_err();
    assert_eq!(malformed(&err), Some(PirMessage::Response), "{err}");
}

/// One lookup at the client's clock `now`: the full result.
fn lookup_at(
    snapshot: &Snapshot,
    client: &LookupClient,
    cpi: &str,
    now: u64,
) -> pir_core::LookupResult {
    let keys = EvalKeys::parse(
        snapshot.config().scheme().spiral().unwrap(),
        client.keys().unwrap().public_bytes(),
    )
    .unwrap();
    let pending = client.query(&evaluated(cpi)).unwrap();
    let response = snapshot
        .database()
        .unwrap()
        .answer(&keys, pending.query())
        .unwrap();
    client.decode(pending, &response, now).unwrap()
}

fn psis(result: &pir_core::LookupResult) -> Vec<Option<&str>> {
    result
        .mappings
        .iter()
        .map(|m| m.fields.psi.as_deref())
        .collect()
}

/// docs/mapping-format.md, section 7: the builder drops expired lines (step 2) before the last
/// line per (CPI, MSP) wins (step 3), so an expired line never replaces an earlier valid one.
#[test]
fn builder_drops_expired_lines_before_the_last_line_wins() {
    let line = |cpi: &str, psi: &str, window: (u64, u64)| {
        mapping_valid(cpi, "chat.example", Some(psi), None, window, None)
    };
    let valid = (NOW - 1000, NOW + 1000);
    let expired = (NOW - 1000, NOW - 1);
    let mappings = vec![
        line("mailto:a@example.org", "a-first", valid),
        line("mailto:a@example.org", "a-last-expired", expired),
        line("mailto:b@example.org", "b-first", valid),
        line("mailto:b@example.org", "b-last", valid),
        // Not yet valid at the build: kept, and it wins as the last line.
        line("mailto:c@example.org", "c-first", valid),
        line(
            "mailto:c@example.org",
            "c-last-later",
            (NOW + 10, NOW + 1000),
        ),
    ];
    let opts = BuildOptions {
        epoch: 1,
        now: NOW,
        salt: Some([3; 32]),
        scheme: Some(small_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let (snapshot, report) = Snapshot::build(mappings, &trust(), &oprf_key(), &opts).unwrap();
    assert_eq!(report.input_mappings, 6);
    assert_eq!(report.expired_dropped, 1);
    assert_eq!(report.duplicates_replaced, 2);
    assert_eq!(report.stored_mappings, 3);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let a = lookup_at(&snapshot, &client, "mailto:a@example.org", NOW);
    assert_eq!(psis(&a), [Some("a-first")]);
    let b = lookup_at(&snapshot, &client, "mailto:b@example.org", NOW);
    assert_eq!(psis(&b), [Some("b-last")]);
    let c = lookup_at(&snapshot, &client, "mailto:c@example.org", NOW + 10);
    assert_eq!(psis(&c), [Some("c-last-later")]);
}

/// docs/mapping-format.md, section 7: `found` means at least one verified mapping valid at the
/// client's clock; the others are counted in `outside_validity`, never returned.
#[test]
fn found_means_a_valid_verified_mapping_and_the_rest_are_counted() {
    let mappings = vec![
        mapping_valid(
            "mailto:d@example.org",
            "now.example",
            None,
            None,
            (NOW - 1000, NOW + 100),
            None,
        ),
        mapping_valid(
            "mailto:d@example.org",
            "later.example",
            None,
            None,
            (NOW + 500, NOW + 1000),
            None,
        ),
    ];
    let snapshot = build(mappings);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let msps = |r: &pir_core::LookupResult| -> Vec<String> {
        r.mappings.iter().map(|m| m.fields.msp.clone()).collect()
    };

    let now = lookup_at(&snapshot, &client, "mailto:d@example.org", NOW);
    assert!(now.found());
    assert_eq!(msps(&now), ["now.example"]);
    assert_eq!(now.outside_validity, 1);

    // Between the two windows: every entry is outside its window, so not found.
    let between = lookup_at(&snapshot, &client, "mailto:d@example.org", NOW + 200);
    assert!(!between.found());
    assert!(between.mappings.is_empty());
    assert_eq!(between.outside_validity, 2);

    let later = lookup_at(&snapshot, &client, "mailto:d@example.org", NOW + 600);
    assert!(later.found());
    assert_eq!(msps(&later), ["later.example"]);
    assert_eq!(later.outside_validity, 1);

    let absent = lookup_at(&snapshot, &client, "mailto:nobody@example.org", NOW);
    assert!(!absent.found());
    assert_eq!(absent.outside_validity, 0);
}

/// A well-formed number the phone metadata does not know (Ofcom's drama range) is signed,
/// built and found like any other, typed in any spelling.
#[test]
fn numbers_the_metadata_does_not_know_are_built_and_found() {
    let snapshot = build(vec![mapping(
        "tel:+447700900123",
        "chat.example",
        Some("@drama:chat.example"),
    )]);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    for typed in [
        "tel:+447700900123",
        "tel:+44 7700 900123",
        "TEL:+44-7700-900-123",
    ] {
        let result = lookup_at(&snapshot, &client, typed, NOW);
        assert_eq!(psis(&result), [Some("@drama:chat.example")], "{typed}");
    }
}

/// An internationalised email domain is looked up under its A-label form, in any spelling.
#[test]
fn internationalised_domains_are_built_and_found() {
    let snapshot = build(vec![mapping(
        "mailto:jo@Bücher.example",
        "chat.example",
        None,
    )]);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    for typed in [
        "mailto:jo@bücher.example",
        "mailto:jo@BÜCHER.EXAMPLE",
        "mailto:jo@xn--bcher-kva.example",
    ] {
        assert!(lookup_at(&snapshot, &client, typed, NOW).found(), "{typed}");
    }
    assert!(!lookup_at(&snapshot, &client, "mailto:JO@bücher.example", NOW).found());
}

// ---------------------------------------------------------------- opt-outs

/// A build of `mappings` and `opt_outs`, all trusted, with its report.
fn build_report(
    mappings: Vec<Mapping>,
    opt_outs: Vec<OptOut>,
    opts: &BuildOptions,
) -> (Snapshot, BuildReport) {
    let input = pir_core::snapshot::BuildInput {
        mappings: mappings
            .into_iter()
            .map(|m| pir_core::VerifiedMapping::new(m, &trust()).unwrap())
            .collect(),
        opt_outs: opt_outs
            .into_iter()
            .map(|o| pir_core::identity::VerifiedOptOut::new(o, &trust()).unwrap())
            .collect(),
    };
    Snapshot::build_verified(input, &oprf_key(), opts, &|_, _| {}).unwrap()
}

/// An opted-out CPI is reported as such, with no mappings, and is told apart from an absent one;
/// its mappings in the build's input are not stored at all.
#[test]
fn opted_out_cpis_differ_from_absent_ones_and_their_mappings_are_not_stored() {
    let alice = "tel:+14155550100";
    let (snapshot, report) = build_report(
        sample(),
        vec![opt_out(alice), opt_out("mailto:gone@example.org")],
        &opts(),
    );
    assert_eq!(report.input_opt_outs, 2);
    assert_eq!(report.suppressed_by_opt_out, 3, "alice's three mappings");
    assert_eq!(report.stored_opt_outs, 2);
    assert_eq!(report.stored_mappings, sample().len() - 3);
    let h = snapshot.header();
    assert_eq!(h.mapping_count as usize, sample().len() - 3);
    assert_eq!(h.opt_out_count, 2);
    // alice, bob, the +44 number and 200 bulk CPIs, plus the opt-out without mappings.
    assert_eq!(h.cpi_count, 204);

    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let opted = lookup_at(&snapshot, &client, alice, NOW);
    assert!(opted.opted_out() && !opted.found(), "{opted:?}");
    assert!(opted.mappings.is_empty());
    assert_eq!(opted.opt_out, Some(opt_out(alice)));
    assert_eq!(opted.outside_validity, 0);
    let gone = lookup_at(&snapshot, &client, "mailto:gone@example.org", NOW);
    assert!(gone.opted_out() && !gone.found());
    let absent = lookup_at(&snapshot, &client, "mailto:nobody@example.org", NOW);
    assert!(!absent.found() && !absent.opted_out(), "{absent:?}");
    assert_eq!((absent.outside_validity, absent.untrusted.len()), (0, 0));
    let bob = lookup_at(&snapshot, &client, "mailto:bob@example.org", NOW);
    assert!(bob.found() && !bob.opted_out());

    // Once the opt-out's window is over, alice is not found either: the one statement stored
    // for her is the opt-out, now outside its window. Her mappings were never stored.
    let later = lookup_at(&snapshot, &client, alice, NOW + 1001);
    assert!(!later.opted_out() && !later.found(), "{later:?}");
    assert_eq!(later.outside_validity, 1);

    // An opt-out from an issuer the client does not trust is counted, not obeyed.
    let mut others = TrustStore::new();
    others.add(other_issuer().verifying_key()).unwrap();
    let doubting = LookupClient::new(snapshot.config(), others).unwrap();
    let untrusted = lookup_at(&snapshot, &doubting, alice, NOW);
    assert!(!untrusted.opted_out() && !untrusted.found());
    assert_eq!(untrusted.untrusted, [issuer().id()]);
}

/// An opt-out that has expired by the build is dropped, and no longer suppresses anything.
#[test]
fn an_expired_opt_out_suppresses_nothing() {
    let alice = "tel:+14155550100";
    let expired = OptOut::sign(Cpi::parse(alice).unwrap(), 0, NOW - 1, &issuer()).unwrap();
    let (snapshot, report) = build_report(sample(), vec![expired], &opts());
    assert_eq!(report.expired_dropped, 1);
    assert_eq!(report.suppressed_by_opt_out, 0);
    assert_eq!(snapshot.header().opt_out_count, 0);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let result = lookup_at(&snapshot, &client, alice, NOW);
    assert!(result.found() && !result.opted_out());
    assert_eq!(result.mappings.len(), 3);
}

// ---------------------------------------------------------------- the OPRF evaluation

/// `LookupClient::finalize` takes an evaluation only with a proof that it was made under the
/// snapshot's OPRF key, for exactly these blinded elements.
#[test]
fn forged_evaluations_are_refused_by_finalize() {
    let snapshot = build(sample());
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let mut rng = rand::thread_rng();
    let cpis: Vec<Cpi> = ["tel:+14155550100", "mailto:bob@example.org"]
        .iter()
        .map(|c| Cpi::parse(c).unwrap())
        .collect();
    let blinded = client.blind(&cpis, &mut rng).unwrap();
    let elements: Vec<[u8; 32]> = blinded.iter().map(|b| *b.element()).collect();
    let dp = oprf_key();
    let genuine = dp.evaluate_blinded(&mut rng, &elements).unwrap();
    let refused =
        |evaluation: &pir_core::oprf::Evaluation| match client.finalize(&blinded, evaluation) {
            Err(CoreError::Oprf(OprfError::Proof)) => true,
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => false,
        };

    // Evaluated, with a valid proof, under another key.
    let other = OprfKey::derive(&[0x42; 32], b"another DP").unwrap();
    let forged = other.evaluate_blinded(&mut rng, &elements).unwrap();
    assert!(refused(&forged), "another key's evaluation");
    // The genuine evaluation with a tampered proof (either scalar).
    for at in [0, 17, 32, 50] {
        let mut tampered = genuine.clone();
        tampered.proof[at] ^= 0x01;
        assert!(refused(&tampered), "proof byte {at} flipped");
    }
    // The genuine elements with another batch's proof, and another key's elements with the
    // genuine proof.
    let other_batch = dp.evaluate_blinded(&mut rng, &elements[..1]).unwrap();
    let mut mixed = genuine.clone();
    mixed.proof = other_batch.proof;
    assert!(refused(&mixed), "another batch's proof");
    let mut swapped = genuine.clone();
    swapped.elements = forged.elements.clone();
    assert!(refused(&swapped), "another key's elements");

    // The genuine evaluation passes: its outputs are the DP's, and they find the mappings.
    let evaluated = client.finalize(&blinded, &genuine).unwrap();
    assert_eq!(evaluated[0].cpi(), &cpis[0]);
    assert_eq!(evaluated[0].output(), &dp.evaluate(&cpis[0]).unwrap());
    let keys = EvalKeys::parse(
        snapshot.config().scheme().spiral().unwrap(),
        client.keys().unwrap().public_bytes(),
    )
    .unwrap();
    let pending = client.query(&evaluated[1]).unwrap();
    let response = snapshot
        .database()
        .unwrap()
        .answer(&keys, pending.query())
        .unwrap();
    assert_eq!(
        client.decode(pending, &response, NOW).unwrap().msps(),
        ["chat.example"]
    );
    // What the check protects against: another key's output for a present CPI would lead
    // elsewhere and quietly find nothing, so an evaluation proven under another key than the
    // snapshot's is refused before any query is made from it.
    let wrong = evaluate_with(&other, &cpis[1..]).remove(0);
    assert_ne!(wrong.output(), evaluated[1].output());
    let err = client.query(&wrong).unwrap_err();
    assert!(matches!(err, CoreError::OprfKeyMismatch { .. }), "{err}");
}

// ---------------------------------------------------------------- records and uniformity

/// A CPI with a long record (five MSPs, long PSIs) is found with every mapping through a real
/// PIR lookup, its record one range of the bucket behind one locator.
#[test]
fn a_long_record_round_trips_through_pir() {
    let many = "tel:+14155550123";
    let mut mappings = sample();
    for i in 0..5 {
        let psi = format!("@{}:msp{i}.example", "p".repeat(30 * i + 1));
        mappings.push(mapping(many, &format!("msp{i}.example"), Some(&psi)));
    }
    let (snapshot, _) = Snapshot::build(mappings, &trust(), &oprf_key(), &opts()).unwrap();
    let layout = snapshot.config().layout().clone();
    let secrets = layout.locate(evaluated(many).output());
    let item = snapshot
        .bucket(secrets.location().bucket.0 as usize)
        .unwrap();
    let (_, _, len) = record_span(item, &secrets).unwrap();
    assert!(len > 5 * (64 + 30), "{len}");

    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let result = lookup_at(&snapshot, &client, many, NOW);
    assert_eq!(result.mappings.len(), 5);
    for (i, m) in result.mappings.iter().enumerate() {
        assert_eq!(m.fields.msp, format!("msp{i}.example"));
        assert_eq!(m.fields.psi.as_ref().unwrap().len(), 30 * i + 1 + 14);
    }
    assert_eq!(
        lookup(&snapshot, &client, "tel:+1 (415) 555-0100").unwrap(),
        ["chat.example", "ring.example", "talk.example"]
    );
}

/// Present, absent and opted-out CPIs cost the same messages: one blinded element each, a
/// query and a response of the shape's fixed sizes.
#[test]
fn messages_are_the_same_size_for_present_absent_and_opted_out_cpis() {
    let snapshot = build_records(sample(), vec![opt_out("mailto:gone@example.org")], &opts());
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let keys = EvalKeys::parse(
        snapshot.config().scheme().spiral().unwrap(),
        client.keys().unwrap().public_bytes(),
    )
    .unwrap();
    let sizes = snapshot.message_sizes().unwrap();
    let cpis: Vec<Cpi> = [
        "tel:+14155550100",
        "mailto:absent@example.com",
        "mailto:gone@example.org",
    ]
    .iter()
    .map(|c| Cpi::parse(c).unwrap())
    .collect();
    let mut rng = rand::thread_rng();
    let blinded = client.blind(&cpis, &mut rng).unwrap();
    let elements: Vec<[u8; 32]> = blinded.iter().map(|b| *b.element()).collect();
    let evaluation = oprf_key().evaluate_blinded(&mut rng, &elements).unwrap();
    assert_eq!(evaluation.elements.len(), 3);
    let evaluated = client.finalize(&blinded, &evaluation).unwrap();
    let mut query_lens = Vec::new();
    let mut outcomes = Vec::new();
    for e in &evaluated {
        let pending = client.query(e).unwrap();
        query_lens.push(pending.query().len());
        let response = snapshot
            .database()
            .unwrap()
            .answer(&keys, pending.query())
            .unwrap();
        assert_eq!(response.len(), sizes.response);
        let r = client.decode(pending, &response, NOW).unwrap();
        outcomes.push((r.found(), r.opted_out()));
    }
    assert_eq!(outcomes, [(true, false), (false, false), (false, true)]);
    assert_eq!(query_lens, [sizes.query; 3]);
}
