//! Realistic synthetic signed mappings, for demos, tests and benchmarks.

use std::{fmt, path::PathBuf};

use indicatif::ProgressBar;
use pir_core::{Cpi, IssuerKey, Mapping, MappingFields, SigningKey};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rayon::prelude::*;
use serde::Serialize;

use crate::{
    error::DpError, jsonl::write_jsonl_shown, keys::read_issuer_key, paths::check_out_dir,
    progress::progress_bar,
};

/// Options of `pir-server synth`.
#[derive(Clone, Debug)]
pub struct SynthArgs {
    /// Number of mappings.
    pub count: usize,
    /// The issuer's secret key file, which signs them.
    pub issuer_key: PathBuf,
    /// The JSON Lines file to write.
    pub out: PathBuf,
    /// RNG seed (same seed and time, same output).
    pub seed: u64,
    /// Show progress.
    pub progress: bool,
}

/// What `synth` wrote. Displays as `pir-server synth` reports it.
#[derive(Debug, Serialize)]
pub struct SynthSummary {
    /// The file written.
    pub out: PathBuf,
    /// Mappings in it.
    pub mappings: usize,
}

impl fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mappings written to {}",
            self.mappings,
            self.out.display()
        )
    }
}

/// `pir-server synth`: synthetic mappings, signed by the issuer key, written as JSON Lines.
pub fn synth_to_file(args: &SynthArgs) -> Result<SynthSummary, DpError> {
    check_out_dir(&args.out)?;
    let issuer = read_issuer_key(&args.issuer_key)?;
    let bar = progress_bar(args.count as u64, args.progress, "signing");
    let mappings = synth_shown(args.count, &issuer, args.seed, pir_core::unix_now(), &bar);
    bar.finish_and_clear();
    let mappings = mappings?;
    write_jsonl_shown(&args.out, &mappings, args.progress)?;
    Ok(SynthSummary {
        out: args.out.clone(),
        mappings: mappings.len(),
    })
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
        // A random digit string is not always a number the phone metadata knows as valid for its
        // country (such a number is accepted with a warning): draw again, so that synthetic data
        // is clean and the same for a seed as it always was.
        if let Ok(cpi) = Cpi::parse(&text)
            && cpi.warning().is_none()
        {
            return cpi;
        }
    }
}

/// `count` realistic synthetic signed mappings, reproducible for a given `seed`. Fails only if
/// signing fails.
///
/// E.164 numbers from seven countries and email addresses; about a fifth of the CPIs are at two
/// or three MSPs; about half carry a PSI, a third a context label, a tenth the user's consent.
pub fn synth(
    count: usize,
    issuer: &IssuerKey,
    seed: u64,
    now: u64,
) -> Result<Vec<Mapping>, DpError> {
    synth_shown(count, issuer, seed, now, &ProgressBar::hidden())
}

/// [`synth`], counting the mappings signed on `bar`.
fn synth_shown(
    count: usize,
    issuer: &IssuerKey,
    seed: u64,
    now: u64,
    bar: &ProgressBar,
) -> Result<Vec<Mapping>, DpError> {
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
                    let not_before = now.saturating_sub(rng.gen_range(0..365 * 86_400));
                    let not_after = now.saturating_add(rng.gen_range(180 * 86_400..730 * 86_400));
                    MappingFields::new(
                        cpi.clone(),
                        msp,
                        psi.as_deref(),
                        context,
                        not_before,
                        not_after,
                    )
                    .and_then(|fields| fields.sign(issuer, user.as_ref()))
                    .inspect(|_| bar.inc(1))
                })
                .collect::<Vec<_>>()
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(DpError::from)
}
