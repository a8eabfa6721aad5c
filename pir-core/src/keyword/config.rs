//! What a client needs to know to query a snapshot.

use crate::{keyword::KeywordLayout, pir::SchemeParams};

/// What a client needs to know to query a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    /// Spiral parameters.
    pub scheme: SchemeParams,
    /// Keyword layout.
    pub layout: KeywordLayout,
    /// Snapshot epoch.
    pub epoch: u64,
}
