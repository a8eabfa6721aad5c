//! Answering: expansion, the first dimension over the whole database, folding, packing.

use std::time::Instant;

use rayon::prelude::*;
use spiral_rs::{
    aligned_memory::AlignedMemory64,
    client::{PublicParameters, Query},
    poly::{PolyMatrixNTT, PolyMatrixRaw},
    server::{encode, pack, process_query},
};

use super::{
    database::Database,
    eval_keys::EvalKeys,
    expand::expand,
    first_dim::first_dimension,
    fold::fold,
    kernel::Kernel,
    ring::{check_words, spiral_params},
};
use crate::error::{CoreError, PirMessage, Result};

/// A query expanded: the first dimension's vector and the folding dimensions' GSW ciphertexts.
type Expanded = (AlignedMemory64, Vec<PolyMatrixNTT<'static>>);

/// Wall-clock seconds one call of [`Database::answer_batch_timed`] spent in each phase.
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

impl Database {
    /// Answers one encrypted query. Malformed query bytes are an error, never a panic.
    pub fn answer(&self, keys: &EvalKeys, query: &[u8]) -> Result<Vec<u8>> {
        let mut answers = self.answer_batch(&[(keys, query)])?;
        answers.pop().ok_or(CoreError::Internal("no answer"))
    }

    /// Answers several queries (each with its client's keys) in one pass over the database.
    ///
    /// Every core is used: query expansion runs per query in parallel, the first-dimension pass is
    /// split over (instance, trial, coefficient range) pieces of the database, and the slices'
    /// ciphertexts are folded and packed in parallel. Each database row is read once for all the
    /// queries, so memory traffic is shared. The first dimension runs in the fastest kernel this
    /// CPU has ([`Kernel::detected`]: AVX-512 or AVX2). The answers are byte-identical to
    /// spiral-rs's `process_query`.
    pub fn answer_batch(&self, batch: &[(&EvalKeys, &[u8])]) -> Result<Vec<Vec<u8>>> {
        self.answer_batch_timed(batch).map(|(answers, _)| answers)
    }

    /// [`Database::answer_batch`], also saying where the time went.
    pub fn answer_batch_timed(
        &self,
        batch: &[(&EvalKeys, &[u8])],
    ) -> Result<(Vec<Vec<u8>>, AnswerPhases)> {
        self.answer_batch_timed_with_kernel(Kernel::detected(), batch)
    }

    /// [`Database::answer_batch`] with the first dimension and the NTT in `kernel` rather than
    /// the fastest this CPU runs: for comparing the kernels (tests, benches). The answers are
    /// the same bytes whichever kernel computes them.
    pub fn answer_batch_with_kernel(
        &self,
        kernel: Kernel,
        batch: &[(&EvalKeys, &[u8])],
    ) -> Result<Vec<Vec<u8>>> {
        self.answer_batch_timed_with_kernel(kernel, batch)
            .map(|(answers, _)| answers)
    }

    /// [`Database::answer_batch_with_kernel`], also saying where the time went.
    pub fn answer_batch_timed_with_kernel(
        &self,
        kernel: Kernel,
        batch: &[(&EvalKeys, &[u8])],
    ) -> Result<(Vec<Vec<u8>>, AnswerPhases)> {
        let sp = spiral_params(&self.params)?;
        let (packed, mut phases) = self.answer_packed(kernel, batch)?;
        let started = Instant::now();
        let answers = packed.par_iter().map(|p| encode(sp, p)).collect();
        phases.pack_s += started.elapsed().as_secs_f64();
        Ok((answers, phases))
    }

    /// Each query's packed ciphertexts (one per instance), before the modulus switch that
    /// encodes them: the answer, and for the noise measurement its exact noise.
    pub(super) fn answer_packed(
        &self,
        kernel: Kernel,
        batch: &[(&EvalKeys, &[u8])],
    ) -> Result<(Vec<Vec<PolyMatrixRaw<'static>>>, AnswerPhases)> {
        let (params, db) = (&self.params, self.words.as_slice());
        let sp = spiral_params(params)?;
        if db.len() != params.db_words() {
            return Err(CoreError::Internal(
                "database size does not match parameters",
            ));
        }
        for (keys, query) in batch {
            if keys.params != *params {
                return Err(CoreError::KeysForOtherParams);
            }
            check_words(PirMessage::Query, query, sp.query_bytes(), sp.modulus)?;
        }
        let mut phases = AnswerPhases::default();
        if batch.is_empty() {
            return Ok((Vec::new(), phases));
        }
        let mut clock = Instant::now();
        // Queries expand side by side, and each expansion runs its key switches in parallel.
        // Each client's keys leave their compact form for this batch only, once however many
        // of its queries the batch holds (the same `EvalKeys`).
        let mut distinct: Vec<&EvalKeys> = Vec::new();
        let key_of: Vec<usize> = batch
            .iter()
            .map(|(keys, _)| {
                distinct
                    .iter()
                    .position(|d| std::ptr::eq(*d, *keys))
                    .unwrap_or_else(|| {
                        distinct.push(keys);
                        distinct.len() - 1
                    })
            })
            .collect();
        let keys: Vec<PublicParameters<'static>> = distinct
            .par_iter()
            .map(|k| k.expanded(kernel))
            .collect::<Result<_>>()?;
        let expanded: Vec<Expanded> = batch
            .par_iter()
            .zip(&key_of)
            .map(|((_, query), &k)| {
                let q = Query::deserialize(sp, query);
                expand(sp, kernel, &keys[k], &q)
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
            let sums = first_dimension(sp, kernel, db, &v_firstdim, range.clone());
            phases.first_dim_s += lap(&mut clock);
            cts.par_extend(range.into_par_iter().map(|slice| {
                (0..batch.len())
                    .into_par_iter()
                    .map(|qi| {
                        let mut raw = sums.ciphertexts(slice - start, qi);
                        fold(sp, kernel, &mut raw, &expanded[qi].1);
                        raw.swap_remove(0)
                    })
                    .collect()
            }));
            phases.fold_s += lap(&mut clock);
        }

        let packed = (0..batch.len())
            .into_par_iter()
            .map(|qi| {
                (0..sp.instances)
                    .map(|instance| {
                        let v_ct: Vec<PolyMatrixRaw> = (0..trials)
                            .map(|trial| cts[instance * trials + trial][qi].clone())
                            .collect();
                        pack(sp, &v_ct, &keys[key_of[qi]].v_packing).raw()
                    })
                    .collect()
            })
            .collect();
        phases.pack_s = lap(&mut clock);
        Ok((packed, phases))
    }
}

/// Seconds since `clock`, which restarts.
fn lap(clock: &mut Instant) -> f64 {
    let s = clock.elapsed().as_secs_f64();
    *clock = Instant::now();
    s
}

impl Database {
    /// spiral-rs's own single-query answer, for the reference benchmark and equality tests.
    /// Not for serving.
    #[doc(hidden)]
    pub fn danger_reference_answer(&self, keys: &EvalKeys, query: &[u8]) -> Result<Vec<u8>> {
        let (params, db) = (&self.params, self.words.as_slice());
        let sp = spiral_params(params)?;
        check_words(PirMessage::Query, query, sp.query_bytes(), sp.modulus)?;
        if db.len() != params.db_words() {
            return Err(CoreError::Internal("database size"));
        }
        let q = Query::deserialize(sp, query);
        Ok(process_query(
            sp,
            &keys.expanded(Kernel::detected())?,
            &q,
            db,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rayon::prelude::*;
    use spiral_rs::client::Query;

    use super::*;
    use crate::pir::{SchemeParams, client};

    /// Issue 17, item 4: what overlapping one batch's expansion with the previous batch's
    /// first-dimension pass would save, measured by running the two side by side on rayon's
    /// pool (as a pipelined answerer would) against one after the other, at the 1M shape with
    /// the database in memory. Prints the times; asserts nothing about them (timings are for
    /// benches, and this machine is shared). `BATCH` queries a batch (default 4), `ROUNDS`
    /// rounds (default 5).
    #[test]
    #[ignore = "a measurement at the 1M shape (128 MiB database): run by hand with --nocapture"]
    fn overlapping_expansion_with_the_first_dimension() {
        let env = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let (batch, rounds) = (env("BATCH", 4), env("ROUNDS", 5));
        let params = SchemeParams::vetted_presets()
            .map(|p| p.params)
            .find(|p| p.num_items() == 1 << 14 && p.item_bytes == 8192)
            .unwrap();
        let sp = spiral_params(&params).unwrap();
        let mut db = Database::zeroed(params);
        for (i, w) in db.words.iter_mut().enumerate() {
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            *w = (x % sp.moduli[0])
                | ((x >> 32) % sp.moduli[1]) << super::super::ring::PACKED_OFFSET_2;
        }
        let kernel = Kernel::detected();
        let clients: Vec<(PublicParameters<'static>, Vec<u8>)> = (0..batch)
            .map(|i| {
                let (secret, public) = client::keygen(&params).unwrap();
                let keys = EvalKeys::parse(&params, &public).unwrap();
                let query = client::query(&params, &secret, i * 977).unwrap();
                (keys.expanded(kernel).unwrap(), query)
            })
            .collect();
        let expand_all = || -> Vec<Expanded> {
            clients
                .par_iter()
                .map(|(keys, q)| expand(sp, kernel, keys, &Query::deserialize(sp, q)).unwrap())
                .collect()
        };
        let slices = sp.instances * sp.n * sp.n;
        let group = rayon::current_num_threads().clamp(1, slices);
        let first_dim = |expanded: &[Expanded]| {
            let v: Vec<&[u64]> = expanded.iter().map(|(v, _)| v.as_slice()).collect();
            for start in (0..slices).step_by(group) {
                drop(first_dimension(
                    sp,
                    kernel,
                    &db.words,
                    &v,
                    start..(start + group).min(slices),
                ));
            }
        };
        let mut previous = expand_all();
        first_dim(&previous);
        let (mut expand_s, mut first_s, mut apart_s, mut together_s) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..rounds {
            let started = Instant::now();
            let next = expand_all();
            expand_s += started.elapsed().as_secs_f64();
            let started = Instant::now();
            first_dim(&previous);
            first_s += started.elapsed().as_secs_f64();
            apart_s = expand_s + first_s;
            let started = Instant::now();
            let (next_too, ()) = rayon::join(expand_all, || first_dim(&previous));
            together_s += started.elapsed().as_secs_f64();
            drop(next_too);
            previous = next;
        }
        // A thread each instead: expansion on one, the database pass on the other.
        let one = || {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap()
        };
        let (expander, scanner) = (one(), one());
        let mut pinned_s = 0.0;
        for _ in 0..rounds {
            let started = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| drop(expander.install(expand_all)));
                s.spawn(|| scanner.install(|| first_dim(&previous)));
            });
            pinned_s += started.elapsed().as_secs_f64();
        }
        let per = |s: f64| 1e3 * s / rounds as f64;
        eprintln!(
            "{} threads, batch {batch}: expand {:.1} ms + first dim {:.1} ms = {:.1} ms apart, \
             {:.1} ms side by side ({:.3}x), {:.1} ms on a thread each ({:.3}x)",
            rayon::current_num_threads(),
            per(expand_s),
            per(first_s),
            per(apart_s),
            per(together_s),
            together_s / apart_s,
            per(pinned_s),
            pinned_s / apart_s
        );
    }
}
