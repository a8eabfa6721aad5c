//! The prover's policy: how long codes and mappings live, how many attempts a code gets, and
//! the rate limits. [`Policy::default`] is the single source of the defaults the CLI shows.

use std::time::Duration;

/// What the prover allows and for how long.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long an issued mapping is valid: after it, ownership must be proven again (the
    /// defence against a recycled number or an abandoned address keeping its old mapping).
    pub validity: Duration,
    /// How long a code can be used.
    pub code_ttl: Duration,
    /// Digits in a code (6 to 10).
    pub code_digits: u32,
    /// Wrong codes an enrollment survives; the next wrong one kills it.
    pub code_attempts: u32,
    /// How far an MSP's request timestamp may be from the prover's clock.
    pub max_clock_skew: Duration,
    /// How long before `not_after` the user is reminded to verify again.
    pub remind_before: Duration,
    /// Codes sent to one CPI per hour (a burst of that many, refilled evenly).
    pub starts_per_cpi_per_hour: u32,
    /// Enrollments one MSP may start per minute.
    pub starts_per_msp_per_minute: u32,
    /// Requests of any kind from one peer address (IPv6: its /64) per minute.
    pub requests_per_address_per_minute: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            validity: Duration::from_secs(365 * 86_400),
            code_ttl: Duration::from_secs(10 * 60),
            code_digits: 6,
            code_attempts: 5,
            max_clock_skew: Duration::from_secs(5 * 60),
            remind_before: Duration::from_secs(30 * 86_400),
            starts_per_cpi_per_hour: 5,
            starts_per_msp_per_minute: 600,
            requests_per_address_per_minute: 120,
        }
    }
}

impl Policy {
    /// Checks the policy's own bounds, naming the flag.
    pub fn check(&self) -> Result<(), String> {
        if !(6..=10).contains(&self.code_digits) {
            return Err("--code-digits must be 6 to 10".into());
        }
        if self.code_attempts == 0 || self.code_attempts > 10 {
            return Err("--code-attempts must be 1 to 10".into());
        }
        if self.code_ttl < Duration::from_secs(30) || self.code_ttl > Duration::from_secs(86_400) {
            return Err("--code-ttl must be between 30s and 24h".into());
        }
        if self.validity < Duration::from_secs(3600) {
            return Err("--validity must be at least 1h".into());
        }
        if self.remind_before >= self.validity {
            return Err("--remind-before must be shorter than --validity".into());
        }
        Ok(())
    }
}
