//! `build`: validate every line of a mappings file, build a snapshot, sign it, write it.

use std::{path::PathBuf, time::Instant};

use pir_core::{BuildOptions, BuildReport, SchemeParams, Snapshot, SnapshotHeader, TrustStore};

use crate::{
    error::DpError, jsonl::read_mappings, jsonl::refuse_or_skip, keys::read_issuer_key,
    progress::progress_bar,
};

/// Options of `pir-server build`.
#[derive(Clone, Debug)]
pub struct BuildArgs {
    /// The JSON Lines input.
    pub mappings: PathBuf,
    /// Trusted issuer keys.
    pub trust: PathBuf,
    /// Output snapshot.
    pub out: PathBuf,
    /// Leave invalid lines out instead of failing.
    pub skip_invalid: bool,
    /// Epoch of the snapshot (default: the build's unix time).
    pub epoch: Option<u64>,
    /// Fixed scheme parameters (default: smallest vetted shape that fits).
    pub scheme: Option<SchemeParams>,
    /// Show a progress bar.
    pub progress: bool,
    /// Sign the snapshot with this DP key.
    pub dp_key: Option<PathBuf>,
}

/// What `build` did.
#[derive(Debug)]
pub struct BuildSummary {
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped_invalid: usize,
    /// The core builder's report.
    pub report: BuildReport,
    /// The new snapshot's header.
    pub header: SnapshotHeader,
    /// Seconds spent building (after reading).
    pub build_secs: f64,
    /// Bytes written.
    pub file_bytes: u64,
}

/// `pir-server build`: validate every line, build, write.
pub fn build(args: &BuildArgs) -> Result<BuildSummary, DpError> {
    let trust = TrustStore::from_file(&args.trust)?;
    let read = read_mappings(&args.mappings, &trust)?;
    let skipped_invalid = refuse_or_skip(&args.mappings, read.invalid, args.skip_invalid)?;
    let now = pir_core::unix_now();
    let opts = BuildOptions {
        epoch: args.epoch.unwrap_or(now),
        now,
        salt: None,
        scheme: args.scheme,
    };
    let start = Instant::now();
    let bar = progress_bar(0, args.progress, "encoding");
    // The item count is known once the builder has chosen the shape.
    let (snapshot, report) = Snapshot::build_verified(read.mappings, &opts, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let mut snapshot = snapshot;
    if let Some(key) = &args.dp_key {
        snapshot.sign(&read_issuer_key(key)?)?;
    }
    snapshot.write(&args.out)?;
    let file_bytes = snapshot.file_len()?;
    Ok(BuildSummary {
        skipped_invalid,
        report,
        header: snapshot.header().clone(),
        build_secs: start.elapsed().as_secs_f64(),
        file_bytes,
    })
}
