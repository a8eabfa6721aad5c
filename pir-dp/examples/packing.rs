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
    println!(
        "mappings\tcpis\trecord_bytes\titems\titem_bytes\tcapacity\tpacking\tfill\tfullest\tgroups\theader_bytes\tsalts\tnew_cpis_until_overflow\tplan_s"
    );
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
        let cpis = plan.cpis_in(0).unwrap();
        let layout = plan.layout(0).unwrap();
        // What the buckets hold: the records, each with its locator and AEAD tag, and a
        // header per bucket.
        let filled =
            records as usize + cpis * pir_core::keyword::RECORD_OVERHEAD + 4 * scheme.num_items();
        let header = pir_core::SnapshotHeader {
            scheme,
            layout: layout.clone(),
            epoch: 1,
            created_at: now,
            mapping_count: 0,
            opt_out_count: 0,
            cpi_count: 0,
            bucket_bytes: 0,
            record_bytes: 0,
            base: None,
            plaintext_checksum: [0; 32],
            db_checksum: [0; 32],
            signature: None,
        };
        // Update headroom: new CPIs with records of the mean size, placed as an update places
        // them (by their OPRF output), until one overflows its bucket; the median of 5 runs.
        let mean_cost = records as usize / cpis.max(1) + pir_core::keyword::RECORD_OVERHEAD;
        let item = scheme.item_bytes();
        let mut runs: Vec<usize> = (0..5u8)
            .map(|run| {
                let mut loads = plan.bucket_loads(0).unwrap();
                let mut added = 0;
                loop {
                    let cpi = pir_core::Cpi::parse(&format!("mailto:new{run}x{added}@example.org"))
                        .unwrap();
                    let y = oprf.evaluate(&cpi).unwrap();
                    let b = layout.locate(&y).location().bucket.0;
                    loads[b as usize] += mean_cost;
                    if loads[b as usize] > item {
                        break added;
                    }
                    added += 1;
                }
            })
            .collect();
        runs.sort_unstable();
        println!(
            "{count}\t{cpis}\t{records}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{}\t{}\t{}\t{}\t{secs:.1}",
            scheme.num_items(),
            scheme.item_bytes(),
            scheme.capacity_bytes(),
            records as f64 / scheme.capacity_bytes() as f64,
            filled as f64 / scheme.capacity_bytes() as f64,
            plan.fullest_bucket_bytes(0).unwrap() as f64 / scheme.item_bytes() as f64,
            layout.num_groups,
            header.to_bytes().unwrap().len(),
            plan.attempts_in(0).unwrap(),
            runs[2],
        );
    }
}
