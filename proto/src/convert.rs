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
#[derive(Clone, Debug)]
pub struct ConfigIn {
    /// Scheme, layout and epoch.
    pub lookup: LookupConfig,
    /// Largest batch the server takes.
    pub max_queries_per_request: u32,
    /// Largest message the server takes, bytes.
    pub max_message_bytes: u64,
    /// The full response, for display.
    pub raw: v1::GetConfigResponse,
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
            raw,
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
