//! Snapshot lifecycle figures, measured in one run: full build, delta update, load against a
//! plain sequential read of the same file.
//!
//! `cargo run --release -p pir-benches --bin lifecycle -- --mappings 1000000 --changes 1000`

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use clap::Parser;
use pir_benches::{build_unsigned, median, timed};
use pir_core::Snapshot;

#[derive(Parser)]
struct Args {
    /// Synthetic mappings in the snapshot.
    #[arg(long, default_value_t = 1_000_000)]
    mappings: usize,
    /// Mappings changed by the delta: half new or replaced, a quarter removed, a quarter new.
    #[arg(long, default_value_t = 1_000)]
    changes: usize,
    /// Load/read repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Directory for the files (default: a temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("issuer.key");
    let issuer = pir_dp::issuer_keygen(&key, true)?;
    let trust = pir_dp::public_key_path(&key);
    // Owner-only (0600); build and update must use the same key.
    let oprf_key = dir.join("oprf.key");
    pir_dp::oprf_keygen(&oprf_key, true)?;
    let now = pir_core::unix_now();

    let mappings = pir_dp::synth(args.mappings, &issuer, 1, now)?;
    let input = dir.join("mappings.jsonl");
    pir_dp::write_jsonl(&input, &mappings)?;

    // The delta: replace some existing mappings (new PSI), remove some CPIs, add new ones.
    let quarter = args.changes / 4;
    let fresh = pir_dp::synth(args.changes - 2 * quarter, &issuer, 2, now)?;
    let mut lines: Vec<String> = fresh.iter().map(|m| m.to_json_line()).collect();
    for m in mappings
        .iter()
        .step_by(mappings.len() / quarter.max(1))
        .take(quarter)
    {
        let f = &m.fields;
        let replaced = pir_core::MappingFields::new(
            f.cpi.clone(),
            &f.msp,
            Some("@replaced:example"),
            f.context.as_deref(),
            f.not_before,
            f.not_after,
        )?
        .sign(&issuer, None)?;
        lines.push(replaced.to_json_line());
    }
    for m in mappings
        .iter()
        .skip(1)
        .step_by(mappings.len() / quarter.max(1))
        .take(quarter)
    {
        lines.push(format!(r#"{{"remove":{{"cpi":"{}"}}}}"#, m.fields.cpi));
    }
    let delta = dir.join("delta.jsonl");
    std::fs::write(&delta, lines.join("\n"))?;
    drop(mappings);

    let old = dir.join("old.pirsnap");
    let (built, build_s) =
        timed(|| build_unsigned(&input, &trust, &oprf_key, &old, pir_core::Engine::Spiral));
    let built = built?;

    let new = dir.join("new.pirsnap");
    let (updated, update_s) = timed(|| {
        pir_dp::update(&pir_dp::UpdateArgs {
            snapshot: old.clone(),
            delta: delta.clone(),
            trust: trust.clone(),
            out: new.clone(),
            skip_invalid: false,
            epoch: Some(2),
            dp_key: None,
            full: false,
            oprf_key: oprf_key.clone(),
        })
    });
    let updated = updated?;

    let mut loads = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..args.repeat {
        let (bytes, read_s) = timed(|| std::fs::read(&old));
        drop(bytes?);
        reads.push(read_s);
        let (snapshot, load_s) = timed(|| Snapshot::load(&old));
        drop(snapshot?);
        loads.push(load_s);
    }
    let (load, read) = (median(loads), median(reads));
    let (delta_loaded, delta_load_s) = timed(|| Snapshot::load(&new));
    drop(delta_loaded?);
    let delta_bytes = std::fs::metadata(&new)?.len();
    let h = &built.header;
    println!(
        "## Snapshot lifecycle: {} mappings, {} x {} B items, file {:.0} MiB\n",
        built.report.stored_mappings,
        h.scheme.num_items(),
        h.scheme.item_bytes(),
        built.file_bytes as f64 / (1 << 20) as f64
    );
    println!("| step | seconds | ratio |");
    println!("| --- | ---: | --- |");
    println!(
        "| full build (read + verify + OPRF keying + layout + NTT + write) | {build_s:.2} | 1 |"
    );
    println!(
        "| update, {} operations, written as a delta of {:.0} MiB ({} items re-encoded; read buckets {:.2} + apply {:.2} + write {:.2}) | {update_s:.2} | build / update = {:.1}x |",
        updated.operations,
        delta_bytes as f64 / (1 << 20) as f64,
        updated.report.items_reencoded,
        updated.load_secs,
        updated.apply_secs,
        updated.write_secs,
        build_s / update_s
    );
    println!(
        "| plain sequential read of the file (median of {}) | {read:.2} | 1 |",
        args.repeat
    );
    println!(
        "| snapshot load, checksums checked (median of {}) | {load:.2} | load / read = {:.2}x |",
        args.repeat,
        load / read
    );
    println!("| loading the delta (its base, then its items) | {delta_load_s:.2} | |");
    Ok(())
}
