//! The engine's own answering (every core, batched) is byte-identical to spiral-rs's.

use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, LookupClient, SchemeFields, SchemeParams, Snapshot,
    TrustStore,
    error::PirMessage,
    testing::{build_options, build_with, bulk_mappings, evaluate, malformed, trust},
};

fn setup(scheme: SchemeParams) -> (Snapshot, TrustStore) {
    let opts = BuildOptions {
        salt: Some([3; 32]),
        ..build_options(scheme, 1)
    };
    (build_with(bulk_mappings(300), &opts), trust())
}

fn check(scheme: SchemeParams) {
    let (snapshot, trust) = setup(scheme);
    // Two clients with their own keys, three queries between them.
    let clients: Vec<LookupClient> = (0..2)
        .map(|_| {
            let keys = ClientKeys::generate(&scheme).unwrap();
            LookupClient::with_keys(snapshot.config(), keys, trust.clone()).unwrap()
        })
        .collect();
    let server_keys: Vec<EvalKeys> = clients
        .iter()
        .map(|c| EvalKeys::parse(&scheme, c.keys().unwrap().public_bytes()).unwrap())
        .collect();
    let lookups = [
        (0, "mailto:u1@example.org"),
        (1, "mailto:u2@example.org"),
        (0, "mailto:none@example.org"),
    ];
    let pending: Vec<_> = lookups
        .iter()
        .map(|(c, cpi)| {
            let evaluated = evaluate(&Cpi::parse(cpi).unwrap());
            (*c, clients[*c].query(&evaluated).unwrap())
        })
        .collect();
    let batch: Vec<(&EvalKeys, &[u8])> = pending
        .iter()
        .map(|(c, p)| (&server_keys[*c], p.query()))
        .collect();
    let answers = snapshot.database().unwrap().answer_batch(&batch).unwrap();
    assert_eq!(answers.len(), 3);
    // One malformed query fails the whole batch with an error, not a panic.
    let bad = vec![0u8; 5];
    let err = snapshot
        .database()
        .unwrap()
        .answer_batch(&[batch[0], (batch[1].0, bad.as_slice())])
        .unwrap_err();
    assert_eq!(malformed(&err), Some(PirMessage::Query), "{err}");
    drop(batch);
    for ((c, p), answer) in pending.into_iter().zip(&answers) {
        let reference = snapshot
            .database()
            .unwrap()
            .danger_reference_answer(&server_keys[c], p.query())
            .unwrap();
        assert!(
            *answer == reference,
            "batched answer differs from process_query"
        );
        assert_eq!(
            snapshot
                .database()
                .unwrap()
                .answer(&server_keys[c], p.query())
                .unwrap(),
            reference
        );
        let present = p.cpi().as_str() != "mailto:none@example.org";
        let found = clients[c].decode(p, answer, 1_800_000_000).unwrap().found();
        assert_eq!(found, present);
    }
    assert!(
        snapshot
            .database()
            .unwrap()
            .answer_batch(&[])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn batched_answers_equal_process_query_one_instance() {
    check(SchemeParams::danger_test_only_small());
}

#[test]
fn batched_answers_equal_process_query_two_instances() {
    check(
        SchemeParams::try_from(SchemeFields {
            instances: 2,
            item_bytes: 16384,
            ..*SchemeParams::danger_test_only_small()
        })
        .unwrap(),
    );
}

#[test]
fn batched_answers_equal_process_query_deep_fold_and_short_gadgets() {
    // Deep folds with the short gadgets of the tuned presets (small keys: t_exp 4/7, t_conv 4)
    // and of the earlier ones (t_exp 6/28, t_conv 7).
    for (nu_2, t_gsw, t_conv, t_exp_left, t_exp_right) in [(5, 5, 4, 4, 7), (4, 4, 7, 6, 28)] {
        check(
            SchemeParams::try_from(SchemeFields {
                nu_1: 5,
                nu_2,
                t_gsw,
                t_conv,
                t_exp_left,
                t_exp_right,
                ..*SchemeParams::danger_test_only_small()
            })
            .unwrap(),
        );
    }
}

#[test]
fn smallest_vetted_presets_answer_like_process_query_and_decode() {
    // The builder's choice for small databases (tuned entries), one and two instances.
    for preset in SchemeParams::vetted_presets().filter(|p| p.params.num_items() == 1 << 10) {
        check(preset.params);
    }
}
