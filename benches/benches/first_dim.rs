//! Criterion bench of the first-dimension pass alone, in each kernel this CPU runs (portable,
//! AVX2, AVX-512), on the 1M-mapping shape (the vetted 2^14 x 16 KiB preset: 2 GiB of
//! NTT-form words, rows of 2^nu_1 = 256 entries), for one query and a batch of 8. One run gives
//! the ratio AVX-512 / AVX2.
//!
//! `cargo bench -p pir-benches --bench first_dim` (the words are random residues, generated
//! once: a few seconds and 2 GiB of memory). Each pass also returns a checksum of its sums,
//! which must be the same for every kernel.

use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
    hint::black_box,
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pir_core::{
    SchemeParams,
    pir::{FirstDimensionBench, Kernel},
};

/// Queries per pass: one lookup, and the server's default largest batch.
const BATCHES: [usize; 2] = [1, 8];

fn shape() -> SchemeParams {
    SchemeParams::vetted_presets()
        .map(|p| p.params)
        .find(|p| p.num_items() == 1 << 14 && p.item_bytes == 16384)
        .expect("a vetted 2^14 x 16 KiB preset")
}

fn first_dim(c: &mut Criterion) {
    let params = shape();
    let mut group = c.benchmark_group(format!(
        "first_dim/2^{}x{}B",
        params.nu_1 + params.nu_2,
        params.item_bytes
    ));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(
        (params.db_words() * std::mem::size_of::<u64>()) as u64,
    ));
    // Made on first use, so that a filter that selects nothing here costs nothing.
    let cell: OnceCell<FirstDimensionBench> = OnceCell::new();
    let data = || cell.get_or_init(|| FirstDimensionBench::random(&params, 8, 1).unwrap());
    for queries in BATCHES {
        let mut checksums = HashMap::new();
        for kernel in Kernel::available() {
            let name = kernel.kind().name();
            group.bench_function(BenchmarkId::new(name, format!("{queries}q")), |b| {
                let data = data();
                checksums
                    .entry(name)
                    .or_insert_with(|| data.run(kernel, queries));
                b.iter(|| black_box(data.run(black_box(kernel), queries)))
            });
        }
        let distinct: HashSet<u64> = checksums.values().copied().collect();
        assert!(distinct.len() <= 1, "kernels disagree: {checksums:?}");
    }
    group.finish();
}

criterion_group!(benches, first_dim);
criterion_main!(benches);
