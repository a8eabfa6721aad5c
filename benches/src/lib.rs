//! Measurement helpers shared by the benches and tools of `pir-benches`.

use std::{path::Path, time::Instant};

use pir_core::{
    Cpi, LookupClient,
    oprf::{Evaluated, OprfKey},
};

pub mod literature;
pub mod oprf_cost;
mod server_process;

pub use server_process::{
    ServerMemory, ServerProcess, parse_proc_status, serve_until_stdin_closes,
    unlimited_serve_options,
};

/// Runs `f` and returns its result with the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// The OPRF step of a lookup in process: `client` blinds `cpis`, `key` evaluates them in one
/// batch with its proof, `client` checks the proof against its snapshot's OPRF public key and
/// unblinds. What `pir_client::PirClient` does over `Discovery/Evaluate`, without the network.
pub fn evaluate_in_process(
    client: &LookupClient,
    key: &OprfKey,
    cpis: &[Cpi],
) -> pir_core::Result<Vec<Evaluated>> {
    let mut rng = rand::rngs::OsRng;
    let blinded = client.blind(cpis, &mut rng)?;
    let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
    let evaluation = key.evaluate_blinded(&mut rng, &elements)?;
    client.finalize(&blinded, &evaluation)
}

/// Builds the mappings file `mappings`, trusting the issuer keys in `trust` and keyed by the
/// OPRF key file `oprf_key`, into `out`, as the tools measure a build: epoch 1, unsigned, the
/// `engine`'s smallest vetted shape that fits, no progress bar.
pub fn build_unsigned(
    mappings: &Path,
    trust: &Path,
    oprf_key: &Path,
    out: &Path,
    engine: pir_core::Engine,
) -> Result<pir_dp::BuildSummary, pir_dp::DpError> {
    pir_dp::build(&pir_dp::BuildArgs {
        mappings: mappings.to_path_buf(),
        trust: trust.to_path_buf(),
        out: out.to_path_buf(),
        skip_invalid: false,
        epoch: Some(1),
        replaces: None,
        scheme: None,
        engine,
        progress: false,
        dp_key: None,
        oprf_key: oprf_key.to_path_buf(),
        fill_percent: None,
    })
}

/// The median of some samples (the middle one; the mean of the two middle ones if even).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(super::median(vec![]).is_nan());
    }
}
