//! Parameter tuning per database shape, by measured cost at equal security and failure
//! probability.
//!
//! `cargo run --release -p pir-benches --bin tune -- --shapes 14x16,15x8 --measure 2`
//!
//! For each shape (log2 of the item count x item KiB), the tool starts from the Spiral
//! authors' parameter-store preset and enumerates the first-dimension size against the folding
//! depth (nu_1 / nu_2) and the gadget lengths (t_GSW, t_conv, t_exp,left, t_exp,right). The ring
//! (so the security estimate) is unchanged. A candidate is kept only if the authors' noise
//! estimator (spiral-rs `NoiseEstimator`, the model of their parameter search) puts its
//! failure probability within `--slack-bits` of the store preset's, and at most 2^-40. The
//! survivors are ranked by a model of their NTT count, and the best `--measure` of them for each
//! first-dimension size are measured, with the store preset, on a database of that shape: one query on one thread,
//! split into phases, median of `--repeat`. Each measured candidate also does real lookups that
//! must decode. Prints a markdown table per shape.
//!
//! `--failure-bound -60` replaces the relative bound with an absolute one,
//! `--max-public-key-bytes 1500000` keeps only candidates whose keys fit (wire bytes, 7-byte
//! words), `--min-gadget 3` tries shorter gadgets, and `--list` prints every candidate with its
//! estimate, key size and modelled cost instead of measuring: how the current `TUNED` presets
//! were chosen (`docs/performance.md`, "Smaller keys").

#![allow(clippy::print_stdout)]

use clap::Parser;
use pir_benches::{evaluate_in_process, median};
use pir_core::{
    BuildOptions, ClientKeys, Cpi, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    SchemeFields, SchemeParams, Snapshot, TrustStore, oprf::OprfKey,
};

#[derive(Parser)]
struct Args {
    /// Shapes as `LOG2_ITEMSxITEM_KIB`, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "14x16,15x8")]
    shapes: Vec<String>,
    /// Candidates measured per shape and first-dimension size (besides the store preset), best
    /// modelled cost first.
    #[arg(long, default_value_t = 2)]
    measure: usize,
    /// Repetitions of each timing (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// How much worse (in log2) than the store preset's estimated failure probability a
    /// candidate may be.
    #[arg(long, default_value_t = 1.0)]
    slack_bits: f64,
    /// An absolute bound on the estimated log2 failure probability instead of `--slack-bits`
    /// (e.g. -40: every candidate the estimator puts at 2^-40 or below).
    #[arg(long, allow_hyphen_values = true)]
    failure_bound: Option<f64>,
    /// Keep only candidates whose public keys (the client's upload) are at most this many bytes.
    #[arg(long)]
    max_public_key_bytes: Option<usize>,
    /// Print every candidate (estimate, key bytes, modelled cost) instead of measuring.
    #[arg(long)]
    list: bool,
    /// Smallest gadget length tried for every gadget.
    #[arg(long, default_value_t = 4)]
    min_gadget: u32,
}

/// The store preset for `LOG2_ITEMSxITEM_KIB`.
fn store_preset(shape: &str) -> Result<SchemeParams, String> {
    let (items, kib) = shape
        .split_once('x')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("shape {shape:?}: expected LOG2_ITEMSxITEM_KIB, e.g. 14x16"))?;
    SchemeParams::store_presets()
        .map(|p| p.params)
        .find(|p| p.nu_1 + p.nu_2 == items && p.item_bytes == kib * 1024)
        .ok_or_else(|| format!("no store preset for 2^{items} x {kib} KiB"))
}

/// Modelled cost of one query, in units of one 2-CRT forward or inverse NTT of degree 2048.
fn model_cost(p: &SchemeParams) -> f64 {
    let dim0 = 1usize << p.nu_1;
    let right = (p.t_gsw * p.nu_2) as usize;
    let g = (dim0 + right).next_power_of_two().trailing_zeros() as usize;
    let stop = right.next_power_of_two().trailing_zeros() as usize;
    // spiral-rs's coefficient expansion: each output is one key switch (t digits transformed,
    // plus three transforms), with the folding bits' switches skipped after `stop`.
    let mut expansion = 0.0;
    for r in 0..g {
        for _half in 0..2 {
            for i in 0..1usize << r {
                let skip = (r > stop && i % 2 == 1) || (r == stop && i % 2 == 1 && i / 2 >= right);
                if skip {
                    continue;
                }
                let t = if r != 0 && i % 2 == 0 {
                    p.t_exp_left
                } else {
                    p.t_exp_right
                };
                expansion += t as f64 + 3.0;
            }
        }
    }
    let conversion = right as f64 * (2.0 * p.t_conv as f64 + 2.0);
    let slices = (p.instances * p.n * p.n) as f64;
    let fold = slices * ((1u64 << p.nu_2) - 1) as f64 * (4.0 * p.t_gsw as f64 + 2.0);
    let from_ntt = slices * (1u64 << p.nu_2) as f64 * 2.0;
    // The AVX2 first-dimension pass costs about one transform per 90,000 database words.
    let first_dim = p.db_words() as f64 / 90_000.0;
    let pack = slices * (p.t_conv as f64 + 2.0);
    expansion + conversion + fold + from_ntt + first_dim + pack
}

/// Public key bytes of `p` on the wire (spiral-rs's `setup_bytes` for key layout version 0,
/// in 7-byte words, computed here without interning the parameters): a seed, then one row of
/// `poly_len` words per gadget column of the packing, expansion and conversion keys, but for
/// the first left expansion key, which no answer reads and the client does not send. Checked
/// against `SchemeParams::message_sizes` for every measured row.
fn public_key_bytes(p: &SchemeParams) -> usize {
    let n = p.n as usize;
    let right = (p.t_gsw * p.nu_2) as usize;
    let g = ((1usize << p.nu_1) + right)
        .next_power_of_two()
        .trailing_zeros() as usize;
    let stop = right.next_power_of_two().trailing_zeros() as usize;
    let polys = n * n * p.t_conv as usize
        + (g - 1) * p.t_exp_left as usize
        + (stop + 1) * p.t_exp_right as usize
        + 2 * p.t_conv as usize;
    32 + polys * pir_core::pir::POLY_LEN * 7
}

/// Candidates the estimator accepts, with their estimated log2 failure probability.
fn candidates(base: &SchemeParams, args: &Args) -> Vec<(SchemeParams, f64)> {
    let bound = match args.failure_bound {
        Some(b) => b.min(-40.0),
        None => (base.estimated_log2_failure().unwrap_or(-40.0) + args.slack_bits).min(-40.0),
    };
    let lo = args.min_gadget.max(2);
    let total = base.nu_1 + base.nu_2;
    let mut out = Vec::new();
    for nu_1 in base.nu_1.saturating_sub(2)..=base.nu_1 + 1 {
        let Some(nu_2) = total.checked_sub(nu_1).filter(|&n| n >= 1) else {
            continue;
        };
        for t_gsw in lo..=base.t_gsw.max(10) {
            for t_conv in (lo..=8).chain([base.t_conv]) {
                for t_exp_left in lo..=base.t_exp_left.max(16) {
                    for t_exp_right in (lo..=16).chain([28, 56]) {
                        let Ok(p) = SchemeParams::try_from(SchemeFields {
                            nu_1,
                            nu_2,
                            t_gsw,
                            t_conv,
                            t_exp_left,
                            t_exp_right,
                            ..**base
                        }) else {
                            continue;
                        };
                        if out.iter().any(|(q, _)| *q == p)
                            || args
                                .max_public_key_bytes
                                .is_some_and(|max| public_key_bytes(&p) > max)
                        {
                            continue;
                        }
                        if let Ok(est) = p.estimated_log2_failure()
                            && est <= bound
                        {
                            out.push((p, est));
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| model_cost(&a.0).total_cmp(&model_cost(&b.0)));
    out
}

struct Measured {
    expand_ms: f64,
    first_dim_ms: f64,
    fold_ms: f64,
    pack_ms: f64,
    total_ms: f64,
}

/// Builds a database of shape `p`, then answers (one thread) and decodes real lookups.
fn measure(p: &SchemeParams, repeat: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let issuer = IssuerKey::from_seed(&[9; 32]);
    let trust = TrustStore::parse(&issuer.to_public_text())?;
    let cpi = |i: usize| Cpi::parse(&format!("mailto:user{i}@example.org"));
    let input: Vec<Mapping> = (0..64)
        .map(|i| {
            MappingFields::new(cpi(i)?, "chat.example", None, None, 0, u64::MAX)?
                .sign(&issuer, None)
        })
        .collect::<Result<_, pir_core::CoreError>>()?;
    let opts = BuildOptions {
        epoch: 1,
        now: pir_core::unix_now(),
        salt: Some([3; 32]),
        scheme: Some((*p).into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    // The OPRF only places CPIs; the answer's cost does not depend on the key.
    let oprf_key = OprfKey::derive(&[3; 32], b"pir-benches tune")?;
    let snapshot = Snapshot::build(input, &trust, &oprf_key, &opts)?.0;
    let keys = ClientKeys::generate(p)?;
    let server_keys = EvalKeys::parse(p, keys.public_bytes())?;
    let client = LookupClient::with_keys(snapshot.config(), keys, trust)?;
    let looked_up = (0..repeat.max(1)).map(cpi).collect::<Result<Vec<_>, _>>()?;
    let evaluated = evaluate_in_process(&client, &oprf_key, &looked_up)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut phases = Vec::new();
    for e in &evaluated {
        let pending = client.query(e)?;
        let batch = [(&server_keys, pending.query())];
        let (answers, ph) = pool.install(|| snapshot.database()?.answer_batch_timed(&batch))?;
        let answer = answers.first().ok_or("no answer")?;
        if !client
            .decode(pending, answer, pir_core::unix_now())?
            .found()
        {
            return Err(format!("{p}: a present CPI was not found").into());
        }
        phases.push(ph);
    }
    let med = |f: fn(&pir_core::pir::AnswerPhases) -> f64| median(phases.iter().map(f).collect());
    let (expand, first, fold, pack) = (
        med(|p| p.expand_s),
        med(|p| p.first_dim_s),
        med(|p| p.fold_s),
        med(|p| p.pack_s),
    );
    Ok(Measured {
        expand_ms: expand * 1e3,
        first_dim_ms: first * 1e3,
        fold_ms: fold * 1e3,
        pack_ms: pack * 1e3,
        total_ms: med(|p| p.expand_s + p.first_dim_s + p.fold_s + p.pack_s) * 1e3,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    for shape in &args.shapes {
        let base = store_preset(shape)?;
        let found = candidates(&base, &args);
        eprintln!(
            "2^{} x {} KiB: {} candidates ({})",
            base.nu_1 + base.nu_2,
            base.item_bytes / 1024,
            found.len(),
            match args.failure_bound {
                Some(b) => format!("estimated failure at most 2^{b}"),
                None => format!(
                    "within {} bit(s) of the store preset's estimate",
                    args.slack_bits
                ),
            }
        );
        if args.list {
            println!(
                "| nu_1/nu_2 | t_gsw | t_conv | t_exp left/right | log2 failure (est.) | public keys B | model cost |"
            );
            println!("|{}", " --- |".repeat(7));
            for (p, est) in &found {
                println!(
                    "| {}/{} | {} | {} | {}/{} | {est:.1} | {} | {:.0} |",
                    p.nu_1,
                    p.nu_2,
                    p.t_gsw,
                    p.t_conv,
                    p.t_exp_left,
                    p.t_exp_right,
                    public_key_bytes(p),
                    model_cost(p)
                );
            }
            continue;
        }
        let mut rows = vec![(base, base.estimated_log2_failure()?, "store")];
        // The preset the builder uses today for this shape, when it is not the store's.
        if let Some(current) = SchemeParams::vetted_presets()
            .map(|p| p.params)
            .find(|p| p.num_items() == base.num_items() && p.item_bytes == base.item_bytes)
            .filter(|p| *p != base)
        {
            rows.push((current, current.estimated_log2_failure()?, "current"));
        }
        // The best modelled candidates of each first-dimension size: the model ranks within a
        // split better than across splits.
        for nu_1 in base.nu_1.saturating_sub(2)..=base.nu_1 + 1 {
            let picked: Vec<_> = found
                .iter()
                .filter(|(p, _)| rows.iter().all(|(r, _, _)| r != p) && p.nu_1 == nu_1)
                .take(args.measure)
                .map(|&(p, e)| (p, e, "candidate"))
                .collect();
            rows.extend(picked);
        }
        println!(
            "\n### 2^{} x {} KiB\n",
            base.nu_1 + base.nu_2,
            base.item_bytes / 1024
        );
        println!(
            "| origin | nu_1/nu_2 | t_gsw | t_conv | t_exp left/right | log2 failure (est.) | \
             public keys B | response B | model cost | expand ms | first dim ms | fold ms | \
             pack ms | total ms (1 thread) | vs store |"
        );
        println!("|{}", " --- |".repeat(15));
        let mut store_ms = f64::NAN;
        for (p, est, origin) in rows {
            eprintln!("measuring {p}");
            let m = measure(&p, args.repeat)?;
            if origin == "store" {
                store_ms = m.total_ms;
            }
            let sizes = p.message_sizes()?;
            if sizes.public_keys != public_key_bytes(&p) {
                return Err(format!("{p}: the key size model is wrong").into());
            }
            println!(
                "| {origin} | {}/{} | {} | {} | {}/{} | {est:.1} | {} | {} | {:.0} | {:.0} | \
                 {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x |",
                p.nu_1,
                p.nu_2,
                p.t_gsw,
                p.t_conv,
                p.t_exp_left,
                p.t_exp_right,
                sizes.public_keys,
                sizes.response,
                model_cost(&p),
                m.expand_ms,
                m.first_dim_ms,
                m.fold_ms,
                m.pack_ms,
                m.total_ms,
                m.total_ms / store_ms
            );
        }
    }
    Ok(())
}
