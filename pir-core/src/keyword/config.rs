//! What a client needs to know to query a snapshot.

use crate::{
    error::{CoreError, LayoutError, Result},
    keyword::{KeywordLayout, MAX_ITEM_BYTES},
    pir::SchemeParams,
};

/// What a client needs to know to query a snapshot: checked once, when it is made, so that
/// every holder can rely on the layout being valid and having one bucket per database item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    scheme: SchemeParams,
    layout: KeywordLayout,
    epoch: u64,
}

impl LookupConfig {
    /// Checks that `layout` is valid and has one bucket per item of `scheme`, items its
    /// locators can address.
    pub fn new(scheme: SchemeParams, layout: KeywordLayout, epoch: u64) -> Result<Self> {
        layout.validate()?;
        if scheme.item_bytes > MAX_ITEM_BYTES {
            return Err(CoreError::Layout(LayoutError::ItemBytes {
                item_bytes: scheme.item_bytes,
            }));
        }
        if layout.num_buckets as usize != scheme.num_items() {
            return Err(CoreError::BucketCount {
                buckets: layout.num_buckets,
                items: scheme.num_items(),
            });
        }
        Ok(Self {
            scheme,
            layout,
            epoch,
        })
    }

    /// A configuration from a snapshot header, which [`LookupConfig::new`] checked when the
    /// snapshot was loaded or built.
    pub(crate) fn of_checked_header(
        scheme: SchemeParams,
        layout: KeywordLayout,
        epoch: u64,
    ) -> Self {
        debug_assert!(Self::new(scheme, layout.clone(), epoch).is_ok());
        Self {
            scheme,
            layout,
            epoch,
        }
    }

    /// Spiral parameters.
    pub fn scheme(&self) -> &SchemeParams {
        &self.scheme
    }

    /// Keyword layout.
    pub fn layout(&self) -> &KeywordLayout {
        &self.layout
    }

    /// Snapshot epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}
