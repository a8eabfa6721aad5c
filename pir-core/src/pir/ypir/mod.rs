//! YPIR+SP (Menon and Wu, "YPIR: High-Throughput Single-Server PIR with Silent
//! Preprocessing", eprint 2024/270, §4.5): the second engine, on Spiral's ring.
//!
//! ```text
//!  client                                          server
//!  query(row) ── packing keys + one word per row ─▶ YpirDatabase::answer
//!     (a fresh secret per query)                      first pass: sum_r word_r * element_r,c
//!                                                     packing: d columns into one ciphertext
//!  decode ◀── per instance, one packed ciphertext ─┘
//! ```
//!
//! The database is a matrix of 14-bit elements, a row per item. A query is an LWE encryption
//! (under a ring secret, its public part from a fixed seed) of the unit vector of the wanted
//! row; the first pass multiplies it into every column, giving one LWE ciphertext per column
//! whose first part (the hint) depends only on the database. Packing turns each instance's d
//! ciphertexts into one ring ciphertext with the query's own packing keys; all of it that
//! touches only the hint is computed once, at load ("silent preprocessing": the client
//! downloads no hint and the server keeps nothing per client).
//!
//! | file | job |
//! | --- | --- |
//! | `params.rs` | [`YpirParams`]: the shape, the engine's constants, sizes, failure estimate |
//! | `arith.rs` | the ring's residues, NTT, slot permutations, sampling, wire words |
//! | `client.rs` | a query and its secret; decrypting a response |
//! | `database.rs` | [`YpirDatabase`]: elements, the hint's columns, the first pass, answers |
//! | `packing.rs` | the packing tree: precomputed first rows, per-query second rows |
//! | `simd.rs` | the first pass's sums and packing's nodes: portable, AVX2, AVX-512 kernels |

mod arith;
mod client;
mod database;
mod packing;
mod params;
mod simd;

pub use client::YpirSecret;
pub use client::{decode, query, query_from_seed};
pub use database::YpirDatabase;
pub use params::YpirParams;

#[cfg(test)]
mod tests;
