//! The scheme parameters and the keyword layout, both ways: both sides of the wire send them.

use pir_core::{
    CoreError, KeywordLayout, SchemeFields, SchemeParams,
    error::LayoutError,
    keyword::ShardPosition,
    oprf::OprfPublicKey,
    pir::{Scheme, ypir::YpirParams},
};

use crate::v1;

/// Copies the scheme's fields, which the proto message and [`SchemeFields`] name alike, from
/// one to the other: the one place the field list is written on this side of the wire.
macro_rules! scheme_fields {
    ($from:expr => $to:path) => {{
        let f = $from;
        $to {
            n: f.n,
            nu_1: f.nu_1,
            nu_2: f.nu_2,
            p: f.p,
            q2_bits: f.q2_bits,
            t_gsw: f.t_gsw,
            t_conv: f.t_conv,
            t_exp_left: f.t_exp_left,
            t_exp_right: f.t_exp_right,
            instances: f.instances,
            item_bytes: f.item_bytes,
            version: f.version,
        }
    }};
}

impl From<&SchemeParams> for v1::SchemeParams {
    fn from(p: &SchemeParams) -> Self {
        scheme_fields!(p.fields() => v1::SchemeParams)
    }
}

impl TryFrom<&v1::SchemeParams> for SchemeParams {
    type Error = CoreError;
    fn try_from(p: &v1::SchemeParams) -> Result<Self, CoreError> {
        SchemeParams::try_from(scheme_fields!(p => SchemeFields))
    }
}

impl From<&YpirParams> for v1::YpirParams {
    fn from(p: &YpirParams) -> Self {
        Self {
            rows_log2: p.rows_log2().into(),
            instances: p.instances() as u32,
        }
    }
}

impl TryFrom<&v1::YpirParams> for YpirParams {
    type Error = CoreError;
    fn try_from(p: &v1::YpirParams) -> Result<Self, CoreError> {
        let narrow = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
        YpirParams::new(narrow(p.rows_log2), narrow(p.instances))
    }
}

/// The configuration's engine fields (`scheme` or `ypir`) for a scheme.
pub(crate) fn scheme_fields(s: &Scheme) -> (Option<v1::SchemeParams>, Option<v1::YpirParams>) {
    match s {
        Scheme::Spiral(p) => (Some(p.into()), None),
        Scheme::YpirSp(p) => (None, Some(p.into())),
    }
}

impl From<&KeywordLayout> for v1::KeywordLayout {
    fn from(l: &KeywordLayout) -> Self {
        Self {
            version: l.version,
            salt: l.salt.to_vec(),
            num_buckets: l.num_buckets,
            oprf_public_key: l.oprf_key.to_bytes().to_vec(),
            shard_index: l.shard.index,
            shard_count: l.shard.count,
            num_groups: l.num_groups,
            choices: l.choices.clone(),
            msps: l.msps.clone(),
            issuers: l.issuers.iter().map(|i| i.to_vec()).collect(),
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
        let oprf_key = OprfPublicKey::from_bytes(&l.oprf_public_key)
            .map_err(|_| CoreError::Layout(LayoutError::OprfKey))?;
        let issuers = l
            .issuers
            .iter()
            .map(|i| <[u8; 8]>::try_from(i.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CoreError::Layout(LayoutError::IssuerLength))?;
        let layout = Self {
            version: l.version,
            salt,
            num_buckets: l.num_buckets,
            num_groups: l.num_groups,
            choices: l.choices.clone(),
            msps: l.msps.clone(),
            issuers,
            oprf_key,
            shard: ShardPosition {
                index: l.shard_index,
                count: l.shard_count,
            },
        };
        layout.validate()?;
        Ok(layout)
    }
}
