//! The adapter: the only module that names `spiral_rs`.
//!
//! ```text
//!  client                                   server
//!  keygen(seed) ── public keys ───────────▶ ServerKeys::parse (length + range checked)
//!  query(seed, item) ── query bytes ──────▶ answer(db, keys, query)   (checked first)
//!  decode(seed, bytes) ◀── response bytes ─┘
//! ```
//!
//! spiral-rs asserts (panics) on malformed lengths, trusts word ranges, selects nothing for an
//! out-of-range index and borrows `&'a Params` everywhere. This module checks every length and
//! word before calling it, and interns one leaked `Params` per parameter set so that callers never
//! see a lifetime (a handful of parameter sets per process, so the leak is bounded).
//! Serialisation in spiral-rs is native-endian; the wire bytes are defined as little-endian and
//! big-endian targets are refused at compile time.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Instant,
};

use rand::RngCore;
use rayon::prelude::*;
use spiral_rs::{
    aligned_memory::AlignedMemory64,
    arith::{barrett_coeff_u64, log2_ceil_usize, recenter_mod},
    client::{Client, PublicParameters, Query, SEED_LENGTH},
    gadget::get_bits_per,
    noise_estimate::{Paramset, get_noise_from_paramset, get_p_err},
    params::{Params, Q2_VALUES},
    poly::{
        PolyMatrix, PolyMatrixNTT, PolyMatrixRaw, automorph, from_ntt, multiply, scalar_multiply,
        to_ntt, to_ntt_no_reduce,
    },
    server::{encode, pack, process_query, regev_to_gsw},
};

use crate::{
    error::{CoreError, Result},
    params::{POLY_LEN, SchemeParams},
};

#[cfg(not(target_endian = "little"))]
compile_error!("the PIR wire format is little-endian and spiral-rs serialises natively");

/// The ring's fixed CRT moduli; q = their product.
const MODULI: [u64; 2] = [268369921, 249561089];
/// Gaussian error width.
const NOISE_WIDTH: f64 = 6.4;
/// Packed NTT words hold the second CRT residue in the high half.
const PACKED_OFFSET_2: u32 = 32;

fn spiral_params(p: &SchemeParams) -> Result<&'static Params> {
    static INTERNED: OnceLock<Mutex<HashMap<SchemeParams, &'static Params>>> = OnceLock::new();
    p.validate()?;
    let mut map = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(*map.entry(*p).or_insert_with(|| {
        Box::leak(Box::new(Params::init(
            POLY_LEN,
            &MODULI,
            NOISE_WIDTH,
            p.n as usize,
            p.p,
            p.q2_bits as u64,
            p.t_conv as usize,
            p.t_exp_left as usize,
            p.t_exp_right as usize,
            p.t_gsw as usize,
            true,
            p.nu_1 as usize,
            p.nu_2 as usize,
            p.instances as usize,
            p.item_bytes as usize,
            p.version as usize,
        )))
    }))
}

/// Byte sizes of the messages for a parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MessageSizes {
    /// The client's public (evaluation) keys.
    pub public_keys: usize,
    /// One query.
    pub query: usize,
    /// One response.
    pub response: usize,
}

impl SchemeParams {
    /// log2 of the per-query correctness failure probability, by the Spiral authors' noise
    /// estimator (spiral-rs's `NoiseEstimator`, the model their parameter search used).
    ///
    /// Computed from the parameters alone: unlike answering, it interns nothing, so a search may
    /// call it for thousands of candidates.
    pub fn estimated_log2_failure(&self) -> Result<f64> {
        self.validate()?;
        let set = Paramset {
            n: self.n as usize,
            d: POLY_LEN,
            p: self.p,
            q: MODULI[0] * MODULI[1],
            sigma: NOISE_WIDTH,
            t_conv: self.t_conv as usize,
            t_exp_left: self.t_exp_left as usize,
            t_exp_right: self.t_exp_right as usize,
            t_gsw: self.t_gsw as usize,
            db_dim_1: self.nu_1 as usize,
            db_dim_2: self.nu_2 as usize,
            expand_queries: true,
        };
        let q2 = Q2_VALUES[self.q2_bits as usize];
        Ok(get_p_err(&set, get_noise_from_paramset(&set), q2))
    }

    /// Sizes of the public keys, a query and a response.
    pub fn message_sizes(&self) -> Result<MessageSizes> {
        let sp = spiral_params(self)?;
        Ok(MessageSizes {
            public_keys: sp.setup_bytes(),
            query: sp.query_bytes(),
            response: response_bytes(sp),
        })
    }
}

fn log2_ceil(x: u64) -> usize {
    (u64::BITS - (x - 1).leading_zeros()) as usize
}

fn response_bytes(sp: &Params) -> usize {
    let q1_bits = log2_ceil(4 * sp.pt_modulus);
    let bits = sp.instances
        * (sp.q2_bits as usize * sp.n * sp.poly_len + q1_bits * sp.n * sp.n * sp.poly_len);
    bits.div_ceil(64) * 8
}

/// Checks a seed-prefixed buffer of u64 words: exact length, every word reduced mod q.
fn check_words(what: &'static str, bytes: &[u8], expected: usize, modulus: u64) -> Result<()> {
    if bytes.len() != expected {
        return Err(CoreError::MalformedPirBytes {
            what,
            reason: format!("{} bytes, expected {expected}", bytes.len()),
        });
    }
    let body = &bytes[SEED_LENGTH..];
    if !body.len().is_multiple_of(8) {
        return Err(CoreError::Internal(format!("{what} body not whole words")));
    }
    if let Some(pos) = body
        .chunks_exact(8)
        .position(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()) >= modulus)
    {
        return Err(CoreError::MalformedPirBytes {
            what,
            reason: format!("word {pos} is not reduced modulo q"),
        });
    }
    Ok(())
}

/// A client's secret: the seed its secret keys are derived from. Never leaves the client.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(pub(crate) [u8; 32]);

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

impl ClientSecret {
    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store (owner-only file!).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

fn client_for(sp: &'static Params, secret: &ClientSecret) -> Client<'static> {
    let mut client = Client::init(sp);
    client.generate_secret_keys_from_seed(secret.0);
    client
}

/// Generates a fresh secret and its serialised public keys.
pub(crate) fn keygen(params: &SchemeParams) -> Result<(ClientSecret, Vec<u8>)> {
    let sp = spiral_params(params)?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut client = Client::init(sp);
    // Only the secret comes from the seed; spiral-rs draws the public randomness itself.
    let public = client.generate_keys_from_seed(seed).serialize();
    if public.len() != sp.setup_bytes() {
        return Err(CoreError::Internal(
            "public key size differs from setup_bytes".into(),
        ));
    }
    Ok((ClientSecret(seed), public))
}

/// Encrypts a query for item `index`.
pub(crate) fn query(params: &SchemeParams, secret: &ClientSecret, index: usize) -> Result<Vec<u8>> {
    let sp = spiral_params(params)?;
    if index >= params.num_items() {
        return Err(CoreError::Internal(format!(
            "item {index} out of range ({} items)",
            params.num_items()
        )));
    }
    let bytes = client_for(sp, secret).generate_query(index).serialize();
    if bytes.len() != sp.query_bytes() {
        return Err(CoreError::Internal(
            "query size differs from query_bytes".into(),
        ));
    }
    Ok(bytes)
}

/// Decrypts a response into the item's `item_bytes` plaintext bytes.
pub(crate) fn decode(
    params: &SchemeParams,
    secret: &ClientSecret,
    response: &[u8],
) -> Result<Vec<u8>> {
    let sp = spiral_params(params)?;
    let expected = response_bytes(sp);
    if response.len() != expected {
        return Err(CoreError::MalformedPirBytes {
            what: "response",
            reason: format!("{} bytes, expected {expected}", response.len()),
        });
    }
    let raw = client_for(sp, secret).decode_response(response);
    // Output is one run of `bytes_per_chunk` bytes per plaintext chunk, then padding.
    let needed = sp.bytes_per_chunk() * sp.instances * sp.n * sp.n;
    if raw.len() < needed {
        return Err(CoreError::Internal(
            "decoded response shorter than an item".into(),
        ));
    }
    let mut item = raw;
    item.truncate(params.item_bytes as usize);
    Ok(item)
}

/// A client's public keys, deserialised and ready for answering.
pub struct ServerKeys {
    params: SchemeParams,
    inner: PublicParameters<'static>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl ServerKeys {
    /// Checks and deserialises public key bytes.
    pub fn parse(params: &SchemeParams, bytes: &[u8]) -> Result<Self> {
        let sp = spiral_params(params)?;
        check_words("public keys", bytes, sp.setup_bytes(), sp.modulus)?;
        Ok(Self {
            params: *params,
            inner: PublicParameters::deserialize(sp, bytes),
        })
    }

    /// The parameters these keys were made for.
    pub fn params(&self) -> &SchemeParams {
        &self.params
    }
}

/// Answers one query over a preprocessed database.
pub(crate) fn answer(
    params: &SchemeParams,
    db: &[u64],
    keys: &ServerKeys,
    query: &[u8],
) -> Result<Vec<u8>> {
    let mut answers = answer_batch(params, db, &[(keys, query)])?;
    answers
        .pop()
        .ok_or_else(|| CoreError::Internal("no answer".into()))
}

/// Wall-clock seconds one call of [`answer_batch_timed`] spent in each phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct AnswerPhases {
    /// Query expansion (coefficient expansion and conversion to GSW), all queries.
    pub expand_s: f64,
    /// The first-dimension pass over the whole database.
    pub first_dim_s: f64,
    /// Inverse NTT of the first dimension's products and folding over the further dimensions.
    pub fold_s: f64,
    /// Packing and encoding the responses.
    pub pack_s: f64,
}

/// Answers several queries (each with its client's keys) in one pass over the database.
///
/// Every core is used: query expansion runs per query in parallel, the first-dimension pass is
/// split over (instance, trial, coefficient range) pieces of the database, and the slices'
/// ciphertexts are folded and packed in parallel. Each database row is read once for all the
/// queries, so memory traffic is shared. The answers are byte-identical to spiral-rs's
/// `process_query`.
pub(crate) fn answer_batch(
    params: &SchemeParams,
    db: &[u64],
    batch: &[(&ServerKeys, &[u8])],
) -> Result<Vec<Vec<u8>>> {
    answer_batch_timed(params, db, batch).map(|(answers, _)| answers)
}

/// [`answer_batch`], also saying where the time went.
pub(crate) fn answer_batch_timed(
    params: &SchemeParams,
    db: &[u64],
    batch: &[(&ServerKeys, &[u8])],
) -> Result<(Vec<Vec<u8>>, AnswerPhases)> {
    let sp = spiral_params(params)?;
    if db.len() != params.db_words() {
        return Err(CoreError::Internal(
            "database size does not match parameters".into(),
        ));
    }
    for (keys, query) in batch {
        if keys.params != *params {
            return Err(CoreError::ParamsMismatch(
                "keys were generated for other scheme parameters".into(),
            ));
        }
        check_words("query", query, sp.query_bytes(), sp.modulus)?;
    }
    let mut phases = AnswerPhases::default();
    if batch.is_empty() {
        return Ok((Vec::new(), phases));
    }
    let mut clock = Instant::now();
    // Queries expand side by side, and each expansion runs its key switches in parallel.
    let expanded: Vec<(AlignedMemory64, Vec<PolyMatrixNTT<'static>>)> = batch
        .par_iter()
        .map(|(keys, query)| {
            let q = Query::deserialize(sp, query);
            expand(sp, &keys.inner, &q)
        })
        .collect::<Result<_>>()?;
    let v_firstdim: Vec<&[u64]> = expanded.iter().map(|(v, _)| v.as_slice()).collect();
    phases.expand_s = lap(&mut clock);

    let trials = sp.n * sp.n;
    let slices = sp.instances * trials;
    // Slices go through the first dimension and the folding a few at a time (as many as there
    // are threads), so the first dimension's sums of only those slices are in memory: about
    // 4 MiB per slice and query instead of all of them at once.
    let group = rayon::current_num_threads().clamp(1, slices);
    // cts[slice][query]: the slice's ciphertext, folded over the further dimensions.
    let mut cts: Vec<Vec<PolyMatrixRaw<'static>>> = Vec::with_capacity(slices);
    for start in (0..slices).step_by(group) {
        let range = start..(start + group).min(slices);
        let sums = first_dimension(sp, db, &v_firstdim, range.clone());
        phases.first_dim_s += lap(&mut clock);
        cts.par_extend(range.into_par_iter().map(|slice| {
            (0..batch.len())
                .into_par_iter()
                .map(|qi| {
                    let mut raw = sums.ciphertexts(slice - start, qi);
                    fold(sp, &mut raw, &expanded[qi].1);
                    raw.swap_remove(0)
                })
                .collect()
        }));
        phases.fold_s += lap(&mut clock);
    }

    let answers = (0..batch.len())
        .into_par_iter()
        .map(|qi| {
            let packed: Vec<PolyMatrixRaw> = (0..sp.instances)
                .map(|instance| {
                    let v_ct: Vec<PolyMatrixRaw> = (0..trials)
                        .map(|trial| cts[instance * trials + trial][qi].clone())
                        .collect();
                    pack(sp, &v_ct, &batch[qi].0.inner.v_packing).raw()
                })
                .collect();
            encode(sp, &packed)
        })
        .collect();
    phases.pack_s = lap(&mut clock);
    Ok((answers, phases))
}

/// Seconds since `clock`, which restarts.
fn lap(clock: &mut Instant) -> f64 {
    let s = clock.elapsed().as_secs_f64();
    *clock = Instant::now();
    s
}

/// Scratch matrices for one key switch of the coefficient expansion, reused across switches.
struct SwitchScratch {
    ct: PolyMatrixRaw<'static>,
    ct_auto: PolyMatrixRaw<'static>,
    ct_auto_1: PolyMatrixRaw<'static>,
    ct_auto_1_ntt: PolyMatrixNTT<'static>,
    w_times_ginv_ct: PolyMatrixNTT<'static>,
    ginv_left: PolyMatrixRaw<'static>,
    ginv_left_ntt: PolyMatrixNTT<'static>,
    ginv_right: PolyMatrixRaw<'static>,
    ginv_right_ntt: PolyMatrixNTT<'static>,
}

impl SwitchScratch {
    fn new(sp: &'static Params) -> Self {
        Self {
            ct: PolyMatrixRaw::zero(sp, 2, 1),
            ct_auto: PolyMatrixRaw::zero(sp, 2, 1),
            ct_auto_1: PolyMatrixRaw::zero(sp, 1, 1),
            ct_auto_1_ntt: PolyMatrixNTT::zero(sp, 1, 1),
            w_times_ginv_ct: PolyMatrixNTT::zero(sp, 2, 1),
            ginv_left: PolyMatrixRaw::zero(sp, sp.t_exp_left, 1),
            ginv_left_ntt: PolyMatrixNTT::zero(sp, sp.t_exp_left, 1),
            ginv_right: PolyMatrixRaw::zero(sp, sp.t_exp_right, 1),
            ginv_right_ntt: PolyMatrixNTT::zero(sp, sp.t_exp_right, 1),
        }
    }
}

/// spiral-rs's `gadget_invert_rdim`, digit plane by digit plane (the same digits, written in
/// order instead of one coefficient at a time).
fn gadget_invert_rows(sp: &Params, out: &mut PolyMatrixRaw, inp: &PolyMatrixRaw, rdim: usize) {
    let digits = out.rows / rdim;
    let bits_per = get_bits_per(sp, digits);
    let mask = (1u64 << bits_per) - 1;
    for col in 0..inp.cols {
        for j in 0..rdim {
            let src = inp.get_poly(j, col);
            for k in 0..digits {
                let shift = k * bits_per;
                let dst = out.get_poly_mut(j + k * rdim, col);
                if shift >= 64 {
                    dst.fill(0);
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = (v >> shift) & mask;
                    }
                }
            }
        }
    }
}

/// spiral-rs's `coefficient_expansion` with the key switch's scratch allocated once per rayon
/// job instead of once per ciphertext (about 1 MB zeroed each time), and plane-wise gadget
/// decomposition. Same operations in the same order, so the same words.
#[allow(clippy::too_many_arguments)]
fn coefficient_expansion(
    sp: &'static Params,
    v: &mut [PolyMatrixNTT<'static>],
    g: usize,
    stop_round: usize,
    v_w_left: &[PolyMatrixNTT],
    v_w_right: &[PolyMatrixNTT],
    v_neg1: &[PolyMatrixNTT],
    max_bits_to_gen_right: usize,
) {
    let poly_len = sp.poly_len;
    for r in 0..g {
        let num_in = 1usize << r;
        let t = poly_len / (1 << r) + 1;
        let neg1 = &v_neg1[r];
        let expand = |scratch: &mut SwitchScratch, (i, v_i): (usize, &mut PolyMatrixNTT)| {
            let odd = i % 2 == 1;
            if stop_round > 0
                && odd
                && (r > stop_round || (r == stop_round && i / 2 >= max_bits_to_gen_right))
            {
                return;
            }
            let s = scratch;
            let (w, gi_ct, gi_ct_ntt) = if r != 0 && !odd {
                (&v_w_left[r], &mut s.ginv_left, &mut s.ginv_left_ntt)
            } else {
                (&v_w_right[r], &mut s.ginv_right, &mut s.ginv_right_ntt)
            };
            from_ntt(&mut s.ct, v_i);
            automorph(&mut s.ct_auto, &s.ct, t);
            gadget_invert_rows(sp, gi_ct, &s.ct_auto, 1);
            to_ntt_no_reduce(gi_ct_ntt, gi_ct);
            s.ct_auto_1
                .data
                .as_mut_slice()
                .copy_from_slice(s.ct_auto.get_poly(1, 0));
            to_ntt(&mut s.ct_auto_1_ntt, &s.ct_auto_1);
            multiply(&mut s.w_times_ginv_ct, w, gi_ct_ntt);
            let auto_1 = s.ct_auto_1_ntt.data.as_slice();
            let wg = s.w_times_ginv_ct.data.as_slice();
            let data = v_i.data.as_mut_slice();
            let mut idx = 0;
            for j in 0..2u64 {
                for n in 0..sp.crt_count {
                    for z in 0..poly_len {
                        let sum = data[idx] + wg[idx] + j * auto_1[n * poly_len + z];
                        data[idx] = barrett_coeff_u64(sp, sum, n);
                        idx += 1;
                    }
                }
            }
        };
        let (src, dest) = v.split_at_mut(num_in);
        src.par_iter_mut()
            .zip(dest.par_iter_mut())
            .for_each(|(s, d)| scalar_multiply(d, neg1, s));
        // Both halves in one parallel loop (spiral-rs runs one after the other): in the first
        // rounds a half holds one or two ciphertexts, and switches with the long right gadget
        // cost several times the others, so cores would wait. `i` is the index within a half.
        v[..2 * num_in].par_iter_mut().enumerate().for_each_init(
            || SwitchScratch::new(sp),
            |scratch, (k, v_i)| expand(scratch, (k % num_in, v_i)),
        );
    }
}

/// spiral-rs's `reorient_reg_ciphertexts` for the first-dimension ciphertexts `v[2 * j]`
/// (`j < dim0`), in parallel over coefficients and without copying them first: out[z][j][row]
/// packs the residues modulo both CRT moduli into one word.
fn reorient(sp: &Params, out: &mut [u64], v: &[PolyMatrixNTT], dim0: usize) {
    let poly_len = sp.poly_len;
    out.par_chunks_mut(2 * dim0)
        .enumerate()
        .for_each(|(z, words)| {
            for (j, pair) in words.chunks_exact_mut(2).enumerate() {
                let data = v[2 * j].data.as_slice();
                for (row, w) in pair.iter_mut().enumerate() {
                    let base = row * sp.crt_count * poly_len;
                    let lo = data[base + z] % sp.moduli[0];
                    let hi = data[base + poly_len + z] % sp.moduli[1];
                    *w = lo | (hi << PACKED_OFFSET_2);
                }
            }
        });
}

/// spiral-rs's `expand_query` on [`coefficient_expansion`] above: the query's first-dimension
/// vector (reoriented for the database pass) and its GSW ciphertexts for the folding.
fn expand(
    sp: &'static Params,
    keys: &PublicParameters<'static>,
    query: &Query<'static>,
) -> Result<(AlignedMemory64, Vec<PolyMatrixNTT<'static>>)> {
    let missing = || CoreError::Internal("public keys lack expansion keys".into());
    let dim0 = 1usize << sp.db_dim_1;
    let further_dims = sp.db_dim_2;
    let right_expanded = sp.t_gsw * further_dims;
    let g = log2_ceil_usize(right_expanded + dim0);
    let stop_round = log2_ceil_usize(right_expanded);
    let ct = query.ct.as_ref().ok_or_else(missing)?;
    let mut v: Vec<PolyMatrixNTT<'static>> = (0..1usize << g)
        .into_par_iter()
        .map(|_| PolyMatrixNTT::zero(sp, 2, 1))
        .collect();
    v[0].copy_into(&ct.ntt(), 0, 0);
    let v_conversion = &keys.v_conversion.as_ref().ok_or_else(missing)?[0];
    let v_w_left = keys.v_expansion_left.as_ref().ok_or_else(missing)?;
    let v_w_right = keys.v_expansion_right.as_ref().unwrap_or(v_w_left);
    let v_neg1 = sp.get_v_neg1();
    // Validation requires nu_2 >= 1, so the folding bits are always expanded.
    coefficient_expansion(
        sp,
        &mut v,
        g,
        stop_round,
        v_w_left,
        v_w_right,
        &v_neg1,
        right_expanded,
    );
    let v_gsw_inp: Vec<PolyMatrixNTT> = (0..right_expanded).map(|i| v[2 * i + 1].clone()).collect();
    let mut v_reg_reoriented = AlignedMemory64::new(dim0 * 2 * sp.poly_len);
    reorient(sp, v_reg_reoriented.as_mut_slice(), &v, dim0);
    let mut v_folding: Vec<PolyMatrixNTT<'static>> = (0..further_dims)
        .map(|_| PolyMatrixNTT::zero(sp, 2, 2 * sp.t_gsw))
        .collect();
    regev_to_gsw(&mut v_folding, &v_gsw_inp, v_conversion, sp, 1, 0);
    Ok((v_reg_reoriented, v_folding))
}

/// Folds `v_cts` (2^nu_2 ciphertexts) over the further dimensions with the query's GSW
/// ciphertexts: spiral-rs's `fold_ciphertexts` with one external product per step instead of two.
///
/// spiral-rs selects with `(G - C) G^-1(c0) + C G^-1(c1)`. Since `G G^-1(c0) = c0` exactly, that
/// is `c0 + C (G^-1(c1) - G^-1(c0))` modulo q: the same value (so byte-identical answers, which
/// `tests/batch.rs` checks), with half the gadget transforms and products.
fn fold(sp: &'static Params, v_cts: &mut [PolyMatrixRaw<'static>], v_folding: &[PolyMatrixNTT]) {
    let further_dims = v_cts.len().trailing_zeros() as usize;
    if further_dims == 0 {
        return;
    }
    let q = sp.modulus;
    let rows = v_folding[0].cols;
    let mut ginv_0 = PolyMatrixRaw::zero(sp, rows, 1);
    let mut ginv_diff = PolyMatrixRaw::zero(sp, rows, 1);
    let mut diff_ntt = PolyMatrixNTT::zero(sp, rows, 1);
    let mut prod = PolyMatrixNTT::zero(sp, 2, 1);
    let mut prod_raw = PolyMatrixRaw::zero(sp, 2, 1);
    let mut num_per = v_cts.len();
    for cur_dim in 0..further_dims {
        num_per /= 2;
        let gsw = &v_folding[further_dims - 1 - cur_dim];
        for i in 0..num_per {
            gadget_invert_rows(sp, &mut ginv_0, &v_cts[i], 2);
            gadget_invert_rows(sp, &mut ginv_diff, &v_cts[num_per + i], 2);
            // Digits are below the gadget base, so each difference is one wrap at most.
            for (d, &g0) in ginv_diff
                .data
                .as_mut_slice()
                .iter_mut()
                .zip(ginv_0.data.as_slice())
            {
                *d = if *d >= g0 { *d - g0 } else { *d + q - g0 };
            }
            to_ntt(&mut diff_ntt, &ginv_diff);
            multiply(&mut prod, gsw, &diff_ntt);
            from_ntt(&mut prod_raw, &prod);
            for (c, &p) in v_cts[i]
                .data
                .as_mut_slice()
                .iter_mut()
                .zip(prod_raw.data.as_slice())
            {
                let s = *c + p;
                *c = if s >= q { s - q } else { s };
            }
        }
    }
}

/// Coefficients per piece of the first-dimension pass: a slice splits into several pieces so
/// every core has work whatever the number of slices, and each piece streams a long run of rows.
const Z_PIECE: usize = 256;

/// The first dimension's results for some slices and every query of a batch.
struct FirstDim {
    sp: &'static Params,
    queries: usize,
    pieces: usize,
    z_piece: usize,
    /// `[slice * pieces + piece][(z - piece start, i, query)]`: the four reduced dot products.
    sums: Vec<Vec<[u64; 4]>>,
}

impl FirstDim {
    /// The `num_per` ciphertexts of one query in one of the slices, out of the NTT domain.
    fn ciphertexts(&self, slice: usize, query: usize) -> Vec<PolyMatrixRaw<'static>> {
        let poly_len = self.sp.poly_len;
        let num_per = 1usize << self.sp.db_dim_2;
        let mut ct = PolyMatrixNTT::zero(self.sp, 2, 1);
        (0..num_per)
            .map(|i| {
                let d = ct.data.as_mut_slice();
                for piece in 0..self.pieces {
                    let s = &self.sums[slice * self.pieces + piece];
                    for zk in 0..self.z_piece {
                        let z = piece * self.z_piece + zk;
                        let [n0_0, n0_1, n1_0, n1_1] = s[(zk * num_per + i) * self.queries + query];
                        d[z] = n0_0;
                        d[2 * poly_len + z] = n0_1;
                        d[poly_len + z] = n1_0;
                        d[3 * poly_len + z] = n1_1;
                    }
                }
                let mut raw = PolyMatrixRaw::zero(self.sp, 2, 1);
                from_ntt(&mut raw, &ct);
                raw
            })
            .collect()
    }
}

/// The first dimension for several queries over the database slices `slices`: spiral-rs's
/// `multiply_reg_by_database`, with each database row read once for every query.
fn first_dimension(
    sp: &'static Params,
    db: &[u64],
    v_firstdim: &[&[u64]],
    slices: std::ops::Range<usize>,
) -> FirstDim {
    let poly_len = sp.poly_len;
    let dim0 = 1usize << sp.db_dim_1;
    let num_per = 1usize << sp.db_dim_2;
    let slice_words = dim0 * num_per * poly_len;
    let nq = v_firstdim.len();
    let z_piece = Z_PIECE.min(poly_len);
    let pieces = poly_len / z_piece;
    let sums = (0..slices.len() * pieces)
        .into_par_iter()
        .map(|unit| {
            let (slice, piece) = (slices.start + unit / pieces, unit % pieces);
            let cur_db = &db[slice * slice_words..(slice + 1) * slice_words];
            let mut out = vec![[0u64; 4]; z_piece * num_per * nq];
            let mut a: Vec<&[u64]> = Vec::with_capacity(nq);
            for zk in 0..z_piece {
                let z = piece * z_piece + zk;
                a.clear();
                a.extend(
                    v_firstdim
                        .iter()
                        .map(|v| &v[z * 2 * dim0..(z + 1) * 2 * dim0]),
                );
                for i in 0..num_per {
                    let b_base = (z * num_per + i) * dim0;
                    let o = (zk * num_per + i) * nq;
                    row_dots(sp, &cur_db[b_base..b_base + dim0], &a, &mut out[o..o + nq]);
                }
            }
            out
        })
        .collect();
    FirstDim {
        sp,
        queries: nq,
        pieces,
        z_piece,
        sums,
    }
}

/// One database row (`dim0` packed words: first CRT residue low, second high) against each
/// query's reoriented vector for this coefficient (`2 * dim0` packed words, two per row entry),
/// giving per query the four sums `[a0 * b mod q0, a1 * b mod q0, a0 * b mod q1, a1 * b mod q1]`.
///
/// Residues are below 2^28, so each product is below 2^56 and a 64-bit lane adds 256 of them
/// without overflow; lanes are reduced (Barrett) every `CHUNK` row entries.
#[cfg(target_feature = "avx2")]
fn row_dots(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi64, _mm256_castsi128_si256,
        _mm256_loadu_si256, _mm256_mul_epu32, _mm256_permute4x64_epi64, _mm256_setzero_si256,
        _mm256_srli_epi64, _mm256_storeu_si256,
    };
    /// Row entries per flush: each of the 4 lanes then holds 256 products.
    const CHUNK: usize = 512;
    let reduce = |x: u64, k: usize| barrett_coeff_u64(sp, x, k);
    let add = |x: u64, y: u64, k: usize| {
        let s = x + y;
        if s >= sp.moduli[k] {
            s - sp.moduli[k]
        } else {
            s
        }
    };
    for (v, o) in a.iter().zip(out.iter_mut()) {
        debug_assert_eq!(v.len(), 2 * row.len());
        let mut acc = [0u64; 4];
        for (rc, vc) in row.chunks(CHUNK).zip(v.chunks(2 * CHUNK)) {
            let (mut lo, mut hi) = ([0u64; 4], [0u64; 4]);
            // SAFETY: every load reads 16 (row) or 32 (query) bytes inside `rc` / `vc`: j + 1 <
            // rc.len() (the row length, a power of two of at least 4, so chunks are even) and
            // 2 * j + 3 < vc.len() = 2 * rc.len(). Unaligned loads and stores; AVX2 is enabled
            // at compile time (this function only exists with target_feature = "avx2").
            unsafe {
                let mut acc_lo = _mm256_setzero_si256();
                let mut acc_hi = _mm256_setzero_si256();
                for j in (0..rc.len()).step_by(2) {
                    let b = _mm_loadu_si128(rc.as_ptr().add(j).cast::<__m128i>());
                    // [b_j, b_j, b_j+1, b_j+1] against [a0_j, a1_j, a0_j+1, a1_j+1].
                    let b = _mm256_permute4x64_epi64::<0b01_01_00_00>(_mm256_castsi128_si256(b));
                    let av = _mm256_loadu_si256(vc.as_ptr().add(2 * j).cast::<__m256i>());
                    acc_lo = _mm256_add_epi64(acc_lo, _mm256_mul_epu32(av, b));
                    acc_hi = _mm256_add_epi64(
                        acc_hi,
                        _mm256_mul_epu32(_mm256_srli_epi64::<32>(av), _mm256_srli_epi64::<32>(b)),
                    );
                }
                _mm256_storeu_si256(lo.as_mut_ptr().cast::<__m256i>(), acc_lo);
                _mm256_storeu_si256(hi.as_mut_ptr().cast::<__m256i>(), acc_hi);
            }
            let sums = [(lo, 0, 0), (lo, 1, 0), (hi, 0, 1), (hi, 1, 1)];
            for (slot, (lanes, first, k)) in acc.iter_mut().zip(sums) {
                let s = add(reduce(lanes[first], k), reduce(lanes[first + 2], k), k);
                *slot = add(*slot, s, k);
            }
        }
        *o = acc;
    }
}

/// Portable form of the AVX2 `row_dots` above (spiral-rs's scalar kernel).
#[cfg(not(target_feature = "avx2"))]
fn row_dots(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
    let (m0, m1) = (sp.moduli[0] as u128, sp.moduli[1] as u128);
    for (v, o) in a.iter().zip(out.iter_mut()) {
        let (mut n0_0, mut n0_1, mut n1_0, mut n1_1) = (0u128, 0u128, 0u128, 0u128);
        for (&b, pair) in row.iter().zip(v.chunks_exact(2)) {
            let (b_lo, b_hi) = (b & 0xffff_ffff, b >> 32);
            let (a0, a1) = (pair[0], pair[1]);
            n0_0 += ((a0 & 0xffff_ffff) * b_lo) as u128;
            n0_1 += ((a1 & 0xffff_ffff) * b_lo) as u128;
            n1_0 += ((a0 >> 32) * b_hi) as u128;
            n1_1 += ((a1 >> 32) * b_hi) as u128;
        }
        *o = [
            (n0_0 % m0) as u64,
            (n0_1 % m0) as u64,
            (n1_0 % m1) as u64,
            (n1_1 % m1) as u64,
        ];
    }
}

/// spiral-rs's own single-query answer, for the reference benchmark and equality tests.
pub(crate) fn danger_reference_answer(
    params: &SchemeParams,
    db: &[u64],
    keys: &ServerKeys,
    query: &[u8],
) -> Result<Vec<u8>> {
    let sp = spiral_params(params)?;
    check_words("query", query, sp.query_bytes(), sp.modulus)?;
    if db.len() != params.db_words() {
        return Err(CoreError::Internal("database size".into()));
    }
    let q = Query::deserialize(sp, query);
    Ok(process_query(sp, &keys.inner, &q, db))
}

/// Words of one item in NTT form, in (instance, trial, coefficient) order.
fn item_ntt(sp: &'static Params, params: &SchemeParams, item: &[u8]) -> Vec<u64> {
    let chunks = sp.instances * sp.n * sp.n;
    let bpc = sp.bytes_per_chunk();
    let log2_p = params.log2_p() as usize;
    let mask = (1u64 << log2_p) - 1;
    let coeffs = bpc * 8 / log2_p;
    let mut out = Vec::with_capacity(chunks * POLY_LEN);
    let mut poly = PolyMatrixRaw::zero(sp, 1, 1);
    for k in 0..chunks {
        let start = (k * bpc).min(item.len());
        let end = ((k + 1) * bpc).min(item.len());
        let chunk = &item[start..end];
        let data = poly.data.as_mut_slice();
        data.fill(0);
        for (z, slot) in data.iter_mut().enumerate().take(coeffs) {
            let bit = z * log2_p;
            let byte = chunk.get(bit / 8).copied().unwrap_or(0) as u64;
            let c = (byte >> (bit % 8)) & mask;
            *slot = recenter_mod(c, sp.pt_modulus, sp.modulus);
        }
        let ntt = poly.ntt();
        let d = ntt.data.as_slice();
        out.extend((0..POLY_LEN).map(|z| d[z] | (d[POLY_LEN + z] << PACKED_OFFSET_2)));
    }
    out
}

/// The NTT-form words of items `indices` of `plaintext` (`num_items * item_bytes` bytes), one
/// vector per item in (instance, trial, coefficient) order. Items are independent.
pub(crate) fn item_words(
    params: &SchemeParams,
    plaintext: &[u8],
    indices: &[usize],
) -> Result<Vec<Vec<u64>>> {
    let sp = spiral_params(params)?;
    let item_bytes = params.item_bytes as usize;
    if plaintext.len() != params.num_items() * item_bytes {
        return Err(CoreError::Internal("item_words: plaintext size".into()));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= params.num_items()) {
        return Err(CoreError::Internal(format!("item {bad} out of range")));
    }
    Ok(indices
        .par_iter()
        .map(|&i| item_ntt(sp, params, &plaintext[i * item_bytes..(i + 1) * item_bytes]))
        .collect())
}

/// 64-bit words one item takes in the database.
pub(crate) fn words_per_item(params: &SchemeParams) -> usize {
    params.db_words() / params.num_items()
}

/// Writes items' words (from [`item_words`]) into their places in the database.
pub(crate) fn scatter_items(
    params: &SchemeParams,
    indices: &[usize],
    words: &[impl AsRef<[u64]> + Sync],
    db: &mut [u64],
) -> Result<()> {
    let num_items = params.num_items();
    let per_item = words_per_item(params);
    if db.len() != params.db_words()
        || indices.len() != words.len()
        || indices.iter().any(|&i| i >= num_items)
        || words.iter().any(|w| w.as_ref().len() != per_item)
    {
        return Err(CoreError::Internal(
            "scatter_items: sizes do not match".into(),
        ));
    }
    let dim0 = 1usize << params.nu_1;
    let num_per = 1usize << params.nu_2;
    // The database is stored plane by plane (instance, trial, coefficient); inside a plane,
    // item i sits at (i % num_per) * dim0 + i / num_per (spiral-rs's first-dimension order).
    db.par_chunks_mut(num_items)
        .enumerate()
        .for_each(|(plane, slice)| {
            for (&i, w) in indices.iter().zip(words) {
                slice[(i % num_per) * dim0 + i / num_per] = w.as_ref()[plane];
            }
        });
    Ok(())
}

/// Encodes items `indices` of `plaintext` into the database, in batches, reporting
/// `(items done, items in all)` to `progress`.
///
/// Every item's NTT is independent, so re-encoding changed items only touches their words.
pub(crate) fn encode_items(
    params: &SchemeParams,
    plaintext: &[u8],
    indices: &[usize],
    db: &mut [u64],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<()> {
    const BATCH: usize = 1024;
    let mut done = 0;
    for batch in indices.chunks(BATCH) {
        let words = item_words(params, plaintext, batch)?;
        scatter_items(params, batch, &words, db)?;
        done += batch.len();
        progress(done, indices.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// The four sums by the definition, in u128.
    fn reference_dots(row: &[u64], v: &[u64]) -> [u64; 4] {
        let mut s = [0u128; 4];
        for (j, &b) in row.iter().enumerate() {
            let (a0, a1) = (v[2 * j], v[2 * j + 1]);
            let lo = |x: u64| (x & 0xffff_ffff) as u128;
            let hi = |x: u64| (x >> 32) as u128;
            s[0] += lo(a0) * lo(b);
            s[1] += lo(a1) * lo(b);
            s[2] += hi(a0) * hi(b);
            s[3] += hi(a1) * hi(b);
        }
        [
            (s[0] % MODULI[0] as u128) as u64,
            (s[1] % MODULI[0] as u128) as u64,
            (s[2] % MODULI[1] as u128) as u64,
            (s[3] % MODULI[1] as u128) as u64,
        ]
    }

    #[test]
    fn failure_estimate_is_spiral_rs_estimator() {
        use spiral_rs::noise_estimate::NoiseEstimator;
        for preset in SchemeParams::vetted_presets().chain(SchemeParams::store_presets()) {
            let p = preset.params;
            let ours = p.estimated_log2_failure().unwrap();
            let theirs = spiral_params(&p).unwrap().estimate_log2_err_prob();
            assert_eq!(ours, theirs, "{p}");
            assert!(ours <= -40.0, "{p}: {ours}");
        }
    }

    #[test]
    fn row_dots_match_the_definition_up_to_the_largest_rows_and_residues() {
        let sp = spiral_params(&SchemeParams::danger_test_only_small()).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let pack = |lo: u64, hi: u64| lo | (hi << PACKED_OFFSET_2);
        // Every supported first dimension size; the largest residues are the worst case for
        // the lanes' lazy reduction.
        for dim0 in [4usize, 64, 512, 1024, 2048] {
            for extreme in [false, true] {
                let mut word = || {
                    if extreme {
                        pack(MODULI[0] - 1, MODULI[1] - 1)
                    } else {
                        pack(rng.gen_range(0..MODULI[0]), rng.gen_range(0..MODULI[1]))
                    }
                };
                let row: Vec<u64> = (0..dim0).map(|_| word()).collect();
                let vs: Vec<Vec<u64>> = (0..3)
                    .map(|_| (0..2 * dim0).map(|_| word()).collect())
                    .collect();
                let a: Vec<&[u64]> = vs.iter().map(Vec::as_slice).collect();
                let mut out = vec![[0u64; 4]; a.len()];
                row_dots(sp, &row, &a, &mut out);
                for (v, got) in vs.iter().zip(&out) {
                    assert_eq!(
                        *got,
                        reference_dots(&row, v),
                        "dim0 {dim0}, extreme {extreme}"
                    );
                }
            }
        }
    }
}
