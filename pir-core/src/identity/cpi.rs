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

use crate::error::{CoreError, CpiError, DomainError, Result};

/// Longest normalised CPI accepted, in bytes (an email address is at most 254 bytes).
pub const MAX_CPI_LEN: usize = 7 + 254;

/// A normalised cross-platform identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpi(String);

impl Cpi {
    /// Parses and normalises a `tel:` or `mailto:` URI.
    pub fn parse(input: &str) -> Result<Self> {
        let err = |reason: CpiError| CoreError::InvalidCpi {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let (scheme, rest) = trimmed
            .split_once(':')
            .ok_or_else(|| err(CpiError::NotAUri))?;
        let normalised = match scheme.to_ascii_lowercase().as_str() {
            "tel" => format!("tel:{}", normalise_tel(rest).map_err(err)?),
            "mailto" => format!("mailto:{}", normalise_mailto(rest).map_err(err)?),
            _ => return Err(err(CpiError::Scheme)),
        };
        if normalised.len() > MAX_CPI_LEN {
            return Err(err(CpiError::TooLong));
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

fn normalise_tel(number: &str) -> Result<String, CpiError> {
    // RFC 3966 parameters (";ext=", ";phone-context=") are not identifiers of their own.
    if number.contains(';') {
        return Err(CpiError::TelParameters);
    }
    if !number.trim_start().starts_with('+') {
        return Err(CpiError::NotGlobal);
    }
    let parsed =
        phonenumber::parse(None, number).map_err(|e| CpiError::NotAPhoneNumber(e.to_string()))?;
    // An extension ("x123", "ext. 5", "#5") reaches a desk behind the number, not a person's
    // identifier: refuse it rather than fold it onto the main number.
    if parsed.extension().is_some() {
        return Err(CpiError::Extension);
    }
    if !phonenumber::is_valid(&parsed) {
        return Err(CpiError::InvalidForCountry);
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

fn normalise_mailto(address: &str) -> Result<String, CpiError> {
    if address.contains('?') {
        return Err(CpiError::MailtoHeaders);
    }
    let (local, domain) = address.rsplit_once('@').ok_or(CpiError::NoAt)?;
    if local.is_empty() || local.len() > 64 {
        return Err(CpiError::LocalPartLength);
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(CpiError::LocalPartChars);
    }
    Ok(format!(
        "{local}@{}",
        normalise_domain(domain).map_err(CpiError::Domain)?
    ))
}

/// Lower-cases and checks a DNS name (used for email domains and MSP names).
pub(crate) fn normalise_domain(domain: &str) -> Result<String, DomainError> {
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if domain.is_empty() || domain.len() > 253 {
        return Err(DomainError::Length);
    }
    for label in domain.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(DomainError::LabelChars {
                label: label.to_owned(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::LabelHyphen {
                label: label.to_owned(),
            });
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
        let domain = |label: &str| {
            CpiError::Domain(DomainError::LabelChars {
                label: label.into(),
            })
        };
        let hyphen = CpiError::Domain(DomainError::LabelHyphen { label: "-x".into() });
        for (input, expected) in [
            ("+14155550100", CpiError::NotAUri),
            ("sms:+14155550100", CpiError::Scheme),
            ("tel:4155550100", CpiError::NotGlobal),
            ("tel:+1 415 555", CpiError::InvalidForCountry),
            ("tel:+14155550100 x123", CpiError::Extension),
            ("tel:+14155550100 ext. 5", CpiError::Extension),
            ("mailto:alice", CpiError::NoAt),
            ("mailto:@example.com", CpiError::LocalPartLength),
            ("mailto:alice@exa mple.com", domain("exa mple")),
            ("mailto:alice@-x.com", hyphen),
        ] {
            match Cpi::parse(input) {
                Err(CoreError::InvalidCpi { reason, .. }) => {
                    assert_eq!(reason, expected, "{input}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        assert!(matches!(
            Cpi::parse("tel:+1 banana"),
            Err(CoreError::InvalidCpi {
                reason: CpiError::NotAPhoneNumber(_),
                ..
            })
        ));
    }
}
