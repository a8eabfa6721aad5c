//! The first dimension's kernels (portable, AVX2, AVX-512, chosen at run time) give the same
//! answer bytes, equal to spiral-rs's `process_query`. The kernel also picks the NTT of
//! expansion and folding (the AVX-512 kernel runs `pir/ntt.rs`'s AVX-512 transform, the others
//! spiral-rs's), so the whole answer is compared on both transforms.
//!
//! On x86-64, portable and AVX2 are always compared (the build's baseline has AVX2). AVX-512 is
//! compared on a CPU that has it, as the project's machines do; on one without it the tests say
//! so on stderr. `PIR_REQUIRE_AVX512=1` makes its absence a failure instead, for a machine that
//! must have it.

use pir_core::{
    ClientKeys, Cpi, EvalKeys, LookupClient, Mapping, SchemeParams,
    pir::{Kernel, KernelKind},
    testing::{
        NOW, build_options, build_with, bulk_mappings, evaluate, sample_mappings, small_scheme,
        tiny_scheme, trust,
    },
};

/// The kernels the comparison must cover on this machine: portable always, AVX2 on every CPU the
/// x86-64-v3 build runs on, AVX-512 where the CPU has it (or `PIR_REQUIRE_AVX512=1` demands it).
fn required_kernels() -> Vec<KernelKind> {
    let mut kinds = vec![KernelKind::Portable];
    if cfg!(target_arch = "x86_64") {
        kinds.push(KernelKind::Avx2);
        let has = Kernel::force(KernelKind::Avx512).is_some();
        if has || std::env::var("PIR_REQUIRE_AVX512").as_deref() == Ok("1") {
            kinds.push(KernelKind::Avx512);
        } else {
            eprintln!("this CPU has no AVX-512: only the portable and AVX2 kernels are compared");
        }
    }
    kinds
}

#[test]
fn this_machine_runs_every_required_kernel_and_detects_the_fastest() {
    for kind in required_kernels() {
        assert!(
            Kernel::force(kind).is_some(),
            "this CPU lacks the {kind} kernel (PIR_REQUIRE_AVX512=1 demands AVX-512)"
        );
    }
    let fastest = required_kernels().pop().unwrap();
    if fastest == KernelKind::Avx512 {
        assert_eq!(Kernel::detected().kind(), KernelKind::Avx512);
    }
}

/// CPIs looked up: two present in both snapshots, one absent.
const CPIS: [&str; 3] = [
    "tel:+14155550100",
    "mailto:carol@example.com",
    "mailto:none@example.org",
];

/// Three queries from two clients answered in one batch by every kernel this CPU runs: the same
/// bytes each time, spiral-rs's `process_query`'s; then a fresh batch per kernel, decoded.
fn every_kernel_answers_the_same_bytes(scheme: SchemeParams, mappings: Vec<Mapping>) {
    let snapshot = build_with(mappings, &build_options(scheme, 1));
    let clients: Vec<LookupClient> = (0..2)
        .map(|_| {
            let keys = ClientKeys::generate(&scheme).unwrap();
            LookupClient::with_keys(snapshot.config(), keys, trust()).unwrap()
        })
        .collect();
    let server_keys: Vec<EvalKeys> = clients
        .iter()
        .map(|c| EvalKeys::parse(&scheme, c.keys().unwrap().public_bytes()).unwrap())
        .collect();
    let queries = || -> Vec<_> {
        CPIS.iter()
            .enumerate()
            .map(|(i, cpi)| {
                let c = i % 2;
                (
                    c,
                    clients[c]
                        .query(&evaluate(&Cpi::parse(cpi).unwrap()))
                        .unwrap(),
                )
            })
            .collect()
    };

    let kernels: Vec<Kernel> = Kernel::available().collect();
    for kind in required_kernels() {
        assert!(
            kernels.iter().any(|k| k.kind() == kind),
            "the {kind} kernel is not available on this CPU"
        );
    }

    // One batch, every kernel: the same bytes.
    let pending = queries();
    let batch: Vec<(&EvalKeys, &[u8])> = pending
        .iter()
        .map(|(c, p)| (&server_keys[*c], p.query()))
        .collect();
    let reference: Vec<Vec<u8>> = batch
        .iter()
        .map(|(keys, query)| {
            snapshot
                .database()
                .unwrap()
                .danger_reference_answer(keys, query)
                .unwrap()
        })
        .collect();
    for &kernel in &kernels {
        let answers = snapshot
            .database()
            .unwrap()
            .answer_batch_with_kernel(kernel, &batch)
            .unwrap();
        assert!(
            answers == reference,
            "{} kernel: answers differ from spiral-rs's process_query",
            kernel.kind()
        );
    }
    // The default path is the detected kernel's.
    assert!(snapshot.database().unwrap().answer_batch(&batch).unwrap() == reference);

    // A fresh batch per kernel (a pending lookup is used up by its decode), decoded.
    for &kernel in &kernels {
        let pending = queries();
        let batch: Vec<(&EvalKeys, &[u8])> = pending
            .iter()
            .map(|(c, p)| (&server_keys[*c], p.query()))
            .collect();
        let answers = snapshot
            .database()
            .unwrap()
            .answer_batch_with_kernel(kernel, &batch)
            .unwrap();
        drop(batch);
        for ((cpi, (c, p)), answer) in CPIS.iter().zip(pending).zip(&answers) {
            let found = clients[c].decode(p, answer, NOW).unwrap().found();
            assert_eq!(
                found,
                *cpi != "mailto:none@example.org",
                "{} kernel, {cpi}",
                kernel.kind()
            );
        }
    }
}

#[test]
fn every_kernel_answers_the_tiny_snapshot_with_the_same_bytes() {
    // 2^2 x 2^1 items: rows of 4 entries, the smallest first dimension. Enough mappings that
    // every item holds some (an empty item's words are zero and would hide a wrong lane).
    let mut mappings = bulk_mappings(40);
    mappings.extend(sample_mappings());
    every_kernel_answers_the_same_bytes(tiny_scheme(), mappings);
}

#[test]
fn every_kernel_answers_the_small_snapshot_with_the_same_bytes() {
    // 2^6 x 2^2 items, a few hundred mappings.
    let mut mappings = bulk_mappings(300);
    mappings.extend(sample_mappings());
    every_kernel_answers_the_same_bytes(small_scheme(), mappings);
}
