//! How people are shown times and sizes, the same in every crate's human output: RFC 3339 UTC
//! and binary units with one decimal. (Machine output, JSON, keeps raw unix seconds and bytes.)

use std::fmt;

/// A unix time as RFC 3339 UTC: `2026-12-01T21:35:00Z` (`unix:<seconds>` past year 9999).
#[derive(Clone, Copy, Debug)]
pub struct Time(pub u64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SECS_PER_DAY: u64 = 86_400;
        // 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
        const YEAR_10000: u64 = 253_402_300_800;
        let t = self.0;
        if t >= YEAR_10000 {
            return write!(f, "unix:{t}");
        }
        let (y, m, d) = civil_from_days((t / SECS_PER_DAY) as i64);
        let s = t % SECS_PER_DAY;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Bytes with a binary unit: `512 B`, `110.2 KiB`, `8.6 MiB`.
#[derive(Clone, Copy, Debug)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(Time(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Time(1_796_161_710).to_string(), "2026-12-01T21:48:30Z");
        assert_eq!(Time(1_709_164_800).to_string(), "2024-02-29T00:00:00Z");
        assert_eq!(Time(253_402_300_799).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(Time(253_402_300_800).to_string(), "unix:253402300800");
    }

    #[test]
    fn sizes_have_binary_units_with_one_decimal() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(16 << 10).to_string(), "16.0 KiB");
        assert_eq!(Bytes(18 << 20).to_string(), "18.0 MiB");
        assert_eq!(Bytes(2_576_980_378).to_string(), "2.4 GiB");
    }
}
