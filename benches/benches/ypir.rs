//! YPIR+SP answers with each kernel this CPU runs, the portable one included: the kernel picks
//! the first pass's column sums and packing's per-node arithmetic (`pir-core/src/pir/ypir/
//! simd.rs`) and the NTT (`pir-core/src/pir/ntt.rs`). One query alone, and a batch of 4 (one
//! pass over the database for the 4), on one thread; criterion's throughput is queries per
//! second, so the batch's figure is per query.
//!
//! `cargo bench -p pir-benches --bench ypir` runs a small shape (2^12 rows, 1 instance) for a
//! quick look; `PIR_BENCH_SHAPE=15` the 2^15-row shape the kernels were measured at
//! (`PIR_BENCH_SHAPE=15x2` for 2 instances).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pir_core::pir::{
    Kernel,
    ypir::{YpirDatabase, YpirParams, query_from_seed},
};

fn shape() -> YpirParams {
    let spec = std::env::var("PIR_BENCH_SHAPE").unwrap_or_default();
    let (rows, instances) = spec.split_once('x').unwrap_or((spec.as_str(), "1"));
    let rows_log2 = rows.parse().unwrap_or(12);
    let instances = instances
        .parse()
        .expect("PIR_BENCH_SHAPE: ROWS_LOG2[xINSTANCES]");
    YpirParams::new(rows_log2, instances).expect("a YPIR shape")
}

fn ypir(c: &mut Criterion) {
    let params = shape();
    // Any bytes will do: the work does not depend on them.
    let items: Vec<u8> = (0..params.num_items() * params.item_bytes())
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let db = YpirDatabase::encode(params, &items).unwrap();
    let queries: Vec<Vec<u8>> = (0..4)
        .map(|i| query_from_seed(&params, i * 7, [i as u8; 32]).unwrap().1)
        .collect();
    let batch: Vec<&[u8]> = queries.iter().map(Vec::as_slice).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();

    let mut group = c.benchmark_group(format!(
        "ypir/2^{}x{}",
        params.rows_log2(),
        params.instances()
    ));
    group.sample_size(10);
    let mut answers = Vec::new();
    for kernel in Kernel::available() {
        answers.push(
            pool.install(|| db.answer_batch_with_kernel(&batch, kernel))
                .unwrap(),
        );
        for n in [1, 4] {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(
                BenchmarkId::new(kernel.kind().name(), format!("{n}q")),
                |b| {
                    b.iter(|| {
                        pool.install(|| {
                            db.answer_batch_with_kernel(black_box(&batch[..n]), kernel)
                                .unwrap()
                        })
                    })
                },
            );
        }
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "kernels disagree");
    group.finish();
}

criterion_group!(benches, ypir);
criterion_main!(benches);
