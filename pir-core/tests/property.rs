//! Property: whatever the mapping set, every inserted CPI is found with exactly its mappings,
//! and CPIs never inserted are not found.

use std::collections::{BTreeMap, BTreeSet};

use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    Snapshot,
    testing::{NOW, issuer, small_scheme, trust},
};
use proptest::prelude::*;

fn cpi_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..10_000).prop_map(|n| format!("tel:+1415555{n:04}")),
        (0u32..1_000).prop_map(|n| format!("tel:+44 20 7946 0{n:03}")),
        (
            "[a-z][a-z0-9._-]{0,15}",
            prop::sample::select(vec!["example.com", "Example.ORG", "mail.example"])
        )
            .prop_map(|(l, d)| format!("mailto:{l}@{d}")),
    ]
}

#[derive(Clone, Debug)]
struct Spec {
    cpi: String,
    msp: &'static str,
    psi: Option<String>,
    context: Option<&'static str>,
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        cpi_strategy(),
        prop::sample::select(vec!["a.example", "b.example", "c.example", "d.example"]),
        prop::option::of("[@a-z0-9:.]{1,40}"),
        prop::option::of(prop::sample::select(vec!["work", "personal"])),
    )
        .prop_map(|(cpi, msp, psi, context)| Spec {
            cpi,
            msp,
            psi,
            context,
        })
}

fn sign(spec: &Spec, issuer: &IssuerKey) -> Mapping {
    MappingFields::new(
        Cpi::parse(&spec.cpi).unwrap(),
        spec.msp,
        spec.psi.as_deref(),
        spec.context,
        NOW - 100,
        NOW + 100,
    )
    .unwrap()
    .sign(issuer, None)
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn every_inserted_cpi_is_found_with_exactly_its_mappings(
        specs in prop::collection::vec(spec_strategy(), 1..40),
        absent in prop::collection::vec(cpi_strategy(), 1..3),
        salt in any::<[u8; 32]>(),
    ) {
        let (issuer, trust, scheme) = (issuer(), trust(), small_scheme());
        let mappings: Vec<Mapping> = specs.iter().map(|s| sign(s, &issuer)).collect();

        // The expected answer: last mapping per (CPI, MSP), grouped by CPI.
        let mut expected: BTreeMap<Cpi, BTreeMap<String, Mapping>> = BTreeMap::new();
        for m in &mappings {
            expected
                .entry(m.fields.cpi.clone())
                .or_default()
                .insert(m.fields.msp.clone(), m.clone());
        }

        let opts = BuildOptions { epoch: 1, now: NOW, salt: Some(salt), scheme: Some(scheme) };
        let (snapshot, report) = Snapshot::build(mappings, &trust, &opts).unwrap();
        let stored: usize = expected.values().map(BTreeMap::len).sum();
        prop_assert_eq!(report.stored_mappings, stored);

        let keys = ClientKeys::generate(&scheme).unwrap();
        let server_keys = EvalKeys::parse(&scheme, keys.public_bytes()).unwrap();
        let client = LookupClient::with_keys(snapshot.config(), keys, trust).unwrap();
        let present: BTreeSet<Cpi> = expected.keys().cloned().collect();
        for (cpi, want) in &expected {
            let pending = client.query(cpi).unwrap();
            let response = snapshot.database().answer(&server_keys, pending.query()).unwrap();
            let mut got = client.decode(pending, &response, NOW).unwrap().mappings;
            got.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
            let want: Vec<Mapping> = want.values().cloned().collect();
            prop_assert_eq!(got, want);
        }
        for cpi in absent.iter().map(|s| Cpi::parse(s).unwrap()) {
            if present.contains(&cpi) {
                continue;
            }
            let pending = client.query(&cpi).unwrap();
            let response = snapshot.database().answer(&server_keys, pending.query()).unwrap();
            prop_assert!(!client.decode(pending, &response, NOW).unwrap().found());
        }
    }
}
