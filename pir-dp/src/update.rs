//! `update`: apply a delta file to a snapshot, re-encoding only the items that change.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Instant,
};

use pir_core::{Snapshot, SnapshotHeader, TrustStore, UpdateOptions, snapshot::UpdateReport};
use serde::Serialize;

use crate::{error::DpError, jsonl::read_delta, jsonl::refuse_or_skip, keys::read_dp_key, report};

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
    /// Epoch of the new snapshot (default: the later of now and the old epoch + 1).
    pub epoch: Option<u64>,
    /// Sign the new snapshot with this DP key.
    pub dp_key: Option<PathBuf>,
    /// Write a self-contained full snapshot instead of a delta of the old one.
    pub full: bool,
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
            "updated epoch {} -> {} into {} ({}): {} operations ({} upserts, {} removed, {} removals \
             matched nothing, {} expired dropped), {} of {} items re-encoded; load {:.2} s, \
             apply {:.2} s, write {:.2} s",
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
            r.removed,
            r.removals_unmatched,
            r.expired_dropped,
            r.items_reencoded,
            self.header.scheme.num_items(),
            self.load_secs,
            self.apply_secs,
            self.write_secs
        )
    }
}

/// `pir-server update`: apply a delta to a snapshot, re-encoding only the changed items.
pub fn update(args: &UpdateArgs) -> Result<UpdateSummary, DpError> {
    let trust = TrustStore::from_file(&args.trust)?;
    let (ops, invalid) = read_delta(&args.delta, &trust)?;
    let skipped_invalid = refuse_or_skip(&args.delta, invalid, args.skip_invalid)?;
    let dp_key = args.dp_key.as_deref().map(read_dp_key).transpose()?;
    if !args.full && !same_dir(&args.snapshot, &args.out) {
        return Err(DpError::DeltaNotBeside {
            out: args.out.clone(),
            snapshot: args.snapshot.clone(),
        });
    }
    let t = Instant::now();
    // A delta needs only the old buckets; a full snapshot needs the whole database.
    let old = if args.full {
        Snapshot::load(&args.snapshot)?
    } else {
        Snapshot::load_plaintext(&args.snapshot)?
    };
    let load_secs = t.elapsed().as_secs_f64();
    let old_epoch = old.header().epoch;
    let now = pir_core::unix_now();
    let opts = UpdateOptions {
        epoch: args.epoch.unwrap_or(now.max(old_epoch + 1)),
        now,
    };
    let operations = ops.len();
    let t = Instant::now();
    let (mut new, report) = old.update(ops, &opts)?;
    if args.full && new.is_delta() {
        new.compact()?;
    }
    if let Some(key) = &dp_key {
        new.sign(key)?;
    }
    let apply_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    new.write(&args.out)?;
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

/// Whether two files are in the same directory (a delta names its base by file name).
fn same_dir(a: &Path, b: &Path) -> bool {
    let dir = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::canonicalize(parent.unwrap_or_else(|| Path::new("."))).ok()
    };
    dir(a).is_some() && dir(a) == dir(b)
}
