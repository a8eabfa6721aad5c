//! Criterion benches: key generation, query generation, answering (the engine, batched, and
//! spiral-rs's own `process_query` on the same database), decoding, snapshot build and load,
//! the OPRF evaluation of keyword layout v2 (the evaluator's `evaluate_blinded` and the
//! client's blind + finalize, for 1 and 32 CPIs, and the DP's direct `evaluate` a build does
//! per CPI), and an end-to-end lookup (Evaluate, then Query) over loopback gRPC.
//!
//! One run gives both sides of "evaluation cost / PIR cost per lookup": `oprf/*/1` against
//! `query`, `answer/engine` and `decode` of the shape, `oprf/*/32` per element (criterion's
//! throughput) against the same.
//!
//! `cargo bench -p pir-benches` (set `PIR_BENCH_SHAPE=large` for a vetted 2^12 x 8 KiB shape).

use std::{
    hint::black_box,
    net::SocketAddr,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pir_benches::{evaluate_in_process, unlimited_serve_options};
use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    SchemeParams, Snapshot, TrustStore, oprf::OprfKey,
};
use rand::rngs::OsRng;

fn scheme() -> SchemeParams {
    match std::env::var("PIR_BENCH_SHAPE").as_deref() {
        Ok("large") => SchemeParams::store_presets()
            .map(|p| p.params)
            .find(|p| p.num_items() == 1 << 12 && p.item_bytes == 8192)
            .expect("the parameter store has a 2^12 x 8 KiB entry"),
        _ => SchemeParams::danger_test_only_small(),
    }
}

fn mappings(issuer: &IssuerKey, n: usize) -> Vec<Mapping> {
    (0..n)
        .map(|i| {
            MappingFields::new(
                Cpi::parse(&format!("mailto:user{i}@example.org")).unwrap(),
                "chat.example",
                Some("@user:chat.example"),
                None,
                0,
                u64::MAX,
            )
            .unwrap()
            .sign(issuer, None)
            .unwrap()
        })
        .collect()
}

/// Batch sizes of the OPRF benches: one lookup, and a client looking up its address book.
const OPRF_BATCHES: [usize; 2] = [1, 32];

fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:user{i}@example.org")).unwrap()
}

fn benches(c: &mut Criterion) {
    let issuer = IssuerKey::from_seed(&[5; 32]);
    let trust = TrustStore::parse(&issuer.to_public_text()).unwrap();
    let oprf_key = OprfKey::derive(&[7; 32], b"pir-benches engine").unwrap();
    let scheme = scheme();
    let input = mappings(&issuer, 2_000);
    let opts = BuildOptions {
        epoch: 1,
        now: 1_800_000_000,
        salt: Some([2; 32]),
        scheme: Some(scheme.into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let name = |what: &str| {
        format!(
            "{what}/2^{}x{}B",
            scheme.nu_1 + scheme.nu_2,
            scheme.item_bytes
        )
    };

    c.bench_function(&name("snapshot_build"), |b| {
        b.iter(|| Snapshot::build(black_box(input.clone()), &trust, &oprf_key, &opts).unwrap())
    });
    let snapshot = Snapshot::build(input, &trust, &oprf_key, &opts).unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.pirsnap");
    snapshot.write(&path).unwrap();
    c.bench_function(&name("snapshot_load"), |b| {
        b.iter(|| Snapshot::load(black_box(&path)).unwrap())
    });

    c.bench_function(&name("keygen"), |b| {
        b.iter(|| ClientKeys::generate(&scheme).unwrap())
    });
    let keys = ClientKeys::generate(&scheme).unwrap();
    // What a registration costs the server, and what each batch pays to expand a client's
    // compact keys (against `answer/engine` below).
    c.bench_function(&name("keys_parse"), |b| {
        b.iter(|| EvalKeys::parse(&scheme, black_box(keys.public_bytes())).unwrap())
    });
    let server_keys = EvalKeys::parse(&scheme, keys.public_bytes()).unwrap();
    c.bench_function(&name("keys_expand"), |b| {
        b.iter(|| {
            server_keys
                .danger_expand_for_bench(pir_core::pir::Kernel::detected())
                .unwrap()
        })
    });
    let client = LookupClient::with_keys(snapshot.config(), keys, trust.clone()).unwrap();
    oprf(c, &client, &oprf_key);

    let cpi = cpi(7);
    let evaluated = evaluate_in_process(&client, &oprf_key, std::slice::from_ref(&cpi))
        .unwrap()
        .remove(0);
    c.bench_function(&name("query"), |b| {
        b.iter(|| client.query(black_box(&evaluated)).unwrap())
    });
    let pending = client.query(&evaluated).unwrap();
    let response = snapshot
        .database()
        .unwrap()
        .answer(&server_keys, pending.query())
        .unwrap();
    // A pending lookup is used up by its decode: make each one outside the timed part.
    c.bench_function(&name("decode"), |b| {
        b.iter_batched(
            || client.query(&evaluated).unwrap(),
            |pending| {
                client
                    .decode(pending, black_box(&response), 1_800_000_000)
                    .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });

    let mut group = c.benchmark_group(name("answer"));
    group.sample_size(10);
    group.bench_function("engine", |b| {
        b.iter(|| {
            snapshot
                .database()
                .unwrap()
                .answer(&server_keys, black_box(pending.query()))
                .unwrap()
        })
    });
    group.bench_function("engine_batch_of_4", |b| {
        let batch = vec![(&server_keys, pending.query()); 4];
        b.iter(|| {
            snapshot
                .database()
                .unwrap()
                .answer_batch(black_box(&batch))
                .unwrap()
        })
    });
    group.bench_function("spiral_rs_process_query_reference", |b| {
        b.iter(|| {
            snapshot
                .database()
                .unwrap()
                .danger_reference_answer(&server_keys, black_box(pending.query()))
                .unwrap()
        })
    });
    group.finish();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, mut remote) = runtime.block_on(async {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = pir_server::RunningServer::start(
            snapshot,
            addr,
            unlimited_serve_options(),
            Some(oprf_key),
        )
        .await
        .unwrap();
        let remote = pir_client::PirClient::connect(
            &server.url(),
            pir_client::ClientOptions::new(trust.clone()).allowing_custom_params(),
        )
        .await
        .unwrap();
        (server, remote)
    });
    let mut group = c.benchmark_group(name("end_to_end"));
    group.sample_size(10);
    group.bench_function("grpc_lookup_loopback", |b| {
        b.iter(|| runtime.block_on(remote.lookup(black_box(&cpi))).unwrap())
    });
    group.finish();
    runtime.block_on(server.stop()).unwrap();
}

/// The OPRF step of a lookup, on each side, for each of [`OPRF_BATCHES`] (criterion's
/// throughput gives the time per element), and the DP's direct evaluation of one CPI.
fn oprf(c: &mut Criterion, client: &LookupClient, key: &OprfKey) {
    let mut group = c.benchmark_group("oprf");
    group.throughput(Throughput::Elements(1));
    let one = cpi(3);
    // What the build does once per CPI (without blinding or proof).
    group.bench_function("dp_evaluate_direct", |b| {
        b.iter(|| key.evaluate(black_box(&one)).unwrap())
    });
    for n in OPRF_BATCHES {
        let cpis: Vec<Cpi> = (0..n).map(|i| cpi(i * 37)).collect();
        let blinded = client.blind(&cpis, &mut OsRng).unwrap();
        let elements: Vec<[u8; 32]> = blinded.iter().map(|b| *b.element()).collect();
        group.throughput(Throughput::Elements(n as u64));
        // The evaluator's side: n scalar multiplications and one batched DLEQ proof.
        group.bench_with_input(
            BenchmarkId::new("server_evaluate_blinded", n),
            &elements,
            |b, elements| {
                b.iter(|| {
                    key.evaluate_blinded(&mut OsRng, black_box(elements))
                        .unwrap()
                })
            },
        );
        // The client's side: blinding, then the proof check and unblinding. Each iteration
        // blinds afresh, as every lookup does; the evaluation between the two halves is not
        // timed.
        group.bench_with_input(
            BenchmarkId::new("client_blind_finalize", n),
            &cpis,
            |b, cpis| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let blinded = client.blind(black_box(cpis), &mut OsRng).unwrap();
                        total += start.elapsed();
                        let elements: Vec<[u8; 32]> =
                            blinded.iter().map(|b| *b.element()).collect();
                        let evaluation = key.evaluate_blinded(&mut OsRng, &elements).unwrap();
                        let start = Instant::now();
                        black_box(client.finalize(&blinded, black_box(&evaluation)).unwrap());
                        total += start.elapsed();
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
