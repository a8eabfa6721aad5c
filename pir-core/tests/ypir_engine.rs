//! The YPIR+SP engine behind the keyword layer: a snapshot declares it, builds and files carry
//! it, lookups find, miss and honour opt-outs through it, updates reach it, and its messages are
//! the same for every CPI. (The engine's own mathematics is tested in `pir/ypir`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pir_core::{
    BuildOptions, CoreError, Cpi, Engine, LookupClient, Scheme, Snapshot, VerifiedMapping,
    pir::ypir::YpirParams,
    snapshot::{DeltaOp, UpdateOptions},
    testing::{
        NOW, answer, build_records, build_with, evaluate, file_bytes, mapping, msps, oprf_key,
        opt_out, read_bytes, sample_mappings, trust,
    },
};

fn smallest() -> YpirParams {
    YpirParams::new(11, 1).unwrap()
}

fn opts(epoch: u64) -> BuildOptions {
    pir_core::testing::build_options(smallest(), epoch)
}

fn snapshot() -> Snapshot {
    build_with(sample_mappings(), &opts(1))
}

#[test]
fn a_build_picks_the_engines_smallest_shape_and_declares_it() {
    let (built, _) = Snapshot::build(
        sample_mappings(),
        &trust(),
        &oprf_key(),
        &BuildOptions {
            scheme: None,
            engine: Engine::YpirSp,
            ..opts(1)
        },
    )
    .unwrap();
    assert_eq!(built.engine(), Engine::YpirSp);
    assert_eq!(built.header().scheme, Scheme::YpirSp(smallest()));
    assert_eq!(built.message_sizes().unwrap().public_keys, 0);
    // Spiral's database is refused by name, and the other way round.
    assert!(matches!(
        built.database(),
        Err(CoreError::WrongEngine {
            expected: Engine::Spiral,
            found: Engine::YpirSp
        })
    ));
    let spiral = pir_core::testing::tiny_snapshot();
    assert!(matches!(
        spiral.ypir_database(),
        Err(CoreError::WrongEngine { .. })
    ));
}

#[test]
fn lookups_find_miss_and_honour_opt_outs() {
    let snapshot = build_records(
        sample_mappings(),
        vec![opt_out("mailto:gone@example.org")],
        &opts(1),
    );
    assert_eq!(
        msps(&snapshot, "tel:+14155550100", NOW),
        ["chat.example", "talk.example"]
    );
    assert_eq!(
        msps(&snapshot, "mailto:carol@example.com", NOW),
        ["mail.example"]
    );
    assert!(msps(&snapshot, "mailto:absent@example.com", NOW).is_empty());
    let gone = pir_core::testing::lookup_result(&snapshot, trust(), "mailto:gone@example.org", NOW)
        .unwrap();
    assert!(gone.opted_out() && !gone.found());
}

/// The file holds the buckets only; loading derives the database again, and a changed bucket
/// byte is refused by the checksum.
#[test]
fn files_round_trip_and_hold_no_words() {
    let snapshot = snapshot();
    let bytes = file_bytes(&snapshot);
    let params = smallest();
    let plaintext = params.num_items() * params.item_bytes();
    assert!(bytes.len() > plaintext && bytes.len() < plaintext + (1 << 16));
    let loaded = read_bytes(&bytes).unwrap();
    assert_eq!(loaded.header(), snapshot.header());
    assert_eq!(msps(&loaded, "tel:+442079460958", NOW), ["ring.example"]);
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(read_bytes(&bad).is_err());
}

#[test]
fn a_delta_reaches_the_served_database() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.pirsnap");
    snapshot().write(&base).unwrap();
    let old = Snapshot::load_plaintext(&base).unwrap();
    let added = mapping("mailto:erin@example.org", "wire.example", None);
    let (new, report) = old
        .update(
            vec![DeltaOp::Upsert(Box::new(
                VerifiedMapping::new(added, &trust()).unwrap(),
            ))],
            &oprf_key(),
            &UpdateOptions { epoch: 2, now: NOW },
        )
        .unwrap();
    assert!(new.is_delta());
    assert_eq!(report.items_reencoded, 1);
    let delta = dir.path().join("epoch2.pirsnap");
    new.write(&delta).unwrap();
    // The delta holds the changed bucket only.
    assert!(std::fs::metadata(&delta).unwrap().len() < 64 << 10);
    let loaded = Snapshot::load(&delta).unwrap();
    assert_eq!(loaded.header().epoch, 2);
    assert_eq!(
        msps(&loaded, "mailto:erin@example.org", NOW),
        ["wire.example"]
    );
    assert_eq!(
        msps(&loaded, "mailto:carol@example.com", NOW),
        ["mail.example"]
    );
}

/// Present, absent and opted-out CPIs cost the same messages: no keys, and a query and a
/// response of the shape's fixed sizes.
#[test]
fn messages_are_the_same_size_for_every_cpi() {
    let snapshot = build_records(
        sample_mappings(),
        vec![opt_out("mailto:gone@example.org")],
        &opts(1),
    );
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    assert!(client.keys().is_none());
    let sizes = snapshot.message_sizes().unwrap();
    let mut outcomes = Vec::new();
    for cpi in [
        "tel:+14155550100",
        "mailto:absent@example.com",
        "mailto:gone@example.org",
    ] {
        let pending = client.query(&evaluate(&Cpi::parse(cpi).unwrap())).unwrap();
        assert_eq!(pending.query().len(), sizes.query);
        let response = answer(&snapshot, &client, pending.query()).unwrap();
        assert_eq!(response.len(), sizes.response);
        let r = pending.decode(&client, &response, NOW).unwrap();
        outcomes.push((r.found(), r.opted_out()));
        // A cover query is the same size too.
        assert_eq!(
            client.cover_query(&mut rand::thread_rng()).unwrap().len(),
            sizes.query
        );
    }
    assert_eq!(outcomes, [(true, false), (false, false), (false, true)]);
}

/// A hostile server's response (garbage, another length, another query's answer) is an error
/// or "not found", never a wrong mapping or a panic.
#[test]
fn hostile_responses_are_refused() {
    let snapshot = snapshot();
    let client = LookupClient::new(snapshot.config(), trust()).unwrap();
    let cpi = Cpi::parse("tel:+14155550100").unwrap();
    let sizes = snapshot.message_sizes().unwrap();
    for response in [
        vec![0u8; 3],
        vec![0xa5; sizes.response],
        vec![0; sizes.response],
    ] {
        let pending = client.query(&evaluate(&cpi)).unwrap();
        // An error, or nothing found.
        if let Ok(r) = pending.decode(&client, &response, NOW) {
            assert!(!r.found());
        }
    }
    // The answer to another query (decrypted under this query's secret) finds nothing.
    let other = client.query(&evaluate(&cpi)).unwrap();
    let mine = client.query(&evaluate(&cpi)).unwrap();
    let theirs = answer(&snapshot, &client, other.query()).unwrap();
    if let Ok(r) = mine.decode(&client, &theirs, NOW) {
        assert!(!r.found());
    }
}
