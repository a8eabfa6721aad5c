//! Which PIR engine a database uses, with its shape: [`Scheme`], what a snapshot declares and a
//! client learns from the configuration.
//!
//! | engine | name | per-client server state | what travels |
//! | --- | --- | --- | --- |
//! | Spiral | `spiral` | registered evaluation keys | keys once; a 16 KB query per lookup |
//! | YPIR+SP | `ypir-sp` | none | packing keys and a query per lookup |
//!
//! The fixed encoding is one 52-byte block, so that a header's scheme has one size whatever
//! its engine: Spiral's fields ([`SchemeFields::to_le_bytes`], whose first word, n, is never
//! 0), or, for another engine, a 0 word, the engine's number (1: YPIR+SP) and its fields
//! (YPIR+SP: log2 of the rows, the instances), as little-endian u32, zero-padded.

use serde::Serialize;

use super::{
    params::{SchemeFields, SchemeParams},
    ring::MessageSizes,
    ypir::{YpirDatabase, YpirParams},
};
use crate::error::{CoreError, ParamsError, Result};

/// An engine, without its shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Spiral (Menon and Wu, IEEE S&P 2022): clients register evaluation keys.
    #[default]
    Spiral,
    /// YPIR+SP (Menon and Wu, USENIX Security 2024): nothing per client on the server.
    YpirSp,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Spiral, Engine::YpirSp];

    /// Its name on the command line and in reports: `spiral` or `ypir-sp`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Spiral => "spiral",
            Engine::YpirSp => "ypir-sp",
        }
    }

    /// Whether a client registers keys with the server before its queries.
    pub fn registers_keys(self) -> bool {
        self == Engine::Spiral
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown engine {s:?} (known: spiral, ypir-sp)"))
    }
}

/// A database's engine and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "engine", rename_all = "kebab-case")]
pub enum Scheme {
    /// A Spiral database.
    Spiral(SchemeParams),
    /// A YPIR+SP database.
    YpirSp(YpirParams),
}

/// The engine number of YPIR+SP in the fixed encoding.
const YPIR_SP_TAG: u32 = 1;

impl From<SchemeParams> for Scheme {
    fn from(p: SchemeParams) -> Self {
        Scheme::Spiral(p)
    }
}

impl From<YpirParams> for Scheme {
    fn from(p: YpirParams) -> Self {
        Scheme::YpirSp(p)
    }
}

impl Scheme {
    /// Bytes of the fixed encoding.
    pub const ENCODED_LEN: usize = SchemeFields::ENCODED_LEN;

    /// The shapes a build picks from when none is given, smallest database first: Spiral's
    /// vetted presets, or YPIR+SP's from 2^11 to 2^16 rows of one instance, then 2^16 rows of 2
    /// to 16 instances (queries stay under 1 MB: 7 bytes a row beside 473 KB of keys).
    pub fn presets(engine: Engine) -> Vec<Scheme> {
        match engine {
            Engine::Spiral => SchemeParams::vetted_presets()
                .map(|p| Scheme::Spiral(p.params))
                .collect(),
            Engine::YpirSp => (YpirParams::MIN_ROWS_LOG2..=16)
                .map(|rows| (rows, 1))
                .chain([(16, 2), (16, 4), (16, 8), (16, 16)])
                .filter_map(|(rows, instances)| YpirParams::new(rows, instances).ok())
                .map(Scheme::YpirSp)
                .collect(),
        }
    }

    /// Checks the shape (a YPIR+SP shape is checked when made).
    pub fn validate(&self) -> Result<()> {
        match self {
            Scheme::Spiral(p) => p.validate(),
            Scheme::YpirSp(_) => Ok(()),
        }
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        match self {
            Scheme::Spiral(_) => Engine::Spiral,
            Scheme::YpirSp(_) => Engine::YpirSp,
        }
    }

    /// The Spiral shape, for a Spiral database.
    pub fn spiral(&self) -> Option<&SchemeParams> {
        match self {
            Scheme::Spiral(p) => Some(p),
            Scheme::YpirSp(_) => None,
        }
    }

    /// The YPIR+SP shape, for a YPIR+SP database.
    pub fn ypir(&self) -> Option<&YpirParams> {
        match self {
            Scheme::YpirSp(p) => Some(p),
            Scheme::Spiral(_) => None,
        }
    }

    /// Items (buckets) of the database.
    pub fn num_items(&self) -> usize {
        match self {
            Scheme::Spiral(p) => p.num_items(),
            Scheme::YpirSp(p) => p.num_items(),
        }
    }

    /// Bytes of one item.
    pub fn item_bytes(&self) -> usize {
        match self {
            Scheme::Spiral(p) => p.item_bytes as usize,
            Scheme::YpirSp(p) => p.item_bytes(),
        }
    }

    /// Usable bytes of the whole database.
    pub fn capacity_bytes(&self) -> u64 {
        self.num_items() as u64 * self.item_bytes() as u64
    }

    /// Sizes of the public keys (none for YPIR+SP: its keys are in the query), a query and a
    /// response.
    pub fn message_sizes(&self) -> Result<MessageSizes> {
        match self {
            Scheme::Spiral(p) => p.message_sizes(),
            Scheme::YpirSp(p) => Ok(MessageSizes {
                public_keys: 0,
                legacy_public_keys: 0,
                query: p.query_bytes(),
                response: p.response_bytes(),
            }),
        }
    }

    /// Checks one query's bytes as answering would (length and every word), without answering.
    pub fn check_query(&self, query: &[u8]) -> Result<()> {
        match self {
            Scheme::Spiral(p) => p.check_query(query),
            Scheme::YpirSp(p) => YpirDatabase::check_query(p, query),
        }
    }

    /// log2 of the per-query correctness failure probability, by the engine's estimate.
    pub fn estimated_log2_failure(&self) -> Result<f64> {
        match self {
            Scheme::Spiral(p) => p.estimated_log2_failure(),
            Scheme::YpirSp(p) => Ok(p.estimated_log2_failure()),
        }
    }

    /// The fixed encoding (module docs).
    pub fn to_le_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        match self {
            Scheme::Spiral(p) => p.to_le_bytes(),
            Scheme::YpirSp(p) => {
                let mut out = [0u8; Self::ENCODED_LEN];
                let words = [
                    0,
                    YPIR_SP_TAG,
                    u32::from(p.rows_log2()),
                    p.instances() as u32,
                ];
                for (slot, w) in out.chunks_exact_mut(4).zip(words) {
                    slot.copy_from_slice(&w.to_le_bytes());
                }
                out
            }
        }
    }

    /// Decodes the fixed encoding and validates the shape.
    pub fn from_le_bytes(b: &[u8; Self::ENCODED_LEN]) -> Result<Self> {
        Self::parse(b).map_err(CoreError::Params)
    }

    /// Why the fixed encoding `b` is not a valid scheme, if it is not.
    pub(crate) fn check_le_bytes(b: &[u8; Self::ENCODED_LEN]) -> Result<(), ParamsError> {
        Self::parse(b).map(|_| ())
    }

    fn parse(b: &[u8; Self::ENCODED_LEN]) -> Result<Self, ParamsError> {
        let word = |i: usize| {
            let mut le = [0u8; 4];
            le.copy_from_slice(&b[4 * i..4 * i + 4]);
            u32::from_le_bytes(le)
        };
        if word(0) != 0 {
            return SchemeParams::decode_le_bytes(b).map(Scheme::Spiral);
        }
        let engine = word(1);
        if engine != YPIR_SP_TAG || b[16..].iter().any(|&x| x != 0) {
            return Err(ParamsError::Engine { engine });
        }
        let narrow = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
        YpirParams::new(narrow(word(2)), narrow(word(3)))
            .map(Scheme::YpirSp)
            .map_err(|e| match e {
                CoreError::Params(p) => p,
                _ => ParamsError::Engine { engine },
            })
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheme::Spiral(p) => p.fmt(f),
            Scheme::YpirSp(p) => p.fmt(f),
        }
    }
}

/// A header stores the scheme in its fixed encoding, validated on decoding.
impl bincode::Encode for Scheme {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> std::result::Result<(), bincode::error::EncodeError> {
        bincode::enc::write::Writer::write(encoder.writer(), &self.to_le_bytes())
    }
}

impl<C> bincode::Decode<C> for Scheme {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> std::result::Result<Self, bincode::error::DecodeError> {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        decoder.claim_bytes_read(Self::ENCODED_LEN)?;
        bincode::de::read::Reader::read(decoder.reader(), &mut bytes)?;
        Self::from_le_bytes(&bytes)
            .map_err(|e| bincode::error::DecodeError::OtherString(e.to_string()))
    }
}
bincode::impl_borrow_decode!(Scheme);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_encoding_round_trips_both_engines() {
        let spiral = Scheme::Spiral(SchemeParams::danger_test_only_small());
        let bytes = spiral.to_le_bytes();
        // A Spiral scheme encodes as its fields did before there were engines.
        assert_eq!(bytes, SchemeParams::danger_test_only_small().to_le_bytes());
        assert_eq!(Scheme::from_le_bytes(&bytes).unwrap(), spiral);
        let ypir = Scheme::YpirSp(YpirParams::new(15, 2).unwrap());
        let bytes = ypir.to_le_bytes();
        assert_eq!(
            bytes[..16],
            [0, 0, 0, 0, 1, 0, 0, 0, 15, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(Scheme::from_le_bytes(&bytes).unwrap(), ypir);
    }

    #[test]
    fn unknown_engines_and_bad_shapes_are_refused() {
        let mut bytes = Scheme::YpirSp(YpirParams::new(15, 1).unwrap()).to_le_bytes();
        bytes[4] = 7;
        assert!(matches!(
            Scheme::from_le_bytes(&bytes),
            Err(CoreError::Params(ParamsError::Engine { engine: 7 }))
        ));
        let mut bytes = Scheme::YpirSp(YpirParams::new(15, 1).unwrap()).to_le_bytes();
        bytes[8] = 40;
        assert!(matches!(
            Scheme::from_le_bytes(&bytes),
            Err(CoreError::Params(ParamsError::YpirRows { rows_log2: 40 }))
        ));
        let mut bytes = Scheme::YpirSp(YpirParams::new(15, 1).unwrap()).to_le_bytes();
        bytes[51] = 1;
        assert!(Scheme::from_le_bytes(&bytes).is_err());
        assert_eq!("ypir-sp".parse::<Engine>().unwrap(), Engine::YpirSp);
        assert!("pir".parse::<Engine>().is_err());
    }
}
