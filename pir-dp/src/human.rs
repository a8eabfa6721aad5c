//! The one way every report writes a time, a size, a duration and a ratio for people (the same
//! as `pir-client`): RFC 3339 UTC, binary units with one decimal, seconds with two, percent with
//! two. Counts are plain digits. JSON reports keep raw numbers (unix seconds, bytes).

use std::fmt;

pub(crate) use pir_core::human::{Bytes, Time};

/// A duration in seconds: `0.21 s`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secs(pub f64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} s", self.0)
    }
}

/// A ratio as a percentage: `13.20%`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Percent(pub f64);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}%", self.0 * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_one_format() {
        assert_eq!(Bytes(16 << 10).to_string(), "16.0 KiB");
        assert_eq!(Secs(0.2049).to_string(), "0.20 s");
        assert_eq!(Percent(0.132).to_string(), "13.20%");
    }
}
