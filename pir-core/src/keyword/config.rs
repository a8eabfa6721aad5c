//! What a client needs to know to query a snapshot.

use crate::{
    error::{CoreError, LayoutError, Result},
    keyword::{KeywordLayout, MAX_ITEM_BYTES},
    pir::Scheme,
};

/// What a client needs to know to query a snapshot: checked once, when it is made, so that
/// every holder can rely on the layout being valid and having one bucket per database item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    scheme: Scheme,
    layout: KeywordLayout,
    epoch: u64,
}

impl LookupConfig {
    /// Checks that `layout` is valid and has one bucket per item of `scheme`, items its
    /// locators can address.
    pub fn new(scheme: impl Into<Scheme>, layout: KeywordLayout, epoch: u64) -> Result<Self> {
        let scheme = scheme.into();
        layout.validate()?;
        if scheme.item_bytes() > MAX_ITEM_BYTES as usize {
            return Err(CoreError::Layout(LayoutError::ItemBytes {
                item_bytes: u32::try_from(scheme.item_bytes()).unwrap_or(u32::MAX),
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
    pub(crate) fn of_checked_header(scheme: Scheme, layout: KeywordLayout, epoch: u64) -> Self {
        debug_assert!(Self::new(scheme, layout.clone(), epoch).is_ok());
        Self {
            scheme,
            layout,
            epoch,
        }
    }

    /// The database's engine and shape.
    pub fn scheme(&self) -> &Scheme {
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
