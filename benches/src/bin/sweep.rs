//! The sweep tool: sizes and timings per database shape, comparable with the papers' tables.
//!
//! `cargo run --release -p pir-benches --bin sweep -- --mappings 10000,100000,1000000`
//! prints a markdown table (`--csv`, `--json` for machines). Every row measures, in one run, the
//! engine and spiral-rs's own `process_query` on the same database.

#![allow(clippy::print_stdout)]

use clap::Parser;
use pir_benches::{median, timed};
use pir_core::{ClientKeys, Cpi, LookupClient, ServerKeys, Snapshot, TrustStore};
use pir_server::tools;
use serde::Serialize;

#[derive(Parser)]
struct Args {
    /// Mapping counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    mappings: Vec<usize>,
    /// Repetitions of each timing (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Queries answered together for the throughput figure.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// CSV instead of markdown.
    #[arg(long)]
    csv: bool,
    /// JSON lines instead of markdown.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    mappings: usize,
    shape: String,
    raw_mapping_bytes: u64,
    snapshot_bytes: u64,
    packing_efficiency: f64,
    build_s: f64,
    load_s: f64,
    public_key_bytes: usize,
    query_bytes: usize,
    response_bytes: usize,
    client_query_ms: f64,
    client_decode_ms: f64,
    server_ms_1_thread: f64,
    server_ms: f64,
    server_ms_per_lookup_batched: f64,
    lookups_per_s: f64,
    reference_ms: f64,
    reference_lookups_per_s: f64,
}

fn ms(s: f64) -> f64 {
    s * 1e3
}

fn measure(n: usize, args: &Args) -> Result<Row, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("issuer.key");
    let issuer = tools::issuer_keygen(&key, true)?;
    let trust = TrustStore::from_file(&tools::public_key_path(&key))?;
    let mappings = tools::synth(n, &issuer, 1, pir_core::unix_now());
    let raw_mapping_bytes: u64 = mappings.iter().map(|m| m.to_json_line().len() as u64).sum();
    let cpis: Vec<Cpi> = mappings.iter().map(|m| m.fields.cpi.clone()).collect();
    let input = dir.path().join("m.jsonl");
    tools::write_jsonl(&input, &mappings)?;
    drop(mappings);
    let path = dir.path().join("db.pirsnap");
    let (summary, build_s) = timed(|| {
        tools::build(&tools::BuildArgs {
            mappings: input.clone(),
            trust: tools::public_key_path(&key),
            out: path.clone(),
            skip_invalid: false,
            epoch: Some(1),
            scheme: None,
            progress: false,
            dp_key: None,
        })
    });
    let summary = summary?;
    let (snapshot, load_s) = timed(|| Snapshot::load(&path));
    let snapshot = snapshot?;
    let scheme = snapshot.config().scheme;
    let sizes = snapshot.message_sizes()?;
    let keys = ClientKeys::generate(&scheme)?;
    let server_keys = ServerKeys::parse(&scheme, keys.public_bytes())?;
    let client = LookupClient::with_keys(snapshot.config(), keys, trust)?;

    let mut query_s = Vec::new();
    let mut pendings = Vec::new();
    for i in 0..args.repeat.max(args.batch) {
        let (p, s) = timed(|| client.query(&cpis[i * 7919 % cpis.len()]));
        pendings.push(p?);
        query_s.push(s);
    }
    let one = &pendings[0];
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut single1 = Vec::new();
    let mut single = Vec::new();
    let mut reference = Vec::new();
    let mut decode_s = Vec::new();
    for _ in 0..args.repeat {
        let (a, s) = timed(|| pool1.install(|| snapshot.answer(&server_keys, &one.query)));
        a?;
        single1.push(s);
        let (a, s) = timed(|| snapshot.answer(&server_keys, &one.query));
        let a = a?;
        single.push(s);
        let (r, s) = timed(|| snapshot.danger_reference_answer(&server_keys, &one.query));
        if r? != a {
            return Err("engine and reference answers differ".into());
        }
        reference.push(s);
        let (found, s) = timed(|| client.decode(one, &a, pir_core::unix_now()));
        if !found?.found() {
            return Err("a present CPI was not found".into());
        }
        decode_s.push(s);
    }
    let batch: Vec<(&ServerKeys, &[u8])> = pendings[..args.batch]
        .iter()
        .map(|p| (&server_keys, p.query.as_slice()))
        .collect();
    let mut batched = Vec::new();
    for _ in 0..args.repeat {
        let (a, s) = timed(|| snapshot.answer_batch(&batch));
        a?;
        batched.push(s / args.batch as f64);
    }
    let s = snapshot.config().scheme;
    let reference_s = median(reference);
    let per_lookup = median(batched);
    Ok(Row {
        mappings: summary.report.stored_mappings,
        shape: format!("2^{} x {} B", s.nu_1 + s.nu_2, s.item_bytes),
        raw_mapping_bytes,
        snapshot_bytes: summary.file_bytes,
        packing_efficiency: summary.report.packing_efficiency,
        build_s,
        load_s,
        public_key_bytes: sizes.public_keys,
        query_bytes: sizes.query,
        response_bytes: sizes.response,
        client_query_ms: ms(median(query_s)),
        client_decode_ms: ms(median(decode_s)),
        server_ms_1_thread: ms(median(single1)),
        server_ms: ms(median(single)),
        server_ms_per_lookup_batched: ms(per_lookup),
        lookups_per_s: 1.0 / per_lookup,
        reference_ms: ms(reference_s),
        reference_lookups_per_s: 1.0 / reference_s,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for &n in &args.mappings {
        eprintln!("measuring {n} mappings...");
        rows.push(measure(n, &args)?);
    }
    if args.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    let header = [
        "mappings",
        "shape",
        "raw mapping B",
        "snapshot B",
        "packing",
        "build s",
        "load s",
        "public keys B",
        "query B",
        "response B",
        "client query ms",
        "client decode ms",
        "server ms (1 thread)",
        "server ms",
        "server ms/lookup (batch)",
        "lookups/s",
        "spiral-rs ms",
        "spiral-rs lookups/s",
    ];
    let cells = |r: &Row| {
        vec![
            r.mappings.to_string(),
            r.shape.clone(),
            r.raw_mapping_bytes.to_string(),
            r.snapshot_bytes.to_string(),
            format!("{:.3}", r.packing_efficiency),
            format!("{:.2}", r.build_s),
            format!("{:.2}", r.load_s),
            r.public_key_bytes.to_string(),
            r.query_bytes.to_string(),
            r.response_bytes.to_string(),
            format!("{:.1}", r.client_query_ms),
            format!("{:.1}", r.client_decode_ms),
            format!("{:.0}", r.server_ms_1_thread),
            format!("{:.0}", r.server_ms),
            format!("{:.0}", r.server_ms_per_lookup_batched),
            format!("{:.2}", r.lookups_per_s),
            format!("{:.0}", r.reference_ms),
            format!("{:.2}", r.reference_lookups_per_s),
        ]
    };
    if args.csv {
        println!("{}", header.join(","));
        for r in &rows {
            println!("{}", cells(r).join(","));
        }
    } else {
        println!("| {} |", header.join(" | "));
        println!("|{}", " --- |".repeat(header.len()));
        for r in &rows {
            println!("| {} |", cells(r).join(" | "));
        }
    }
    Ok(())
}
