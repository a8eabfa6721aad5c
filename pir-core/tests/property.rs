//! Property: whatever the mapping set, the opt-outs and the slot size, every inserted CPI is
//! found with exactly its mappings, every opted-out CPI is reported opted out with none, and
//! CPIs never inserted are neither found nor opted out.

use std::collections::{BTreeMap, BTreeSet};

use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    Snapshot, VerifiedMapping,
    identity::{OptOut, VerifiedOptOut},
    snapshot::BuildInput,
    testing::{NOW, evaluate_with, issuer, oprf_key, small_scheme, trust},
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
        opted in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        absent in prop::collection::vec(cpi_strategy(), 1..3),
        salt in any::<[u8; 32]>(),
        slot_bytes in prop::option::of(16u32..=400),
    ) {
        let (issuer, trust, scheme) = (issuer(), trust(), small_scheme());
        let mappings: Vec<Mapping> = specs.iter().map(|s| sign(s, &issuer)).collect();
        let opt_outs: Vec<OptOut> = opted
            .iter()
            .map(|i| {
                let cpi = mappings[i.index(mappings.len())].fields.cpi.clone();
                OptOut::sign(cpi, NOW - 100, NOW + 100, &issuer).unwrap()
            })
            .collect();
        let opted_out: BTreeSet<Cpi> = opt_outs.iter().map(|o| o.cpi.clone()).collect();

        // The expected answer: last mapping per (CPI, MSP), grouped by CPI.
        let mut expected: BTreeMap<Cpi, BTreeMap<String, Mapping>> = BTreeMap::new();
        for m in &mappings {
            expected
                .entry(m.fields.cpi.clone())
                .or_default()
                .insert(m.fields.msp.clone(), m.clone());
        }

        let opts = BuildOptions {
            epoch: 1,
            now: NOW,
            salt: Some(salt),
            scheme: Some(scheme),
            slot_bytes,
        };
        let input = BuildInput {
            mappings: mappings
                .iter()
                .map(|m| VerifiedMapping::new(m.clone(), &trust).unwrap())
                .collect(),
            opt_outs: opt_outs
                .iter()
                .map(|o| VerifiedOptOut::new(o.clone(), &trust).unwrap())
                .collect(),
        };
        let (snapshot, report) =
            Snapshot::build_verified(input, &oprf_key(), &opts, &|_, _| {}).unwrap();
        let count = |opted: bool| -> usize {
            expected
                .iter()
                .filter(|(cpi, _)| opted_out.contains(*cpi) == opted)
                .map(|(_, ms)| ms.len())
                .sum()
        };
        prop_assert_eq!(report.stored_mappings, count(false));
        prop_assert_eq!(report.suppressed_by_opt_out, count(true));
        prop_assert_eq!(report.stored_opt_outs, opted_out.len());
        if let Some(p) = slot_bytes {
            prop_assert_eq!(snapshot.header().layout.slot_bytes, p);
        }

        let keys = ClientKeys::generate(&scheme).unwrap();
        let server_keys = EvalKeys::parse(&scheme, keys.public_bytes()).unwrap();
        let client = LookupClient::with_keys(snapshot.config(), keys, trust).unwrap();
        let present: BTreeSet<Cpi> = expected.keys().cloned().collect();
        let absent: BTreeSet<Cpi> = absent
            .iter()
            .map(|s| Cpi::parse(s).unwrap())
            .filter(|c| !present.contains(c))
            .collect();
        let cpis: Vec<Cpi> = present.iter().chain(&absent).cloned().collect();
        // One evaluation for the whole batch, as a client sends it.
        for e in evaluate_with(&oprf_key(), &cpis) {
            let pending = client.query(&e).unwrap();
            let response = snapshot.database().answer(&server_keys, pending.query()).unwrap();
            let result = client.decode(pending, &response, NOW).unwrap();
            let cpi = e.cpi();
            if opted_out.contains(cpi) {
                prop_assert!(result.opted_out() && result.mappings.is_empty(), "{}", cpi);
            } else if let Some(want) = expected.get(cpi) {
                let mut got = result.mappings.clone();
                got.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
                let want: Vec<Mapping> = want.values().cloned().collect();
                prop_assert_eq!(got, want);
                prop_assert!(!result.opted_out());
            } else {
                prop_assert!(!result.found() && !result.opted_out(), "{}", cpi);
            }
            prop_assert_eq!(result.outside_validity, 0);
        }
    }
}
