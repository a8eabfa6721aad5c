//! Conversions between wire types and `pir-core` types.

use pir_core::{
    CoreError, KeywordLayout, LookupConfig, SchemeParams, Snapshot, error::LayoutError,
};

use crate::v1;

/// Why a wire message does not convert.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A required field is absent.
    #[error("config lacks {field}")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
    /// A field that does not validate.
    #[error(transparent)]
    Invalid(#[from] CoreError),
}

impl From<&SchemeParams> for v1::SchemeParams {
    fn from(p: &SchemeParams) -> Self {
        Self {
            n: p.n,
            nu_1: p.nu_1,
            nu_2: p.nu_2,
            p: p.p,
            q2_bits: p.q2_bits,
            t_gsw: p.t_gsw,
            t_conv: p.t_conv,
            t_exp_left: p.t_exp_left,
            t_exp_right: p.t_exp_right,
            instances: p.instances,
            item_bytes: p.item_bytes,
            version: p.version,
        }
    }
}

impl TryFrom<&v1::SchemeParams> for SchemeParams {
    type Error = CoreError;
    fn try_from(p: &v1::SchemeParams) -> Result<Self, CoreError> {
        let params = Self {
            n: p.n,
            nu_1: p.nu_1,
            nu_2: p.nu_2,
            p: p.p,
            q2_bits: p.q2_bits,
            t_gsw: p.t_gsw,
            t_conv: p.t_conv,
            t_exp_left: p.t_exp_left,
            t_exp_right: p.t_exp_right,
            instances: p.instances,
            item_bytes: p.item_bytes,
            version: p.version,
        };
        params.validate()?;
        Ok(params)
    }
}

impl From<&KeywordLayout> for v1::KeywordLayout {
    fn from(l: &KeywordLayout) -> Self {
        Self {
            version: l.version,
            salt: l.salt.to_vec(),
            num_buckets: l.num_buckets,
        }
    }
}

impl TryFrom<&v1::KeywordLayout> for KeywordLayout {
    type Error = CoreError;
    fn try_from(l: &v1::KeywordLayout) -> Result<Self, CoreError> {
        let salt: [u8; 32] = l
            .salt
            .as_slice()
            .try_into()
            .map_err(|_| CoreError::Layout(LayoutError::SaltLength { got: l.salt.len() }))?;
        let layout = Self {
            version: l.version,
            salt,
            num_buckets: l.num_buckets,
        };
        layout.validate()?;
        Ok(layout)
    }
}

/// A `GetConfigResponse` from the wire, validated into what a client needs.
///
/// Made only by `TryFrom<v1::GetConfigResponse>`, which checks the scheme, the layout and that
/// they agree; the fields are private so that a `ConfigIn` is always one that checked out.
#[derive(Clone, Debug)]
pub struct ConfigIn {
    lookup: LookupConfig,
    max_queries_per_request: u32,
    max_message_bytes: u64,
    sizes: ReportedSizes,
    mapping_count: u64,
    cpi_count: u64,
    created_at: u64,
    packing_efficiency: f64,
}

/// Message sizes as the server reports them, bytes: informational (a client computes its own
/// from the scheme), and all zero when the server sends none.
///
/// Kept as the wire's `u64`s rather than `pir_core::MessageSizes` (`usize`), so that a value a
/// 32-bit client cannot hold is still shown, not refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportedSizes {
    /// The client's public (evaluation) keys.
    pub public_keys: u64,
    /// One query.
    pub query: u64,
    /// One response.
    pub response: u64,
}

impl ConfigIn {
    /// Scheme, layout and epoch: what a client needs to query the snapshot.
    pub fn lookup(&self) -> &LookupConfig {
        &self.lookup
    }

    /// Largest batch the server takes (at least 1).
    pub fn max_queries_per_request(&self) -> u32 {
        self.max_queries_per_request
    }

    /// Largest message the server takes, bytes; 0 when it states no limit.
    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
    }

    /// The message sizes the server reports.
    pub fn sizes(&self) -> ReportedSizes {
        self.sizes
    }

    /// Mappings in the snapshot (informational).
    pub fn mapping_count(&self) -> u64 {
        self.mapping_count
    }

    /// Distinct CPIs in the snapshot (informational).
    pub fn cpi_count(&self) -> u64 {
        self.cpi_count
    }

    /// When the snapshot was built, unix seconds (informational).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// Record bytes over database capacity (informational).
    pub fn packing_efficiency(&self) -> f64 {
        self.packing_efficiency
    }
}

impl From<v1::MessageSizes> for ReportedSizes {
    fn from(s: v1::MessageSizes) -> Self {
        Self {
            public_keys: s.public_keys,
            query: s.query,
            response: s.response,
        }
    }
}

impl TryFrom<v1::GetConfigResponse> for ConfigIn {
    type Error = ConvertError;
    fn try_from(raw: v1::GetConfigResponse) -> Result<Self, ConvertError> {
        let missing = |field| ConvertError::Missing { field };
        let scheme = SchemeParams::try_from(raw.scheme.as_ref().ok_or_else(|| missing("scheme"))?)?;
        let layout =
            KeywordLayout::try_from(raw.layout.as_ref().ok_or_else(|| missing("layout"))?)?;
        if layout.num_buckets as usize != scheme.num_items() {
            return Err(CoreError::BucketCount {
                buckets: layout.num_buckets,
                items: scheme.num_items(),
            }
            .into());
        }
        let limits = raw.limits.unwrap_or_default();
        Ok(Self {
            lookup: LookupConfig {
                scheme,
                layout,
                epoch: raw.epoch,
            },
            max_queries_per_request: limits.max_queries_per_request.max(1),
            max_message_bytes: limits.max_message_bytes,
            sizes: raw.sizes.map(ReportedSizes::from).unwrap_or_default(),
            mapping_count: raw.mapping_count,
            cpi_count: raw.cpi_count,
            created_at: raw.created_at,
            packing_efficiency: raw.packing_efficiency,
        })
    }
}

impl v1::GetConfigResponse {
    /// The configuration of a snapshot served with these limits.
    pub fn for_snapshot(snapshot: &Snapshot, limits: v1::Limits) -> Result<Self, CoreError> {
        let h = snapshot.header();
        let sizes = snapshot.message_sizes()?;
        Ok(Self {
            epoch: h.epoch,
            scheme: Some((&h.scheme).into()),
            layout: Some((&h.layout).into()),
            limits: Some(limits),
            sizes: Some(v1::MessageSizes {
                public_keys: sizes.public_keys as u64,
                query: sizes.query as u64,
                response: sizes.response as u64,
            }),
            mapping_count: h.mapping_count,
            cpi_count: h.cpi_count,
            created_at: h.created_at,
            packing_efficiency: h.packing_efficiency(),
        })
    }
}

#[cfg(test)]
mod tests {
    use pir_core::error::{LayoutError, ParamsError};

    use super::*;

    fn config() -> v1::GetConfigResponse {
        let scheme = SchemeParams::danger_test_only_small();
        let layout = KeywordLayout::new([7; 32], scheme.num_items() as u32).unwrap();
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

    #[test]
    fn config_carries_every_field() {
        let c = ConfigIn::try_from(config()).unwrap();
        assert_eq!(c.lookup().epoch, 9);
        assert_eq!(c.lookup().scheme, SchemeParams::danger_test_only_small());
        assert_eq!(c.lookup().layout.salt, [7; 32]);
        assert_eq!(c.max_queries_per_request(), 4);
        assert_eq!(c.max_message_bytes(), 64 << 20);
        let sizes = ReportedSizes {
            public_keys: 1 << 20,
            query: 30_000,
            response: 20_000,
        };
        assert_eq!(c.sizes(), sizes);
        assert_eq!(c.mapping_count(), 205);
        assert_eq!(c.cpi_count(), 203);
        assert_eq!(c.created_at(), 1_700_000_000);
        assert_eq!(c.packing_efficiency(), 0.0123);
    }

    #[test]
    fn config_without_limits_or_sizes_takes_defaults() {
        let c = ConfigIn::try_from(v1::GetConfigResponse {
            limits: None,
            sizes: None,
            ..config()
        })
        .unwrap();
        assert_eq!(c.max_queries_per_request(), 1);
        assert_eq!(c.max_message_bytes(), 0);
        assert_eq!(c.sizes(), ReportedSizes::default());
    }

    #[test]
    fn config_refuses_missing_scheme_or_layout() {
        let no_scheme = v1::GetConfigResponse {
            scheme: None,
            ..config()
        };
        assert!(matches!(
            ConfigIn::try_from(no_scheme),
            Err(ConvertError::Missing { field: "scheme" })
        ));
        let no_layout = v1::GetConfigResponse {
            layout: None,
            ..config()
        };
        assert!(matches!(
            ConfigIn::try_from(no_layout),
            Err(ConvertError::Missing { field: "layout" })
        ));
    }

    #[test]
    fn config_refuses_invalid_scheme() {
        let mut c = config();
        if let Some(s) = c.scheme.as_mut() {
            s.n = 0;
        }
        assert!(matches!(
            ConfigIn::try_from(c),
            Err(ConvertError::Invalid(CoreError::Params(ParamsError::N {
                n: 0
            })))
        ));
    }

    #[test]
    fn config_refuses_short_salt() {
        let mut c = config();
        if let Some(l) = c.layout.as_mut() {
            l.salt.truncate(31);
        }
        assert!(matches!(
            ConfigIn::try_from(c),
            Err(ConvertError::Invalid(CoreError::Layout(
                LayoutError::SaltLength { got: 31 }
            )))
        ));
    }

    #[test]
    fn config_refuses_layout_for_another_shape() {
        let mut c = config();
        if let Some(l) = c.layout.as_mut() {
            l.num_buckets /= 2;
        }
        assert!(matches!(
            ConfigIn::try_from(c),
            Err(ConvertError::Invalid(CoreError::BucketCount {
                buckets: 128,
                items: 256
            }))
        ));
    }
}
