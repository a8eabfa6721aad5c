//! The server's side of YPIR+SP: the database of 14-bit elements, the offline precomputation
//! (the hint's columns, packed as far as the query allows) and answering.

use std::time::Instant;

use rayon::prelude::*;

use super::arith::{self, N, Poly, QUERY_SEED, ring};
use super::client::unpack_elements;
use super::packing::Packing;
use super::params::{GADGET_LEN, LEVELS, WORD_BYTES, YpirParams};
use crate::error::{CoreError, PirBytesError, PirMessage, Result};
use crate::pir::{AnswerPhases, Kernel, ring::MODULI};

/// Columns of the first pass summed together on one thread: a multiple of the SIMD kernels'
/// group of columns, and a divisor of every shape's column count (2048 per instance), so every
/// block takes the SIMD path. 16 blocks per instance keep both cores of a small server busy to
/// the end of the pass.
pub(super) const FIRST_PASS_COLUMNS: usize = 128;

/// A YPIR+SP database, with its precomputation: what a server answers from.
///
/// Nothing in it depends on a client: any replica answers any query.
pub struct YpirDatabase {
    params: YpirParams,
    /// The elements column by column: column c's rows at `c * rows..(c + 1) * rows`.
    elements: Vec<u16>,
    /// Per instance, its packing precomputation.
    packing: Vec<Packing>,
}

impl std::fmt::Debug for YpirDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YpirDatabase")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A query, parsed: its packing keys and one word per row, residues packed (residue 0 in the
/// low 32 bits).
struct ParsedQuery {
    keys: Vec<u64>,
    rows: Vec<u64>,
}

impl YpirDatabase {
    /// Encodes `items` (every row's bytes, row after row) and precomputes everything that does
    /// not depend on a query.
    pub fn encode(params: YpirParams, items: &[u8]) -> Result<Self> {
        Self::encode_with_kernel(params, items, Kernel::detected())
    }

    /// As [`YpirDatabase::encode`], with the given kernel's NTT.
    pub fn encode_with_kernel(params: YpirParams, items: &[u8], kernel: Kernel) -> Result<Self> {
        let rows = params.num_items();
        let cols = params.cols();
        if items.len() != rows * params.item_bytes() {
            return Err(CoreError::Internal("YPIR items are not rows x item bytes"));
        }
        let mut elements = vec![0u16; rows * cols];
        for (r, item) in items.chunks_exact(params.item_bytes()).enumerate() {
            for (c, v) in unpack_elements(item).into_iter().enumerate() {
                elements[c * rows + r] = v;
            }
        }
        let ring = ring();
        let blocks: Vec<Poly> = (0..rows / N)
            .map(|i| arith::uniform(&QUERY_SEED, i as u64))
            .collect();
        let packing = (0..params.instances())
            .map(|instance| {
                let columns: Vec<Poly> = (instance * N..(instance + 1) * N)
                    .into_par_iter()
                    .map(|c| hint_column(ring, kernel, &blocks, &elements[c * rows..][..rows]))
                    .collect();
                Packing::precompute(kernel, columns)
            })
            .collect();
        Ok(Self {
            params,
            elements,
            packing,
        })
    }

    /// The shape.
    pub fn params(&self) -> &YpirParams {
        &self.params
    }

    /// Bytes held in memory: the elements and the precomputation.
    pub fn resident_bytes(&self) -> usize {
        self.elements.len() * 2
            + self
                .packing
                .iter()
                .map(Packing::resident_bytes)
                .sum::<usize>()
    }

    /// Answers one query.
    pub fn answer(&self, query: &[u8]) -> Result<Vec<u8>> {
        Ok(self.answer_batch(&[query])?.remove(0))
    }

    /// Answers a batch of queries with one pass over the database. Every query is checked
    /// before any work; one malformed query fails the batch (the server checks each at the
    /// door with [`YpirDatabase::check_query`]).
    pub fn answer_batch(&self, queries: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        self.answer_batch_with_kernel(queries, Kernel::detected())
    }

    /// As [`YpirDatabase::answer_batch`], with the given kernel.
    pub fn answer_batch_with_kernel(
        &self,
        queries: &[&[u8]],
        kernel: Kernel,
    ) -> Result<Vec<Vec<u8>>> {
        Ok(self.answer_batch_timed_with_kernel(queries, kernel)?.0)
    }

    /// As [`YpirDatabase::answer_batch`], with the time of each phase, for the sweep tool:
    /// `first_dim_s` is the first pass over the database, `pack_s` the packing of its
    /// answers; the engine has no expansion and no folding, so `expand_s` is reading and
    /// checking the queries' words and `fold_s` is 0.
    pub fn answer_batch_timed(&self, queries: &[&[u8]]) -> Result<(Vec<Vec<u8>>, AnswerPhases)> {
        self.answer_batch_timed_with_kernel(queries, Kernel::detected())
    }

    fn answer_batch_timed_with_kernel(
        &self,
        queries: &[&[u8]],
        kernel: Kernel,
    ) -> Result<(Vec<Vec<u8>>, AnswerPhases)> {
        let start = Instant::now();
        let parsed = queries
            .iter()
            .map(|q| parse_query(&self.params, q))
            .collect::<Result<Vec<_>>>()?;
        let parsed_at = Instant::now();
        let answers = self.first_pass(kernel, &parsed);
        let first_pass_at = Instant::now();
        let keys: Vec<&[u64]> = parsed.iter().map(|q| q.keys.as_slice()).collect();
        let mut out: Vec<Vec<u8>> = parsed
            .iter()
            .map(|_| Vec::with_capacity(self.params.response_bytes()))
            .collect();
        for (instance, packing) in self.packing.iter().enumerate() {
            let cols = instance * N..(instance + 1) * N;
            let answers: Vec<[&[u64]; 2]> = answers
                .iter()
                .map(|a| [&a[0][cols.clone()], &a[1][cols.clone()]])
                .collect();
            for (out, packed) in out.iter_mut().zip(packing.pack(kernel, &keys, &answers)) {
                out.extend(packed);
            }
        }
        let phases = AnswerPhases {
            expand_s: (parsed_at - start).as_secs_f64(),
            first_dim_s: (first_pass_at - parsed_at).as_secs_f64(),
            fold_s: 0.0,
            pack_s: first_pass_at.elapsed().as_secs_f64(),
        };
        Ok((out, phases))
    }

    /// The first pass: for every query and column, the sum over the rows of the query's word
    /// times the element, per residue (with the kernel's column sums, exact, then reduced).
    ///
    /// Blocks of [`FIRST_PASS_COLUMNS`] columns are summed on rayon's pool, each block's
    /// elements contiguous (the elements are stored column by column), so a server's batch uses
    /// every core; on a 1-thread pool the blocks run one after the other. A block's sums are
    /// the same words whichever thread computes them.
    fn first_pass(&self, kernel: Kernel, queries: &[ParsedQuery]) -> Vec<[Vec<u64>; 2]> {
        let ring = ring();
        let rows = self.params.num_items();
        let cols = self.params.cols();
        let words: Vec<&[u64]> = queries.iter().map(|q| q.rows.as_slice()).collect();
        let blocks: Vec<Vec<[Vec<u64>; 2]>> = self
            .elements
            .par_chunks(FIRST_PASS_COLUMNS * rows)
            .map(|block| {
                let width = block.len() / rows;
                let mut sums: Vec<[Vec<u64>; 2]> = queries
                    .iter()
                    .map(|_| [vec![0; width], vec![0; width]])
                    .collect();
                super::simd::column_sums(kernel, block, rows, &words, &mut sums);
                for sums in &mut sums {
                    for (m, sums) in sums.iter_mut().enumerate() {
                        for s in sums {
                            *s = ring.reduce(*s, m);
                        }
                    }
                }
                sums
            })
            .collect();
        let mut out: Vec<[Vec<u64>; 2]> = queries
            .iter()
            .map(|_| [Vec::with_capacity(cols), Vec::with_capacity(cols)])
            .collect();
        for block in blocks {
            for (out, sums) in out.iter_mut().zip(block) {
                for (out, sums) in out.iter_mut().zip(sums) {
                    out.extend(sums);
                }
            }
        }
        out
    }

    /// Checks one query's bytes as answering would: the exact length and every word's residues
    /// reduced.
    pub fn check_query(params: &YpirParams, query: &[u8]) -> Result<()> {
        parse_query(params, query).map(|_| ())
    }
}

/// Column c's first row for packing (NTT form): the hint's column, `sum_i a_i D_i(X^-1)`, where
/// `D_i` is the column's i-th block of d rows as a polynomial. Its first-row product with s at
/// coefficient 0 is the hint column's inner product with s.
fn hint_column(ring: &arith::Ring, kernel: Kernel, blocks: &[Poly], column: &[u16]) -> Poly {
    let mut acc = Poly::zero();
    let mut d = Poly::zero();
    for (a, rows) in blocks.iter().zip(column.chunks_exact(N)) {
        for m in 0..2 {
            for (w, &e) in d.residue_mut(m).iter_mut().zip(rows) {
                *w = u64::from(e);
            }
        }
        ring.forward(kernel, &mut d);
        for (m, &p) in MODULI.iter().enumerate() {
            let perm = &ring.reverse[m];
            let (dr, ar) = (d.residue(m), a.residue(m));
            let dst = acc.residue_mut(m);
            for k in 0..N {
                let x = ring.mul(ar[k], dr[perm[k] as usize], m);
                dst[k] = if dst[k] + x >= p {
                    dst[k] + x - p
                } else {
                    dst[k] + x
                };
            }
        }
    }
    acc
}

/// A query's words, checked: the exact length, then every word's residues reduced (the word's
/// index named).
fn parse_query(params: &YpirParams, query: &[u8]) -> Result<ParsedQuery> {
    let expected = params.query_bytes();
    if query.len() != expected {
        return Err(CoreError::pir_bytes(
            PirMessage::Query,
            PirBytesError::Length {
                expected,
                got: query.len(),
            },
        ));
    }
    let mut words = query.chunks_exact(WORD_BYTES).enumerate().map(|(i, w)| {
        arith::get_word(w)
            .map(|(r0, r1)| r0 | (r1 << 32))
            .ok_or(CoreError::pir_bytes(
                PirMessage::Query,
                PirBytesError::Unreduced { word: i },
            ))
    });
    let keys = words
        .by_ref()
        .take(LEVELS * GADGET_LEN * N)
        .collect::<Result<Vec<_>>>()?;
    let rows = words.collect::<Result<Vec<_>>>()?;
    Ok(ParsedQuery { keys, rows })
}
