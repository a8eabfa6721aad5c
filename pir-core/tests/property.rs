//! Property: whatever the mapping set, the opt-outs and the fill limit, every inserted CPI is
//! found with exactly its mappings, every opted-out CPI is reported opted out with none, and
//! CPIs never inserted are neither found nor opted out; and so after any sequence of updates.

use std::collections::{BTreeMap, BTreeSet};

use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    Snapshot, UpdateOptions, VerifiedMapping,
    identity::{OptOut, VerifiedOptOut},
    snapshot::{BuildInput, DeltaOp},
    testing::{NOW, evaluate_with, issuer, lookup_with, oprf_key, small_scheme, trust},
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
        fill_percent in prop::option::of(50u8..=100),
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
            scheme: Some(scheme.into()),
            engine: pir_core::Engine::Spiral,
            fill_percent,
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
        let limit = 4 + (scheme.item_bytes as usize - 4) * usize::from(fill_percent.unwrap_or(98)) / 100;
        prop_assert!(report.fullest_bucket_bytes <= limit);

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
            let response = snapshot.database().unwrap().answer(&server_keys, pending.query()).unwrap();
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

#[derive(Clone, Debug)]
enum Change {
    Upsert(Spec),
    RemoveMsp(prop::sample::Index, &'static str),
    RemoveAll(prop::sample::Index),
}

fn change_strategy() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => spec_strategy().prop_map(Change::Upsert),
        1 => (
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["a.example", "b.example", "c.example", "d.example"])
        )
            .prop_map(|(i, msp)| Change::RemoveMsp(i, msp)),
        1 => any::<prop::sample::Index>().prop_map(Change::RemoveAll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]

    /// Build, then apply rounds of random upserts (new CPIs and new MSPs of known ones) and
    /// removals: after every round, every CPI ever named is found with exactly the mappings a
    /// model of the changes holds, in its group's bucket.
    #[test]
    fn every_cpi_is_found_after_any_updates(
        specs in prop::collection::vec(spec_strategy(), 1..16),
        rounds in prop::collection::vec(prop::collection::vec(change_strategy(), 1..8), 1..3),
        salt in any::<[u8; 32]>(),
    ) {
        let issuer = issuer();
        let mut model: BTreeMap<Cpi, BTreeMap<String, Option<String>>> = BTreeMap::new();
        let mappings: Vec<Mapping> = specs.iter().map(|s| sign(s, &issuer)).collect();
        for m in &mappings {
            model
                .entry(m.fields.cpi.clone())
                .or_default()
                .insert(m.fields.msp.clone(), m.fields.psi.clone());
        }
        let opts = BuildOptions {
            epoch: 1,
            now: NOW,
            salt: Some(salt),
            scheme: Some(small_scheme().into()),
            engine: pir_core::Engine::Spiral,
            fill_percent: None,
        };
        let mut snapshot = Snapshot::build(mappings, &trust(), &oprf_key(), &opts).unwrap().0;
        for (round, changes) in rounds.into_iter().enumerate() {
            let known: Vec<Cpi> = model.keys().cloned().collect();
            let mut ops = Vec::new();
            for change in changes {
                match change {
                    Change::Upsert(spec) => {
                        let m = sign(&spec, &issuer);
                        model
                            .entry(m.fields.cpi.clone())
                            .or_default()
                            .insert(m.fields.msp.clone(), m.fields.psi.clone());
                        ops.push(DeltaOp::Upsert(Box::new(
                            VerifiedMapping::new(m, &trust()).unwrap(),
                        )));
                    }
                    Change::RemoveMsp(i, msp) => {
                        let cpi = known[i.index(known.len())].clone();
                        if let Some(ms) = model.get_mut(&cpi) {
                            ms.remove(msp);
                        }
                        ops.push(DeltaOp::Remove { cpi, msp: Some(msp.to_owned()) });
                    }
                    Change::RemoveAll(i) => {
                        let cpi = known[i.index(known.len())].clone();
                        if let Some(ms) = model.get_mut(&cpi) {
                            ms.clear();
                        }
                        ops.push(DeltaOp::Remove { cpi, msp: None });
                    }
                }
            }
            let update = UpdateOptions { epoch: 2 + round as u64, now: NOW };
            snapshot = snapshot.update(ops, &oprf_key(), &update).unwrap().0;
            let stored: u64 = model.values().map(|ms| ms.len() as u64).sum();
            prop_assert_eq!(snapshot.header().mapping_count, stored);
            for (cpi, ms) in &model {
                let want: Vec<(String, Option<String>)> =
                    ms.iter().map(|(m, p)| (m.clone(), p.clone())).collect();
                let got = lookup_with(&snapshot, trust(), cpi.as_str(), NOW).unwrap();
                prop_assert_eq!(got, want, "{} after round {}", cpi, round);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]

    /// The same property on the YPIR+SP engine (its smallest shape): every CPI is found with
    /// exactly its mappings, absent ones are not, through the keyword layer and a real answer.
    #[test]
    fn every_inserted_cpi_is_found_through_ypir_sp(
        specs in prop::collection::vec(spec_strategy(), 1..24),
        absent in prop::collection::vec(cpi_strategy(), 1..3),
        salt in any::<[u8; 32]>(),
    ) {
        let (issuer, trust) = (issuer(), trust());
        let mappings: Vec<Mapping> = specs.iter().map(|s| sign(s, &issuer)).collect();
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
            scheme: None,
            engine: pir_core::Engine::YpirSp,
            fill_percent: None,
        };
        let (snapshot, _) = Snapshot::build(mappings, &trust, &oprf_key(), &opts).unwrap();
        prop_assert_eq!(snapshot.engine(), pir_core::Engine::YpirSp);
        let client = LookupClient::new(snapshot.config(), trust).unwrap();
        let present: BTreeSet<Cpi> = expected.keys().cloned().collect();
        let absent: BTreeSet<Cpi> = absent
            .iter()
            .map(|s| Cpi::parse(s).unwrap())
            .filter(|c| !present.contains(c))
            .collect();
        let cpis: Vec<Cpi> = present.iter().chain(&absent).cloned().collect();
        for e in evaluate_with(&oprf_key(), &cpis) {
            let pending = client.query(&e).unwrap();
            let response = pir_core::testing::answer(&snapshot, &client, pending.query()).unwrap();
            let result = client.decode(pending, &response, NOW).unwrap();
            match expected.get(e.cpi()) {
                Some(want) => {
                    let mut got = result.mappings.clone();
                    got.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
                    let want: Vec<Mapping> = want.values().cloned().collect();
                    prop_assert_eq!(got, want);
                }
                None => prop_assert!(!result.found(), "{}", e.cpi()),
            }
        }
    }
}
