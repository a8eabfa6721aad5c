//! `build`: validate every line of a mappings file, build a snapshot, sign it, write it.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Instant,
};

use indicatif::ProgressBar;

use pir_core::{
    BuildOptions, Snapshot, SnapshotHeader,
    identity::{CpiWarnings, DpKey},
    oprf::OprfKey,
    pir::{Engine, Scheme},
    snapshot::{BuildInput, BuildReport},
};
use serde::Serialize;

use crate::{
    epochs::{self, EpochFloor, Floor},
    error::DpError,
    human::{Bytes, Percent, Secs},
    jsonl::{read_mappings_shown, refuse_or_skip},
    keys::{read_dp_key, read_oprf_key, read_trust},
    paths::check_out_dir,
    progress::{count_on, spinner},
    report,
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
    /// Epoch of the snapshot (default: the later of the build's unix time and one above the
    /// snapshots it replaces). Refused unless above the epoch of an existing `out` and of
    /// `replaces`.
    pub epoch: Option<u64>,
    /// The snapshot this one replaces where it is served (when written under a new name): its
    /// epoch must be exceeded too.
    pub replaces: Option<PathBuf>,
    /// Fixed scheme (default: the smallest of `engine`'s shapes that fits).
    pub scheme: Option<Scheme>,
    /// The PIR engine (`--engine`): Spiral, or YPIR+SP (no client keys on the server).
    pub engine: Engine,
    /// Show a progress bar.
    pub progress: bool,
    /// Sign the snapshot with this DP key.
    pub dp_key: Option<PathBuf>,
    /// The DP's OPRF secret key (`--oprf-key`): every CPI's place and entry key come from it.
    pub oprf_key: PathBuf,
    /// How full a bucket may be, percent of its item (`--fill`): below 100 leaves room for
    /// updates; `pir_core::snapshot::DEFAULT_FILL_PERCENT` when `None`.
    pub fill_percent: Option<u8>,
}

/// What `build` did. Displays as `pir-server build` reports it.
#[derive(Debug, Serialize)]
pub struct BuildSummary {
    /// The snapshot written.
    pub out: PathBuf,
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped_invalid: usize,
    /// Mappings kept whose CPI has a warning (a number the phone metadata does not know).
    #[serde(serialize_with = "report::cpi_warnings")]
    pub cpi_warnings: CpiWarnings,
    /// The core builder's report.
    #[serde(serialize_with = "report::build_report")]
    pub report: BuildReport,
    /// The new snapshot's header.
    #[serde(serialize_with = "report::header")]
    pub header: SnapshotHeader,
    /// Seconds spent building (after reading).
    pub build_secs: f64,
    /// Bytes written.
    pub file_bytes: u64,
}

impl fmt::Display for BuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        if self.skipped_invalid > 0 {
            writeln!(f, "skipped {} invalid line(s)", self.skipped_invalid)?;
        }
        write!(
            f,
            "built {} in {}: {} mappings and {} opt-outs stored ({} + {} read, {} expired \
             dropped, {} replaced, {} withheld by opt-outs), {} items ({} groups, fullest bucket {} of {}), \
             packing efficiency {}, {}",
            self.out.display(),
            Secs(self.build_secs),
            r.stored_mappings,
            r.stored_opt_outs,
            r.input_mappings,
            r.input_opt_outs,
            r.expired_dropped,
            r.duplicates_replaced,
            r.suppressed_by_opt_out,
            self.header.scheme.num_items(),
            r.groups,
            Bytes(r.fullest_bucket_bytes as u64),
            Bytes(self.header.scheme.item_bytes() as u64),
            Percent(r.packing_efficiency),
            Bytes(self.file_bytes)
        )?;
        if self.cpi_warnings.count > 0 {
            write!(f, "\nwarning: {}", self.cpi_warnings)?;
        }
        Ok(())
    }
}

/// `pir-server build`: validate every line, build, write.
pub fn build(args: &BuildArgs) -> Result<BuildSummary, DpError> {
    // What can be refused at once is, before the long work.
    check_out_dir(&args.out)?;
    let now = pir_core::unix_now();
    let replaces = args
        .replaces
        .as_deref()
        .map(|p| Floor::of(p, EpochFloor::Replaces))
        .transpose()?;
    let epoch = epochs::choose(
        args.epoch,
        now,
        Floor::existing_out(&args.out).into_iter().chain(replaces),
    )?;
    let read = read_input(args)?;
    let opts = read.options(args, epoch, now);
    let start = Instant::now();
    // Laying out has no count; the items to encode are known once the shape is chosen.
    let bar = spinner(args.progress, "keying and laying out");
    let (snapshot, report) =
        Snapshot::build_verified(read.input, &read.oprf_key, &opts, &encoding_on(&bar))?;
    bar.finish_and_clear();
    let (snapshot, file_bytes) =
        sign_and_write(snapshot, read.dp_key.as_ref(), &args.out, args.progress)?;
    Ok(BuildSummary {
        out: args.out.clone(),
        skipped_invalid: read.skipped_invalid,
        cpi_warnings: read.cpi_warnings,
        report,
        header: snapshot.header().clone(),
        build_secs: start.elapsed().as_secs_f64(),
        file_bytes,
    })
}

/// What a build reads before it builds: keys and the verified input.
pub(crate) struct ReadInput {
    pub(crate) input: BuildInput,
    pub(crate) skipped_invalid: usize,
    pub(crate) cpi_warnings: CpiWarnings,
    pub(crate) dp_key: Option<DpKey>,
    pub(crate) oprf_key: OprfKey,
}

impl ReadInput {
    pub(crate) fn options(&self, args: &BuildArgs, epoch: u64, now: u64) -> BuildOptions {
        BuildOptions {
            epoch,
            now,
            salt: None,
            scheme: args.scheme,
            engine: args.engine,
            fill_percent: args.fill_percent,
        }
    }
}

/// Reads the keys and every line of `args.mappings`, refusing (or skipping) invalid ones.
pub(crate) fn read_input(args: &BuildArgs) -> Result<ReadInput, DpError> {
    let trust = read_trust(&args.trust)?;
    let dp_key = args.dp_key.as_deref().map(read_dp_key).transpose()?;
    let oprf_key = read_oprf_key(&args.oprf_key)?;
    let read = read_mappings_shown(&args.mappings, &trust, args.progress)?;
    let skipped_invalid = refuse_or_skip(&args.mappings, read.invalid, args.skip_invalid)?;
    let cpi_warnings = CpiWarnings::collect(
        read.mappings
            .iter()
            .map(|m| &m.mapping().fields.cpi)
            .chain(read.opt_outs.iter().map(|o| &o.opt_out().cpi)),
    );
    Ok(ReadInput {
        input: BuildInput {
            mappings: read.mappings,
            opt_outs: read.opt_outs,
        },
        skipped_invalid,
        cpi_warnings,
        dp_key,
        oprf_key,
    })
}

/// A progress callback that turns `bar` into the NTT's progress.
pub(crate) fn encoding_on(bar: &ProgressBar) -> impl Fn(usize, usize) + Sync + '_ {
    |done, total| {
        bar.set_message("encoding");
        count_on(bar, total as u64);
        bar.set_position(done as u64);
    }
}

/// Signs `snapshot` with `dp_key` (if any) and writes it to `out`; returns it and its size.
pub(crate) fn sign_and_write(
    mut snapshot: Snapshot,
    dp_key: Option<&DpKey>,
    out: &Path,
    progress: bool,
) -> Result<(Snapshot, u64), DpError> {
    if let Some(key) = dp_key {
        snapshot.sign(key)?;
    }
    let bar = spinner(progress, &format!("writing {}", out.display()));
    let written = snapshot.write(out);
    bar.finish_and_clear();
    written?;
    let file_bytes = snapshot.file_len()?;
    Ok((snapshot, file_bytes))
}
