//! Scheme parameters: one validated type and the sizes it implies (the vetted presets are in
//! `presets.rs`).
//!
//! Symbols follow the Spiral paper (Menon and Wu, IEEE S&P 2022). The ring is fixed by the
//! adapter: degree d = 2048, ciphertext modulus q = 268369921 * 249561089 (about 2^56), error
//! width sigma = 6.4, which the paper estimates at 128-bit classical security. The presets are the
//! paper's parameter-search results (the `params_store.json` of the authors' implementation), chosen for a correctness failure probability of at most 2^-40 per query, for
//! 8 KiB and 16 KiB items.

use serde::Serialize;

use crate::error::{CoreError, ParamsError, Result};

/// Ring degree d.
pub const POLY_LEN: usize = 2048;

/// The fields of one Spiral database shape, unchecked: what a caller fills in to ask for a
/// shape ([`SchemeParams::try_from`]) and what a [`SchemeParams`] lets one read (it derefs to
/// them). This is the one list of the fields; the fixed encoding, `Display`, JSON and the proto
/// conversions are all written from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SchemeFields {
    /// n: plaintext matrices are n x n polynomials.
    pub n: u32,
    /// nu_1 (ν1): log2 of the first dimension's size.
    pub nu_1: u32,
    /// nu_2 (ν2): number of further (folding) dimensions, each of size 2.
    pub nu_2: u32,
    /// p: plaintext modulus (4, 16 or 256: a whole number of coefficients per byte).
    pub p: u64,
    /// log2 of q2, the modulus the response's first row is rescaled to.
    pub q2_bits: u32,
    /// t_GSW: gadget length of the folding ciphertexts.
    pub t_gsw: u32,
    /// t_conv: gadget length of the packing (conversion) keys.
    pub t_conv: u32,
    /// t_exp,left: gadget length of the query-expansion keys (first dimension).
    pub t_exp_left: u32,
    /// t_exp,right: gadget length of the query-expansion keys (folding dimensions).
    pub t_exp_right: u32,
    /// Number of independent n x n plaintexts per item.
    pub instances: u32,
    /// Usable bytes of one item.
    pub item_bytes: u32,
    /// Spiral key-layout version (0: version 1 is not supported).
    pub version: u32,
}

impl SchemeFields {
    /// Bytes of the fixed encoding ([`SchemeFields::to_le_bytes`]).
    pub const ENCODED_LEN: usize = 11 * 4 + 8;

    /// The one fixed encoding, little-endian, as key files and snapshot headers store it: `n`,
    /// `nu_1`, `nu_2` (u32), `p` (u64), then `q2_bits`, `t_gsw`, `t_conv`, `t_exp_left`,
    /// `t_exp_right`, `instances`, `item_bytes`, `version` (u32).
    pub fn to_le_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let f = self;
        let mut out = [0u8; Self::ENCODED_LEN];
        let (head, tail) = out.split_at_mut(12);
        for (slot, v) in head.chunks_exact_mut(4).zip([f.n, f.nu_1, f.nu_2]) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        let (p, rest) = tail.split_at_mut(8);
        p.copy_from_slice(&f.p.to_le_bytes());
        let words = [
            f.q2_bits,
            f.t_gsw,
            f.t_conv,
            f.t_exp_left,
            f.t_exp_right,
            f.instances,
            f.item_bytes,
            f.version,
        ];
        for (slot, v) in rest.chunks_exact_mut(4).zip(words) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// Parameters of one Spiral database shape, checked: made only by the presets
/// ([`SchemeParams::vetted_presets`]), by [`SchemeParams::try_from`] a [`SchemeFields`], or by
/// decoding the fixed encoding ([`SchemeParams::from_le_bytes`]), each of which validates. The
/// fields are read through `Deref` and never written: change a shape by making a new one from
/// `SchemeFields { nu_2: 3, ..*params }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SchemeParams(SchemeFields);

impl std::ops::Deref for SchemeParams {
    type Target = SchemeFields;
    fn deref(&self) -> &SchemeFields {
        &self.0
    }
}

impl TryFrom<SchemeFields> for SchemeParams {
    type Error = CoreError;
    fn try_from(fields: SchemeFields) -> Result<Self> {
        let params = Self(fields);
        params.validate()?;
        Ok(params)
    }
}

impl std::fmt::Display for SchemeParams {
    /// `Spiral n=2 nu_1=9 nu_2=6 p=256 q2_bits=20 t_gsw=8 t_conv=4 t_exp=8/56 instances=1
    /// version=0`, the form tools print.
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let f = &self.0;
        write!(
            out,
            "Spiral n={} nu_1={} nu_2={} p={}",
            f.n, f.nu_1, f.nu_2, f.p
        )?;
        let (q2, gsw, conv) = (f.q2_bits, f.t_gsw, f.t_conv);
        write!(out, " q2_bits={q2} t_gsw={gsw} t_conv={conv}")?;
        let (left, right) = (f.t_exp_left, f.t_exp_right);
        write!(out, " t_exp={left}/{right} instances={}", f.instances)?;
        write!(out, " version={}", f.version)
    }
}

impl SchemeParams {
    /// Bytes of the fixed encoding ([`SchemeFields::to_le_bytes`], which a `SchemeParams`
    /// reaches through `Deref`).
    pub const ENCODED_LEN: usize = SchemeFields::ENCODED_LEN;

    /// A preset's parameters, checked by the presets' tests rather than at each use.
    pub(super) const fn preset(fields: SchemeFields) -> Self {
        Self(fields)
    }

    /// The fields, to make a changed copy from.
    pub fn fields(&self) -> SchemeFields {
        self.0
    }

    /// Decodes [`SchemeFields::to_le_bytes`] and validates the result.
    pub fn from_le_bytes(b: &[u8; Self::ENCODED_LEN]) -> Result<Self> {
        Self::try_from(Self::fields_from_le_bytes(b))
    }

    /// Decodes the fixed encoding and validates it, with the bare reason.
    pub(crate) fn decode_le_bytes(b: &[u8; Self::ENCODED_LEN]) -> Result<Self, ParamsError> {
        let params = Self(Self::fields_from_le_bytes(b));
        params.check()?;
        Ok(params)
    }

    /// Decodes the fixed encoding without validating it.
    fn fields_from_le_bytes(b: &[u8; Self::ENCODED_LEN]) -> SchemeFields {
        // Fixed offsets into a fixed-length array: every slice is in range.
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
        SchemeFields {
            n: u32_at(0),
            nu_1: u32_at(4),
            nu_2: u32_at(8),
            p: u64::from_le_bytes(b[12..20].try_into().unwrap_or_default()),
            q2_bits: u32_at(20),
            t_gsw: u32_at(24),
            t_conv: u32_at(28),
            t_exp_left: u32_at(32),
            t_exp_right: u32_at(36),
            instances: u32_at(40),
            item_bytes: u32_at(44),
            version: u32_at(48),
        }
    }

    /// Checks that the adapter can run these parameters without tripping spiral-rs's asserts.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(CoreError::Params)
    }

    /// [`SchemeParams::validate`], with the bare reason.
    pub(crate) fn check(&self) -> Result<(), ParamsError> {
        let bad = Err;
        if !(1..=8).contains(&self.n) {
            return bad(ParamsError::N { n: self.n });
        }
        if !(2..=11).contains(&self.nu_1) || !(1..=11).contains(&self.nu_2) {
            return bad(ParamsError::Dimensions {
                nu_1: self.nu_1,
                nu_2: self.nu_2,
            });
        }
        if self.nu_1 + self.nu_2 > 22 {
            return bad(ParamsError::TooManyItems);
        }
        if ![4, 16, 256].contains(&self.p) {
            return bad(ParamsError::PlaintextModulus { p: self.p });
        }
        // spiral-rs's NTT over q2 overflows for q2 of 31 bits and more.
        if !(14..=30).contains(&self.q2_bits) {
            return bad(ParamsError::Q2Bits {
                q2_bits: self.q2_bits,
            });
        }
        // Below 4, the gadget decompositions are too coarse for the noise: lookups decode wrong.
        for (name, t) in [
            ("t_gsw", self.t_gsw),
            ("t_conv", self.t_conv),
            ("t_exp_left", self.t_exp_left),
            ("t_exp_right", self.t_exp_right),
        ] {
            if !(4..=56).contains(&t) {
                return bad(ParamsError::GadgetLength { name, t });
            }
        }
        // Query expansion produces 2^g ciphertexts from one polynomial of d coefficients, the
        // first dimension's at even and the folding bits' at odd indices: each half must fit.
        let dim0 = 1usize << self.nu_1;
        let folding = (self.t_gsw * self.nu_2) as usize;
        let expanded = (dim0 + folding).next_power_of_two();
        if expanded > POLY_LEN || 2 * dim0.max(folding) > expanded {
            return bad(ParamsError::Expansion {
                nu_1: self.nu_1,
                nu_2: self.nu_2,
                t_gsw: self.t_gsw,
            });
        }
        if !(1..=64).contains(&self.instances) {
            return bad(ParamsError::Instances {
                instances: self.instances,
            });
        }
        // Key layout version 1 sizes its packing keys for n = 2 only; every preset is version 0.
        if self.version != 0 {
            return bad(ParamsError::Version {
                version: self.version,
            });
        }
        if self.item_bytes == 0 || self.item_bytes as usize > self.item_capacity() {
            return bad(ParamsError::ItemBytes {
                item_bytes: self.item_bytes,
                capacity: self.item_capacity(),
            });
        }
        Ok(())
    }

    /// log2(p): bits per plaintext coefficient.
    pub fn log2_p(&self) -> u32 {
        self.p.trailing_zeros()
    }

    /// Plaintext bytes one item can hold.
    pub fn item_capacity(&self) -> usize {
        (self.instances * self.n * self.n) as usize * POLY_LEN * self.log2_p() as usize / 8
    }

    /// Number of items, 2^(nu_1 + nu_2).
    pub fn num_items(&self) -> usize {
        1usize << (self.nu_1 + self.nu_2)
    }

    /// Usable plaintext bytes of the whole database.
    pub fn capacity_bytes(&self) -> u64 {
        self.num_items() as u64 * self.item_bytes as u64
    }

    /// 64-bit words of the preprocessed (NTT-form) database.
    pub fn db_words(&self) -> usize {
        (self.instances * self.n * self.n) as usize * self.num_items() * POLY_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_encoding_round_trips_every_preset_and_refuses_invalid_ones() {
        for preset in SchemeParams::vetted_presets().chain(SchemeParams::store_presets()) {
            let p = preset.params;
            assert_eq!(SchemeParams::from_le_bytes(&p.to_le_bytes()).unwrap(), p);
        }
        let mut bytes = SchemeParams::danger_test_only_small().to_le_bytes();
        // Little-endian, in the documented order: n first, then nu_1.
        assert_eq!(bytes[..8], [2, 0, 0, 0, 6, 0, 0, 0]);
        bytes[0] = 9;
        assert!(matches!(
            SchemeParams::from_le_bytes(&bytes),
            Err(CoreError::Params(ParamsError::N { n: 9 }))
        ));
    }
}
