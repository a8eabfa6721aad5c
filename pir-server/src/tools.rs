//! The DP's snapshot tooling: issuer keys, synthetic mappings, building and inspecting.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Instant,
};

use indicatif::{ProgressBar, ProgressStyle};
use pir_core::{
    BuildOptions, BuildReport, Cpi, DeltaLine, DeltaOp, IssuerKey, Mapping, MappingFields,
    SchemeParams, SigningKey, Snapshot, SnapshotHeader, TrustStore, UpdateOptions, UpdateReport,
    VerifiedMapping,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rayon::prelude::*;

use crate::error::ServerError;

/// Writes `text` to a new file readable by its owner only.
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), ServerError> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| ServerError::io(format!("creating {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))
}

/// The public key file beside a secret key file: `issuer.key` -> `issuer.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    secret.with_extension("pub")
}

/// Generates an Ed25519 key (an issuer's or a DP's): the secret at `out` (mode 0600) and the
/// public key beside it (`.pub`, a trust file with this one key).
pub fn issuer_keygen(out: &Path, overwrite: bool) -> Result<IssuerKey, ServerError> {
    let key = IssuerKey::generate();
    write_private(out, &key.to_secret_text(), overwrite)?;
    let public = public_key_path(out);
    std::fs::write(&public, key.to_public_text())
        .map_err(|e| ServerError::io(format!("writing {}", public.display()), e))?;
    Ok(key)
}

/// Reads a secret key file (issuer or DP).
pub fn read_issuer_key(path: &Path) -> Result<IssuerKey, ServerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?;
    Ok(IssuerKey::parse_secret(&text)?)
}

const MSPS: [&str; 8] = [
    "chat.example",
    "talk.example",
    "ring.example",
    "wire.example",
    "parley.example",
    "courier.example",
    "babble.example",
    "natter.example",
];
const FIRST: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];
const LAST: [&str; 10] = [
    "smith", "garcia", "müller", "rossi", "tanaka", "silva", "kumar", "dubois", "kowalski", "ng",
];
const MAIL_DOMAINS: [&str; 6] = [
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "post.example",
    "inbox.example",
];

/// A plausible phone number for one of several countries (checked by the caller).
fn random_number(rng: &mut StdRng) -> String {
    fn digits(rng: &mut StdRng, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.gen_range(0..10)))
            .collect()
    }
    match rng.gen_range(0..7) {
        0 | 1 => {
            let npa = [
                201, 212, 213, 305, 312, 404, 415, 510, 617, 646, 702, 713, 818, 917,
            ]
            .choose(rng)
            .copied()
            .unwrap_or(415);
            format!("+1 {npa} {} {}", rng.gen_range(200..1000), digits(rng, 4))
        }
        2 => format!("+44 7{} {}", rng.gen_range(400..1000), digits(rng, 6)),
        3 => format!("+49 15{} {}", rng.gen_range(1..8), digits(rng, 8)),
        4 => format!("+33 6 {}", digits(rng, 8)),
        5 => format!("+91 9{}", digits(rng, 9)),
        _ => format!("+55 11 9{}", digits(rng, 8)),
    }
}

fn random_cpi(rng: &mut StdRng) -> Cpi {
    loop {
        let text = if rng.gen_bool(0.7) {
            format!("tel:{}", random_number(rng))
        } else {
            let first = FIRST.choose(rng).copied().unwrap_or("alice");
            let last = LAST
                .choose(rng)
                .copied()
                .unwrap_or("smith")
                .replace('ü', "ue");
            let domain = MAIL_DOMAINS.choose(rng).copied().unwrap_or("example.com");
            format!(
                "mailto:{first}.{last}{}@{domain}",
                rng.gen_range(0..1_000_000)
            )
        };
        // A random digit string is not always a valid number for its country: draw again.
        if let Ok(cpi) = Cpi::parse(&text) {
            return cpi;
        }
    }
}

/// `count` realistic synthetic signed mappings, reproducible for a given `seed`.
///
/// E.164 numbers from seven countries and email addresses; about a fifth of the CPIs are at two
/// or three MSPs; about half carry a PSI, a third a context label, a tenth the user's consent.
pub fn synth(count: usize, issuer: &IssuerKey, seed: u64, now: u64) -> Vec<Mapping> {
    // Decide how many MSPs each CPI has first (cheap, sequential), then build in parallel with one
    // RNG per CPI so the output does not depend on thread scheduling.
    let mut plan = Vec::new();
    let mut total = 0;
    let mut rng = StdRng::seed_from_u64(seed);
    while total < count {
        let k = match rng.gen_range(0..100) {
            0..80 => 1,
            80..95 => 2,
            _ => 3,
        }
        .min(count - total);
        plan.push((rng.r#gen::<u64>(), k));
        total += k;
    }
    plan.into_par_iter()
        .flat_map_iter(|(cpi_seed, k)| {
            let mut rng = StdRng::seed_from_u64(cpi_seed);
            let cpi = random_cpi(&mut rng);
            let user = rng
                .gen_bool(0.1)
                .then(|| SigningKey::from_bytes(&rng.r#gen::<[u8; 32]>()));
            let mut msps = MSPS.to_vec();
            msps.shuffle(&mut rng);
            let handle = format!("u{}", rng.gen_range(0..100_000_000u32));
            msps.into_iter()
                .take(k)
                .map(|msp| {
                    let psi = rng.gen_bool(0.5).then(|| format!("@{handle}:{msp}"));
                    let context = rng.gen_bool(0.33).then(|| {
                        if rng.gen_bool(0.5) {
                            "work"
                        } else {
                            "personal"
                        }
                    });
                    let not_before = now - rng.gen_range(0..365 * 86_400);
                    let not_after = now + rng.gen_range(180 * 86_400..730 * 86_400);
                    MappingFields::new(
                        cpi.clone(),
                        msp,
                        psi.as_deref(),
                        context,
                        not_before,
                        not_after,
                    )
                    // Fields drawn from the constant lists above are valid by construction.
                    .expect("synthetic fields are valid")
                    .sign(issuer, user.as_ref())
                    .expect("synthetic fields are valid")
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Writes mappings as JSON Lines.
pub fn write_jsonl(path: &Path, mappings: &[Mapping]) -> Result<(), ServerError> {
    let io = |e| ServerError::io(format!("writing {}", path.display()), e);
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for m in mappings {
        writeln!(w, "{}", m.to_json_line()).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Mappings read from a JSON Lines file, each verified; failures listed by line number.
pub struct ReadMappings {
    /// The valid mappings.
    pub mappings: Vec<VerifiedMapping>,
    /// `(line number, reason)` of each invalid line.
    pub invalid: Vec<(usize, String)>,
}

/// `(line number, reason)` of each line of an input file that failed validation.
pub type InvalidLines = Vec<(usize, String)>;

/// Parses every non-blank line of a file in parallel; returns the values and the
/// `(line number, reason)` of each line that failed.
fn read_lines<T: Send>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, pir_core::CoreError> + Sync,
) -> Result<(Vec<T>, InvalidLines), ServerError> {
    let file =
        File::open(path).map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?;
    let results: Vec<(usize, Result<T, String>)> = lines
        .par_iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| (i + 1, parse(line).map_err(|e| e.to_string())))
        .collect();
    let mut good = Vec::with_capacity(results.len());
    let mut invalid = Vec::new();
    for (line, r) in results {
        match r {
            Ok(v) => good.push(v),
            Err(e) => invalid.push((line, e)),
        }
    }
    Ok((good, invalid))
}

/// Reads and verifies every line of a mappings file (blank lines are skipped).
pub fn read_mappings(path: &Path, trust: &TrustStore) -> Result<ReadMappings, ServerError> {
    let (mappings, invalid) = read_lines(path, |line| {
        Mapping::from_json_line(line).and_then(|m| VerifiedMapping::new(m, trust))
    })?;
    Ok(ReadMappings { mappings, invalid })
}

/// Reads and verifies every line of a delta file: signed mappings (upserts) and removals.
pub fn read_delta(
    path: &Path,
    trust: &TrustStore,
) -> Result<(Vec<DeltaOp>, InvalidLines), ServerError> {
    read_lines(path, |line| {
        Ok(match DeltaLine::from_json_line(line)? {
            DeltaLine::Upsert(m) => DeltaOp::Upsert(Box::new(VerifiedMapping::new(*m, trust)?)),
            DeltaLine::Remove { cpi, msp } => DeltaOp::Remove { cpi, msp },
        })
    })
}

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

fn invalid_lines_error(file: &Path, invalid: &[(usize, String)]) -> ServerError {
    const SHOWN: usize = 20;
    let mut details: Vec<String> = invalid
        .iter()
        .take(SHOWN)
        .map(|(n, e)| format!("  line {n}: {e}"))
        .collect();
    if invalid.len() > SHOWN {
        details.push(format!("  ... and {} more", invalid.len() - SHOWN));
    }
    details.push("  (use --skip-invalid to build without them)".into());
    ServerError::InvalidLines {
        file: file.display().to_string(),
        count: invalid.len(),
        details: details.join("\n"),
    }
}

/// Progress bar over `total` items, hidden when not wanted.
pub fn progress_bar(total: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta} left)",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// `pir-server build`: validate every line, build, write.
pub fn build(args: &BuildArgs) -> Result<BuildSummary, ServerError> {
    let trust = TrustStore::from_file(&args.trust)?;
    let read = read_mappings(&args.mappings, &trust)?;
    if !read.invalid.is_empty() {
        if !args.skip_invalid {
            return Err(invalid_lines_error(&args.mappings, &read.invalid));
        }
        for (n, e) in read.invalid.iter().take(20) {
            tracing::warn!(line = n, error = %e, "skipping invalid line");
        }
    }
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
        skipped_invalid: read.invalid.len(),
        report,
        header: snapshot.header().clone(),
        build_secs: start.elapsed().as_secs_f64(),
        file_bytes,
    })
}

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

/// What `update` did.
#[derive(Debug)]
pub struct UpdateSummary {
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped_invalid: usize,
    /// Operations applied.
    pub operations: usize,
    /// The core's report.
    pub report: UpdateReport,
    /// Epoch before.
    pub old_epoch: u64,
    /// The new header.
    pub header: SnapshotHeader,
    /// Seconds: loading the old snapshot, applying the delta, writing the new one.
    pub load_secs: f64,
    /// See `load_secs`.
    pub apply_secs: f64,
    /// See `load_secs`.
    pub write_secs: f64,
}

/// `pir-server update`: apply a delta to a snapshot, re-encoding only the changed items.
pub fn update(args: &UpdateArgs) -> Result<UpdateSummary, ServerError> {
    let trust = TrustStore::from_file(&args.trust)?;
    let (ops, invalid) = read_delta(&args.delta, &trust)?;
    if !invalid.is_empty() {
        if !args.skip_invalid {
            return Err(invalid_lines_error(&args.delta, &invalid));
        }
        for (n, e) in invalid.iter().take(20) {
            tracing::warn!(line = n, error = %e, "skipping invalid line");
        }
    }
    let dp_key = args.dp_key.as_deref().map(read_issuer_key).transpose()?;
    if !args.full && !same_dir(&args.snapshot, &args.out) {
        return Err(ServerError::Usage(format!(
            "a delta is written beside the snapshot it applies to: put {} in the directory of \
             {}, or use --full",
            args.out.display(),
            args.snapshot.display()
        )));
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
        skipped_invalid: invalid.len(),
        operations,
        report,
        old_epoch,
        header: new.header().clone(),
        load_secs,
        apply_secs,
        write_secs: t.elapsed().as_secs_f64(),
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let dir = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::canonicalize(parent.unwrap_or_else(|| Path::new("."))).ok()
    };
    dir(a).is_some() && dir(a) == dir(b)
}

/// `pir-server verify`: checks a snapshot file completely (structure, checksums) and its DP
/// signature. Returns the header.
pub fn verify(path: &Path, dp_pub: &Path) -> Result<SnapshotHeader, ServerError> {
    let keys = TrustStore::from_file(dp_pub)?;
    let snapshot = crate::reload::load_checked(path, Some(&keys))?;
    Ok(snapshot.header().clone())
}

/// `pir-server inspect`: a human-readable description of a snapshot file's header.
pub fn inspect(path: &Path) -> Result<String, ServerError> {
    let h = Snapshot::read_header(path)?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?
        .len();
    Ok(describe(&h, file_bytes)?)
}

/// The description `inspect` prints.
pub fn describe(h: &SnapshotHeader, file_bytes: u64) -> Result<String, pir_core::CoreError> {
    let s = &h.scheme;
    let sizes = s.message_sizes()?;
    let vetted = s.as_vetted();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line("epoch", h.epoch.to_string());
    if let Some(base) = &h.base {
        line(
            "delta of",
            format!(
                "{} (epoch {}); loading it loads that file beside it",
                base.file, base.epoch
            ),
        );
    }
    line("created at", format!("{} (unix)", h.created_at));
    line("mappings", h.mapping_count.to_string());
    line("distinct CPIs", h.cpi_count.to_string());
    line(
        "shape",
        format!(
            "{} items x {} B (2^{} = 2^{} x 2^{})",
            s.num_items(),
            s.item_bytes,
            s.nu_1 + s.nu_2,
            s.nu_1,
            s.nu_2
        ),
    );
    line("scheme", s.to_string());
    line(
        "parameter set",
        match vetted {
            Some(p) => format!(
                "vetted ({}): {}-bit security, failure <= 2^{}",
                match p.origin {
                    pir_core::PresetOrigin::Store => "Spiral parameter store",
                    pir_core::PresetOrigin::Tuned => "tuned, see docs/performance.md",
                },
                p.security_bits,
                p.log2_failure
            ),
            None => "NOT a vetted preset (test or custom parameters)".into(),
        },
    );
    line(
        "keyword layout",
        format!("v{}, {} buckets", h.layout.version, h.layout.num_buckets),
    );
    line("record bytes", format!("{:.2} MiB", mib(h.record_bytes)));
    line("capacity", format!("{:.2} MiB", mib(s.capacity_bytes())));
    line(
        "packing efficiency",
        format!("{:.3}", h.packing_efficiency()),
    );
    line(
        "database (NTT)",
        format!("{:.1} MiB", mib(s.db_words() as u64 * 8)),
    );
    line("file", format!("{:.1} MiB", mib(file_bytes)));
    line(
        "message sizes",
        format!(
            "public keys {:.2} MiB, query {} KiB, response {} KiB",
            mib(sizes.public_keys as u64),
            sizes.query / 1024,
            sizes.response / 1024
        ),
    );
    line(
        "signed by DP",
        match &h.signature {
            Some(s) => format!("yes (key {})", hex_id(&s.key_id)),
            None => "no".into(),
        },
    );
    Ok(out)
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
