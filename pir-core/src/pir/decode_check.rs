//! Whole items through the engine: every byte of a random item must come back, not just the
//! bytes a test's records happen to use.
//!
//! A bucket fills its item from the front, so a test that only looks its records up reads the
//! first plaintext polynomial and misses errors in the others. Parameters whose noise is
//! underestimated (as the key-size tuning's short right expansion gadget was: every item of
//! `2^10 x 8 KiB` with `t_exp_right = 7` decoded wrong in its second to fourth polynomials
//! under one key set, and 5 to 15 % of queries did under fresh ones) show here as differing
//! bytes.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use spiral_rs::{
    arith::log2_ceil,
    params::Q2_VALUES,
    poly::{PolyMatrix, PolyMatrixRaw},
    server::encode,
    util::read_arbitrary_bits,
};

use super::{
    Database, EvalKeys, SchemeParams,
    client::{self, ClientSecret},
    kernel::Kernel,
    presets,
    ring::spiral_params,
};

/// One query answered through the engine, with fresh keys.
struct Answered {
    index: usize,
    /// Bytes of the decoded item that differ from the one encoded.
    wrong_bytes: usize,
    noise: AnswerNoise,
    /// The server's time to answer, in seconds (every core of the test's pool).
    answer_s: f64,
}

/// Encodes random items into a database of `params` and answers `queries` of them (spread
/// over the items), each with fresh keys: the noise depends on the key set as much as on the
/// query (a key set of the withdrawn presets could spoil every answer made with it).
fn answer_random_items(params: SchemeParams, queries: usize) -> Vec<Answered> {
    let n = params.num_items();
    let sp = spiral_params(&params).expect("vetted");
    let mut plaintext = vec![0u8; n * params.item_bytes as usize];
    ChaCha20Rng::seed_from_u64(params.num_items() as u64).fill_bytes(&mut plaintext);
    let mut db = Database::zeroed(params);
    let all: Vec<usize> = (0..n).collect();
    db.encode_items(&plaintext, &all, &|_, _| {})
        .expect("encoding random items");
    let mut answered = Vec::new();
    for q in 0..queries {
        let (secret, public) = client::keygen(&params).expect("keygen");
        let server = &EvalKeys::parse(&params, &public).expect("parsing fresh keys");
        let secret = &secret;
        let index = q * 7919 % n;
        let query = client::query(&params, secret, index).expect("query");
        let started = std::time::Instant::now();
        let (mut packed, _) = db
            .answer_packed(Kernel::detected(), &[(server, &query)])
            .expect("answer");
        let packed = packed.swap_remove(0);
        let answer = encode(sp, &packed);
        let answer_s = started.elapsed().as_secs_f64();
        let item = client::decode(&params, secret, &answer).expect("decode");
        let want = &plaintext[index * params.item_bytes as usize..][..params.item_bytes as usize];
        let mut wrong_bytes = item.iter().zip(want).filter(|(a, b)| a != b).count();
        wrong_bytes += item.len().abs_diff(want.len());
        answered.push(Answered {
            index,
            wrong_bytes,
            noise: measure_noise(&params, secret, &packed, &answer),
            answer_s,
        });
    }
    answered
}

/// For each item queried that did not come back exactly: its index and its differing bytes.
fn whole_item_errors(answered: &[Answered]) -> Vec<(usize, usize)> {
    answered
        .iter()
        .filter(|a| a.wrong_bytes > 0)
        .map(|a| (a.index, a.wrong_bytes))
        .collect()
}

/// Noise of coefficients, in plaintext steps (decoding rounds to the nearest step, so a
/// coefficient decodes wrong once its noise reaches 1/2).
#[derive(Clone, Copy, Debug, Default)]
struct Noise {
    coefficients: usize,
    sum_squares: f64,
    max_abs: f64,
}

impl Noise {
    fn add(&mut self, x: f64) {
        self.coefficients += 1;
        self.sum_squares += x * x;
        self.max_abs = self.max_abs.max(x.abs());
    }

    fn variance(&self) -> f64 {
        self.sum_squares / self.coefficients.max(1) as f64
    }
}

/// One answer's noise, in its three parts, as the Spiral paper splits it:
///
/// - `packed`: the packed ciphertexts' noise, measured exactly (decrypted before the modulus
///   switch): everything the server's homomorphic work added;
/// - the first row's rounding to q2 (`switch_variance`, known from the secret: each
///   coefficient is the secret times uniform rounding errors, so its variance is the
///   secret's squared norm over 12, in steps);
/// - the other rows' rounding to q1 = 4p: at most p / 2q1 = 1/8 of a step, bounded rather
///   than random.
///
/// `decoded` is the noise measured on the response itself, which must be their sum: a check
/// of the model (its variance against the parts' variances, the last part's as a uniform
/// one's).
#[derive(Clone, Copy, Debug)]
struct AnswerNoise {
    packed: Noise,
    switch_variance: f64,
    rounding_bound: f64,
    decoded: Noise,
}

impl AnswerNoise {
    /// The decoded noise's variance that the parts predict.
    fn predicted_variance(&self) -> f64 {
        self.packed.variance() + self.switch_variance + self.rounding_bound.powi(2) / 3.0
    }

    /// log2 of the probability that an answer of `per_answer` coefficients decodes wrong,
    /// with the random parts Gaussian with their measured and derived variances (the packed
    /// noise sums thousands of independent products: the model the Spiral paper's
    /// estimator uses too, here with the variance measured instead of derived) and the
    /// bounded part at its bound. A union bound over the coefficients, with
    /// Pr[|X| >= t] <= 2 phi(z) / z, z = t / sigma, t = 1/2 - the bound.
    fn log2_failure(&self, per_answer: usize) -> f64 {
        let sigma = (self.packed.variance() + self.switch_variance).sqrt();
        let z = (0.5 - self.rounding_bound) / sigma;
        let ln_tail = -z * z / 2.0 - (2.0 * std::f64::consts::PI).sqrt().ln() - z.ln();
        ((per_answer as f64).ln() + std::f64::consts::LN_2 + ln_tail) / std::f64::consts::LN_2
    }
}

/// Coefficients in one answer: every one is decoded, so every one counts.
fn coefficients_per_answer(params: &SchemeParams) -> usize {
    let sp = spiral_params(params).expect("vetted");
    sp.instances * sp.n * sp.n * sp.poly_len
}

/// The measured failure bounds of `answered` (log2 per query): the first from every key
/// set's packed noise pooled, the second from the noisiest key set's alone (the one to trust:
/// the noise varies with the key set).
fn failure_bounds(params: &SchemeParams, answered: &[Answered]) -> (f64, f64) {
    let per_answer = coefficients_per_answer(params);
    let Some(first) = answered.first() else {
        return (f64::NAN, f64::NAN);
    };
    let mut pooled = first.noise;
    for a in &answered[1..] {
        pooled.packed.coefficients += a.noise.packed.coefficients;
        pooled.packed.sum_squares += a.noise.packed.sum_squares;
        pooled.switch_variance = pooled.switch_variance.max(a.noise.switch_variance);
    }
    let worst = answered
        .iter()
        .map(|a| a.noise.log2_failure(per_answer))
        .fold(f64::NEG_INFINITY, f64::max);
    (pooled.log2_failure(per_answer), worst)
}

/// Measures one answer's noise ([`AnswerNoise`]): `packed` are its ciphertexts before the
/// modulus switch, `response` the bytes they were encoded into. The secret is read back
/// through the client's GSW decryption of the unit vector ([sk | I] e_0 = sk).
fn measure_noise(
    params: &SchemeParams,
    secret: &ClientSecret,
    packed: &[PolyMatrixRaw<'static>],
    response: &[u8],
) -> AnswerNoise {
    let sp = spiral_params(params).expect("vetted");
    let (n, d) = (sp.n, sp.poly_len);
    let client = client::client_for(sp, secret);
    let mut unit = PolyMatrixRaw::zero(sp, n + 1, 1);
    unit.as_mut_slice()[0] = 1;
    let sk = client.decrypt_matrix_gsw(&unit.ntt()).raw();
    let modulus = sp.modulus as i64;
    let sk: Vec<i64> = sk.as_slice()[..n * d]
        .iter()
        .map(|&v| {
            if v as i64 > modulus / 2 {
                v as i64 - modulus
            } else {
                v as i64
            }
        })
        .collect();
    assert!(
        sk.iter().all(|v| v.abs() < 1 << 10),
        "the secret read back is not small: the measurement is wrong"
    );

    let p = sp.pt_modulus as i64;
    let q1 = 4 * p;
    let q1_bits = log2_ceil(q1 as u64) as usize;
    let q2_bits = sp.q2_bits as usize;
    let q2 = Q2_VALUES[q2_bits] as i64;

    // Before the switch: [sk | I] ct = (q / p) m + e, exactly.
    let mut before = Noise::default();
    let q = i128::from(sp.modulus);
    for ct in packed {
        let decrypted = client.decrypt_matrix_gsw(&ct.ntt()).raw();
        for &v in &decrypted.as_slice()[..n * n * d] {
            let scaled = i128::from(v) * i128::from(p);
            let mut off = scaled.rem_euclid(q);
            if 2 * off >= q {
                off -= q;
            }
            before.add(off as f64 / q as f64);
        }
    }
    let worst_norm = sk
        .chunks_exact(d)
        .map(|row| row.iter().map(|v| (v * v) as f64).sum::<f64>())
        .fold(0.0, f64::max);
    let switch_variance = worst_norm / 12.0 * (p as f64 / q2 as f64).powi(2);

    // After it, as spiral-rs's `decode_response` computes, keeping each coefficient's
    // distance from the step it rounds to.
    let step = i128::from(q2) * i128::from(q1 / p);
    let centered = |v: i64, q: i64| if v >= q / 2 { v - q } else { v };
    let mut after = Noise::default();
    let mut bit = 0;
    let mut read = |bits: usize| {
        let v = read_arbitrary_bits(response, bit, bits) as i64;
        bit += bits;
        v
    };
    for _ in 0..sp.instances {
        let first: Vec<i64> = (0..n * d).map(|_| read(q2_bits)).collect();
        let rest: Vec<i64> = (0..n * n * d).map(|_| read(q1_bits)).collect();
        for i in 0..n {
            for j in 0..n {
                let product = negacyclic(&sk[i * d..][..d], &first[j * d..][..d], q2);
                for (k, &at) in product.iter().enumerate() {
                    let v_first = i128::from(centered(at, q2));
                    let v_rest = i128::from(centered(rest[(i * n + j) * d + k], q1));
                    let r = v_first * i128::from(q1) + v_rest * i128::from(q2);
                    let mut off = r.rem_euclid(step);
                    if 2 * off >= step {
                        off -= step;
                    }
                    after.add(off as f64 / step as f64);
                }
            }
        }
    }
    AnswerNoise {
        packed: before,
        switch_variance,
        rounding_bound: p as f64 / (2 * q1) as f64,
        decoded: after,
    }
}

/// a * b in Z_q[X] / (X^d + 1), `a` small.
fn negacyclic(a: &[i64], b: &[i64], q: i64) -> Vec<i64> {
    let d = a.len();
    let mut out = vec![0i64; d];
    for (i, &ai) in a.iter().enumerate().filter(|(_, ai)| **ai != 0) {
        // a_i X^i b: b's first d - i coefficients land at i.., the rest wrap negated.
        let (low, high) = out.split_at_mut(i);
        for (o, &bj) in high.iter_mut().zip(b) {
            *o += ai * bj;
        }
        for (o, &bj) in low.iter_mut().zip(&b[d - i..]) {
            *o -= ai * bj;
        }
    }
    out.iter().map(|v| v.rem_euclid(q)).collect()
}

mod tests {
    use super::*;
    use crate::pir::ring::public_key_bytes;

    /// The most a query may fail with, as a preset promises (log2).
    const FAILURE_BOUND: f64 = -40.0;

    /// Every preset the builder picks for the small shapes returns whole items exactly, over
    /// 24 key sets each (the withdrawn presets failed 5 to 15 % of such queries: all 24 pass
    /// through one of them with odds under 0.3, through all four small shapes under 0.01),
    /// and its noise, measured, keeps even the noisiest key set's failure bound under 2^-40.
    /// The response's noise must be the sum of the parts the bound is computed from.
    #[test]
    fn the_builders_small_presets_return_whole_items() {
        for preset in SchemeParams::vetted_presets().filter(|p| p.params.num_items() <= 1 << 11) {
            let params = preset.params;
            let answered = answer_random_items(params, 24);
            let errors = whole_item_errors(&answered);
            assert!(errors.is_empty(), "{params}: {errors:?}");
            for a in &answered {
                let (decoded, predicted) =
                    (a.noise.decoded.variance(), a.noise.predicted_variance());
                assert!(
                    (decoded / predicted - 1.0).abs() < 0.1,
                    "{params}: the response's noise variance {decoded:.3e} is not the sum of its \
                     parts {predicted:.3e}: the model behind the failure bound is wrong"
                );
            }
            let (pooled, worst) = failure_bounds(&params, &answered);
            assert!(
                worst <= FAILURE_BOUND,
                "{params}: measured noise puts a query's failure at 2^{worst:.1} \
                 (pooled key sets 2^{pooled:.1}), above 2^{FAILURE_BOUND}"
            );
        }
    }

    /// The measurement sees what the whole-item check saw: a withdrawn preset's noise puts
    /// its failure far above the bound, from a few key sets.
    #[test]
    fn measured_noise_refuses_a_withdrawn_preset() {
        let params = SchemeParams::preset(presets::WITHDRAWN[0]);
        let answered = answer_random_items(params, 6);
        let (pooled, worst) = failure_bounds(&params, &answered);
        assert!(
            pooled > FAILURE_BOUND + 20.0,
            "{params}: pooled 2^{pooled:.1}, worst 2^{worst:.1}"
        );
    }

    #[test]
    fn negacyclic_products_wrap_with_a_minus_sign() {
        let d = 8;
        let q = 97;
        let x = |i: usize| (0..d).map(|k| i64::from(k == i)).collect::<Vec<_>>();
        // X^5 * X^3 = X^8 = -1; 3 X^2 * X^3 = 3 X^5.
        assert_eq!(negacyclic(&x(5), &x(3), q)[0], q - 1);
        let mut three = x(2);
        three[2] = 3;
        assert_eq!(negacyclic(&three, &x(3), q)[5], 3);
        assert_eq!(negacyclic(&three, &x(3), q).iter().sum::<i64>(), 3);
    }

    /// Every vetted preset, at its real shape (minutes and gigabytes: run by hand,
    /// `--ignored --nocapture`), with its measured noise: `PRESET_FILTER` keeps presets whose
    /// name contains it, `DECODE_QUERIES` sets the queries per preset (16 by default),
    /// `DECODE_MAX_MIB` the largest capacity (256 MiB by default), `WITHDRAWN=1` runs the
    /// withdrawn ones and `CANDIDATES` others, as `instances,nu_1,nu_2,t_gsw,t_conv,
    /// t_exp_left,t_exp_right` (p = 256, 8 KiB per instance) separated by `;`;
    /// `NOISE_BY_INDEX=1` also prints each query's index and packed noise, quietest first.
    #[test]
    #[ignore = "large shapes: run by hand when presets change"]
    fn every_preset_returns_whole_items() {
        let mut failed = Vec::new();
        let mut all: Vec<SchemeParams> = if let Ok(list) = std::env::var("CANDIDATES") {
            list.split(';')
                .filter_map(|c| {
                    let v: Vec<u32> = c.split(',').map(|x| x.trim().parse().unwrap()).collect();
                    let fields = presets::spiral_p256(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
                    SchemeParams::try_from(fields)
                        .inspect_err(|e| eprintln!("{c}: {e}"))
                        .ok()
                })
                .collect()
        } else if std::env::var("WITHDRAWN").is_ok() {
            presets::WITHDRAWN.map(SchemeParams::preset).to_vec()
        } else {
            SchemeParams::vetted_presets()
                .chain(SchemeParams::store_presets())
                .map(|p| p.params)
                .collect()
        };
        all.sort_by_key(|p| (p.num_items() * p.item_bytes as usize, p.to_string()));
        all.dedup();
        // Capacities up to DECODE_MAX_MIB (256 by default: the tuned shapes; the database's
        // words take 8 times that in memory).
        let max_mib: usize =
            std::env::var("DECODE_MAX_MIB").map_or(256, |m| m.parse().unwrap_or(256));
        all.retain(|p| p.num_items() * p.item_bytes as usize <= max_mib << 20);
        if let Ok(only) = std::env::var("PRESET_FILTER") {
            all.retain(|p| p.to_string().contains(&only));
        }
        for params in all {
            let queries = std::env::var("DECODE_QUERIES").map_or(16, |q| q.parse().unwrap_or(16));
            let answered = answer_random_items(params, queries);
            let errors = whole_item_errors(&answered);
            let (pooled, worst) = failure_bounds(&params, &answered);
            let worst_noise = |f: fn(&AnswerNoise) -> f64| {
                answered.iter().map(|a| f(&a.noise)).fold(0.0, f64::max)
            };
            let sigma = worst_noise(|n| n.packed.variance().sqrt());
            let max_abs = worst_noise(|n| n.decoded.max_abs);
            let decoded = worst_noise(|n| n.decoded.variance().sqrt());
            let predicted = worst_noise(|n| n.predicted_variance().sqrt());
            let keys = public_key_bytes(spiral_params(&params).unwrap());
            let mut sigmas: Vec<f64> = answered
                .iter()
                .map(|a| a.noise.packed.variance().sqrt())
                .collect();
            sigmas.sort_by(f64::total_cmp);
            let mut times: Vec<f64> = answered.iter().map(|a| a.answer_s).collect();
            times.sort_by(f64::total_cmp);
            eprintln!(
                "{params}: answer {:.1} ms (median of {queries}, the test's thread pool)",
                times[times.len() / 2] * 1e3
            );
            if std::env::var("NOISE_BY_INDEX").is_ok() {
                let mut by: Vec<(f64, usize)> = answered
                    .iter()
                    .map(|a| (a.noise.packed.variance().sqrt(), a.index))
                    .collect();
                by.sort_by(|a, b| a.0.total_cmp(&b.0));
                for (sigma, index) in by {
                    eprintln!("index {index:#018b} sigma {sigma:.5}");
                }
            }
            let quantile = |q: f64| sigmas[((sigmas.len() - 1) as f64 * q) as usize];
            eprintln!(
                "{params}: packed noise sigma by key set: min {:.5}, quartiles {:.5} {:.5} \
                 {:.5}, max {:.5}",
                quantile(0.0),
                quantile(0.25),
                quantile(0.5),
                quantile(0.75),
                quantile(1.0)
            );
            eprintln!(
                "{params}: keys {keys} B, {} of {queries} items wrong {errors:?}, packed noise \
                 sigma {sigma:.5}, decoded sigma {decoded:.5} (predicted {predicted:.5}) max \
                 {max_abs:.3} (worst key sets), log2 failure {worst:.1} (worst key set) \
                 {pooled:.1} (pooled)",
                errors.len()
            );
            if !errors.is_empty() || worst > FAILURE_BOUND {
                failed.push(params.to_string());
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
