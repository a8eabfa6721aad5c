//! End-to-end private lookups, in process: build, query, answer, decode, verify.

use pir_core::{
    BuildOptions, CoreError, Cpi, EvalKeys, LookupClient, Mapping, Snapshot, TrustStore,
    error::PirMessage,
    testing::{NOW, mapping, mapping_valid, other_issuer, small_scheme, trust, user_key},
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
    snapshot
        .danger_overwrite_bucket(bucket, |item| {
            let pos = item
                .windows(12)
                .position(|w| w == b"chat.example")
                .expect("bucket holds bob's mapping");
            item[pos + 2] = b'e';
        })
        .unwrap();
    let err = lookup(&snapshot, &client, "mailto:bob@example.org").unwrap_err();
    assert!(matches!(err, CoreError::BadIssuerSignature), "{err}");
}

#[test]
fn client_with_other_trusted_issuers_rejects_everything() {
    let snapshot = build(sample());
    let mut wrong_trust = TrustStore::new();
    wrong_trust.add(other_issuer().verifying_key()).unwrap();
    let client = LookupClient::new(snapshot.config(), wrong_trust).unwrap();
    let err = lookup(&snapshot, &client, "tel:+14155550100").unwrap_err();
    assert!(matches!(err, CoreError::UnknownIssuer(_)), "{err}");
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
        assert!(
            matches!(
                err,
                CoreError::PirBytes {
                    message: PirMessage::Query,
                    ..
                }
            ),
            "{err}"
        );
    }
    let public = client.keys().public_bytes();
    for bad in [&public[..100], &[public, &[1u8][..]].concat()[..]] {
        let err = EvalKeys::parse(&params, bad).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::PirBytes {
                    message: PirMessage::PublicKeys,
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = client.decode(pending, &[0u8; 10], NOW).unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::PirBytes {
                message: PirMessage::Response,
                ..
            }
        ),
        "{err}"
    );
}
