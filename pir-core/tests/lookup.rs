//! End-to-end private lookups, in process: build, query, answer, decode, verify.

use pir_core::{
    BuildOptions, CoreError, Cpi, EvalKeys, LookupClient, Mapping, Snapshot, TrustStore,
    error::PirMessage,
    testing::{
        NOW, malformed, mapping, mapping_valid, other_issuer, small_scheme, tamper_chat_example,
        trust, user_key,
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

fn build(mappings: Vec<Mapping>) -> Snapshot {
    let opts = BuildOptions {
        epoch: 7,
        now: NOW,
        salt: Some([1; 32]),
        scheme: Some(small_scheme()),
    };
    Snapshot::build(mappings, &trust(), &opts).unwrap().0
}

fn lookup(snapshot: &Snapshot, client: &LookupClient, cpi: &str) -> pir_core::Result<Vec<String>> {
    let keys = EvalKeys::parse(snapshot.config().scheme(), client.keys().public_bytes())?;
    let pending = client.query(&Cpi::parse(cpi)?)?;
    let response = snapshot.database().answer(&keys, pending.query())?;
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
fn query_size_does_not_depend_on_the_cpi() {
    let snapshot = build(sample());
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let sizes = snapshot.message_sizes().unwrap();
    for cpi in ["tel:+14155550100", "mailto:absent@example.com"] {
        let pending = client.query(&Cpi::parse(cpi).unwrap()).unwrap();
        assert_eq!(pending.query().len(), sizes.query);
    }
}

#[test]
fn builder_refuses_a_mapping_that_does_not_verify() {
    let mut mappings = sample();
    mappings[3].fields.msp = "evil.example".into();
    let err = Snapshot::build(
        mappings,
        &trust(),
        &BuildOptions {
            now: NOW,
            scheme: Some(small_scheme()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, CoreError::InvalidMapping { index: 3, .. }),
        "{err}"
    );
}

#[test]
fn mapping_tampered_after_building_is_rejected_by_the_client() {
    let mut snapshot = build(sample());
    let bob = Cpi::parse("mailto:bob@example.org").unwrap();
    let bucket = snapshot.config().layout().locate(&bob).bucket.0 as usize;
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    assert_eq!(
        lookup(&snapshot, &client, "mailto:bob@example.org").unwrap(),
        ["chat.example"]
    );
    // A dishonest host rewrites "chat.example" to "chet.example" in Bob's bucket.
    tamper_chat_example(&mut snapshot, bucket);
    let err = lookup(&snapshot, &client, "mailto:bob@example.org").unwrap_err();
    assert!(matches!(err, CoreError::BadIssuerSignature), "{err}");
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
        scheme: Some(small_scheme()),
        ..Default::default()
    };
    let (snapshot, report) = Snapshot::build(mappings, &trust(), &opts).unwrap();
    assert_eq!(report.expired_dropped, 1);
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    assert!(
        lookup(&snapshot, &client, "mailto:old@example.org")
            .unwrap()
            .is_empty()
    );
    // The user-consented mapping is valid NOW-10..NOW+10: a client clock past it filters it.
    let keys = EvalKeys::parse(snapshot.config().scheme(), client.keys().public_bytes()).unwrap();
    let pending = client
        .query(&Cpi::parse("tel:+442079460958").unwrap())
        .unwrap();
    let response = snapshot.database().answer(&keys, pending.query()).unwrap();
    let late = client.decode(pending, &response, NOW + 11).unwrap();
    assert!(!late.found());
    assert_eq!(late.outside_validity, 1);
}

#[test]
fn malformed_query_and_key_bytes_are_errors_not_panics() {
    let snapshot = build(sample());
    let params = *snapshot.config().scheme();
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let keys = EvalKeys::parse(&params, client.keys().public_bytes()).unwrap();
    let pending = client
        .query(&Cpi::parse("tel:+14155550100").unwrap())
        .unwrap();

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
        let err = snapshot.database().answer(&keys, &bad).unwrap_err();
        assert_eq!(malformed(&err), Some(PirMessage::Query), "{err}");
    }
    let public = client.keys().public_bytes();
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
    let keys = EvalKeys::parse(snapshot.config().scheme(), client.keys().public_bytes()).unwrap();
    let pending = client.query(&Cpi::parse(cpi).unwrap()).unwrap();
    let response = snapshot.database().answer(&keys, pending.query()).unwrap();
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
        scheme: Some(small_scheme()),
    };
    let (snapshot, report) = Snapshot::build(mappings, &trust(), &opts).unwrap();
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
