//! Packing efficiency per database size, without encoding a database: synthetic mappings (as
//! `synth`), verified, planned as `build` plans them, and the chosen shape reported.
//!
//! ```text
//! cargo run --release -p pir-dp --example packing -- 10000 100000 1000000
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use pir_core::{
    BuildOptions, IssuerKey, TrustStore, VerifiedMapping,
    oprf::OprfKey,
    snapshot::{BuildInput, ShardedBuild},
};
use rayon::prelude::*;

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a mapping count"))
        .collect();
    let issuer = IssuerKey::from_seed(&[11; 32]);
    let trust = TrustStore::parse(&issuer.to_public_text()).unwrap();
    let oprf = OprfKey::derive(&[0x0f; 32], b"pir-discovery packing tool").unwrap();
    let now = 1_800_000_000;
    println!("mappings\tcpis\trecord_bytes\titems\titem_bytes\tcapacity\tpacking\tplan_s");
    for count in counts {
        let mappings = pir_dp::synth(count, &issuer, 1, now).unwrap();
        let mappings: Vec<VerifiedMapping> = mappings
            .into_par_iter()
            .map(|m| VerifiedMapping::new(m, &trust).unwrap())
            .collect();
        let input = BuildInput {
            mappings,
            opt_outs: Vec::new(),
        };
        let opts = BuildOptions {
            epoch: 1,
            now,
            salt: Some([9; 32]),
            ..BuildOptions::default()
        };
        let start = Instant::now();
        let plan = ShardedBuild::plan(input, &oprf, &opts, 1).unwrap();
        let secs = start.elapsed().as_secs_f64();
        let scheme = plan.scheme();
        let records = plan.record_bytes_in(0).unwrap();
        println!(
            "{count}\t{}\t{records}\t{}\t{}\t{}\t{:.3}\t{secs:.1}",
            plan.cpis_in(0).unwrap(),
            scheme.num_items(),
            scheme.item_bytes,
            scheme.capacity_bytes(),
            records as f64 / scheme.capacity_bytes() as f64,
        );
    }
}
