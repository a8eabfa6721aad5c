//! Packing: the balanced placement (layout version 3's choice table) fills a shape to well
//! above 90% on average with no bucket over the build's fill limit, on the first salt, where
//! one hash per CPI overflowed its fullest bucket at about two thirds. A small shape stands for
//! the large ones (`cargo run --release -p pir-dp --example packing` measures those).

use pir_core::{
    BuildOptions,
    keyword::RECORD_OVERHEAD,
    snapshot::{DEFAULT_FILL_PERCENT, ShardedBuild},
    testing::{NOW, mapping_valid, oprf_key, small_scheme, verified_input},
};

#[test]
fn a_small_shape_fills_to_94_percent_within_the_fill_limit() {
    let scheme = small_scheme();
    let items = scheme.num_items();
    let item = scheme.item_bytes as usize;
    // One mapping a CPI with a PSI and a context: 118-byte records, 140 bytes in a bucket.
    let n = 14_200;
    let mappings = (0..n)
        .map(|i| {
            mapping_valid(
                &format!("mailto:user{i}@example.org"),
                "chat.example",
                Some(&format!("@user{i:06}:chat.example")),
                Some("personal"),
                (0, u64::MAX),
                None,
            )
        })
        .collect();
    let opts = BuildOptions {
        epoch: 1,
        now: NOW,
        salt: Some([3; 32]),
        scheme: Some(scheme.into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let plan =
        ShardedBuild::plan(verified_input(mappings, Vec::new()), &oprf_key(), &opts, 1).unwrap();
    let records = plan.record_bytes_in(0).unwrap() as usize;
    let filled = records + n * RECORD_OVERHEAD + 4 * items;
    let capacity = items * item;
    let mean = filled as f64 / capacity as f64;
    assert!(mean > 0.92, "mean fill {mean}");
    let limit = 4 + (item - 4) * usize::from(DEFAULT_FILL_PERCENT) / 100;
    let fullest = plan.fullest_bucket_bytes(0).unwrap();
    assert!(fullest <= limit, "fullest {fullest} of {item}");
    let packing = records as f64 / capacity as f64;
    assert!(packing >= 0.78, "packing {packing}");
    // The table: 2 bits a group, about a quarter as many groups as CPIs.
    let layout = plan.layout(0).unwrap();
    assert_eq!(layout.num_groups as usize, n.div_ceil(4));
    assert_eq!(layout.choices.len(), n.div_ceil(4).div_ceil(4));
}
