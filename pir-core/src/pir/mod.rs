//! The scheme seam: the only folder that names `spiral_rs`.
//!
//! ```text
//!  client                                   server
//!  keygen(seed) ── public keys ───────────▶ EvalKeys::parse (length + range checked)
//!  query(seed, item) ── query bytes ──────▶ Database::answer(keys, query)   (checked first)
//!  decode(seed, bytes) ◀── response bytes ─┘
//! ```
//!
//! spiral-rs asserts (panics) on malformed lengths, trusts word ranges, selects nothing for an
//! out-of-range index and borrows `&'a Params` everywhere. This folder checks every length and
//! word before calling it, and interns one leaked `Params` per parameter set so that callers never
//! see a lifetime (a handful of parameter sets per process, so the leak is bounded).
//! Serialisation in spiral-rs is native-endian; the wire bytes are defined as little-endian and
//! big-endian targets are refused at compile time.
//!
//! | file | job |
//! | --- | --- |
//! | `params.rs` | [`SchemeParams`]: the validated parameter type and the sizes it implies |
//! | `presets.rs` | the vetted parameter sets (the authors' store, this project's tuning) |
//! | `ring.rs` | the fixed ring, interned spiral-rs `Params`, message sizes and word checks |
//! | `client.rs` | key generation, query encryption, response decryption |
//! | `eval_keys.rs` | a client's evaluation keys as the server holds them |
//! | `database.rs` | encoding items into the NTT-form [`Database`] |
//! | `answer.rs` | answering a batch of queries: the phases in order |
//! | `expand.rs`, `first_dim.rs`, `fold.rs` | the phases |
//! | `kernel.rs` | the first dimension's inner product (portable, AVX2, AVX-512, chosen at run time) |
//! | `ntt.rs` | the ring's NTT for expansion and folding: AVX-512 with that kernel, else spiral-rs's |
//! | `poly_ops.rs` | reductions, products and CRT composition around the NTT: the same choice |
//!
//! `kernel.rs`, `ntt.rs`, `poly_ops.rs` and `ypir/simd.rs` are the only files with `unsafe` code (SIMD
//! intrinsics, behind a [`Kernel`], which exists only for a CPU that runs it). `scheme.rs` says
//! which engine a database uses; `ypir/` is the second engine.

mod answer;
mod client;
mod database;
#[cfg(test)]
mod decode_check;
mod eval_keys;
mod expand;
mod first_dim;
mod fold;
mod kernel;
mod ntt;
mod params;
mod poly_ops;
mod presets;
mod ring;
mod scheme;
pub mod ypir;

#[cfg(not(target_endian = "little"))]
compile_error!("the PIR wire format is little-endian and spiral-rs serialises natively");

pub use answer::AnswerPhases;
pub use client::ClientSecret;
pub(crate) use client::{decode, keygen, query};
pub use database::Database;
pub(crate) use database::{item_words, words_per_item};
pub use eval_keys::EvalKeys;
#[doc(hidden)]
pub use first_dim::FirstDimensionBench;
pub use kernel::{Kernel, KernelKind};
pub use params::{POLY_LEN, SchemeFields, SchemeParams};
pub use presets::{Preset, PresetOrigin};
pub use ring::MessageSizes;
pub(crate) use ring::legacy_form;
pub use scheme::{Engine, Scheme};
