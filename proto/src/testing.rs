//! Fixtures for tests of this crate and the crates above it (feature `test-utils`).
//!
//! Fixtures panic on failure, as tests do.
#![allow(clippy::expect_used)]

use pir_core::{KeywordLayout, SchemeParams, SnapshotHeader};

use crate::v1;

/// The (unsigned) snapshot header [`config_response`] carries.
pub fn config_header() -> SnapshotHeader {
    let scheme = SchemeParams::danger_test_only_small();
    SnapshotHeader {
        scheme: scheme.into(),
        layout: KeywordLayout::new(
            [7; 32],
            scheme.num_items() as u32,
            144,
            pir_core::testing::oprf_key().public(),
        )
        .and_then(|l| {
            l.with_dictionaries(
                vec!["chat.example".into()],
                vec![pir_core::testing::issuer().id()],
            )
        })
        .expect("the small shape's layout is valid"),
        epoch: 9,
        created_at: 1_700_000_000,
        mapping_count: 205,
        opt_out_count: 2,
        cpi_count: 203,
        bucket_bytes: 29_100,
        record_bytes: 25_800,
        base: None,
        plaintext_checksum: [1; 32],
        db_checksum: [2; 32],
        signature: None,
    }
}

/// A `GetConfigResponse` as a server at epoch 9 sends it for the small test shape, with every
/// field set to a value of its own so that a test can tell them apart, and the snapshot header
/// [`config_header`] that agrees with them.
pub fn config_response() -> v1::GetConfigResponse {
    let header = config_header();
    let (scheme, layout) = (header.scheme, header.layout.clone());
    v1::GetConfigResponse {
        epoch: 9,
        scheme: scheme.spiral().map(Into::into),
        ypir: None,
        layout: Some((&layout).into()),
        limits: Some(v1::Limits {
            max_queries_per_request: 4,
            max_message_bytes: 64 << 20,
        }),
        sizes: Some(v1::MessageSizes {
            public_keys: 1 << 20,
            query: 30_000,
            response: 20_000,
        }),
        mapping_count: 205,
        cpi_count: 203,
        created_at: 1_700_000_000,
        packing_efficiency: 0.0123,
        snapshot_header: header.to_bytes().expect("a header always encodes"),
        manifest: Vec::new(),
        served_shards: vec![0],
    }
}
