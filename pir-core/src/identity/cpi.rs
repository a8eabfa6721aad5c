//! Cross-platform identifiers (CPIs): `tel:` numbers and `mailto:` addresses, normalised.
//!
//! Two spellings of the same identifier must give the same bytes, because the CPI's bytes pick
//! the bucket and are covered by the issuer's signature:
//!
//! * `tel:` numbers are parsed with libphonenumber's metadata (the `phonenumber` crate) and
//!   written in E.164: `tel:+1 (415) 555-0100` becomes `tel:+14155550100`. Only global numbers
//!   (starting with `+`) are accepted: a local number has no meaning without a region.
//! * `mailto:` addresses keep their local part as given (it may be case-sensitive) and have
//!   their domain lower-cased: `mailto:Alice@Example.COM` becomes `mailto:Alice@example.com`.

use std::{fmt, str::FromStr};

use crate::error::{CoreError, Result};

/// Longest normalised CPI accepted, in bytes (an email address is at most 254 bytes).
pub const MAX_CPI_LEN: usize = 7 + 254;

/// A normalised cross-platform identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpi(String);

impl Cpi {
    /// Parses and normalises a `tel:` or `mailto:` URI.
    pub fn parse(input: &str) -> Result<Self> {
        let err = |reason: &str| CoreError::InvalidCpi {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        let (scheme, rest) = trimmed
            .split_once(':')
            .ok_or_else(|| err("expected a `tel:` or `mailto:` URI"))?;
        let normalised = match scheme.to_ascii_lowercase().as_str() {
            "tel" => format!("tel:{}", normalise_tel(rest).map_err(|r| err(&r))?),
            "mailto" => format!("mailto:{}", normalise_mailto(rest).map_err(|r| err(&r))?),
            _ => return Err(err("scheme must be `tel` or `mailto`")),
        };
        if normalised.len() > MAX_CPI_LEN {
            return Err(err("too long"));
        }
        Ok(Self(normalised))
    }

    /// The normalised form, e.g. `tel:+14155550100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised form's UTF-8 bytes, as hashed and signed.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn normalise_tel(number: &str) -> Result<String, String> {
    // RFC 3966 parameters (";ext=", ";phone-context=") are not identifiers of their own.
    if number.contains(';') {
        return Err("`tel:` parameters (`;...`) are not supported".into());
    }
    if !number.trim_start().starts_with('+') {
        return Err("a `tel:` CPI must be a global number starting with `+`".into());
    }
    let parsed =
        phonenumber::parse(None, number).map_err(|e| format!("not a phone number: {e}"))?;
    // An extension ("x123", "ext. 5", "#5") reaches a desk behind the number, not a person's
    // identifier: refuse it rather than fold it onto the main number.
    if parsed.extension().is_some() {
        return Err("numbers with an extension are not CPIs".into());
    }
    if !phonenumber::is_valid(&parsed) {
        return Err("not a valid number for its country code".into());
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

fn normalise_mailto(address: &str) -> Result<String, String> {
    if address.contains('?') {
        return Err("`mailto:` headers (`?...`) are not supported".into());
    }
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| "an email address needs `@`".to_string())?;
    if local.is_empty() || local.len() > 64 {
        return Err("the local part must be 1 to 64 bytes".into());
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err("the local part has a space, control character or angle bracket".into());
    }
    Ok(format!("{local}@{}", normalise_domain(domain)?))
}

/// Lower-cases and checks a DNS name (used for email domains and MSP names).
pub(crate) fn normalise_domain(domain: &str) -> Result<String, String> {
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if domain.is_empty() || domain.len() > 253 {
        return Err("the domain must be 1 to 253 bytes".into());
    }
    for label in domain.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(format!(
                "domain label {label:?} must be 1 to 63 of a-z, 0-9, `-` (use the A-label form for IDNs)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("domain label {label:?} starts or ends with `-`"));
        }
    }
    Ok(domain)
}

impl FromStr for Cpi {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Cpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tel_spellings_normalise_to_e164() {
        let a = Cpi::parse("tel:+1 (415) 555-0100").unwrap();
        let b = Cpi::parse("tel:+14155550100").unwrap();
        let c = Cpi::parse("TEL:+1-415-555-0100").unwrap();
        assert_eq!(a.as_str(), "tel:+14155550100");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            Cpi::parse("tel:+44 20 7946 0958").unwrap().as_str(),
            "tel:+442079460958"
        );
    }

    #[test]
    fn mailto_lowercases_domain_only() {
        let a = Cpi::parse("mailto:Alice@Example.COM").unwrap();
        assert_eq!(a.as_str(), "mailto:Alice@example.com");
    }

    #[test]
    fn bad_cpis_say_what_is_wrong() {
        for (input, needle) in [
            ("+14155550100", "tel"),
            ("sms:+14155550100", "scheme"),
            ("tel:4155550100", "global number"),
            ("tel:+1 banana", "phone number"),
            ("tel:+1 415 555", "valid"),
            ("tel:+14155550100 x123", "extension"),
            ("tel:+14155550100 ext. 5", "extension"),
            ("mailto:alice", "@"),
            ("mailto:@example.com", "local part"),
            ("mailto:alice@exa mple.com", "domain label"),
            ("mailto:alice@-x.com", "starts or ends"),
        ] {
            let err = Cpi::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
