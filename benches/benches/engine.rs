//! Criterion benches: key generation, query generation, answering (the engine, batched, and
//! spiral-rs's own `process_query` on the same database), decoding, snapshot build and load,
//! and an end-to-end lookup over loopback gRPC.
//!
//! `cargo bench -p pir-benches` (set `PIR_BENCH_SHAPE=large` for a vetted 2^12 x 8 KiB shape).

use std::{hint::black_box, net::SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    SchemeParams, Snapshot, TrustStore,
};

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

fn benches(c: &mut Criterion) {
    let issuer = IssuerKey::from_seed(&[5; 32]);
    let trust = TrustStore::parse(&issuer.to_public_text()).unwrap();
    let scheme = scheme();
    let input = mappings(&issuer, 2_000);
    let opts = BuildOptions {
        epoch: 1,
        now: 1_800_000_000,
        salt: Some([2; 32]),
        scheme: Some(scheme),
    };
    let name = |what: &str| {
        format!(
            "{what}/2^{}x{}B",
            scheme.nu_1 + scheme.nu_2,
            scheme.item_bytes
        )
    };

    c.bench_function(&name("snapshot_build"), |b| {
        b.iter(|| Snapshot::build(black_box(input.clone()), &trust, &opts).unwrap())
    });
    let snapshot = Snapshot::build(input, &trust, &opts).unwrap().0;
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
    let server_keys = EvalKeys::parse(&scheme, keys.public_bytes()).unwrap();
    let client = LookupClient::with_keys(snapshot.config(), keys, trust.clone()).unwrap();
    let cpi = Cpi::parse("mailto:user7@example.org").unwrap();
    c.bench_function(&name("query"), |b| {
        b.iter(|| client.query(black_box(&cpi)).unwrap())
    });
    let pending = client.query(&cpi).unwrap();
    let response = snapshot
        .database()
        .answer(&server_keys, pending.query())
        .unwrap();
    // A pending lookup is used up by its decode: make each one outside the timed part.
    c.bench_function(&name("decode"), |b| {
        b.iter_batched(
            || client.query(&cpi).unwrap(),
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
                .answer(&server_keys, black_box(pending.query()))
                .unwrap()
        })
    });
    group.bench_function("engine_batch_of_4", |b| {
        let batch = vec![(&server_keys, pending.query()); 4];
        b.iter(|| snapshot.database().answer_batch(black_box(&batch)).unwrap())
    });
    group.bench_function("spiral_rs_process_query_reference", |b| {
        b.iter(|| {
            snapshot
                .database()
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
            pir_server::ServeOptions {
                per_key_rate: None,
                per_peer_rate: None,
                ..Default::default()
            },
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

criterion_group!(engine, benches);
criterion_main!(engine);
