//! YPIR+SP's parameters: the one validated shape type, the constants the engine fixes, the sizes
//! they imply and the correctness estimate.
//!
//! The ring is Spiral's (d = 2048, q = 268369921 * 249561089, about 2^56), as in the authors'
//! implementation, with their error width for YPIR: a discrete Gaussian of width 16.04 (standard
//! deviation 6.4), the secret drawn from the same distribution. Menon and Wu (eprint 2024/270,
//! §6) estimate this ring at 128-bit security with the lattice estimator. The plaintext modulus is
//! p = 2^14, the packing keys' gadget has 3 digits of 19 bits, and the response is rescaled to
//! 28 bits (first row) and 20 bits (second row): the authors' YPIR+SP choices.

use serde::Serialize;

use super::super::params::POLY_LEN;
use crate::error::{CoreError, ParamsError, Result};

/// log2 of the plaintext modulus p: every database element holds 14 bits.
pub(super) const LOG2_P: u32 = 14;
/// Gadget digits of the packing keys.
pub(super) const GADGET_LEN: usize = 3;
/// Bits of one gadget digit (z = 2^19; 3 digits cover q < 2^56).
pub(super) const GADGET_BITS: u32 = 19;
/// log2 of the modulus a response's first row (the packed hint) is rescaled to.
pub(super) const LOG2_Q_A: u32 = 28;
/// log2 of the modulus a response's second row is rescaled to.
pub(super) const LOG2_Q_B: u32 = 20;
/// Width s of the discrete Gaussian (standard deviation s / sqrt(2 pi) = 6.4).
pub(super) const NOISE_WIDTH: f64 = 16.042421;
/// Packing levels: log2 of the ring degree.
pub(super) const LEVELS: usize = 11;
/// Bytes of one ring word on the wire: its two CRT residues (28 bits each).
pub(super) const WORD_BYTES: usize = 7;
/// Bytes of one response coefficient: 28 + 20 bits.
pub(super) const RESPONSE_COEFF_BYTES: usize = 6;
/// Bytes a row holds per instance: d elements of 14 bits.
pub(super) const INSTANCE_BYTES: usize = POLY_LEN * LOG2_P as usize / 8;

/// One YPIR+SP database shape: 2^`rows_log2` items (rows) of `instances` x 3,584 bytes.
///
/// A query selects a row; the answer carries the whole row, one packed ring ciphertext per
/// instance (2048 elements of 14 bits). Everything else is fixed by the engine (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct YpirParams {
    rows_log2: u8,
    instances: u8,
}

impl YpirParams {
    /// Fewest rows: one ring element's worth (2^11).
    pub const MIN_ROWS_LOG2: u8 = 11;
    /// Most rows: 2^20, so that the first pass sums 2^20 products of 28 and 14 bits in 64.
    pub const MAX_ROWS_LOG2: u8 = 20;
    /// Most instances (each costs about 100 MB of packing precomputation on the server).
    pub const MAX_INSTANCES: u8 = 16;

    /// A checked shape.
    pub fn new(rows_log2: u8, instances: u8) -> Result<Self> {
        if !(Self::MIN_ROWS_LOG2..=Self::MAX_ROWS_LOG2).contains(&rows_log2) {
            return Err(CoreError::Params(ParamsError::YpirRows {
                rows_log2: rows_log2.into(),
            }));
        }
        if !(1..=Self::MAX_INSTANCES).contains(&instances) {
            return Err(CoreError::Params(ParamsError::YpirInstances {
                instances: instances.into(),
            }));
        }
        Ok(Self {
            rows_log2,
            instances,
        })
    }

    /// log2 of the number of rows.
    pub fn rows_log2(&self) -> u8 {
        self.rows_log2
    }

    /// Items (rows).
    pub fn num_items(&self) -> usize {
        1 << self.rows_log2
    }

    /// Ring elements per row.
    pub fn instances(&self) -> usize {
        self.instances.into()
    }

    /// Bytes of one item.
    pub fn item_bytes(&self) -> usize {
        self.instances() * INSTANCE_BYTES
    }

    /// Database elements per row (columns).
    pub(super) fn cols(&self) -> usize {
        self.instances() * POLY_LEN
    }

    /// Bytes the database holds.
    pub fn capacity_bytes(&self) -> u64 {
        self.num_items() as u64 * self.item_bytes() as u64
    }

    /// Bytes of the packing keys that travel with every query.
    pub fn packing_key_bytes(&self) -> usize {
        LEVELS * GADGET_LEN * POLY_LEN * WORD_BYTES
    }

    /// Bytes of one query: its packing keys, then one word per row.
    pub fn query_bytes(&self) -> usize {
        self.packing_key_bytes() + self.num_items() * WORD_BYTES
    }

    /// Bytes of one response.
    pub fn response_bytes(&self) -> usize {
        self.instances() * POLY_LEN * RESPONSE_COEFF_BYTES
    }

    /// log2 of the probability that a response fails to decrypt to the row, over every element
    /// of the row (a union bound), from the noise's variance and a Gaussian tail.
    ///
    /// The error of a decrypted element, in units of q / 2^28 (so that an element is decoded
    /// right while its error is below 2^13):
    /// - the first pass: a sum over the rows of a database element (below p) times the query's
    ///   error (standard deviation 6.4), at most `rows * p^2 * sigma^2`;
    /// - packing: every key switch adds a gadget product, `3 * d * z^2 / 3 * sigma^2` for digits
    ///   below z, and each of the levels above it at most doubles it (variance times 4, the
    ///   bound the paper's analysis uses), `(4^11 - 1) / 3` times one key switch in all;
    /// - rescaling: the second row's rounding (2^8 / 2 at most, variance 2^16 / 12) and the
    ///   first row's rounding times the secret (`d / 12 * sigma^2`).
    pub fn estimated_log2_failure(&self) -> f64 {
        let d = POLY_LEN as f64;
        let sigma2 = (NOISE_WIDTH / (2.0 * std::f64::consts::PI).sqrt()).powi(2);
        let p = f64::from(1u32 << LOG2_P);
        let z = f64::from(1u32 << GADGET_BITS);
        let q = (super::super::ring::MODULI[0] as f64) * (super::super::ring::MODULI[1] as f64);
        let first_pass = self.num_items() as f64 * p * p * sigma2;
        let key_switch = GADGET_LEN as f64 * d * z * z / 3.0 * sigma2;
        let packing = key_switch * (4f64.powi(LEVELS as i32) - 1.0) / 3.0;
        let scale = f64::from(1u32 << LOG2_Q_A) / q;
        let rounding = f64::from(1u32 << (2 * (LOG2_Q_A - LOG2_Q_B))) / 12.0 + d / 12.0 * sigma2;
        let variance = (first_pass + packing) * scale * scale + rounding;
        let threshold = f64::from(1u32 << (LOG2_Q_A - LOG2_P - 1));
        // Pr[|X| >= T] <= 2 exp(-T^2 / (2 var)) for one element, times the row's elements.
        let log2_one = 1.0 - threshold * threshold / (2.0 * variance) * std::f64::consts::LOG2_E;
        log2_one + (self.cols() as f64).log2()
    }

    /// The estimate's standard deviation of a decrypted element's error, in units of q / 2^28
    /// (for the tests that measure it).
    #[cfg(test)]
    pub(super) fn estimated_error_sd(&self) -> f64 {
        let threshold = f64::from(1u32 << (LOG2_Q_A - LOG2_P - 1));
        let log2_one = self.estimated_log2_failure() - (self.cols() as f64).log2();
        // Inverts log2_one = 1 - T^2 / (2 var) * log2(e).
        let variance = threshold * threshold * std::f64::consts::LOG2_E / (2.0 * (1.0 - log2_one));
        variance.sqrt()
    }
}

impl std::fmt::Display for YpirParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "YPIR+SP 2^{} x {} B ({} instance{})",
            self.rows_log2,
            self.item_bytes(),
            self.instances,
            if self.instances == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked() {
        assert!(YpirParams::new(10, 1).is_err());
        assert!(YpirParams::new(21, 1).is_err());
        assert!(YpirParams::new(11, 0).is_err());
        assert!(YpirParams::new(11, 17).is_err());
        let p = YpirParams::new(15, 1).unwrap();
        assert_eq!(p.item_bytes(), 3584);
        assert_eq!(p.num_items(), 1 << 15);
    }

    /// The paper's shape for 235 MB (2^16 rows of 3,584 B): 932 KB up, 12 KB down.
    #[test]
    fn sizes_are_the_papers() {
        let p = YpirParams::new(16, 1).unwrap();
        assert_eq!(p.packing_key_bytes(), 473_088);
        assert_eq!(p.query_bytes(), 473_088 + 458_752);
        assert_eq!(p.response_bytes(), 12_288);
        assert_eq!(p.capacity_bytes(), 234_881_024);
    }

    #[test]
    fn every_shape_is_below_the_failure_bound() {
        for rows_log2 in YpirParams::MIN_ROWS_LOG2..=YpirParams::MAX_ROWS_LOG2 {
            for instances in [1, YpirParams::MAX_INSTANCES] {
                let p = YpirParams::new(rows_log2, instances).unwrap();
                let f = p.estimated_log2_failure();
                assert!(f <= -40.0, "{p}: 2^{f}");
            }
        }
    }
}
