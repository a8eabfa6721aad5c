//! Scale figures for a sharded directory, measured in one run on one machine: the builds (one
//! unsharded snapshot of N/S mappings; all S shards of N in one process; one shard built from
//! the whole input, as each machine of a Kubernetes Indexed Job does; two such at once), and
//! sustained lookups/s through a real server (gRPC on loopback) of the unsharded snapshot
//! against one process serving every shard, queries spread over the shards, alternated so
//! that both see the same machine. Per-shard work equals the unsharded snapshot's when routing
//! costs nothing.
//!
//! `cargo run --release -p pir-benches --bin scale -- --mappings 4000000 --shards 4`

#![allow(clippy::print_stdout)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use pir_benches::{evaluate_in_process, median, timed, unlimited_serve_options};
use pir_core::{
    ClientKeys, Cpi, LookupClient, TrustStore,
    oprf::OprfKey,
    snapshot::{MANIFEST_FILE_NAME, Manifest},
};
use pir_proto::{
    ConfigIn,
    v1::{GetConfigRequest, QueryRequest, RegisterKeysRequest, discovery_client::DiscoveryClient},
};
use pir_server::{Directory, RunningServer, ShardSelection};

#[derive(Parser)]
struct Args {
    /// Synthetic mappings in the whole directory.
    #[arg(long, default_value_t = 4_000_000)]
    mappings: usize,
    /// Shards.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Measurements of each server, alternated (the median is reported).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The shards the sharded server process serves (all of them need memory for every shard
    /// at once: a 1M-mapping shard is several GiB).
    #[arg(long, default_value = "0-1")]
    serve_shards: ShardSelection,
    /// Directory for the files (default: a temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn build_args(input: &Path, dir: &Path, out: &Path, epoch: u64) -> pir_dp::BuildArgs {
    pir_dp::BuildArgs {
        mappings: input.to_path_buf(),
        trust: dir.join("issuer.pub"),
        out: out.to_path_buf(),
        skip_invalid: false,
        epoch: Some(epoch),
        replaces: None,
        scheme: None,
        engine: pir_core::Engine::Spiral,
        progress: false,
        dp_key: None,
        oprf_key: dir.join("oprf.key"),
        fill_percent: None,
    }
}

fn sharded(args: &Args, dir: &Path, out: &str, index: Option<u32>) -> pir_dp::ShardedBuildArgs {
    pir_dp::ShardedBuildArgs {
        build: build_args(&dir.join("all.jsonl"), dir, &dir.join(out), 7),
        shards: args.shards,
        shard_index: index,
    }
}

/// A server and the queries to send it: (shard, epoch, query bytes) each.
struct Target {
    server: RunningServer,
    queries: Vec<(u32, u64, Vec<u8>)>,
    keys: ClientKeys,
}

async fn target(directory: Directory, oprf: &OprfKey, cpis: &[Cpi]) -> Target {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let server = RunningServer::start(directory, addr, unlimited_serve_options(), None)
        .await
        .expect("the server starts");
    let mut rpc = rpc(&server).await;
    let base = rpc.clone();
    let config = |shard| {
        let mut rpc = base.clone();
        async move {
            let raw = rpc
                .get_config(GetConfigRequest { shard })
                .await
                .expect("GetConfig")
                .into_inner();
            ConfigIn::try_from(raw).expect("a valid config")
        }
    };
    let first = config(None).await;
    let spiral = first
        .lookup()
        .scheme()
        .spiral()
        .expect("a Spiral directory");
    let keys = ClientKeys::generate(spiral).expect("keys");
    rpc.register_keys(RegisterKeysRequest::for_keys(&keys))
        .await
        .expect("RegisterKeys");
    let first_client =
        LookupClient::with_keys(first.lookup().clone(), keys.clone(), TrustStore::new())
            .expect("a client");
    let evaluated = evaluate_in_process(&first_client, oprf, cpis).expect("evaluations");
    let mut queries = Vec::new();
    for y in &evaluated {
        let (shard, config) = match first.manifest() {
            Some(m) => {
                let shard = m.shard_of(y.output());
                (shard, config(Some(shard)).await)
            }
            None => (0, first.clone()),
        };
        let client =
            LookupClient::with_keys(config.lookup().clone(), keys.clone(), TrustStore::new())
                .expect("a client");
        let pending = client.query(y).expect("a query");
        queries.push((shard, config.lookup().epoch(), pending.query().to_vec()));
    }
    Target {
        server,
        queries,
        keys,
    }
}

async fn rpc(server: &RunningServer) -> DiscoveryClient<tonic::transport::Channel> {
    DiscoveryClient::connect(server.url())
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Lookups answered per second over `seconds`, `concurrency` queries in flight, and the
/// queries each shard answered.
async fn load(t: &Target, seconds: u64, concurrency: usize) -> (f64, Vec<u64>) {
    let done = Arc::new(AtomicU64::new(0));
    let shards = t.queries.iter().map(|q| q.0).max().unwrap_or(0) as usize + 1;
    let per_shard: Arc<Vec<AtomicU64>> = Arc::new((0..shards).map(|_| AtomicU64::new(0)).collect());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut rpc = rpc(&t.server).await;
        let queries = t.queries.clone();
        let keys = t.keys.clone();
        let (done, per_shard) = (done.clone(), per_shard.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                let (shard, epoch, query) = &queries[i % queries.len()];
                let mut request = QueryRequest::authenticated(&keys, *epoch, vec![query.clone()]);
                request.shard = *shard;
                rpc.query(request).await.expect("Query");
                done.fetch_add(1, Ordering::Relaxed);
                per_shard[*shard as usize].fetch_add(1, Ordering::Relaxed);
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a load task");
    }
    let secs = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        per_shard
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let issuer = pir_dp::issuer_keygen(&dir.join("issuer.key"), true)?;
    let oprf = pir_dp::oprf_keygen(&dir.join("oprf.key"), true)?;
    let now = pir_core::unix_now();
    let per_shard = args.mappings / args.shards as usize;
    eprintln!("synthesising {} mappings...", args.mappings);
    let (mappings, synth_s) = timed(|| pir_dp::synth(args.mappings, &issuer, 1, now));
    let mappings = mappings?;
    pir_dp::write_jsonl(&dir.join("all.jsonl"), &mappings)?;
    pir_dp::write_jsonl(&dir.join("one.jsonl"), &mappings[..per_shard])?;
    let sample: Vec<Cpi> = mappings
        .iter()
        .step_by((mappings.len() / 128).max(1))
        .map(|m| m.fields.cpi.clone())
        .collect();
    drop(mappings);

    eprintln!("building the unsharded snapshot of {per_shard}...");
    let single = dir.join("single.pirsnap");
    let (built, single_s) =
        timed(|| pir_dp::build(&build_args(&dir.join("one.jsonl"), &dir, &single, 1)));
    let single_summary = built?;
    eprintln!(
        "building {} shards of {} in one process...",
        args.shards, args.mappings
    );
    let (built, all_s) = timed(|| pir_dp::build_sharded(&sharded(&args, &dir, "shards", None)));
    let all_summary = built?;
    eprintln!("building shard 0 alone from the whole input...");
    let (built, one_s) = timed(|| pir_dp::build_sharded(&sharded(&args, &dir, "apart", Some(0))));
    built?;
    eprintln!("building shards 1 and 2 at once, each from the whole input...");
    let (built, two_s) = timed(|| {
        std::thread::scope(|s| {
            let a = s.spawn(|| pir_dp::build_sharded(&sharded(&args, &dir, "apart", Some(1))));
            let b = s.spawn(|| pir_dp::build_sharded(&sharded(&args, &dir, "apart", Some(2))));
            (a.join(), b.join())
        })
    });
    match built {
        (Ok(Ok(_)), Ok(Ok(_))) => {}
        _ => return Err("a parallel shard build failed".into()),
    }

    let runtime = tokio::runtime::Runtime::new()?;
    let manifest_path = dir.join("shards").join(MANIFEST_FILE_NAME);
    let manifest = Manifest::load(&manifest_path)?;
    let (mut single_rates, mut sharded_rates) = (Vec::new(), Vec::new());
    let mut spread = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {round}: the unsharded snapshot...");
        let t = runtime.block_on(target(
            Directory::from(pir_core::Snapshot::load(&single)?),
            &oprf,
            &sample,
        ));
        let (rate, _) = runtime.block_on(load(&t, args.seconds, args.concurrency));
        single_rates.push(rate);
        runtime.block_on(t.server.stop())?;
        eprintln!(
            "round {round}: shards {:?} in one process...",
            args.serve_shards
        );
        let directory = Directory::load_sharded(&manifest_path, &args.serve_shards, None, None)?;
        let served = directory.served();
        let sample: Vec<Cpi> = sample
            .iter()
            .filter(|c| {
                let y = oprf.evaluate(c).expect("an evaluation");
                served.contains(&manifest.shard_of(&y))
            })
            .cloned()
            .collect();
        let t = runtime.block_on(target(directory, &oprf, &sample));
        let (rate, per) = runtime.block_on(load(&t, args.seconds, args.concurrency));
        sharded_rates.push(rate);
        spread = per;
        runtime.block_on(t.server.stop())?;
    }
    let (single_rate, sharded_rate) = (median(single_rates), median(sharded_rates));
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| mappings, shards | {} in {} shards of about {per_shard} (per-shard mappings {:?}) |",
        args.mappings,
        args.shards,
        manifest
            .shards
            .iter()
            .map(|s| s.mapping_count)
            .collect::<Vec<_>>()
    );
    println!(
        "| shape (every shard, and the unsharded snapshot) | {} items x {} B; {} x {} B |",
        all_summary.items,
        all_summary.item_bytes,
        single_summary.header.scheme.num_items(),
        single_summary.header.scheme.item_bytes()
    );
    println!(
        "| shard file | {:.2} GiB; unsharded {:.2} GiB |",
        gib(all_summary.shards[0].file_bytes),
        gib(single_summary.file_bytes)
    );
    println!(
        "| synthesising and signing {} mappings | {synth_s:.0} s |",
        args.mappings
    );
    println!("| build, unsharded {per_shard} | {single_s:.0} s |");
    println!(
        "| build, {} shards in one process | {all_s:.0} s ({:.2}x the unsharded build per shard) |",
        args.shards,
        all_s / args.shards as f64 / single_s
    );
    println!(
        "| build, one shard from the whole input (one machine of an Indexed Job) | {one_s:.0} s |"
    );
    println!("| build, two such at once on this machine | {two_s:.0} s |");
    println!(
        "| lookups/s, unsharded {per_shard} (median of {}) | {single_rate:.2} |",
        args.rounds
    );
    println!(
        "| lookups/s, shards {:?} of {} in one process, spread over them | {sharded_rate:.2} ({:.2}x; answered per shard {spread:?}) |",
        args.serve_shards,
        args.shards,
        sharded_rate / single_rate
    );
    Ok(())
}
