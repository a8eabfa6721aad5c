//! Fixtures for tests of this crate and the crates above it (feature `test-utils`).
//!
//! Fixtures panic on failure, as tests do.
#![allow(clippy::expect_used)]

use pir_core::{KeywordLayout, SchemeParams};

use crate::v1;

/// A `GetConfigResponse` as a server at epoch 9 sends it for the small test shape, with every
/// field set to a value of its own so that a test can tell them apart.
pub fn config_response() -> v1::GetConfigResponse {
    let scheme = SchemeParams::danger_test_only_small();
    let layout = KeywordLayout::new([7; 32], scheme.num_items() as u32)
        .expect("the small shape's layout is valid");
    v1::GetConfigResponse {
        epoch: 9,
        scheme: Some((&scheme).into()),
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
    }
}
