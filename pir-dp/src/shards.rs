//! Sharded directories: `build --shards N` (all shards, or one with `--shard-index`), `manifest`
//! (assembling and signing the manifest of shards built apart), and `update --manifest`
//! (a delta applied across shards, touching only those it changes).
//!
//! ```text
//! DIR/shard-00000.pirsnap .. shard-{N-1}.pirsnap   each a snapshot saying "shard i of N"
//! DIR/manifest.pirman                              the DP-signed list of them, by header hash
//! DIR/shard-00003.e{EPOCH}.pirsnap                 an update's new shard 3 (a delta of the old)
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Instant,
};

use pir_core::{
    UpdateOptions,
    snapshot::{MANIFEST_FILE_NAME, Manifest, ShardedBuild, shard_file_name, split_by_shard},
};
use serde::Serialize;

use crate::{
    build::{BuildArgs, encoding_on, read_input, sign_and_write},
    epochs::{self, EpochFloor, Floor},
    error::{DpError, IoOp},
    human::{Bytes, Percent, Secs},
    jsonl::{read_delta_shown, refuse_or_skip},
    keys::{read_dp_key, read_dp_pub, read_oprf_key, read_trust},
    progress::{load_snapshot, spinner},
};

/// Options of `pir-server build --shards N`.
#[derive(Clone, Debug)]
pub struct ShardedBuildArgs {
    /// The build's options; `out` is the directory the shards (and the manifest) go to.
    pub build: BuildArgs,
    /// Shards in the directory (`--shards`).
    pub shards: u32,
    /// Build only this shard (`--shard-index`), from the whole input; needs an explicit epoch.
    pub shard_index: Option<u32>,
}

/// One shard written.
#[derive(Debug, Serialize)]
pub struct ShardSummary {
    /// Its index.
    pub index: u32,
    /// Its file.
    pub file: PathBuf,
    /// Mappings stored.
    pub mappings: u64,
    /// Opt-outs stored.
    pub opt_outs: u64,
    /// CPIs stored.
    pub cpis: u64,
    /// Record bytes over capacity.
    pub packing_efficiency: f64,
    /// Bytes written.
    pub file_bytes: u64,
    /// Seconds to encode and write it.
    pub secs: f64,
}

/// What `build --shards` did.
#[derive(Debug, Serialize)]
pub struct ShardedBuildSummary {
    /// The directory.
    pub dir: PathBuf,
    /// Shards in the directory.
    pub shard_count: u32,
    /// The epoch of every shard built.
    pub epoch: u64,
    /// Mappings read (valid lines).
    pub input_mappings: usize,
    /// Invalid lines skipped (only with `--skip-invalid`).
    pub skipped_invalid: usize,
    /// Items per shard (the scheme every shard shares).
    pub items: usize,
    /// Bytes of each item.
    pub item_bytes: usize,
    /// The shards written.
    pub shards: Vec<ShardSummary>,
    /// The manifest written (a build of every shard), signed when a DP key was given.
    pub manifest: Option<PathBuf>,
    /// True when the manifest is signed.
    pub signed: bool,
    /// Seconds evaluating the OPRF and laying out every shard.
    pub plan_secs: f64,
}

impl fmt::Display for ShardedBuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped_invalid > 0 {
            writeln!(f, "skipped {} invalid line(s)", self.skipped_invalid)?;
        }
        writeln!(
            f,
            "planned {} shards of {} in {}: {} mappings read, epoch {}, {} items of {} bytes \
             per shard",
            self.shard_count,
            self.dir.display(),
            Secs(self.plan_secs),
            self.input_mappings,
            self.epoch,
            self.items,
            self.item_bytes
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "  shard {}: {} mappings, {} opt-outs, {} CPIs, packing {}, {} in {} -> {}",
                s.index,
                s.mappings,
                s.opt_outs,
                s.cpis,
                Percent(s.packing_efficiency),
                Bytes(s.file_bytes),
                Secs(s.secs),
                s.file.display()
            )?;
        }
        match &self.manifest {
            Some(m) if self.signed => write!(f, "manifest (signed) -> {}", m.display()),
            Some(m) => write!(
                f,
                "manifest (unsigned: pass --dp-key to sign it) -> {}",
                m.display()
            ),
            None => write!(
                f,
                "once every shard is built: pir-server manifest --dir {} --dp-key DP_KEY",
                self.dir.display()
            ),
        }
    }
}

/// `pir-server build --shards N [--shard-index I]`.
pub fn build_sharded(args: &ShardedBuildArgs) -> Result<ShardedBuildSummary, DpError> {
    let b = &args.build;
    pir_core::keyword::ShardPosition::new(args.shard_index.unwrap_or(0), args.shards)?;
    if args.shard_index.is_some() && b.epoch.is_none() {
        return Err(DpError::ShardIndexNeedsEpoch);
    }
    let dir = &b.out;
    if !dir.is_dir() {
        // The directory is made (its parent must exist), as a file's would be.
        crate::paths::check_out_dir(dir)?;
        // Machines building shards of one directory at once may race to make it.
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(DpError::io(IoOp::Creating, dir, e)),
        }
    }
    let now = pir_core::unix_now();
    let manifest_path = dir.join(MANIFEST_FILE_NAME);
    let floors = [
        manifest_floor(&manifest_path, EpochFloor::Out),
        b.replaces
            .as_deref()
            .and_then(|p| manifest_floor(p, EpochFloor::Replaces)),
    ];
    let epoch = match args.shard_index {
        // Every machine of the build was given this epoch; the manifest checks they agree.
        Some(_) => b.epoch.unwrap_or_default(),
        None => epochs::choose(b.epoch, now, floors.into_iter().flatten())?,
    };
    let read = read_input(b)?;
    let opts = read.options(b, epoch, now);
    let input_mappings = read.input.mappings.len();
    let t = Instant::now();
    let bar = spinner(b.progress, "keying and laying out shards");
    let plan = ShardedBuild::plan(read.input, &read.oprf_key, &opts, args.shards);
    bar.finish_and_clear();
    let plan = plan?;
    let plan_secs = t.elapsed().as_secs_f64();
    let indices: Vec<u32> = match args.shard_index {
        Some(i) => vec![i],
        None => (0..args.shards).collect(),
    };
    let mut shards = Vec::with_capacity(indices.len());
    let mut headers = Vec::with_capacity(indices.len());
    for index in indices {
        let t = Instant::now();
        let bar = spinner(b.progress, &format!("shard {index}: laying out"));
        let encoded = plan.encode(index, &encoding_on(&bar));
        bar.finish_and_clear();
        let (snapshot, report) = encoded?;
        let file = dir.join(shard_file_name(index));
        let (snapshot, file_bytes) =
            sign_and_write(snapshot, read.dp_key.as_ref(), &file, b.progress)?;
        let h = snapshot.header();
        shards.push(ShardSummary {
            index,
            file,
            mappings: h.mapping_count,
            opt_outs: h.opt_out_count,
            cpis: h.cpi_count,
            packing_efficiency: report.packing_efficiency,
            file_bytes,
            secs: t.elapsed().as_secs_f64(),
        });
        headers.push((shard_file_name(index), h.clone()));
    }
    let mut manifest = None;
    if args.shard_index.is_none() {
        let mut m = Manifest::of_shards(headers, Some(epoch), now)?;
        if let Some(key) = &read.dp_key {
            m.sign(key)?;
        }
        m.write(&manifest_path)?;
        manifest = Some(manifest_path);
    }
    let scheme = plan.scheme();
    Ok(ShardedBuildSummary {
        dir: dir.clone(),
        shard_count: args.shards,
        epoch,
        input_mappings,
        skipped_invalid: read.skipped_invalid,
        items: scheme.num_items(),
        item_bytes: scheme.item_bytes(),
        shards,
        signed: manifest.is_some() && read.dp_key.is_some(),
        manifest,
        plan_secs,
    })
}

/// The epoch of the manifest at `path`, if one reads there.
fn manifest_floor(path: &Path, role: EpochFloor) -> Option<Floor> {
    let m = Manifest::load(path).ok()?;
    Some(Floor::known(m.epoch, path, role))
}

/// Options of `pir-server manifest`.
#[derive(Clone, Debug)]
pub struct ManifestArgs {
    /// The directory of shard files (`shard-NNNNN.pirsnap`).
    pub dir: PathBuf,
    /// Sign with this DP key.
    pub dp_key: Option<PathBuf>,
    /// Where to write it (default: `DIR/manifest.pirman`).
    pub out: Option<PathBuf>,
}

/// What `manifest` did.
#[derive(Debug, Serialize)]
pub struct ManifestSummary {
    /// The manifest written.
    pub out: PathBuf,
    /// Its epoch.
    pub epoch: u64,
    /// Shards it names.
    pub shard_count: u32,
    /// Mappings in all shards.
    pub mappings: u64,
    /// True when signed.
    pub signed: bool,
}

impl fmt::Display for ManifestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "manifest of {} shards ({} mappings), epoch {}, {} -> {}",
            self.shard_count,
            self.mappings,
            self.epoch,
            if self.signed { "signed" } else { "unsigned" },
            self.out.display()
        )
    }
}

/// `pir-server manifest`: the manifest of shards built apart (`build --shard-index`), after
/// checking they make one directory (every index once, one scheme, one OPRF key, one count).
pub fn assemble_manifest(args: &ManifestArgs) -> Result<ManifestSummary, DpError> {
    let dp_key = args.dp_key.as_deref().map(read_dp_key).transpose()?;
    let mut m = Manifest::assemble(&args.dir, None, pir_core::unix_now())?;
    if let Some(key) = &dp_key {
        m.sign(key)?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(MANIFEST_FILE_NAME));
    m.write(&out)?;
    Ok(ManifestSummary {
        out,
        epoch: m.epoch,
        shard_count: m.count(),
        mappings: m.mapping_count(),
        signed: m.signature.is_some(),
    })
}

/// Options of `pir-server update --manifest`.
#[derive(Clone, Debug)]
pub struct ShardedUpdateArgs {
    /// The manifest of the directory to update.
    pub manifest: PathBuf,
    /// The delta (JSON Lines).
    pub delta: PathBuf,
    /// Trusted issuer keys.
    pub trust: PathBuf,
    /// The DP's OPRF key the directory was built with.
    pub oprf_key: PathBuf,
    /// Where the new manifest goes (default: over `manifest`, atomically).
    pub out: Option<PathBuf>,
    /// Epoch of the new manifest and of every shard it changes.
    pub epoch: Option<u64>,
    /// Sign the new manifest and shards (needs `dp_pub`: the old manifest is verified first).
    pub dp_key: Option<PathBuf>,
    /// Trusted DP keys the old manifest must verify against.
    pub dp_pub: Option<PathBuf>,
    /// Leave out invalid lines instead of failing.
    pub skip_invalid: bool,
    /// Write changed shards as full files instead of deltas of the old ones.
    pub full: bool,
    /// Show progress.
    pub progress: bool,
}

/// One shard an update changed.
#[derive(Debug, Serialize)]
pub struct ShardUpdate {
    /// Its index.
    pub index: u32,
    /// Operations applied to it.
    pub operations: usize,
    /// Its new file.
    pub file: PathBuf,
    /// Buckets (items) re-encoded.
    pub items_changed: usize,
}

/// What `update --manifest` did.
#[derive(Debug, Serialize)]
pub struct ShardedUpdateSummary {
    /// The new manifest.
    pub out: PathBuf,
    /// Its epoch.
    pub epoch: u64,
    /// The old manifest's.
    pub old_epoch: u64,
    /// Shards in the directory.
    pub shard_count: u32,
    /// The shards changed (the others keep their files).
    pub changed: Vec<ShardUpdate>,
    /// Invalid lines skipped.
    pub skipped_invalid: usize,
    /// Seconds for the whole update.
    pub secs: f64,
}

impl fmt::Display for ShardedUpdateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped_invalid > 0 {
            writeln!(f, "skipped {} invalid line(s)", self.skipped_invalid)?;
        }
        writeln!(
            f,
            "updated {} of {} shards in {}, epoch {} -> {}",
            self.changed.len(),
            self.shard_count,
            Secs(self.secs),
            self.old_epoch,
            self.epoch
        )?;
        for c in &self.changed {
            writeln!(
                f,
                "  shard {}: {} operations, {} items re-encoded -> {}",
                c.index,
                c.operations,
                c.items_changed,
                c.file.display()
            )?;
        }
        write!(f, "manifest -> {}", self.out.display())
    }
}

/// `pir-server update --manifest`: splits the delta by shard, updates only the shards it
/// names (each written beside the old as `shard-NNNNN.eEPOCH.pirsnap`), then writes the new
/// manifest (by default over the old one, atomically: the old shard files stay for servers
/// still serving the old manifest).
pub fn update_sharded(args: &ShardedUpdateArgs) -> Result<ShardedUpdateSummary, DpError> {
    let t = Instant::now();
    if args.dp_key.is_some() && args.dp_pub.is_none() {
        return Err(DpError::SigningUnverified {
            snapshot: args.manifest.clone(),
        });
    }
    let old = Manifest::load(&args.manifest)?;
    if let Some(dp_pub) = &args.dp_pub {
        old.verify_signature(&read_dp_pub(dp_pub)?)
            .map_err(|reason| DpError::Refused {
                path: args.manifest.clone(),
                reason: Box::new(reason),
                dp_pub: dp_pub.clone(),
            })?;
    }
    let out = args.out.clone().unwrap_or_else(|| args.manifest.clone());
    let now = pir_core::unix_now();
    let floors = [
        Some(Floor::known(old.epoch, &args.manifest, EpochFloor::Updated)),
        manifest_floor(&out, EpochFloor::Out),
    ];
    let epoch = epochs::choose(args.epoch, now, floors.into_iter().flatten())?;
    let trust = read_trust(&args.trust)?;
    let dp_key = args.dp_key.as_deref().map(read_dp_key).transpose()?;
    let oprf_key = read_oprf_key(&args.oprf_key)?;
    if oprf_key.public() != old.oprf_key {
        return Err(DpError::Core(pir_core::CoreError::OprfKeyMismatch {
            expected: old.oprf_key.to_string(),
        }));
    }
    let (ops, invalid) = read_delta_shown(&args.delta, &trust, args.progress)?;
    let skipped_invalid = refuse_or_skip(&args.delta, invalid, args.skip_invalid)?;
    let split = split_by_shard(ops, &oprf_key, old.count())?;
    let mut new = old.clone();
    let mut changed = Vec::new();
    for (index, ops) in split.into_iter().enumerate() {
        if ops.is_empty() {
            continue;
        }
        let index = index as u32;
        let path = old.shard_path(&args.manifest, index).ok_or(DpError::Core(
            pir_core::CoreError::Internal("split_by_shard gives an index below the count"),
        ))?;
        let snapshot = load_snapshot(&path, args.full, args.progress)?;
        // The file is the one the (verified) manifest names: its content is vouched for.
        old.check_shard(index, snapshot.header())?;
        let operations = ops.len();
        let (mut updated, report) =
            snapshot.update(ops, &oprf_key, &UpdateOptions { epoch, now })?;
        if args.full && updated.is_delta() {
            updated.compact()?;
        }
        let items_changed = report.items_reencoded;
        let name = format!("shard-{index:05}.e{epoch}.pirsnap");
        let file = path.with_file_name(&name);
        let (updated, _) = sign_and_write(updated, dp_key.as_ref(), &file, args.progress)?;
        let h = updated.header();
        new.shards[index as usize] = pir_core::snapshot::ShardEntry {
            file: name,
            epoch,
            header_hash: h.hash()?,
            mapping_count: h.mapping_count,
            cpi_count: h.cpi_count,
        };
        changed.push(ShardUpdate {
            index,
            operations,
            file,
            items_changed,
        });
    }
    new.epoch = epoch;
    new.created_at = now;
    new.signature = None;
    if let Some(key) = &dp_key {
        new.sign(key)?;
    }
    new.write(&out)?;
    Ok(ShardedUpdateSummary {
        out,
        epoch,
        old_epoch: old.epoch,
        shard_count: old.count(),
        changed,
        skipped_invalid,
        secs: t.elapsed().as_secs_f64(),
    })
}

/// True when `path` starts like a shard manifest (its magic), so `inspect` describes it as one.
pub fn is_manifest(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == pir_core::snapshot::MANIFEST_MAGIC)
}

/// What `inspect` shows of a manifest.
#[derive(Debug, Serialize)]
pub struct ManifestDescription {
    /// The file.
    pub path: PathBuf,
    /// Its epoch.
    pub epoch: u64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Shards.
    pub shard_count: u32,
    /// Mappings in all shards.
    pub mappings: u64,
    /// Items per shard and their size.
    pub items: usize,
    /// See `items`.
    pub item_bytes: usize,
    /// The OPRF public key every shard is keyed by.
    pub oprf_public_key: String,
    /// The DP key that signed it, if signed (not verified here: `verify` does that).
    pub signed_by: Option<String>,
    /// Each shard: file, epoch, mappings, CPIs.
    pub shards: Vec<ShardLine>,
}

/// One shard of [`ManifestDescription`].
#[derive(Debug, Serialize)]
pub struct ShardLine {
    /// Its file, beside the manifest.
    pub file: String,
    /// Its epoch.
    pub epoch: u64,
    /// Mappings.
    pub mappings: u64,
    /// CPIs.
    pub cpis: u64,
    /// blake3 of its header, hex.
    pub header_hash: String,
}

impl fmt::Display for ManifestDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: shard manifest, epoch {}, created {}, {} shards, {} mappings, {} items of {} \
             bytes per shard, OPRF key {}, {}",
            self.path.display(),
            self.epoch,
            self.created_at,
            self.shard_count,
            self.mappings,
            self.items,
            self.item_bytes,
            self.oprf_public_key,
            match &self.signed_by {
                Some(id) => format!("signed by DP key {id} (not verified: use verify --dp-pub)"),
                None => "unsigned".to_owned(),
            }
        )?;
        for (i, s) in self.shards.iter().enumerate() {
            write!(
                f,
                "\n  shard {i}: {} (epoch {}, {} mappings, {} CPIs)",
                s.file, s.epoch, s.mappings, s.cpis
            )?;
        }
        Ok(())
    }
}

/// `pir-server inspect MANIFEST`.
pub fn inspect_manifest(path: &Path) -> Result<ManifestDescription, DpError> {
    let m = Manifest::load(path)?;
    Ok(ManifestDescription {
        path: path.to_path_buf(),
        epoch: m.epoch,
        created_at: pir_core::human::Time(m.created_at).to_string(),
        shard_count: m.count(),
        mappings: m.mapping_count(),
        items: m.scheme.num_items(),
        item_bytes: m.scheme.item_bytes(),
        oprf_public_key: m.oprf_key.to_string(),
        signed_by: m
            .signature
            .as_ref()
            .map(|s| pir_core::identity::IssuerId(s.key_id).to_string()),
        shards: m
            .shards
            .iter()
            .map(|s| ShardLine {
                file: s.file.clone(),
                epoch: s.epoch,
                mappings: s.mapping_count,
                cpis: s.cpi_count,
                header_hash: s.header_hash.iter().map(|b| format!("{b:02x}")).collect(),
            })
            .collect(),
    })
}

/// A manifest whose shards were all found intact and the ones it names.
#[derive(Debug, Serialize)]
pub struct ManifestVerified {
    /// The manifest.
    pub path: PathBuf,
    /// Its epoch.
    pub epoch: u64,
    /// Shards checked.
    pub shard_count: u32,
    /// Whether its DP signature was checked against trusted keys.
    pub dp_signature: crate::verify::DpSignature,
}

impl fmt::Display for ManifestVerified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: manifest of epoch {}; all {} shards intact (structure and checksums) and the \
             ones it names; ",
            self.path.display(),
            self.epoch,
            self.shard_count
        )?;
        f.write_str(match self.dp_signature {
            crate::verify::DpSignature::Trusted => "signed by a trusted DP key",
            crate::verify::DpSignature::NotChecked => {
                "its signature was NOT checked (pass --dp-pub to check it)"
            }
        })
    }
}

/// `pir-server verify MANIFEST`: the manifest's DP signature (with `dp_pub`), then every shard
/// it names loaded completely (structure, checksums, a delta with its base) and checked to be
/// the one it names.
pub fn verify_manifest(
    path: &Path,
    dp_pub: Option<&Path>,
    progress: bool,
) -> Result<ManifestVerified, DpError> {
    let m = Manifest::load(path)?;
    let dp_signature = match dp_pub {
        Some(dp_pub) => {
            m.verify_signature(&read_dp_pub(dp_pub)?)
                .map_err(|reason| DpError::Refused {
                    path: path.to_path_buf(),
                    reason: Box::new(reason),
                    dp_pub: dp_pub.to_path_buf(),
                })?;
            crate::verify::DpSignature::Trusted
        }
        None => crate::verify::DpSignature::NotChecked,
    };
    for index in 0..m.count() {
        let file =
            m.shard_path(path, index)
                .ok_or(DpError::Core(pir_core::CoreError::Internal(
                    "every index below the count has a shard",
                )))?;
        let snapshot = load_snapshot(&file, true, progress)?;
        m.check_shard(index, snapshot.header())?;
    }
    Ok(ManifestVerified {
        path: path.to_path_buf(),
        epoch: m.epoch,
        shard_count: m.count(),
        dp_signature,
    })
}
