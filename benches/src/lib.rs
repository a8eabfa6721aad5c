//! Measurement helpers shared by the benches and tools of `pir-benches`.

use std::{path::Path, time::Instant};

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

/// Builds the mappings file `mappings`, trusting the issuer keys in `trust`, into `out`, as the
/// tools measure a build: epoch 1, unsigned, the smallest vetted shape that fits, no progress
/// bar.
pub fn build_unsigned(
    mappings: &Path,
    trust: &Path,
    out: &Path,
) -> Result<pir_dp::BuildSummary, pir_dp::DpError> {
    pir_dp::build(&pir_dp::BuildArgs {
        mappings: mappings.to_path_buf(),
        trust: trust.to_path_buf(),
        out: out.to_path_buf(),
        skip_invalid: false,
        epoch: Some(1),
        replaces: None,
        scheme: None,
        progress: false,
        dp_key: None,
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
