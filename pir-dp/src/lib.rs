//! `pir-dp`: the Discovery Provider's offline tooling, as a library.
//!
//! ```text
//! issuer-keygen ─▶ issuer.key/.pub          dp-keygen ─▶ dp.key/.pub
//! synth / your own signed mappings ─▶ mappings.jsonl ─build─▶ db.pirsnap ─verify / inspect
//!                        delta.jsonl ─update (db.pirsnap)──▶ new.pirsnap (a delta, or --full)
//! ```
//!
//! Every step works on files and returns a report that prints as the `pir-server` subcommand of
//! the same name prints it ([`Display`](std::fmt::Display)) and serialises for machines
//! ([`serde::Serialize`]). Nothing here serves, or knows about the network: the server crate
//! calls this one, never the other way round.
//!
//! Where each job lives: keys and key files in `keys.rs`, synthetic mappings in `synth.rs`,
//! reading and writing JSON Lines (with line numbers) in `jsonl.rs`, `build.rs`, `update.rs`,
//! `verify.rs`, `inspect.rs`, sharded directories (`build --shards`, `manifest`, `update
//! --manifest`) in `shards.rs`, the rule that epochs only rise in `epochs.rs`, where outputs may
//! go in `paths.rs`, progress bars (and loading a snapshot behind one) in `progress.rs`, the text form of times and sizes in `human.rs`, the
//! JSON form of reports in `report.rs`, and the one error type in `error.rs`.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod build;
mod epochs;
mod error;
mod human;
mod inspect;
mod jsonl;
mod keys;
mod paths;
mod progress;
mod report;
mod shards;
mod synth;
mod update;
mod verify;

pub use build::{BuildArgs, BuildSummary, build};
pub use epochs::EpochFloor;
pub use error::{DpError, InvalidLine, IoOp};
pub use inspect::{Description, Origin, VettedPreset, describe, inspect};
pub use jsonl::{ReadMappings, read_delta, read_mappings, write_jsonl};
pub use keys::{
    dp_keygen, issuer_keygen, oprf_keygen, public_key_path, read_dp_key, read_dp_pub,
    read_issuer_key, read_oprf_key, read_trust, write_private,
};
pub use progress::progress_bar;
pub use report::Report;
pub use shards::{
    ManifestArgs, ManifestDescription, ManifestSummary, ManifestVerified, ShardLine, ShardSummary,
    ShardUpdate, ShardedBuildArgs, ShardedBuildSummary, ShardedUpdateArgs, ShardedUpdateSummary,
    assemble_manifest, build_sharded, inspect_manifest, is_manifest, update_sharded,
    verify_manifest,
};
pub use synth::{SynthArgs, SynthSummary, synth, synth_to_file};
pub use update::{UpdateArgs, UpdateRun, UpdateSummary, update, update_with};
pub use verify::{DpSignature, Verified, verify};
