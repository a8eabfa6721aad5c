//! The sweep tool: sizes and timings per database shape, comparable with the papers' tables.
//!
//! `cargo run --release -p pir-benches --bin sweep -- --mappings 10000,100000,1000000`
//! prints markdown tables (`--csv`, `--json` for machines: one row per mapping count and
//! engine, every column, keys as in the JSON). `--engines spiral,ypir-sp` (the default: both)
//! builds each mapping count's mappings (synthesized once) with every engine, one row each; a
//! side-by-side table then sets the engines together (issue 14, item 5): query, response and key
//! bytes, per-client server state, offline time (build, load and the server's precomputation),
//! server ms on one thread and its ratio to Spiral's, lookups/s under load and their ratio to
//! Spiral's and to raw spiral-rs on 2^20 x 256 B, GB/s per core, peak memory. A figure that does
//! not apply to an engine (YPIR+SP has no expansion, no folding, no same-shape spiral-rs run)
//! prints as "-". Every row measures, in one run:
//!
//! - in process: the OPRF evaluation (the DP's `evaluate_blinded` of one blinded CPI and of a
//!   batch of `--batch`, and the client's blind + finalize with the proof check), client query
//!   and decode; the engine's answer on 1 thread (with its phases:
//!   expansion, first dimension, folding, packing) and on every core; a batch of `--batch`
//!   queries; and spiral-rs's own `process_query` on the same database;
//! - on a real server in a child process (this binary again, with a hidden `--serve-child`
//!   flag): `--concurrency` clients (default 4) looking up the snapshot's own CPIs (each
//!   lookup must find, decrypt and verify its mappings) for `--duration` seconds (default 20)
//!   through `pir_client::bench`, giving sustained lookups/s and latency, then the server's
//!   peak resident memory against snapshot plus key-cache bytes.
//!
//! - sizes: the snapshot, the keys, the raw query and response, and what one lookup puts on the
//!   wire (protobuf plus gRPC's 5-byte framing of each message): its `Query` (one query) and its
//!   `Evaluate` (one CPI), requests and responses;
//! - the OPRF's share of the build: `OprfKey::evaluate` throughput on every core (as the build
//!   runs it) over a sample of the CPIs, times the snapshot's CPI count, against the build time.
//!
//! A fourth table gives the evaluation's cost as a percentage of the PIR lookup's, from the same
//! row. The server process answers `Evaluate` too, so its lookups/s are of whole lookups.
//!
//! A fifth table, for researchers, sets each row beside the literature (issue 17, item 6; the
//! papers' figures and units are in `pir_benches::literature`):
//!
//! - database GB/s per core (GB = 10^9 B), of two byte counts: capacity, the plaintext
//!   database the answer scans (`SchemeParams::capacity_bytes`: items x item bytes), and
//!   useful, the snapshot's record bytes (capacity x packing efficiency). In process: those
//!   bytes over one query's answer on a 1-thread pool (`server ms (1 thread)`, the median of
//!   `--repeat`). Under load: the server process's lookups/s x those bytes / the cores
//!   (`std::thread::available_parallelism`, shown; the load generator runs on the same cores,
//!   so this understates what the server alone would do);
//! - keys per GiB of cache: 2^30 / one client's server-side key bytes, which are the server
//!   process's key-cache bytes over the key sets its cache holds after the load (one: every
//!   client shares a key set). The server's own accounting is read, not copied;
//! - ratios, ours / theirs: the 1-thread capacity GB/s per core against OnionPIRv2's and
//!   YPIR's, and the public keys' wire bytes against OnionPIRv2's key per client.
//!
//! After the tables, markdown only (CSV and JSON rows carry the ratio columns), a
//! literature-anchors table sets the run's largest row beside OnionPIRv2 (eprint 2025/1142)
//! and YPIR (eprint 2024/270): GB/s per core, query and response bytes, key bytes per client
//! (ours on the wire and in the server), keys per GiB of cache, each with ours / theirs.
//!
//! Every row is also compared with one fixed reference, measured once per run: raw spiral-rs
//! `process_query` on a 2^20 x 256 B database (the parameter-store 2^15 x 8 KiB entry: 32
//! records of 256 B per item), the figure the project's target is stated against. Like the same-shape
//! spiral-rs column, it runs with spiral-rs's own threading on the default rayon pool.

#![allow(clippy::print_stdout)]

use std::{path::PathBuf, process::Command, time::Duration};

use clap::Parser;
use pir_benches::{
    ServerMemory, ServerProcess, build_unsigned, evaluate_in_process,
    literature::{self, ANCHORS, ONIONPIR_V2, YPIR},
    median,
    oprf_cost::{measure_evaluation, oprf_build_share, query_wire_bytes},
    serve_until_stdin_closes, timed,
};
use pir_client::{ClientOptions, bench::BenchReport};
use pir_core::{
    BuildOptions, ClientKeys, Cpi, Database, Engine, EvalKeys, IssuerKey, LookupClient,
    MappingFields, Scheme, SchemeParams, Snapshot, TrustStore,
    oprf::OprfKey,
    pir::{AnswerPhases, ypir::YpirDatabase},
};
use serde::Serialize;

#[derive(Parser)]
struct Args {
    /// Mapping counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    mappings: Vec<usize>,
    /// Engines, comma separated (spiral, ypir-sp): each builds the same mappings and is
    /// measured in its own row; with more than one, a side-by-side table sets them together.
    #[arg(long, value_delimiter = ',', default_value = "spiral,ypir-sp")]
    engines: Vec<Engine>,
    /// Repetitions of each in-process timing (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Queries answered together for the in-process batch figure.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Concurrent clients against the server process.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds of load against the server process, per row.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// CSV instead of markdown.
    #[arg(long)]
    csv: bool,
    /// JSON lines instead of markdown.
    #[arg(long)]
    json: bool,
    /// Internal: serve this snapshot for the parent sweep (see `pir_benches::ServerProcess`).
    #[arg(
        long,
        hide = true,
        value_name = "SNAPSHOT",
        requires = "serve_oprf_key"
    )]
    serve_child: Option<PathBuf>,
    /// Internal: the OPRF secret key file (owner-only) the served snapshot was built with.
    #[arg(long, hide = true, value_name = "FILE", requires = "serve_child")]
    serve_oprf_key: Option<PathBuf>,
}

#[derive(Default, Serialize)]
struct Row {
    mappings: usize,
    engine: String,
    shape: String,
    raw_mapping_bytes: u64,
    snapshot_bytes: u64,
    packing_efficiency: f64,
    build_s: f64,
    build_oprf_s: f64,
    load_s: f64,
    precompute_s: f64,
    offline_s: f64,
    public_key_bytes: usize,
    query_bytes: usize,
    response_bytes: usize,
    query_wire_bytes: usize,
    evaluate_wire_bytes: usize,
    client_query_ms: f64,
    client_decode_ms: f64,
    eval_client_ms: f64,
    server_ms_1_thread: f64,
    eval_server_ms: f64,
    eval_server_ms_per_cpi_batched: f64,
    expand_ms: f64,
    first_dim_ms: f64,
    fold_ms: f64,
    pack_ms: f64,
    server_ms: f64,
    inproc_ms_per_lookup_batched: f64,
    inproc_lookups_per_s_batched: f64,
    reference_ms: f64,
    reference_lookups_per_s: f64,
    concurrency: usize,
    bench_lookups: u64,
    lookups_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_peak_rss_bytes: u64,
    key_cache_bytes: u64,
    memory_ratio: f64,
    ref_2_20_ms: f64,
    ref_2_20_lookups_per_s: f64,
    speedup_vs_ref_2_20: f64,
    ms_1_thread_vs_spiral: f64,
    lookups_per_s_vs_spiral: f64,
    eval_server_pct: f64,
    eval_server_pct_batched: f64,
    eval_client_pct: f64,
    evaluate_wire_pct: f64,
    build_oprf_pct: f64,
    cores: usize,
    db_capacity_bytes: u64,
    db_record_bytes: u64,
    gb_per_s_per_core: f64,
    useful_gb_per_s_per_core: f64,
    load_gb_per_s_per_core: f64,
    load_useful_gb_per_s_per_core: f64,
    registered_keys: u64,
    key_bytes_per_client: f64,
    keys_per_gib: f64,
    gb_per_s_vs_onionpir_v2: f64,
    gb_per_s_vs_ypir: f64,
    key_wire_vs_onionpir_v2: f64,
}

fn ms(s: f64) -> f64 {
    s * 1e3
}

/// raw spiral-rs on 2^20 x 256 B, measured once per run.
struct Reference {
    ms: f64,
    lookups_per_s: f64,
}

/// The Spiral authors' parameter-store entry holding 2^20 records of 256 B: 2^15 items of
/// 8 KiB, one instance, as raw spiral-rs would run it (not this project's tuned preset).
fn reference_scheme() -> Result<SchemeParams, String> {
    SchemeParams::store_presets()
        .map(|p| p.params)
        .find(|p| p.nu_1 + p.nu_2 == 15 && p.item_bytes == 8192 && p.instances == 1)
        .ok_or_else(|| {
            "no store preset with nu_1 + nu_2 = 15, item_bytes = 8192, instances = 1: the 2^20 x \
             256 B reference needs it (was the preset table changed?)"
                .into()
        })
}

fn measure_reference(repeat: usize) -> Result<Reference, Box<dyn std::error::Error>> {
    let scheme = reference_scheme()?;
    let issuer = IssuerKey::from_seed(&[5; 32]);
    let trust = TrustStore::parse(&issuer.to_public_text())?;
    // The answer scans every item whatever it holds: a handful of mappings is enough.
    let cpis: Vec<Cpi> = (0..8)
        .map(|i| Cpi::parse(&format!("mailto:user{i}@example.org")))
        .collect::<Result<_, _>>()?;
    let mappings = cpis
        .iter()
        .map(|cpi| {
            MappingFields::new(cpi.clone(), "chat.example", None, None, 0, u64::MAX)?
                .sign(&issuer, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = pir_core::unix_now();
    let oprf_key = OprfKey::generate(&mut rand::rngs::OsRng)?;
    let (snapshot, _) = Snapshot::build(
        mappings,
        &trust,
        &oprf_key,
        &BuildOptions {
            epoch: 1,
            now,
            salt: Some([2; 32]),
            scheme: Some(scheme.into()),
            engine: pir_core::Engine::Spiral,
            fill_percent: None,
        },
    )?;
    let database = snapshot.database()?;
    let keys = ClientKeys::generate(&scheme)?;
    let server_keys = EvalKeys::parse(&scheme, keys.public_bytes())?;
    let client = LookupClient::with_keys(snapshot.config(), keys, trust)?;
    let evaluated = evaluate_in_process(&client, &oprf_key, &cpis[3..4])?;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        // Not timed; a pending lookup is used up by its decode.
        let pending = client.query(&evaluated[0])?;
        let (answer, s) = timed(|| database.danger_reference_answer(&server_keys, pending.query()));
        if !client.decode(pending, &answer?, now)?.found() {
            return Err("the 2^20 x 256 B reference did not find a present CPI".into());
        }
        samples.push(s);
    }
    let s = median(samples);
    Ok(Reference {
        ms: ms(s),
        lookups_per_s: 1.0 / s,
    })
}

/// Serves `snapshot` from a child process and loads it with `pir_client::bench`, looking up
/// `cpis` (the snapshot's own, so lookups find, decrypt and verify mappings as real ones do).
/// The child also answers `Evaluate`, with the OPRF key in the owner-only file `oprf_key`.
fn serve_and_load(
    snapshot: &std::path::Path,
    oprf_key: &std::path::Path,
    trust: TrustStore,
    cpis: Vec<Cpi>,
    args: &Args,
) -> Result<(BenchReport, ServerMemory), Box<dyn std::error::Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--serve-child")
        .arg(snapshot)
        .arg("--serve-oprf-key")
        .arg(oprf_key);
    let server = ServerProcess::spawn(command)?;
    let dir = tempfile::tempdir()?;
    let options = ClientOptions {
        // One key set for every client, registered once, as `pir-client bench` does.
        key_file: Some(dir.path().join("bench.keys")),
        ..ClientOptions::new(trust)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(pir_client::bench::run_with_cpis(
        server.url(),
        options,
        args.concurrency,
        Duration::from_secs(args.duration),
        cpis.into(),
    ))?;
    if report.errors > 0 {
        // Dropping `server` kills the child.
        return Err(format!(
            "{} of {} lookups failed against the server process (concurrency {})",
            report.errors,
            report.errors + report.lookups,
            args.concurrency
        )
        .into());
    }
    if report.found < report.lookups {
        return Err(format!(
            "{} of {} lookups of present CPIs found nothing",
            report.lookups - report.found,
            report.lookups
        )
        .into());
    }
    if report.lookups == 0 {
        return Err(format!(
            "no lookup finished in {} s: raise --duration",
            args.duration
        )
        .into());
    }
    let memory = server.finish()?;
    Ok((report, memory))
}

/// One row count's mappings, synthesized and written once, built for every engine.
struct Mappings {
    dir: tempfile::TempDir,
    trust_path: PathBuf,
    trust: TrustStore,
    cpis: Vec<Cpi>,
    oprf_path: PathBuf,
    oprf_key: OprfKey,
    input: PathBuf,
    raw_mapping_bytes: u64,
}

fn synthesize(n: usize) -> Result<Mappings, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("issuer.key");
    let issuer = pir_dp::issuer_keygen(&key, true)?;
    let trust_path = pir_dp::public_key_path(&key);
    let trust = TrustStore::from_file(&trust_path)?;
    let mappings = pir_dp::synth(n, &issuer, 1, pir_core::unix_now())?;
    let raw_mapping_bytes: u64 = mappings.iter().map(|m| m.to_json_line().len() as u64).sum();
    let cpis: Vec<Cpi> = mappings.iter().map(|m| m.fields.cpi.clone()).collect();
    // Owner-only (0600), as the server requires of it.
    let oprf_path = dir.path().join("oprf.key");
    let oprf_key = pir_dp::oprf_keygen(&oprf_path, true)?;
    let input = dir.path().join("m.jsonl");
    pir_dp::write_jsonl(&input, &mappings)?;
    Ok(Mappings {
        dir,
        trust_path,
        trust,
        cpis,
        oprf_path,
        oprf_key,
        input,
        raw_mapping_bytes,
    })
}

/// What answers in process: the engine's database, and for Spiral one client's keys as the
/// server holds them.
enum Answerer<'a> {
    Spiral {
        database: &'a Database,
        keys: EvalKeys,
    },
    YpirSp(&'a YpirDatabase),
}

impl Answerer<'_> {
    fn answer_batch(&self, queries: &[&[u8]]) -> pir_core::Result<Vec<Vec<u8>>> {
        match self {
            Answerer::Spiral { database, keys } => {
                let batch: Vec<(&EvalKeys, &[u8])> = queries.iter().map(|q| (keys, *q)).collect();
                database.answer_batch(&batch)
            }
            Answerer::YpirSp(database) => database.answer_batch(queries),
        }
    }

    fn answer(&self, query: &[u8]) -> pir_core::Result<Vec<u8>> {
        Ok(self.answer_batch(&[query])?.remove(0))
    }

    fn answer_timed(&self, query: &[u8]) -> pir_core::Result<AnswerPhases> {
        Ok(match self {
            Answerer::Spiral { database, keys } => database.answer_batch_timed(&[(keys, query)])?.1,
            Answerer::YpirSp(database) => database.answer_batch_timed(&[query])?.1,
        })
    }

    /// Raw spiral-rs's `process_query` on the same database: Spiral only.
    fn reference(&self, query: &[u8]) -> Option<pir_core::Result<Vec<u8>>> {
        match self {
            Answerer::Spiral { database, keys } => {
                Some(database.danger_reference_answer(keys, query))
            }
            Answerer::YpirSp(_) => None,
        }
    }
}

fn measure(
    m: &Mappings,
    engine: Engine,
    args: &Args,
    reference_2_20: &Reference,
) -> Result<Row, Box<dyn std::error::Error>> {
    let cpis = &m.cpis;
    let path = m.dir.path().join(format!("{engine}.pirsnap"));
    let (summary, build_s) =
        timed(|| build_unsigned(&m.input, &m.trust_path, &m.oprf_path, &path, engine));
    let summary = summary?;
    let build_oprf_s = oprf_build_share(&m.oprf_key, cpis, summary.header.cpi_count, args.repeat)?;
    let (snapshot, load_s) = timed(|| Snapshot::load(&path));
    let snapshot = snapshot?;
    let scheme = *snapshot.config().scheme();
    let sizes = snapshot.message_sizes()?;
    // The server's own preprocessing once the file is read, as `pir-server` runs it at load:
    // YPIR+SP's hint columns and packing digits. Spiral's database is preprocessed in the build.
    let (answerer, precompute_s, client) = match scheme {
        Scheme::Spiral(params) => {
            let keys = ClientKeys::generate(&params)?;
            let server_keys = EvalKeys::parse(&params, keys.public_bytes())?;
            let client = LookupClient::with_keys(snapshot.config(), keys, m.trust.clone())?;
            let answerer = Answerer::Spiral {
                database: snapshot.database()?,
                keys: server_keys,
            };
            (answerer, 0.0, client)
        }
        Scheme::YpirSp(_) => {
            let (database, s) = timed(|| snapshot.ypir_database());
            let client = LookupClient::new(snapshot.config(), m.trust.clone())?;
            (Answerer::YpirSp(database?), s, client)
        }
    };
    let eval = measure_evaluation(&client, &m.oprf_key, cpis, args.repeat, args.batch)?;

    // The OPRF step of each lookup, not timed here: measure_evaluation times it.
    let looked_up: Vec<Cpi> = (0..args.repeat.max(args.batch))
        .map(|i| cpis[i * 7919 % cpis.len()].clone())
        .collect();
    let evaluated = evaluate_in_process(&client, &m.oprf_key, &looked_up)?;
    let mut query_s = Vec::new();
    let mut pendings = Vec::new();
    for e in &evaluated {
        let (p, s) = timed(|| client.query(e));
        pendings.push(p?);
        query_s.push(s);
    }
    let one = &pendings[0];
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut single1 = Vec::new();
    let mut phases = [(); 4].map(|_| Vec::new());
    let mut single = Vec::new();
    let mut reference = Vec::new();
    let mut decode_s = Vec::new();
    for _ in 0..args.repeat {
        let (a, s) = timed(|| pool1.install(|| answerer.answer(one.query())));
        a?;
        single1.push(s);
        let p = pool1.install(|| answerer.answer_timed(one.query()))?;
        for (samples, s) in phases
            .iter_mut()
            .zip([p.expand_s, p.first_dim_s, p.fold_s, p.pack_s])
        {
            samples.push(s);
        }
        let (a, s) = timed(|| answerer.answer(one.query()));
        let a = a?;
        single.push(s);
        let (r, s) = timed(|| answerer.reference(one.query()));
        if let Some(r) = r {
            if r? != a {
                return Err("engine and reference answers differ".into());
            }
            reference.push(s);
        }
        // A pending lookup is used up by its decode: a fresh one and its answer (YPIR+SP's
        // query secret is the query's own), made outside the timing.
        let fresh = client.query(&evaluated[0])?;
        let a = answerer.answer(fresh.query())?;
        let (found, s) = timed(|| client.decode(fresh, &a, pir_core::unix_now()));
        if !found?.found() {
            return Err(format!("{engine}: a present CPI was not found").into());
        }
        decode_s.push(s);
    }
    let query_wire_bytes = query_wire_bytes(&snapshot, &client, one.query())?;
    let batch: Vec<&[u8]> = pendings[..args.batch].iter().map(|p| p.query()).collect();
    let mut batched = Vec::new();
    for _ in 0..args.repeat {
        let (a, s) = timed(|| answerer.answer_batch(&batch));
        a?;
        batched.push(s / args.batch as f64);
    }
    // The server process loads its own copy; this one would only take memory from it.
    drop(answerer);
    drop(snapshot);

    // A spread of the snapshot's CPIs, in a scattered order.
    let sample: Vec<Cpi> = (0..cpis.len().min(10_000))
        .map(|i| cpis[i * 7919 % cpis.len()].clone())
        .collect();
    let (report, memory) = serve_and_load(&path, &m.oprf_path, m.trust.clone(), sample, args)?;
    // The phases an engine does not have (YPIR+SP: no expansion, no folding) are not shown.
    let [expand, first_dim, fold, pack] = phases.map(|p| ms(median(p)));
    let (expand, fold) = match engine {
        Engine::Spiral => (expand, fold),
        Engine::YpirSp => (f64::NAN, f64::NAN),
    };
    let reference_s = median(reference);
    let per_lookup = median(batched);
    let (client_query_ms, client_decode_ms) = (ms(median(query_s)), ms(median(decode_s)));
    let server_s_1_thread = median(single1);
    let server_ms_1_thread = ms(server_s_1_thread);
    let pct = |part: f64, whole: f64| 100.0 * part / whole;
    // The researcher table: the database the answer scans, per core, and keys per GiB.
    let cores = literature::cores();
    let (capacity, records) = (scheme.capacity_bytes(), summary.header.record_bytes);
    let gb_per_s_per_core = literature::gb_per_s_per_core(capacity, 1.0 / server_s_1_thread, 1);
    let key_bytes_per_client = if engine.registers_keys() {
        literature::key_bytes_per_client(memory.key_cache_bytes, memory.registered_keys)
            .ok_or("the server process holds no registered keys after the load")?
    } else if memory.key_cache_bytes == 0 && memory.registered_keys == 0 {
        0.0
    } else {
        return Err(format!(
            "{engine} takes no keys, but the server process holds {} key sets ({} B)",
            memory.registered_keys, memory.key_cache_bytes
        )
        .into());
    };
    Ok(Row {
        mappings: summary.report.stored_mappings,
        engine: engine.to_string(),
        shape: format!(
            "2^{} x {} B",
            scheme.num_items().trailing_zeros(),
            scheme.item_bytes()
        ),
        raw_mapping_bytes: m.raw_mapping_bytes,
        snapshot_bytes: summary.file_bytes,
        packing_efficiency: summary.report.packing_efficiency,
        build_s,
        build_oprf_s,
        load_s,
        precompute_s,
        offline_s: build_s + load_s + precompute_s,
        public_key_bytes: sizes.public_keys,
        query_bytes: sizes.query,
        response_bytes: sizes.response,
        query_wire_bytes,
        evaluate_wire_bytes: eval.wire_bytes,
        client_query_ms,
        client_decode_ms,
        eval_client_ms: eval.client_ms,
        server_ms_1_thread,
        eval_server_ms: eval.server_ms,
        eval_server_ms_per_cpi_batched: eval.server_ms_per_cpi_batched,
        expand_ms: expand,
        first_dim_ms: first_dim,
        fold_ms: fold,
        pack_ms: pack,
        server_ms: ms(median(single)),
        inproc_ms_per_lookup_batched: ms(per_lookup),
        inproc_lookups_per_s_batched: 1.0 / per_lookup,
        reference_ms: ms(reference_s),
        reference_lookups_per_s: 1.0 / reference_s,
        concurrency: args.concurrency,
        bench_lookups: report.lookups,
        lookups_per_s: report.lookups_per_sec,
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
        server_peak_rss_bytes: memory.peak_rss_bytes,
        key_cache_bytes: memory.key_cache_bytes,
        memory_ratio: memory.peak_rss_bytes as f64
            / (summary.file_bytes + memory.key_cache_bytes) as f64,
        ref_2_20_ms: reference_2_20.ms,
        ref_2_20_lookups_per_s: reference_2_20.lookups_per_s,
        speedup_vs_ref_2_20: report.lookups_per_sec / reference_2_20.lookups_per_s,
        // Filled in once every engine's row of this mapping count is measured.
        ms_1_thread_vs_spiral: f64::NAN,
        lookups_per_s_vs_spiral: f64::NAN,
        eval_server_pct: pct(eval.server_ms, server_ms_1_thread),
        eval_server_pct_batched: pct(eval.server_ms_per_cpi_batched, ms(per_lookup)),
        eval_client_pct: pct(eval.client_ms, client_query_ms + client_decode_ms),
        evaluate_wire_pct: pct(eval.wire_bytes as f64, query_wire_bytes as f64),
        build_oprf_pct: pct(build_oprf_s, build_s),
        cores,
        db_capacity_bytes: capacity,
        db_record_bytes: records,
        gb_per_s_per_core,
        useful_gb_per_s_per_core: literature::gb_per_s_per_core(
            records,
            1.0 / server_s_1_thread,
            1,
        ),
        load_gb_per_s_per_core: literature::gb_per_s_per_core(
            capacity,
            report.lookups_per_sec,
            cores,
        ),
        load_useful_gb_per_s_per_core: literature::gb_per_s_per_core(
            records,
            report.lookups_per_sec,
            cores,
        ),
        registered_keys: memory.registered_keys,
        key_bytes_per_client,
        keys_per_gib: literature::keys_per_gib(key_bytes_per_client),
        gb_per_s_vs_onionpir_v2: gb_per_s_per_core / ONIONPIR_V2.gb_per_s_per_core,
        gb_per_s_vs_ypir: gb_per_s_per_core / YPIR.gb_per_s_per_core,
        key_wire_vs_onionpir_v2: ONIONPIR_V2
            .key_bytes_per_client
            .map_or(f64::NAN, |theirs| sizes.public_keys as f64 / theirs),
    })
}

/// One printed figure: exact in CSV, rounded in markdown.
enum Cell {
    Int(u64),
    Num(f64, usize),
    Text(String),
}

/// The markdown table a column is shown in (CSV and JSON have every column in one row).
#[derive(Clone, Copy, PartialEq)]
enum Table {
    /// In every table, as the key.
    All,
    Sizes,
    InProcess,
    Serving,
    /// The OPRF evaluation against the PIR lookup without it, same row.
    Oprf,
    /// Database GB/s per core and keys per GiB of cache, against the literature.
    Researcher,
    /// Only in the side-by-side table (which also shows [`SIDE_BY_SIDE`]'s columns of the
    /// other tables).
    SideBySide,
}

/// The side-by-side table's columns, in order: every engine on the same mappings, for the
/// figures the engines trade (issue 14, item 5).
const SIDE_BY_SIDE: &[&str] = &[
    "mappings",
    "engine",
    "shape",
    "public_key_bytes",
    "query_bytes",
    "response_bytes",
    "key_bytes_per_client",
    "offline_s",
    "precompute_s",
    "server_ms_1_thread",
    "ms_1_thread_vs_spiral",
    "inproc_ms_per_lookup_batched",
    "lookups_per_s",
    "lookups_per_s_vs_spiral",
    "speedup_vs_ref_2_20",
    "p50_ms",
    "gb_per_s_per_core",
    "load_gb_per_s_per_core",
    "server_peak_rss_bytes",
    "ref_2_20_ms",
    "ref_2_20_lookups_per_s",
];

struct Column {
    key: &'static str,
    title: &'static str,
    table: Table,
    cell: fn(&Row) -> Cell,
}

/// One column a line: the row's field (also the CSV and JSON key), its markdown title, its
/// table, and how it prints.
macro_rules! col {
    ($field:ident, $title:literal, $table:ident, Num $digits:literal) => {
        col!(@ $field, $title, $table, |r| Cell::Num(r.$field, $digits))
    };
    ($field:ident, $title:literal, $table:ident, Int) => {
        col!(@ $field, $title, $table, |r| Cell::Int(r.$field as u64))
    };
    ($field:ident, $title:literal, $table:ident, Text) => {
        col!(@ $field, $title, $table, |r| Cell::Text(r.$field.clone()))
    };
    (@ $field:ident, $title:literal, $table:ident, $cell:expr) => {
        Column {
            key: stringify!($field),
            title: $title,
            table: Table::$table,
            cell: $cell,
        }
    };
}

fn columns() -> Vec<Column> {
    vec![
        col!(mappings, "mappings", All, Int),
        col!(engine, "engine", All, Text),
        col!(shape, "shape", Sizes, Text),
        col!(raw_mapping_bytes, "raw mapping B", Sizes, Int),
        col!(snapshot_bytes, "snapshot B", Sizes, Int),
        col!(packing_efficiency, "packing", Sizes, Num 3),
        col!(build_s, "build s", Sizes, Num 2),
        col!(build_oprf_s, "OPRF in build s (est.)", Sizes, Num 2),
        col!(load_s, "load s", Sizes, Num 2),
        col!(precompute_s, "server precompute s (at load)", Sizes, Num 2),
        col!(offline_s, "offline s (build + load + precompute)", Sizes, Num 2),
        col!(public_key_bytes, "public keys B", Sizes, Int),
        col!(query_bytes, "query B", Sizes, Int),
        col!(response_bytes, "response B", Sizes, Int),
        col!(
            query_wire_bytes,
            "Query wire B (1 query, req + resp)",
            Sizes,
            Int
        ),
        col!(
            evaluate_wire_bytes,
            "Evaluate wire B (1 CPI, req + resp)",
            Sizes,
            Int
        ),
        col!(client_query_ms, "client query ms", InProcess, Num 1),
        col!(client_decode_ms, "client decode ms", InProcess, Num 1),
        col!(eval_client_ms, "eval client ms (blind + finalize)", InProcess, Num 3),
        col!(server_ms_1_thread, "server ms (1 thread)", InProcess, Num 0),
        col!(eval_server_ms, "eval server ms (1 CPI)", InProcess, Num 3),
        col!(eval_server_ms_per_cpi_batched, "eval server ms/CPI (batch)", InProcess, Num 3),
        col!(expand_ms, "expand ms", InProcess, Num 1),
        col!(first_dim_ms, "first dim ms", InProcess, Num 1),
        col!(fold_ms, "fold ms", InProcess, Num 1),
        col!(pack_ms, "pack ms", InProcess, Num 1),
        col!(server_ms, "server ms", InProcess, Num 0),
        col!(inproc_ms_per_lookup_batched, "ms/lookup (batch)", InProcess, Num 0),
        col!(inproc_lookups_per_s_batched, "lookups/s (batch)", InProcess, Num 2),
        col!(reference_ms, "spiral-rs ms", InProcess, Num 0),
        col!(reference_lookups_per_s, "spiral-rs lookups/s", InProcess, Num 2),
        col!(concurrency, "clients", Serving, Int),
        col!(bench_lookups, "lookups", Serving, Int),
        col!(lookups_per_s, "lookups/s", Serving, Num 2),
        col!(p50_ms, "p50 ms", Serving, Num 0),
        col!(p99_ms, "p99 ms", Serving, Num 0),
        col!(server_peak_rss_bytes, "server peak RSS B", Serving, Int),
        col!(key_cache_bytes, "key cache B", Serving, Int),
        col!(memory_ratio, "RSS / (snapshot + keys)", Serving, Num 2),
        col!(ref_2_20_ms, "spiral-rs 2^20x256B ms", Serving, Num 0),
        col!(ref_2_20_lookups_per_s, "spiral-rs 2^20x256B lookups/s", Serving, Num 2),
        col!(speedup_vs_ref_2_20, "speedup vs it", Serving, Num 2),
        col!(ms_1_thread_vs_spiral, "server ms (1 thread) / Spiral's", SideBySide, Num 3),
        col!(lookups_per_s_vs_spiral, "lookups/s / Spiral's", SideBySide, Num 2),
        col!(eval_server_pct, "eval server % of PIR server (1 thread)", Oprf, Num 3),
        col!(eval_server_pct_batched, "eval server % of PIR server (batch, per lookup)", Oprf, Num 3),
        col!(eval_client_pct, "eval client % of PIR client (query + decode)", Oprf, Num 1),
        col!(evaluate_wire_pct, "Evaluate wire % of Query wire", Oprf, Num 2),
        col!(build_oprf_pct, "OPRF % of build (est.)", Oprf, Num 1),
        col!(cores, "cores", Researcher, Int),
        col!(db_capacity_bytes, "database capacity B", Researcher, Int),
        col!(
            db_record_bytes,
            "database useful B (records)",
            Researcher,
            Int
        ),
        col!(gb_per_s_per_core, "GB/s/core capacity (1 thread, 1 query)", Researcher, Num 3),
        col!(useful_gb_per_s_per_core, "GB/s/core useful (1 thread, 1 query)", Researcher, Num 4),
        col!(load_gb_per_s_per_core, "GB/s/core capacity (server, load)", Researcher, Num 3),
        col!(load_useful_gb_per_s_per_core, "GB/s/core useful (server, load)", Researcher, Num 4),
        col!(registered_keys, "key sets held", Researcher, Int),
        col!(key_bytes_per_client, "server key B/client", Researcher, Num 0),
        col!(keys_per_gib, "keys per GiB of cache (1 set per client)", Researcher, Num 1),
        col!(gb_per_s_vs_onionpir_v2, "GB/s/core / OnionPIRv2's", Researcher, Num 3),
        col!(gb_per_s_vs_ypir, "GB/s/core / YPIR's", Researcher, Num 3),
        col!(key_wire_vs_onionpir_v2, "public keys B / OnionPIRv2's", Researcher, Num 2),
    ]
}

fn print_rows(rows: &[Row], args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.json {
        for r in rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    let columns = columns();
    if args.csv {
        let keys: Vec<&str> = columns.iter().map(|c| c.key).collect();
        println!("{}", keys.join(","));
        for r in rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| match (c.cell)(r) {
                    Cell::Int(x) => x.to_string(),
                    Cell::Num(x, _) => x.to_string(),
                    Cell::Text(s) => s,
                })
                .collect();
            println!("{}", cells.join(","));
        }
        return Ok(());
    }
    for (table, caption) in [
        (Table::Sizes, "Sizes"),
        (
            Table::InProcess,
            "In process, one query (batch: per lookup of a batch; spiral-rs: process_query on the same database)",
        ),
        (
            Table::Serving,
            "Server process under load (each lookup: Evaluate, then Query), against raw spiral-rs on 2^20 x 256 B",
        ),
        (
            Table::Oprf,
            "OPRF evaluation against the PIR lookup without it (same rows): what it adds, %",
        ),
        (
            Table::Researcher,
            "Researcher table: database GB/s per core (GB = 10^9 B; capacity: items x item bytes, \
             useful: the records), server-side key bytes per client and keys per GiB of cache, \
             against the literature (ours / theirs)",
        ),
    ] {
        let shown: Vec<&Column> = columns
            .iter()
            .filter(|c| c.table == table || c.table == Table::All)
            .collect();
        print_table(caption, &shown, rows);
    }
    if args.engines.len() > 1 {
        let shown: Vec<&Column> = SIDE_BY_SIDE
            .iter()
            .filter_map(|key| columns.iter().find(|c| c.key == *key))
            .collect();
        print_table(
            "Side by side: every engine on the same mappings (one lookup: query up, response \
             down; server key B: held per client; offline: build + load + precompute; \
             ratios: this row / the Spiral row of the same mappings; the load's lookups/s \
             against raw spiral-rs on 2^20 x 256 B)",
            &shown,
            rows,
        );
    }
    for engine in &args.engines {
        let name = engine.to_string();
        if let Some(largest) = rows
            .iter()
            .filter(|r| r.engine == name)
            .max_by_key(|r| r.mappings)
        {
            print_anchors(largest);
        }
    }
    Ok(())
}

/// One markdown table: its caption, its columns' titles, one line per row. A figure that
/// does not apply to a row (NaN) prints as "-", an unbounded one as "unbounded".
fn print_table(caption: &str, shown: &[&Column], rows: &[Row]) {
    println!("\n{caption}\n");
    let titles: Vec<&str> = shown.iter().map(|c| c.title).collect();
    println!("| {} |", titles.join(" | "));
    println!("|{}", " --- |".repeat(titles.len()));
    for r in rows {
        let cells: Vec<String> = shown
            .iter()
            .map(|c| match (c.cell)(r) {
                Cell::Int(x) => x.to_string(),
                Cell::Num(x, _) if x.is_nan() => "-".to_owned(),
                Cell::Num(x, _) if x.is_infinite() => "unbounded".to_owned(),
                Cell::Num(x, digits) => format!("{x:.digits$}"),
                Cell::Text(s) => s,
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    }
}

/// The literature's anchors beside one row, once per run. Markdown only: in CSV and JSON the
/// rows' ratio columns carry the comparison.
fn print_anchors(r: &Row) {
    let ratio = |ours: f64, theirs: Option<f64>| {
        theirs.map_or_else(String::new, |t| match ours / t {
            x if x.is_infinite() => "unbounded".to_owned(),
            x => format!("{x:.3}x"),
        })
    };
    let bytes = |x: Option<f64>| x.map_or_else(|| "not stated".to_owned(), |x| format!("{x:.0}"));
    println!(
        "\nLiterature anchors beside this run's largest {} row ({} mappings, {}): ours is the \
         capacity scanned by 1 thread answering 1 query; key bytes are wire / server-side \
         (the key cache's own count); GB = 10^9 B, KB = 10^3 B, MB = 10^6 B\n",
        r.engine, r.mappings, r.shape
    );
    println!(
        "| scheme | database GB/s per core | query B | response B | key B per client | \
         keys per GiB of cache | source |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    println!(
        "| this project's {} | {:.3} (useful {:.4}) | {} | {} | {} / {:.0} | {} | this run |",
        r.engine,
        r.gb_per_s_per_core,
        r.useful_gb_per_s_per_core,
        r.query_bytes,
        r.response_bytes,
        r.public_key_bytes,
        r.key_bytes_per_client,
        if r.keys_per_gib.is_infinite() {
            "unbounded by keys".to_owned()
        } else {
            format!("{:.1}", r.keys_per_gib)
        }
    );
    for a in ANCHORS {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            a.name,
            a.gb_per_s_per_core,
            bytes(a.query_bytes),
            bytes(a.response_bytes),
            a.key_bytes_per_client
                .map_or_else(|| "none".to_owned(), |k| format!("{k:.0}")),
            a.keys_per_gib()
                .map_or_else(|| "unbounded by keys".to_owned(), |k| format!("{k:.1}")),
            a.source
        );
        let key = a.key_bytes_per_client.map_or_else(String::new, |k| {
            format!(
                "{} / {}",
                ratio(r.public_key_bytes as f64, Some(k)),
                ratio(r.key_bytes_per_client, Some(k))
            )
        });
        println!(
            "| ours / {} | {} | {} | {} | {} | {} | |",
            a.name,
            ratio(r.gb_per_s_per_core, Some(a.gb_per_s_per_core)),
            ratio(r.query_bytes as f64, a.query_bytes),
            ratio(r.response_bytes as f64, a.response_bytes),
            key,
            ratio(r.keys_per_gib, a.keys_per_gib()),
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let (Some(snapshot), Some(oprf_key)) = (&args.serve_child, &args.serve_oprf_key) {
        return serve_until_stdin_closes(snapshot, oprf_key);
    }
    if args.concurrency == 0 || args.duration == 0 {
        return Err("--concurrency and --duration must be at least 1".into());
    }
    eprintln!("measuring the reference: raw spiral-rs on 2^20 x 256 B...");
    let reference = measure_reference(args.repeat)?;
    let mut rows = Vec::new();
    for &n in &args.mappings {
        eprintln!("synthesizing {n} mappings...");
        let mappings = synthesize(n)?;
        let first = rows.len();
        for &engine in &args.engines {
            eprintln!("measuring {n} mappings, {engine}...");
            rows.push(measure(&mappings, engine, &args, &reference)?);
        }
        compare_with_spiral(&mut rows[first..]);
    }
    print_rows(&rows, &args)
}

/// Each row of one mapping count against that count's Spiral row: one thread's answer and the
/// server's lookups/s, as ratios (NaN without a Spiral row).
fn compare_with_spiral(rows: &mut [Row]) {
    let spiral = rows
        .iter()
        .find(|r| r.engine == Engine::Spiral.name())
        .map(|r| (r.server_ms_1_thread, r.lookups_per_s));
    if let Some((ms_1_thread, lookups_per_s)) = spiral {
        for r in rows {
            r.ms_1_thread_vs_spiral = r.server_ms_1_thread / ms_1_thread;
            r.lookups_per_s_vs_spiral = r.lookups_per_s / lookups_per_s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_field_is_one_column() {
        let json = serde_json::to_value(Row::default()).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys: Vec<&str> = columns().iter().map(|c| c.key).collect();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    #[test]
    fn the_reference_preset_exists() {
        let p = reference_scheme().unwrap();
        assert_eq!(p.num_items() * p.item_bytes as usize, (1 << 20) * 256);
    }
}
