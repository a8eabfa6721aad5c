//! A whole answer (one query, one thread) with each kernel this CPU runs: the kernel picks the
//! first dimension's inner product and the NTT of expansion and folding (`pir-core/src/pir/
//! ntt.rs`: AVX-512 with the AVX-512 kernel, spiral-rs's AVX2 transform with the others), so
//! `avx512` against `avx2` is what both AVX-512 paths give together. The phases of one answer
//! per kernel go to stderr, to say where the difference is.
//!
//! `cargo bench -p pir-benches --bench answer_kernels` runs the vetted 2^12 x 8 KiB preset;
//! `PIR_BENCH_SHAPE=1m` the 1M-mapping shape (2^14 x 8 KiB).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pir_benches::evaluate_in_process;
use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    SchemeParams, Snapshot, TrustStore,
    oprf::OprfKey,
    pir::{Kernel, KernelKind},
};

fn shape() -> SchemeParams {
    let (items, bytes) = match std::env::var("PIR_BENCH_SHAPE").as_deref() {
        Ok("1m") => (1 << 14, 8192),
        _ => (1 << 12, 8192),
    };
    SchemeParams::vetted_presets()
        .map(|p| p.params)
        .find(|p| p.num_items() == items && p.item_bytes == bytes)
        .expect("a vetted preset of that shape")
}

fn answer_kernels(c: &mut Criterion) {
    let scheme = shape();
    let issuer = IssuerKey::from_seed(&[9; 32]);
    let trust = TrustStore::parse(&issuer.to_public_text()).unwrap();
    let cpi = |i: usize| Cpi::parse(&format!("mailto:user{i}@example.org")).unwrap();
    let input: Vec<Mapping> = (0..64)
        .map(|i| {
            MappingFields::new(cpi(i), "chat.example", None, None, 0, u64::MAX)
                .unwrap()
                .sign(&issuer, None)
                .unwrap()
        })
        .collect();
    let opts = BuildOptions {
        epoch: 1,
        now: pir_core::unix_now(),
        salt: Some([3; 32]),
        scheme: Some(scheme.into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let oprf_key = OprfKey::derive(&[3; 32], b"pir-benches answer_kernels").unwrap();
    let snapshot = Snapshot::build(input, &trust, &oprf_key, &opts).unwrap().0;
    let keys = ClientKeys::generate(&scheme).unwrap();
    let server_keys = EvalKeys::parse(&scheme, keys.public_bytes()).unwrap();
    let client = LookupClient::with_keys(snapshot.config(), keys, trust).unwrap();
    let evaluated = evaluate_in_process(&client, &oprf_key, &[cpi(5)]).unwrap();
    let pending = client.query(&evaluated[0]).unwrap();
    let batch = [(&server_keys, pending.query())];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();

    let mut group = c.benchmark_group(format!(
        "answer_kernels/2^{}x{}B",
        scheme.nu_1 + scheme.nu_2,
        scheme.item_bytes
    ));
    group.sample_size(10);
    let mut answers = Vec::new();
    for kernel in Kernel::available().filter(|k| k.kind() != KernelKind::Portable) {
        let (answer, phases) = pool
            .install(|| {
                snapshot
                    .database()
                    .unwrap()
                    .answer_batch_timed_with_kernel(kernel, &batch)
            })
            .unwrap();
        eprintln!("{}: {phases:?}", kernel.kind());
        answers.push(answer);
        group.bench_function(BenchmarkId::new(kernel.kind().name(), "1q"), |b| {
            b.iter(|| {
                pool.install(|| {
                    snapshot
                        .database()
                        .unwrap()
                        .answer_batch_with_kernel(kernel, black_box(&batch))
                        .unwrap()
                })
            })
        });
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "kernels disagree");
    group.finish();
}

criterion_group!(benches, answer_kernels);
criterion_main!(benches);
