//! YPIR+SP's two online hot loops in AVX2 and AVX-512, chosen at run time by the answer's
//! [`Kernel`]: the first pass's column sums ([`column_sums`]) and one packing node's second rows
//! for a batch of queries ([`second_row_nodes`]).
//!
//! Each has three implementations that give the same words: the portable one (scalar code), AVX2
//! (four 64-bit lanes) and AVX-512F (eight). The discipline is `pir/kernel.rs`'s: the SIMD code
//! is `#[target_feature]` functions reached only through a [`Kernel`] of that kind, and a
//! `Kernel` exists only once the CPU was seen to run its instructions. AVX2 is in the default
//! build's baseline (x86-64-v3) but is reached the same way; AVX-512 only by run-time detection.
//!
//! Why the words are the same:
//! - **First pass.** Every kernel computes the exact sums over the rows of `lo(w) * e` and
//!   `hi(w) * e` (residues below 2^28, elements below 2^14, at most 2^20 rows: below 2^62). The
//!   SIMD kernels spread a sum over lanes, add the lanes of every tile of `TILE` rows into the
//!   total, and take several columns and queries per step (each element vector loaded once for
//!   the whole batch); every partial sum is below the total, so nothing wraps. The caller
//!   reduces the totals.
//! - **Packing.** Every word a node stores is the residue mod p of the same integer, whatever
//!   the arithmetic on the way: the product by Y is Shoup's (`floor(Y 2^32 / p)`, precomputed in
//!   `Ring::y_shoup`: exact after one conditional subtraction), the difference is reduced as the
//!   portable code does, and the node's sum (`even + Y odd`, the permuted difference and the
//!   three key products: below `3p + 3p^2 < 2^58`) is reduced with a Barrett quotient from its
//!   top 31 bits (exact after one conditional subtraction, `BARRETT_58`) where the portable
//!   code uses `Ring::reduce`. The slot permutation is a gather, its indices masked to the table
//!   (a no-op for the ring's permutations, which the masking makes a bound the gather can rely
//!   on). The queries of a batch share the node's digits: each step loads them once for all.
//!
//! Shapes the SIMD kernels do not take (none that the engine makes) go to the portable code.
//!
//! IFMA (`vpmadd52luq`) would fuse each first-pass product (42 bits) with its addition, halving
//! the vector work, but no `Kernel` kind says the CPU has it.
//!
//! With `pir/kernel.rs`, `pir/ntt.rs` and `pir/poly_ops.rs`, the only files allowed `unsafe` code (the intrinsics'
//! loads, stores and gathers, and calling the `#[target_feature]` functions once a `Kernel` says
//! the CPU runs them).
#![allow(unsafe_code)]

use super::super::kernel::Kernel;
#[cfg(target_arch = "x86_64")]
use super::super::kernel::KernelKind;
use super::arith::{N, Poly, Ring, ring};
use super::params::GADGET_LEN;
use crate::pir::ring::MODULI;

const LOW: u64 = (1 << 32) - 1;

/// Words of one node's digits, and of one level's keys: `GADGET_LEN` NTT-form ring elements,
/// each word holding residue 0 in its low 32 bits and residue 1 in its high.
pub(super) const NODE_WORDS: usize = GADGET_LEN * N;

/// Rows a SIMD first pass sums in its lanes before adding them into the totals: one ring
/// element's worth, of which every shape's row count is a multiple.
#[cfg(target_arch = "x86_64")]
const TILE: usize = N;

/// Columns a SIMD first pass takes through one tile of rows before the next (their tiles stay
/// in the L1 cache while every query block goes over them).
#[cfg(target_arch = "x86_64")]
const GROUP: usize = 8;

/// The first pass's exact sums, not reduced: for each query (`words[q]`, one packed word per
/// row, residue 0 low) and each column `c` of `elements` (column by column, `rows` each),
/// `sums[q][0][c]` is the sum over the rows of `(w & LOW) * e` and `sums[q][1][c]` of
/// `(w >> 32) * e`.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn column_sums(
    kernel: Kernel,
    elements: &[u16],
    rows: usize,
    words: &[&[u64]],
    sums: &mut [[Vec<u64>; 2]],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let whole = simd_takes(elements, rows, words, sums);
        match kernel.kind() {
            // SAFETY: a `Kernel` of this kind exists only after `Kernel::force` saw the CPU's
            // avx512f; `whole` is the shape the kernel takes.
            KernelKind::Avx512 if whole => {
                return unsafe { avx512::column_sums(elements, rows, words, sums) };
            }
            // SAFETY: as above, with avx2.
            KernelKind::Avx2 if whole => {
                return unsafe { avx2::column_sums(elements, rows, words, sums) };
            }
            _ => {}
        }
    }
    column_sums_portable(elements, rows, words, sums);
}

/// Whether the SIMD first passes take this shape: whole tiles of rows and groups of columns.
/// Every shape has 2^11 to 2^20 rows and 2048 columns per instance, so every query of the
/// engine passes (`tests` checks).
#[cfg(target_arch = "x86_64")]
fn simd_takes(elements: &[u16], rows: usize, words: &[&[u64]], sums: &[[Vec<u64>; 2]]) -> bool {
    let cols = elements.len() / rows.max(1);
    simd_takes_shape(rows, cols)
        && elements.len() == rows * cols
        && words.len() == sums.len()
        && words.iter().all(|w| w.len() == rows)
        && sums.iter().flatten().all(|s| s.len() == cols)
}

/// Whether the SIMD first passes take `rows` by `cols`.
#[cfg(target_arch = "x86_64")]
fn simd_takes_shape(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(TILE) && cols.is_multiple_of(GROUP)
}

/// [`column_sums`] in scalar code: column by column, each query's sums in turn.
fn column_sums_portable(
    elements: &[u16],
    rows: usize,
    words: &[&[u64]],
    sums: &mut [[Vec<u64>; 2]],
) {
    for (c, column) in elements.chunks_exact(rows).enumerate() {
        for (w, s) in words.iter().zip(sums.iter_mut()) {
            let (mut acc0, mut acc1) = (0u64, 0u64);
            for (&w, &e) in w.iter().zip(column) {
                acc0 += (w & LOW) * u64::from(e);
                acc1 += (w >> 32) * u64::from(e);
            }
            s[0][c] = acc0;
            s[1][c] = acc1;
        }
    }
}

/// How many queries' packing trees are walked together (each node's digits read once for all
/// of them: the digits, 96 MiB per instance, are most of packing's memory traffic).
pub(super) const PACK_BATCH: usize = 4;

/// The SIMD kernels' buffers for up to [`PACK_BATCH`] queries' nodes (each query's `even - Y
/// odd` before the slot permutation), kept from node to node.
pub(super) struct Scratch(
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] Vec<[[u64; N]; 2]>,
);

impl Scratch {
    /// For batches of up to `queries` queries.
    pub(super) fn new(queries: usize) -> Self {
        Self(vec![[[0u64; N]; 2]; queries])
    }
}

/// One packing node's second row (NTT form) for each query of a batch into `out[q]`, which is
/// zero on entry: for a node above the leaves, `even + Y odd + tau(even - Y odd)` from the
/// query's children's second rows `even[q]` and `odd[q]` (the level's Y and automorphism);
/// plus the products of the node's `digits` with the query's level keys `keys[q]`; every word
/// reduced. (A leaf adds its products to `out`'s words, which the tests use to reach the
/// reduction with any sum.)
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn second_row_nodes(
    kernel: Kernel,
    level: usize,
    children: Option<[&[Poly]; 2]>,
    digits: &[u64],
    keys: &[&[u64]],
    out: &mut [Poly],
    scratch: &mut Scratch,
) {
    let ring = ring();
    #[cfg(target_arch = "x86_64")]
    if kernel.kind() != KernelKind::Portable {
        // The SIMD kernels take the node's words as fixed-size tables, which every node of the
        // engine has, and a buffer per query.
        let queries = out.len();
        let views = out.iter_mut().map(residues_mut).collect::<Option<Vec<_>>>();
        let node = Node::new(ring, level, children, digits, keys, queries);
        if let (Some(node), Some(mut out), Some(diff)) = (node, views, scratch.0.get_mut(..queries))
        {
            match kernel.kind() {
                // SAFETY: a `Kernel` of this kind exists only after `Kernel::force` saw the
                // CPU's avx512f.
                KernelKind::Avx512 => unsafe { avx512::second_row_nodes(&node, &mut out, diff) },
                // SAFETY: as above, with avx2.
                KernelKind::Avx2 => unsafe { avx2::second_row_nodes(&node, &mut out, diff) },
                KernelKind::Portable => {}
            }
            return;
        }
    }
    for (q, (keys, out)) in keys.iter().zip(out.iter_mut()).enumerate() {
        let children = children.map(|[even, odd]| [&even[q], &odd[q]]);
        second_row_node_portable(ring, level, children, digits, keys, out);
    }
}

/// [`second_row_nodes`] in scalar code, for one query, residue by residue.
fn second_row_node_portable(
    ring: &Ring,
    level: usize,
    children: Option<[&Poly; 2]>,
    digits: &[u64],
    keys: &[u64],
    out: &mut Poly,
) {
    if let Some([even, odd]) = children {
        let y = &ring.y[level - 1];
        let perm = &ring.auto[level - 1];
        let mut diff = [0u64; N];
        for m in 0..2 {
            let p = MODULI[m];
            let (e, o, yy) = (even.residue(m), odd.residue(m), y.residue(m));
            let dst = out.residue_mut(m);
            for k in 0..N {
                let yo = ring.mul(yy[k], o[k], m);
                diff[k] = if e[k] >= yo { e[k] - yo } else { e[k] + p - yo };
                dst[k] = e[k] + yo;
            }
            for k in 0..N {
                dst[k] += diff[perm[m][k] as usize];
            }
        }
    }
    for m in 0..2 {
        let shift = 32 * m;
        let dst = out.residue_mut(m);
        for (k, w) in dst.iter_mut().enumerate() {
            let mut acc = *w;
            for j in 0..GADGET_LEN {
                let d = (digits[j * N + k] >> shift) & LOW;
                let key = (keys[j * N + k] >> shift) & LOW;
                acc += d * key;
            }
            *w = ring.reduce(acc, m);
        }
    }
}

/// A polynomial's two residues as fixed-size tables.
#[cfg(target_arch = "x86_64")]
fn residues(poly: &Poly) -> Option<[&[u64; N]; 2]> {
    match poly.words().as_chunks::<N>() {
        ([r0, r1], []) => Some([r0, r1]),
        _ => None,
    }
}

/// A polynomial's two residues as fixed-size tables, mutable.
#[cfg(target_arch = "x86_64")]
fn residues_mut(poly: &mut Poly) -> Option<[&mut [u64; N]; 2]> {
    match poly.words_mut().as_chunks_mut::<N>() {
        ([r0, r1], []) => Some([r0, r1]),
        _ => None,
    }
}

/// A node's inputs for a batch of queries as the SIMD kernels take them: fixed-size tables, so
/// that every load of theirs is inside one by its index alone.
#[cfg(target_arch = "x86_64")]
struct Node<'a> {
    digits: &'a [u64; NODE_WORDS],
    /// Per query, its level's keys.
    keys: Vec<&'a [u64; NODE_WORDS]>,
    /// For a node with children: its level's tables and, per query, the children's second rows.
    children: Option<(Tables<'a>, Vec<Children<'a>>)>,
}

/// A level's Y, its Shoup constants and its slot permutation, per residue.
#[cfg(target_arch = "x86_64")]
struct Tables<'a> {
    y: [&'a [u64; N]; 2],
    y_shoup: [&'a [u64; N]; 2],
    perm: [&'a [u16; N]; 2],
}

/// One query's children's second rows, per residue.
#[cfg(target_arch = "x86_64")]
struct Children<'a> {
    even: [&'a [u64; N]; 2],
    odd: [&'a [u64; N]; 2],
}

#[cfg(target_arch = "x86_64")]
impl<'a> Node<'a> {
    /// `None` for a shape the kernels do not take (no node of the engine).
    fn new(
        ring: &'a Ring,
        level: usize,
        children: Option<[&'a [Poly]; 2]>,
        digits: &'a [u64],
        keys: &[&'a [u64]],
        queries: usize,
    ) -> Option<Self> {
        let children = match children {
            None => None,
            Some([even, odd]) if even.len() == queries && odd.len() == queries => {
                let l = level.checked_sub(1)?;
                let [p0, p1] = ring.auto.get(l)?;
                let tables = Tables {
                    y: residues(ring.y.get(l)?)?,
                    y_shoup: residues(ring.y_shoup.get(l)?)?,
                    perm: [
                        p0.as_slice().try_into().ok()?,
                        p1.as_slice().try_into().ok()?,
                    ],
                };
                let children = even
                    .iter()
                    .zip(odd)
                    .map(|(even, odd)| {
                        Some(Children {
                            even: residues(even)?,
                            odd: residues(odd)?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some((tables, children))
            }
            Some(_) => return None,
        };
        if keys.len() != queries {
            return None;
        }
        Some(Self {
            digits: digits.try_into().ok()?,
            keys: keys
                .iter()
                .map(|k| (*k).try_into().ok())
                .collect::<Option<Vec<_>>>()?,
            children,
        })
    }
}

/// `floor(2^58 / p_m)`: the Barrett constant of the SIMD kernels' reduction of a node's sum x
/// (below 2^58), whose quotient estimate is `q' = floor(floor(x / 2^27) * BARRETT_58 / 2^31)`.
/// It is below 2^31 (p_m > 2^27), so both products are `vpmuludq`s. With `x = x1 2^27 + a` and
/// `2^58 = BARRETT_58 p + c`: `x / p - x1 BARRETT_58 / 2^31 = (a + x1 c / 2^31) / p < (2^27 + c)
/// / p`, below 1 for both moduli (asserted), so `q'` is the quotient or one short: one
/// conditional subtraction.
#[cfg(target_arch = "x86_64")]
const BARRETT_58: [u64; 2] = [(1 << 58) / MODULI[0], (1 << 58) / MODULI[1]];
#[cfg(target_arch = "x86_64")]
const _: () = assert!(MODULI[0] > 1 << 27 && MODULI[1] > 1 << 27);
#[cfg(target_arch = "x86_64")]
const _: () = assert!(
    (1 << 27) + (1 << 58) % MODULI[0] < MODULI[0] && (1 << 27) + (1 << 58) % MODULI[1] < MODULI[1]
);
#[cfg(target_arch = "x86_64")]
const _: () = assert!(N.is_power_of_two() && N <= 1 << 16);

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BARRETT_58, Children, GADGET_LEN, GROUP, MODULI, N, Node, TILE, Tables};

    /// Words ahead of the current step that the digits are prefetched from: each of a node's
    /// three digit tables is 16 KiB, 4 pages, and the hardware prefetcher starts over at every
    /// page (measured: 1.25x on the packing of one query, at 64 to 256 words alike).
    const PREFETCH: usize = 128;

    /// [`super::column_sums`] in AVX-512F: tile by tile of rows, group by group of columns,
    /// up to 4 queries at once.
    ///
    /// # Safety
    ///
    /// The CPU runs AVX-512F. (`rows` a multiple of `TILE`, `elements` `rows` times a multiple
    /// of `GROUP` long, `words[q]` `rows` long and `sums[q]` a column long, or it panics.)
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn column_sums(
        elements: &[u16],
        rows: usize,
        words: &[&[u64]],
        sums: &mut [[Vec<u64>; 2]],
    ) {
        let columns: Vec<&[[u16; TILE]]> = elements
            .chunks_exact(rows)
            .map(|c| c.as_chunks::<TILE>().0)
            .collect();
        let words: Vec<&[[u64; TILE]]> = words.iter().map(|w| w.as_chunks::<TILE>().0).collect();
        sums.iter_mut().flatten().for_each(|s| s.fill(0));
        for t in 0..rows / TILE {
            for (g, group) in columns.chunks(GROUP).enumerate() {
                for (ws, ss) in words.chunks(4).zip(sums.chunks_mut(4)) {
                    let first = g * GROUP;
                    match ws.len() {
                        4 => group_sums::<4, 2>(group, t, ws, ss, first),
                        3 => group_sums::<3, 2>(group, t, ws, ss, first),
                        2 => group_sums::<2, 4>(group, t, ws, ss, first),
                        _ => group_sums::<1, 8>(group, t, ws, ss, first),
                    }
                }
            }
        }
    }

    /// Tile `t` of a group of columns (the first one column `first`) against `Q` queries, `C`
    /// columns at a time, added into their sums.
    #[target_feature(enable = "avx512f")]
    fn group_sums<const Q: usize, const C: usize>(
        group: &[&[[u16; TILE]]],
        t: usize,
        words: &[&[[u64; TILE]]],
        sums: &mut [[Vec<u64>; 2]],
        first: usize,
    ) {
        let ws: [&[u64; TILE]; Q] = std::array::from_fn(|q| &words[q][t]);
        for (i, cols) in group.chunks_exact(C).enumerate() {
            let es: [&[u16; TILE]; C] = std::array::from_fn(|c| &cols[c][t]);
            let tile = tile_sums::<Q, C>(ws, es);
            for (s, per_col) in sums.iter_mut().zip(tile) {
                for (c, [lo, hi]) in per_col.into_iter().enumerate() {
                    s[0][first + i * C + c] += lo;
                    s[1][first + i * C + c] += hi;
                }
            }
        }
    }

    /// One tile's sums of `Q` queries against `C` columns: per query and column, the low and
    /// high residues' sums. 2QC accumulators of eight lanes; each step loads a query's 8 words
    /// once for the C columns and a column's 8 elements once for the Q queries.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tile_sums<const Q: usize, const C: usize>(
        words: [&[u64; TILE]; Q],
        cols: [&[u16; TILE]; C],
    ) -> [[[u64; 2]; C]; Q] {
        let mut lo = [[_mm512_setzero_si512(); C]; Q];
        let mut hi = [[_mm512_setzero_si512(); C]; Q];
        for r in (0..TILE).step_by(8) {
            let mut w = [_mm512_setzero_si512(); Q];
            let mut w_hi = [_mm512_setzero_si512(); Q];
            for (q, ws) in words.iter().enumerate() {
                // SAFETY: r + 8 <= TILE: the 64 bytes read are inside the query's tile.
                w[q] = unsafe { _mm512_loadu_si512(ws.as_ptr().add(r).cast()) };
                w_hi[q] = _mm512_srli_epi64::<32>(w[q]);
            }
            for (c, col) in cols.iter().enumerate() {
                // SAFETY: r + 8 <= TILE: the 16 bytes read are inside the column's tile.
                let e =
                    _mm512_cvtepu16_epi64(unsafe { _mm_loadu_si128(col.as_ptr().add(r).cast()) });
                for q in 0..Q {
                    lo[q][c] = _mm512_add_epi64(lo[q][c], _mm512_mul_epu32(w[q], e));
                    hi[q][c] = _mm512_add_epi64(hi[q][c], _mm512_mul_epu32(w_hi[q], e));
                }
            }
        }
        let mut out = [[[0u64; 2]; C]; Q];
        for q in 0..Q {
            for c in 0..C {
                out[q][c] = [
                    _mm512_reduce_add_epi64(lo[q][c]) as u64,
                    _mm512_reduce_add_epi64(hi[q][c]) as u64,
                ];
            }
        }
        out
    }

    /// `a * b mod p` for `a, b < p`, `b_shoup = floor(b 2^32 / p)`: Shoup's product.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mul_shoup(a: __m512i, b: __m512i, b_shoup: __m512i, p: __m512i) -> __m512i {
        let q = _mm512_srli_epi64::<32>(_mm512_mul_epu32(a, b_shoup));
        // In [0, 2p): below 2^32, so the 32-bit comparison of the subtraction decides.
        let r = _mm512_sub_epi64(_mm512_mul_epu32(a, b), _mm512_mul_epu32(q, p));
        _mm512_min_epu32(r, _mm512_sub_epi32(r, p))
    }

    /// `x mod p` for `x < 2^58`, `barrett` [`BARRETT_58`]: the quotient from x's top 31 bits
    /// is at most 1 short.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce(x: __m512i, p: __m512i, barrett: __m512i) -> __m512i {
        let q = _mm512_srli_epi64::<31>(_mm512_mul_epu32(_mm512_srli_epi64::<27>(x), barrett));
        // In [0, 2p): below 2^32.
        let r = _mm512_sub_epi64(x, _mm512_mul_epu32(q, p));
        _mm512_min_epu32(r, _mm512_sub_epi32(r, p))
    }

    /// [`super::second_row_nodes`] in AVX-512F.
    ///
    /// # Safety
    ///
    /// The CPU runs AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn second_row_nodes(
        node: &Node<'_>,
        out: &mut [[&mut [u64; N]; 2]],
        diff: &mut [[[u64; N]; 2]],
    ) {
        if let Some((tables, children)) = &node.children {
            for ((ch, out), diff) in children.iter().zip(out.iter_mut()).zip(diff.iter_mut()) {
                children_terms(tables, ch, diff, out);
            }
        }
        key_products(node, diff, out);
    }

    /// Per residue, `diff = even - Y odd mod p` and `out = even + Y odd` (below 2p).
    #[target_feature(enable = "avx512f")]
    fn children_terms(
        tables: &Tables<'_>,
        ch: &Children<'_>,
        diff: &mut [[u64; N]; 2],
        out: &mut [&mut [u64; N]; 2],
    ) {
        for (m, (dst, diff)) in out.iter_mut().zip(diff.iter_mut()).enumerate() {
            let p = _mm512_set1_epi64(MODULI[m] as i64);
            let (e, o) = (ch.even[m], ch.odd[m]);
            let (y, ys) = (tables.y[m], tables.y_shoup[m]);
            for k in (0..N).step_by(8) {
                // SAFETY: k + 8 <= N: every load and store is of 8 words inside its N-word
                // table.
                unsafe {
                    let e = _mm512_loadu_si512(e.as_ptr().add(k).cast());
                    let o = _mm512_loadu_si512(o.as_ptr().add(k).cast());
                    let y = _mm512_loadu_si512(y.as_ptr().add(k).cast());
                    let ys = _mm512_loadu_si512(ys.as_ptr().add(k).cast());
                    let yo = mul_shoup(o, y, ys, p);
                    // e - yo, plus p when it wrapped: both below 2^32 (32-bit lanes).
                    let d = _mm512_sub_epi32(e, yo);
                    let d = _mm512_min_epu32(d, _mm512_add_epi32(d, p));
                    _mm512_storeu_si512(diff.as_mut_ptr().add(k).cast(), d);
                    _mm512_storeu_si512(dst.as_mut_ptr().add(k).cast(), _mm512_add_epi64(e, yo));
                }
            }
        }
    }

    /// Per query, `out + diff[perm]` (with children) plus the node's digits' products with the
    /// query's keys, reduced: both residues of 8 slots a step from the packed digit and key
    /// words, each step's digits loaded once for every query.
    #[target_feature(enable = "avx512f")]
    fn key_products(node: &Node<'_>, diff: &[[[u64; N]; 2]], out: &mut [[&mut [u64; N]; 2]]) {
        let p = [
            _mm512_set1_epi64(MODULI[0] as i64),
            _mm512_set1_epi64(MODULI[1] as i64),
        ];
        let barrett = [
            _mm512_set1_epi64(BARRETT_58[0] as i64),
            _mm512_set1_epi64(BARRETT_58[1] as i64),
        ];
        let mask = _mm256_set1_epi32(N as i32 - 1);
        let perm = node.children.as_ref().map(|(tables, _)| tables.perm);
        for k in (0..N).step_by(8) {
            let mut d = [_mm512_setzero_si512(); GADGET_LEN];
            let mut d_hi = [_mm512_setzero_si512(); GADGET_LEN];
            for j in 0..GADGET_LEN {
                // A hint (it reads nothing and never faults), at an address computed without
                // pointer arithmetic's bounds: past the last node it names memory of no use.
                _mm_prefetch::<_MM_HINT_T0>(
                    node.digits
                        .as_ptr()
                        .wrapping_add(j * N + k + PREFETCH)
                        .cast(),
                );
                // SAFETY: j * N + k + 8 <= GADGET_LEN * N: inside the node's digits.
                d[j] = unsafe { _mm512_loadu_si512(node.digits.as_ptr().add(j * N + k).cast()) };
                d_hi[j] = _mm512_srli_epi64::<32>(d[j]);
            }
            for ((out, keys), diff) in out.iter_mut().zip(&node.keys).zip(diff) {
                let [out0, out1] = out;
                // SAFETY: k + 8 <= N: the loads are of 8 words inside the N-word tables.
                let mut acc = unsafe {
                    [
                        _mm512_loadu_si512(out0.as_ptr().add(k).cast()),
                        _mm512_loadu_si512(out1.as_ptr().add(k).cast()),
                    ]
                };
                if let Some(perm) = perm {
                    for (m, a) in acc.iter_mut().enumerate() {
                        // SAFETY: k + 8 <= N: the 16 bytes read are 8 entries of the N-entry
                        // permutation. Its entries masked to N - 1 (N a power of two, and a
                        // no-op for a permutation of N slots), every gathered word is inside
                        // `diff[m]`.
                        let g = unsafe {
                            let idx = _mm256_cvtepu16_epi32(_mm_loadu_si128(
                                perm[m].as_ptr().add(k).cast(),
                            ));
                            let idx = _mm256_and_si256(idx, mask);
                            _mm512_i32gather_epi64::<8>(idx, diff[m].as_ptr().cast())
                        };
                        *a = _mm512_add_epi64(*a, g);
                    }
                }
                for j in 0..GADGET_LEN {
                    // SAFETY: j * N + k + 8 <= GADGET_LEN * N: inside the query's keys.
                    let key = unsafe { _mm512_loadu_si512(keys.as_ptr().add(j * N + k).cast()) };
                    acc[0] = _mm512_add_epi64(acc[0], _mm512_mul_epu32(d[j], key));
                    acc[1] = _mm512_add_epi64(
                        acc[1],
                        _mm512_mul_epu32(d_hi[j], _mm512_srli_epi64::<32>(key)),
                    );
                }
                // SAFETY: k + 8 <= N: the stores are of 8 words inside the N-word tables.
                unsafe {
                    _mm512_storeu_si512(
                        out0.as_mut_ptr().add(k).cast(),
                        reduce(acc[0], p[0], barrett[0]),
                    );
                    _mm512_storeu_si512(
                        out1.as_mut_ptr().add(k).cast(),
                        reduce(acc[1], p[1], barrett[1]),
                    );
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BARRETT_58, Children, GADGET_LEN, GROUP, MODULI, N, Node, TILE, Tables};

    /// [`super::column_sums`] in AVX2: the AVX-512 kernel's order on four lanes, up to 2
    /// queries at once (16 registers).
    ///
    /// # Safety
    ///
    /// The CPU runs AVX2. (The shape as for the AVX-512 kernel, or it panics.)
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn column_sums(
        elements: &[u16],
        rows: usize,
        words: &[&[u64]],
        sums: &mut [[Vec<u64>; 2]],
    ) {
        let columns: Vec<&[[u16; TILE]]> = elements
            .chunks_exact(rows)
            .map(|c| c.as_chunks::<TILE>().0)
            .collect();
        let words: Vec<&[[u64; TILE]]> = words.iter().map(|w| w.as_chunks::<TILE>().0).collect();
        sums.iter_mut().flatten().for_each(|s| s.fill(0));
        for t in 0..rows / TILE {
            for (g, group) in columns.chunks(GROUP).enumerate() {
                for (ws, ss) in words.chunks(2).zip(sums.chunks_mut(2)) {
                    let first = g * GROUP;
                    match ws.len() {
                        2 => group_sums::<2, 2>(group, t, ws, ss, first),
                        _ => group_sums::<1, 4>(group, t, ws, ss, first),
                    }
                }
            }
        }
    }

    /// As the AVX-512 kernel's.
    #[target_feature(enable = "avx2")]
    fn group_sums<const Q: usize, const C: usize>(
        group: &[&[[u16; TILE]]],
        t: usize,
        words: &[&[[u64; TILE]]],
        sums: &mut [[Vec<u64>; 2]],
        first: usize,
    ) {
        let ws: [&[u64; TILE]; Q] = std::array::from_fn(|q| &words[q][t]);
        for (i, cols) in group.chunks_exact(C).enumerate() {
            let es: [&[u16; TILE]; C] = std::array::from_fn(|c| &cols[c][t]);
            let tile = tile_sums::<Q, C>(ws, es);
            for (s, per_col) in sums.iter_mut().zip(tile) {
                for (c, [lo, hi]) in per_col.into_iter().enumerate() {
                    s[0][first + i * C + c] += lo;
                    s[1][first + i * C + c] += hi;
                }
            }
        }
    }

    /// The sum of a vector's four lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes_sum(v: __m256i) -> u64 {
        let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        (_mm_cvtsi128_si64(s) as u64) + (_mm_extract_epi64::<1>(s) as u64)
    }

    /// As the AVX-512 kernel's, four rows a step.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn tile_sums<const Q: usize, const C: usize>(
        words: [&[u64; TILE]; Q],
        cols: [&[u16; TILE]; C],
    ) -> [[[u64; 2]; C]; Q] {
        let mut lo = [[_mm256_setzero_si256(); C]; Q];
        let mut hi = [[_mm256_setzero_si256(); C]; Q];
        for r in (0..TILE).step_by(4) {
            let mut w = [_mm256_setzero_si256(); Q];
            let mut w_hi = [_mm256_setzero_si256(); Q];
            for (q, ws) in words.iter().enumerate() {
                // SAFETY: r + 4 <= TILE: the 32 bytes read are inside the query's tile.
                w[q] = unsafe { _mm256_loadu_si256(ws.as_ptr().add(r).cast()) };
                w_hi[q] = _mm256_srli_epi64::<32>(w[q]);
            }
            for (c, col) in cols.iter().enumerate() {
                // SAFETY: r + 4 <= TILE: the 8 bytes read are inside the column's tile.
                let e =
                    _mm256_cvtepu16_epi64(unsafe { _mm_loadl_epi64(col.as_ptr().add(r).cast()) });
                for q in 0..Q {
                    lo[q][c] = _mm256_add_epi64(lo[q][c], _mm256_mul_epu32(w[q], e));
                    hi[q][c] = _mm256_add_epi64(hi[q][c], _mm256_mul_epu32(w_hi[q], e));
                }
            }
        }
        let mut out = [[[0u64; 2]; C]; Q];
        for q in 0..Q {
            for c in 0..C {
                out[q][c] = [lanes_sum(lo[q][c]), lanes_sum(hi[q][c])];
            }
        }
        out
    }

    /// As the AVX-512 kernel's.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul_shoup(a: __m256i, b: __m256i, b_shoup: __m256i, p: __m256i) -> __m256i {
        let q = _mm256_srli_epi64::<32>(_mm256_mul_epu32(a, b_shoup));
        let r = _mm256_sub_epi64(_mm256_mul_epu32(a, b), _mm256_mul_epu32(q, p));
        _mm256_min_epu32(r, _mm256_sub_epi32(r, p))
    }

    /// As the AVX-512 kernel's.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce(x: __m256i, p: __m256i, barrett: __m256i) -> __m256i {
        let q = _mm256_srli_epi64::<31>(_mm256_mul_epu32(_mm256_srli_epi64::<27>(x), barrett));
        let r = _mm256_sub_epi64(x, _mm256_mul_epu32(q, p));
        _mm256_min_epu32(r, _mm256_sub_epi32(r, p))
    }

    /// [`super::second_row_nodes`] in AVX2.
    ///
    /// # Safety
    ///
    /// The CPU runs AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn second_row_nodes(
        node: &Node<'_>,
        out: &mut [[&mut [u64; N]; 2]],
        diff: &mut [[[u64; N]; 2]],
    ) {
        if let Some((tables, children)) = &node.children {
            for ((ch, out), diff) in children.iter().zip(out.iter_mut()).zip(diff.iter_mut()) {
                children_terms(tables, ch, diff, out);
            }
        }
        key_products(node, diff, out);
    }

    /// Per residue, `diff = even - Y odd mod p` and `out = even + Y odd` (below 2p).
    #[target_feature(enable = "avx2")]
    fn children_terms(
        tables: &Tables<'_>,
        ch: &Children<'_>,
        diff: &mut [[u64; N]; 2],
        out: &mut [&mut [u64; N]; 2],
    ) {
        for (m, (dst, diff)) in out.iter_mut().zip(diff.iter_mut()).enumerate() {
            let p = _mm256_set1_epi64x(MODULI[m] as i64);
            let (e, o) = (ch.even[m], ch.odd[m]);
            let (y, ys) = (tables.y[m], tables.y_shoup[m]);
            for k in (0..N).step_by(4) {
                // SAFETY: k + 4 <= N: every load and store is of 4 words inside its N-word
                // table.
                unsafe {
                    let e = _mm256_loadu_si256(e.as_ptr().add(k).cast());
                    let o = _mm256_loadu_si256(o.as_ptr().add(k).cast());
                    let y = _mm256_loadu_si256(y.as_ptr().add(k).cast());
                    let ys = _mm256_loadu_si256(ys.as_ptr().add(k).cast());
                    let yo = mul_shoup(o, y, ys, p);
                    // e - yo, plus p when it wrapped: both below 2^32 (32-bit lanes).
                    let d = _mm256_sub_epi32(e, yo);
                    let d = _mm256_min_epu32(d, _mm256_add_epi32(d, p));
                    _mm256_storeu_si256(diff.as_mut_ptr().add(k).cast(), d);
                    _mm256_storeu_si256(dst.as_mut_ptr().add(k).cast(), _mm256_add_epi64(e, yo));
                }
            }
        }
    }

    /// Per query, `out + diff[perm]` (with children) plus the node's digits' products with the
    /// query's keys, reduced: both residues of 4 slots a step from the packed digit and key
    /// words, each step's digits loaded once for every query.
    #[target_feature(enable = "avx2")]
    fn key_products(node: &Node<'_>, diff: &[[[u64; N]; 2]], out: &mut [[&mut [u64; N]; 2]]) {
        let p = [
            _mm256_set1_epi64x(MODULI[0] as i64),
            _mm256_set1_epi64x(MODULI[1] as i64),
        ];
        let barrett = [
            _mm256_set1_epi64x(BARRETT_58[0] as i64),
            _mm256_set1_epi64x(BARRETT_58[1] as i64),
        ];
        let mask = _mm_set1_epi32(N as i32 - 1);
        let perm = node.children.as_ref().map(|(tables, _)| tables.perm);
        for k in (0..N).step_by(4) {
            let mut d = [_mm256_setzero_si256(); GADGET_LEN];
            let mut d_hi = [_mm256_setzero_si256(); GADGET_LEN];
            for j in 0..GADGET_LEN {
                // SAFETY: j * N + k + 4 <= GADGET_LEN * N: inside the node's digits.
                d[j] = unsafe { _mm256_loadu_si256(node.digits.as_ptr().add(j * N + k).cast()) };
                d_hi[j] = _mm256_srli_epi64::<32>(d[j]);
            }
            for ((out, keys), diff) in out.iter_mut().zip(&node.keys).zip(diff) {
                let [out0, out1] = out;
                // SAFETY: k + 4 <= N: the loads are of 4 words inside the N-word tables.
                let mut acc = unsafe {
                    [
                        _mm256_loadu_si256(out0.as_ptr().add(k).cast()),
                        _mm256_loadu_si256(out1.as_ptr().add(k).cast()),
                    ]
                };
                if let Some(perm) = perm {
                    for (m, a) in acc.iter_mut().enumerate() {
                        // SAFETY: k + 4 <= N: the 8 bytes read are 4 entries of the N-entry
                        // permutation. Its entries masked to N - 1 (N a power of two, and a
                        // no-op for a permutation of N slots), every gathered word is inside
                        // `diff[m]`.
                        let g = unsafe {
                            let idx =
                                _mm_cvtepu16_epi32(_mm_loadl_epi64(perm[m].as_ptr().add(k).cast()));
                            let idx = _mm_and_si128(idx, mask);
                            _mm256_i32gather_epi64::<8>(diff[m].as_ptr().cast(), idx)
                        };
                        *a = _mm256_add_epi64(*a, g);
                    }
                }
                for j in 0..GADGET_LEN {
                    // SAFETY: j * N + k + 4 <= GADGET_LEN * N: inside the query's keys.
                    let key = unsafe { _mm256_loadu_si256(keys.as_ptr().add(j * N + k).cast()) };
                    acc[0] = _mm256_add_epi64(acc[0], _mm256_mul_epu32(d[j], key));
                    acc[1] = _mm256_add_epi64(
                        acc[1],
                        _mm256_mul_epu32(d_hi[j], _mm256_srli_epi64::<32>(key)),
                    );
                }
                // SAFETY: k + 4 <= N: the stores are of 4 words inside the N-word tables.
                unsafe {
                    _mm256_storeu_si256(
                        out0.as_mut_ptr().add(k).cast(),
                        reduce(acc[0], p[0], barrett[0]),
                    );
                    _mm256_storeu_si256(
                        out1.as_mut_ptr().add(k).cast(),
                        reduce(acc[1], p[1], barrett[1]),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::pir::KernelKind;
    use crate::pir::ypir::params::LEVELS;

    /// How a test's words are drawn.
    #[derive(Clone, Copy, Debug)]
    enum Values {
        Random,
        /// Every element 0x3fff, every residue its modulus - 1: the largest sums.
        Largest,
        /// Largest and zero by turns, so lanes of one step differ.
        Alternating,
        Zero,
    }

    struct Draw {
        rng: ChaCha20Rng,
        values: Values,
        n: usize,
    }

    impl Draw {
        fn new(seed: u64, values: Values) -> Self {
            Self {
                rng: ChaCha20Rng::seed_from_u64(seed),
                values,
                n: 0,
            }
        }

        /// A value below `bound`, as the test's values are drawn.
        fn below(&mut self, bound: u64) -> u64 {
            self.n += 1;
            match self.values {
                Values::Random => self.rng.gen_range(0..bound),
                Values::Largest => bound - 1,
                Values::Alternating if self.n.is_multiple_of(2) => bound - 1,
                Values::Alternating | Values::Zero => 0,
            }
        }

        fn word(&mut self) -> u64 {
            self.below(MODULI[0]) | (self.below(MODULI[1]) << 32)
        }

        fn poly(&mut self) -> Poly {
            let mut p = Poly::zero();
            for (m, &modulus) in MODULI.iter().enumerate() {
                for w in p.residue_mut(m) {
                    *w = self.below(modulus);
                }
            }
            p
        }
    }

    fn portable() -> Kernel {
        Kernel::force(KernelKind::Portable).unwrap()
    }

    /// Every kernel's first-pass sums against the definition (u128), for `queries` queries
    /// of `rows` words against `cols` columns.
    fn check_column_sums(rows: usize, cols: usize, queries: usize, values: Values) {
        let mut draw = Draw::new((rows * 31 + cols * 7 + queries) as u64, values);
        let elements: Vec<u16> = (0..rows * cols)
            .map(|_| draw.below(1 << 14) as u16)
            .collect();
        let words: Vec<Vec<u64>> = (0..queries)
            .map(|_| (0..rows).map(|_| draw.word()).collect())
            .collect();
        let expected: Vec<[Vec<u64>; 2]> = words
            .iter()
            .map(|w| {
                [0, 1].map(|m| {
                    elements
                        .chunks_exact(rows)
                        .map(|column| {
                            let s: u128 = column
                                .iter()
                                .zip(w)
                                .map(|(&e, &w)| u128::from(e) * u128::from((w >> (32 * m)) & LOW))
                                .sum();
                            u64::try_from(s).unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        let words: Vec<&[u64]> = words.iter().map(Vec::as_slice).collect();
        for kernel in Kernel::available() {
            let mut sums = vec![[vec![u64::MAX; cols], vec![u64::MAX; cols]]; queries];
            column_sums(kernel, &elements, rows, &words, &mut sums);
            assert!(
                sums == expected,
                "{} kernel, {rows} x {cols}, {queries} queries, {values:?}",
                kernel.kind()
            );
        }
    }

    #[test]
    fn every_kernels_column_sums_are_the_definitions() {
        for values in [
            Values::Random,
            Values::Largest,
            Values::Alternating,
            Values::Zero,
        ] {
            // The AVX-512 kernel takes queries by 4 (then 3, 2 or 1), AVX2 by 2.
            for queries in [0, 1, 2, 3, 4, 5, 7] {
                check_column_sums(2048, 16, queries, values);
            }
            check_column_sums(4096, 24, 2, values);
        }
        check_column_sums(2048, 2048, 3, Values::Random);
    }

    #[test]
    fn shapes_the_simd_first_passes_cannot_take_get_the_same_sums() {
        for (rows, cols) in [(100, 3), (2048, 4), (3000, 8), (1, 1)] {
            for values in [Values::Random, Values::Largest] {
                check_column_sums(rows, cols, 2, values);
            }
        }
    }

    /// Every shape of the engine is one the SIMD kernels take.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_shape_takes_the_simd_paths() {
        use crate::pir::ypir::YpirParams;

        for rows_log2 in YpirParams::MIN_ROWS_LOG2..=YpirParams::MAX_ROWS_LOG2 {
            for instances in 1..=YpirParams::MAX_INSTANCES {
                let params = YpirParams::new(rows_log2, instances).unwrap();
                assert!(
                    simd_takes_shape(params.num_items(), params.cols()),
                    "{params}"
                );
                // The first pass sums blocks of FIRST_PASS_COLUMNS columns: each must too.
                let block = super::super::database::FIRST_PASS_COLUMNS;
                assert!(
                    params.cols().is_multiple_of(block)
                        && simd_takes_shape(params.num_items(), block),
                    "{params}"
                );
            }
        }
        let ring = ring();
        let (polys, words) = ([Poly::zero(), Poly::zero()], vec![0u64; NODE_WORDS]);
        let keys = [words.as_slice(); 2];
        for level in 1..=LEVELS {
            let children = (level > 1).then_some([&polys[..], &polys[..]]);
            assert!(Node::new(ring, level, children, &words, &keys, 2).is_some());
        }
    }

    /// A node's second rows for a batch with the given kernel, from `out`'s words on entry.
    fn nodes(
        kernel: Kernel,
        level: usize,
        children: Option<[&[Poly]; 2]>,
        digits: &[u64],
        keys: &[Vec<u64>],
        out: &[Poly],
    ) -> Vec<Poly> {
        let mut out = out.to_vec();
        let keys: Vec<&[u64]> = keys.iter().map(Vec::as_slice).collect();
        let mut scratch = Scratch::new(PACK_BATCH);
        second_row_nodes(
            kernel,
            level,
            children,
            digits,
            &keys,
            &mut out,
            &mut scratch,
        );
        out
    }

    #[test]
    fn every_kernels_second_rows_are_the_portable_words() {
        for values in [
            Values::Random,
            Values::Largest,
            Values::Alternating,
            Values::Zero,
        ] {
            let mut draw = Draw::new(11, values);
            for level in 1..=LEVELS {
                // Batches of 1 to PACK_BATCH queries, by turns.
                let queries = 1 + level % PACK_BATCH;
                let even: Vec<Poly> = (0..queries).map(|_| draw.poly()).collect();
                let odd: Vec<Poly> = (0..queries).map(|_| draw.poly()).collect();
                let children = (level > 1).then_some([&even[..], &odd[..]]);
                let digits: Vec<u64> = (0..NODE_WORDS).map(|_| draw.word()).collect();
                let keys: Vec<Vec<u64>> = (0..queries)
                    .map(|_| (0..NODE_WORDS).map(|_| draw.word()).collect())
                    .collect();
                let zero = vec![Poly::zero(); queries];
                let expected = nodes(portable(), level, children, &digits, &keys, &zero);
                for (m, &p) in MODULI.iter().enumerate() {
                    assert!(expected.iter().all(|e| e.residue(m).iter().all(|&w| w < p)));
                }
                for kernel in Kernel::available() {
                    let got = nodes(kernel, level, children, &digits, &keys, &zero);
                    for (q, (g, e)) in got.iter().zip(&expected).enumerate() {
                        assert!(
                            g.words() == e.words(),
                            "{} kernel, level {level}, query {q} of {queries}, {values:?}",
                            kernel.kind()
                        );
                    }
                }
            }
        }
    }

    /// The SIMD reduction of a node's sum is `x mod p` for every sum below 2^58 (a leaf with
    /// zero digits reduces `out`'s words as they are), around multiples of p above all.
    #[test]
    fn every_kernel_reduces_every_sum_below_2_58() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let zeros = vec![vec![0u64; NODE_WORDS]];
        for round in 0..8 {
            let mut sums = Poly::zero();
            for (m, &p) in MODULI.iter().enumerate() {
                for (k, w) in sums.residue_mut(m).iter_mut().enumerate() {
                    *w = match (round + k) % 6 {
                        0 => rng.gen_range(0..1u64 << 58),
                        1 => (1 << 58) - 1 - rng.gen_range(0..1u64 << 20),
                        2 => rng.gen_range(0..(1u64 << 58) / p) * p,
                        3 => rng.gen_range(1..(1u64 << 58) / p) * p - 1,
                        4 => rng.gen_range(0..4 * p),
                        _ => rng.gen_range(0..(1u64 << 58) / p) * p + p - 1,
                    };
                }
            }
            for kernel in Kernel::available() {
                let got = nodes(kernel, 1, None, &zeros[0], &zeros, &[sums.clone()]);
                for (m, &p) in MODULI.iter().enumerate() {
                    for (g, x) in got[0].residue(m).iter().zip(sums.residue(m)) {
                        assert_eq!(*g, x % p, "{} kernel, {x}", kernel.kind());
                    }
                }
            }
        }
    }
}
