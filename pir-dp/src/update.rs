//! `update`: apply a delta file to a snapshot, re-encoding only the items that change.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Instant,
};

use pir_core::{Snapshot, SnapshotHeader, UpdateOptions, snapshot::UpdateReport};
use serde::Serialize;

use crate::{
    epochs::{self, EpochFloor, Floor},
    error::DpError,
    human::Secs,
    jsonl::{read_delta_shown, refuse_or_skip},
    keys::{read_dp_key, read_dp_pub, read_oprf_key, read_trust},
    paths::{base_beside, check_out_dir, same_dir, same_file},
    progress::{load_snapshot, spinner},
    report,
};

/// Options of `pir-server update`.
#[derive(Clone, Debug)]
pub struct UpdateArgs {
    /// The snapshot to start from.
    pub snapshot: PathBuf,
    /// The delta (JSON Lines: signed mappings and removals).
    pub delta: PathBuf,
    /// Trusted issuer keys.
    pub trust: PathBuf,
    /// Output snapshot.
    pub out: PathBuf,
    /// Leave out invalid lines instead of failing.
    pub skip_invalid: bool,
    /// Epoch of the new snapshot (default: the later of now and the old epoch + 1). Refused
    /// unless above the old epoch (and that of an existing `out`).
    pub epoch: Option<u64>,
    /// Sign the new snapshot with this DP key. Needs [`UpdateRun::dp_pub`]: the old snapshot
    /// must verify before its content is signed again.
    pub dp_key: Option<PathBuf>,
    /// Write a self-contained full snapshot instead of a delta of the old one.
    pub full: bool,
    /// The DP's OPRF secret key the snapshot was built with (`--oprf-key`).
    pub oprf_key: PathBuf,
}

/// How `pir-server update` runs beyond what [`UpdateArgs`] computes.
#[derive(Clone, Debug, Default)]
pub struct UpdateRun {
    /// Refuse a snapshot to start from that is not signed by a DP key in this file.
    pub dp_pub: Option<PathBuf>,
    /// Show progress.
    pub progress: bool,
}

/// What `update` did. Displays as `pir-server update` reports it.
#[derive(Debug, Serialize)]
pub struct UpdateSummary {
    /// The snapshot written.
    pub out: PathBuf,
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped_invalid: usize,
    /// Operations applied.
    pub operations: usize,
    /// The core's report.
    #[serde(serialize_with = "report::update_report")]
    pub report: UpdateReport,
    /// Epoch before.
    pub old_epoch: u64,
    /// The new header.
    #[serde(serialize_with = "report::header")]
    pub header: SnapshotHeader,
    /// Seconds: loading the old snapshot, applying the delta, writing the new one.
    pub load_secs: f64,
    /// See `load_secs`.
    pub apply_secs: f64,
    /// See `load_secs`.
    pub write_secs: f64,
}

impl fmt::Display for UpdateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped_invalid > 0 {
            writeln!(f, "skipped {} invalid line(s)", self.skipped_invalid)?;
        }
        let r = &self.report;
        write!(
            f,
            "updated epoch {} -> {} into {} ({}): {} operations ({} upserts, {} opt-outs, {} removed, \
             {} removals matched nothing, {} expired dropped), {} of {} items re-encoded; load \
             {}, apply {}, write {}",
            self.old_epoch,
            self.header.epoch,
            self.out.display(),
            if self.header.base.is_some() {
                "a delta of the old snapshot"
            } else {
                "full"
            },
            self.operations,
            r.upserts,
            r.opt_outs,
            r.removed,
            r.removals_unmatched,
            r.expired_dropped,
            r.items_reencoded,
            self.header.scheme.num_items(),
            Secs(self.load_secs),
            Secs(self.apply_secs),
            Secs(self.write_secs)
        )
    }
}

/// `pir-server update`: apply a delta to a snapshot, re-encoding only the changed items.
pub fn update(args: &UpdateArgs) -> Result<UpdateSummary, DpError> {
    update_with(args, &UpdateRun::default())
}

/// [`update`], checking the snapshot it starts from against `run.dp_pub` and showing progress.
pub fn update_with(args: &UpdateArgs, run: &UpdateRun) -> Result<UpdateSummary, DpError> {
    // What can be refused at once is, before the long work.
    check_out_dir(&args.out)?;
    refuse_writing_over_input(args)?;
    if !args.full && !same_dir(&args.snapshot, &args.out) {
        return Err(DpError::DeltaNotBeside {
            out: args.out.clone(),
            snapshot: args.snapshot.clone(),
        });
    }
    // Signing vouches for everything carried over: only what verified is signed again.
    if args.dp_key.is_some() && run.dp_pub.is_none() {
        return Err(DpError::SigningUnverified {
            snapshot: args.snapshot.clone(),
        });
    }
    let dp_keys = run.dp_pub.as_deref().map(read_dp_pub).transpose()?;
    // From the header alone, before the long work: the signature (checked again on what is
    // loaded) and the epoch.
    let base = Snapshot::read_header(&args.snapshot)?;
    let refused = |reason| match &run.dp_pub {
        Some(dp_pub) => DpError::Refused {
            path: args.snapshot.clone(),
            reason: Box::new(reason),
            dp_pub: dp_pub.clone(),
        },
        None => DpError::Core(reason),
    };
    if let Some(keys) = &dp_keys {
        base.verify_signature(keys).map_err(refused)?;
    }
    let now = pir_core::unix_now();
    let epoch = epochs::choose(
        args.epoch,
        now,
        Floor::existing_out(&args.out)
            .into_iter()
            .chain([Floor::known(
                base.epoch,
                &args.snapshot,
                EpochFloor::Updated,
            )]),
    )?;
    let trust = read_trust(&args.trust)?;
    let dp_key = args.dp_key.as_deref().map(read_dp_key).transpose()?;
    let oprf_key = read_oprf_key(&args.oprf_key)?;
    if oprf_key.public() != base.layout.oprf_key {
        return Err(DpError::Core(pir_core::CoreError::OprfKeyMismatch {
            expected: base.layout.oprf_key.to_string(),
        }));
    }
    let (ops, invalid) = read_delta_shown(&args.delta, &trust, run.progress)?;
    let skipped_invalid = refuse_or_skip(&args.delta, invalid, args.skip_invalid)?;
    let t = Instant::now();
    // A delta needs only the old buckets; a full snapshot needs the whole database.
    let old = load_snapshot(&args.snapshot, args.full, run.progress)?;
    // What was loaded is what counts (the file may have been replaced since its header was
    // read).
    if let Some(keys) = &dp_keys {
        old.header().verify_signature(keys).map_err(refused)?;
    }
    let load_secs = t.elapsed().as_secs_f64();
    let old_epoch = old.header().epoch;
    if epoch <= old_epoch {
        return Err(DpError::EpochNotRising {
            epoch,
            floor: old_epoch,
            path: args.snapshot.clone(),
            role: EpochFloor::Updated,
        });
    }
    let opts = UpdateOptions { epoch, now };
    let operations = ops.len();
    let t = Instant::now();
    let bar = spinner(run.progress, &format!("applying {operations} operations"));
    let applied = old
        .update(ops, &oprf_key, &opts)
        .and_then(|(mut new, report)| {
            if args.full && new.is_delta() {
                new.compact()?;
            }
            if let Some(key) = &dp_key {
                new.sign(key)?;
            }
            Ok((new, report))
        });
    bar.finish_and_clear();
    let (new, report) = applied?;
    let apply_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let bar = spinner(run.progress, &format!("writing {}", args.out.display()));
    let written = new.write(&args.out);
    bar.finish_and_clear();
    written?;
    Ok(UpdateSummary {
        out: args.out.clone(),
        skipped_invalid,
        operations,
        report,
        old_epoch,
        header: new.header().clone(),
        load_secs,
        apply_secs,
        write_secs: t.elapsed().as_secs_f64(),
    })
}

/// Refuses an `--out` that is the snapshot the update reads, or (for a delta) its base: the
/// rename would replace a file the new snapshot, or the old one, still needs.
fn refuse_writing_over_input(args: &UpdateArgs) -> Result<(), DpError> {
    let refuse = |input: &Path| {
        Err(DpError::OutputIsInput {
            out: args.out.clone(),
            input: input.to_path_buf(),
        })
    };
    if same_file(&args.out, &args.snapshot) {
        return refuse(&args.snapshot);
    }
    // A missing or unreadable snapshot is reported when it is loaded.
    if let Ok(header) = Snapshot::read_header(&args.snapshot)
        && let Some(base) = header.base
    {
        let base = base_beside(&args.snapshot, &base.file);
        if same_file(&args.out, &base) {
            return refuse(&base);
        }
    }
    Ok(())
}
