//! Cross-platform identifiers (CPIs): `tel:` numbers and `mailto:` addresses, normalised.
//!
//! Two spellings of the same identifier must give the same bytes, because the CPI's bytes pick
//! the bucket and are covered by the issuer's signature (`docs/mapping-format.md`, section 1,
//! pinned by `test_vectors/cpi_normalisation.json`):
//!
//! * `tel:` numbers are parsed with libphonenumber's metadata (the `phonenumber` crate) and
//!   written in E.164: `tel:+1 (415) 555-0100` becomes `tel:+14155550100`. Only global numbers
//!   (starting with `+`) are accepted: a local number has no meaning without a region. A
//!   well-formed E.164 number the metadata does not know as valid (a new range, a drama range)
//!   is accepted all the same, with a [`CpiWarning`]: metadata of one library version must not
//!   stop a lookup.
//! * `mailto:` addresses keep their local part as given (it may be case-sensitive) and have
//!   their domain lower-cased: `mailto:Alice@Example.COM` becomes `mailto:Alice@example.com`.
//!   An internationalised domain is converted to A-labels with UTS-46:
//!   `mailto:jo@Bücher.example` becomes `mailto:jo@xn--bcher-kva.example`.

use std::{cmp::Ordering, fmt, hash, str::FromStr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::error::{CoreError, CpiError, DomainError, Result};

/// Longest normalised CPI accepted, in bytes (an email address is at most 254 bytes).
pub const MAX_CPI_LEN: usize = 7 + 254;

/// Most digits of an E.164 number, its country code included (ITU-T E.164, section 6).
const MAX_E164_DIGITS: usize = 15;

/// A normalised cross-platform identifier.
///
/// Compared, hashed and ordered by its normalised text alone: its warning is a function of
/// that text (normalisation is idempotent), so it never tells two equal CPIs apart.
#[derive(Clone, Debug)]
pub struct Cpi {
    text: String,
    warning: Option<CpiWarning>,
}

/// Something about an accepted CPI that the DP should look at, though it is no reason to refuse
/// it: a build counts these and shows the first few.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CpiWarning {
    /// A well-formed E.164 number with a known country code that the phone metadata does not
    /// know as a valid number for that code: a range allocated after the metadata, a drama
    /// range, or a typo.
    NotValidPerMetadata,
}

impl CpiWarning {
    /// The warning's stable name, as in `test_vectors/cpi_normalisation.json` and JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotValidPerMetadata => "not_valid_per_metadata",
        }
    }
}

impl fmt::Display for CpiWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotValidPerMetadata => {
                "not a valid number for its country code per the phone metadata: check it for a \
                 typo"
            }
        })
    }
}

/// The CPIs with a warning among the mappings of a build: how many, and the first few.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpiWarnings {
    /// Mappings whose CPI has a warning (each occurrence of a CPI counted).
    pub count: usize,
    /// The first [`CpiWarnings::MAX_EXAMPLES`] distinct ones, in input order.
    pub examples: Vec<(Cpi, CpiWarning)>,
}

impl CpiWarnings {
    /// Most examples kept.
    pub const MAX_EXAMPLES: usize = 5;

    /// Counts the warnings of `cpis` and keeps the first distinct examples.
    pub fn collect<'a>(cpis: impl IntoIterator<Item = &'a Cpi>) -> Self {
        let mut out = Self::default();
        for cpi in cpis {
            let Some(warning) = cpi.warning() else {
                continue;
            };
            out.count += 1;
            if out.examples.len() < Self::MAX_EXAMPLES
                && !out.examples.iter().any(|(c, _)| c == cpi)
            {
                out.examples.push((cpi.clone(), warning));
            }
        }
        out
    }
}

impl fmt::Display for CpiWarnings {
    /// `3 mapping(s) kept with a CPI warning, first: tel:+447700900123 (not a valid ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} mapping(s) kept with a CPI warning", self.count)?;
        for (i, (cpi, warning)) in self.examples.iter().enumerate() {
            let sep = if i == 0 { ", first: " } else { "; " };
            write!(f, "{sep}{cpi} ({warning})")?;
        }
        Ok(())
    }
}

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
        let (text, warning) = match scheme.to_ascii_lowercase().as_str() {
            "tel" => {
                let (number, warning) = normalise_tel(rest).map_err(err)?;
                (format!("tel:{number}"), warning)
            }
            "mailto" => (
                format!("mailto:{}", normalise_mailto(rest).map_err(err)?),
                None,
            ),
            _ => return Err(err(CpiError::Scheme)),
        };
        if text.len() > MAX_CPI_LEN {
            return Err(err(CpiError::TooLong));
        }
        Ok(Self { text, warning })
    }

    /// The normalised form, e.g. `tel:+14155550100`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The normalised form's UTF-8 bytes, as hashed and signed.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// What the DP should look at in this CPI, if anything.
    pub fn warning(&self) -> Option<CpiWarning> {
        self.warning
    }
}

impl PartialEq for Cpi {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Cpi {}

impl hash::Hash for Cpi {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for Cpi {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cpi {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text.cmp(&other.text)
    }
}

fn normalise_tel(number: &str) -> Result<(String, Option<CpiWarning>), CpiError> {
    // RFC 3966 parameters (";ext=", ";phone-context=") are not identifiers of their own.
    if number.contains(';') {
        return Err(CpiError::TelParameters);
    }
    let Some(after_plus) = number.trim_start().strip_prefix('+') else {
        return Err(CpiError::NotGlobal);
    };
    let (e164, valid) = read_number(number)?;
    if valid {
        return Ok((e164, None));
    }
    // The metadata does not know it. A well-formed E.164 number is looked up all the same
    // (metadata of one library version must not stop a lookup), if it is written plainly, fits
    // E.164, and its E.164 form reads back as itself, so that normalising stays idempotent.
    if !after_plus.chars().all(is_e164_char) {
        return Err(CpiError::TelCharacters);
    }
    let digits = e164.len() - 1;
    if digits > MAX_E164_DIGITS {
        return Err(CpiError::TelTooLong { digits });
    }
    match read_number(&e164) {
        Ok((again, valid)) if again == e164 => {
            Ok((e164, (!valid).then_some(CpiWarning::NotValidPerMetadata)))
        }
        _ => Err(CpiError::TelUnstable { e164 }),
    }
}

/// Digits and the visual separators a number the metadata does not know may be written with.
fn is_e164_char(c: char) -> bool {
    matches!(
        c,
        '0'..='9' | ' ' | '\u{00A0}' | '-' | '.' | '/' | '(' | ')' | '\u{2010}'..='\u{2015}' | '\u{2212}'
    )
}

/// The number as libphonenumber reads it: its E.164 form, and whether the metadata knows it as
/// valid for its country code.
fn read_number(number: &str) -> Result<(String, bool), CpiError> {
    let parsed =
        phonenumber::parse(None, number).map_err(|e| CpiError::NotAPhoneNumber(e.to_string()))?;
    // An extension ("x123", "ext. 5", "#5") reaches a desk behind the number, not a person's
    // identifier: refuse it rather than fold it onto the main number.
    if parsed.extension().is_some() {
        return Err(CpiError::Extension);
    }
    Ok((
        parsed.format().mode(phonenumber::Mode::E164).to_string(),
        phonenumber::is_valid(&parsed),
    ))
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
        normalise_mail_domain(domain).map_err(CpiError::Domain)?
    ))
}

/// An email domain: one with a non-ASCII character goes through UTS-46 ToASCII first, with the
/// options `docs/mapping-format.md` pins (nontransitional, STD3 ASCII rules, hyphens checked in
/// first and last position only, CheckBidi and CheckJoiners, DNS lengths left to
/// [`normalise_domain`]). An ASCII domain skips it, so its form is what format version 1 gave.
fn normalise_mail_domain(domain: &str) -> Result<String, DomainError> {
    if domain.is_ascii() {
        return normalise_domain(domain);
    }
    let ascii = Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Ignore,
        )
        .map_err(|_| DomainError::Uts46)?;
    normalise_domain(&ascii)
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
        f.write_str(&self.text)
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
    fn numbers_the_metadata_does_not_know_are_kept_with_a_warning() {
        // Ofcom's drama range: well-formed, not valid per the metadata.
        for input in [
            "tel:+447700900123",
            "tel:+44 7700 900123",
            "tel:+44-7700-900-123",
        ] {
            let cpi = Cpi::parse(input).unwrap();
            assert_eq!(cpi.as_str(), "tel:+447700900123", "{input}");
            assert_eq!(cpi.warning(), Some(CpiWarning::NotValidPerMetadata));
            assert_eq!(Cpi::parse(cpi.as_str()).unwrap().warning(), cpi.warning());
        }
        let short = Cpi::parse("tel:+1 415 555").unwrap();
        assert_eq!(short.as_str(), "tel:+1415555");
        assert_eq!(short.warning(), Some(CpiWarning::NotValidPerMetadata));
        for valid in [
            "tel:+14155550100",
            "tel:+1-800-FLOWERS",
            "mailto:a@b.example",
        ] {
            assert_eq!(Cpi::parse(valid).unwrap().warning(), None, "{valid}");
        }
    }

    #[test]
    fn warnings_are_counted_with_the_first_distinct_examples() {
        let cpis: Vec<Cpi> = [
            "tel:+14155550100",
            "tel:+447700900123",
            "tel:+44 7700 900123",
            "tel:+1415555",
            "tel:+447700900124",
            "tel:+447700900125",
            "tel:+447700900126",
            "tel:+447700900127",
        ]
        .iter()
        .map(|s| Cpi::parse(s).unwrap())
        .collect();
        let w = CpiWarnings::collect(&cpis);
        assert_eq!(w.count, 7);
        let examples: Vec<&str> = w.examples.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            examples,
            [
                "tel:+447700900123",
                "tel:+1415555",
                "tel:+447700900124",
                "tel:+447700900125",
                "tel:+447700900126"
            ]
        );
        assert_eq!(CpiWarnings::collect(&cpis[..1]), CpiWarnings::default());
        let two = CpiWarnings::collect(&cpis[..4]);
        assert_eq!(
            two.to_string(),
            "3 mapping(s) kept with a CPI warning, first: tel:+447700900123 (not a valid number \
             for its country code per the phone metadata: check it for a typo); tel:+1415555 \
             (not a valid number for its country code per the phone metadata: check it for a \
             typo)"
        );
    }

    #[test]
    fn mailto_lowercases_domain_only() {
        let a = Cpi::parse("mailto:Alice@Example.COM").unwrap();
        assert_eq!(a.as_str(), "mailto:Alice@example.com");
        assert_ne!(a, Cpi::parse("mailto:alice@example.com").unwrap());
    }

    #[test]
    fn internationalised_domains_become_a_labels() {
        // Well-known A-labels (nontransitional: `ß` is kept, not mapped to `ss`).
        for (input, expected) in [
            (
                "mailto:jo@Bücher.example",
                "mailto:jo@xn--bcher-kva.example",
            ),
            (
                "mailto:jo@BÜCHER.EXAMPLE.",
                "mailto:jo@xn--bcher-kva.example",
            ),
            ("mailto:jo@faß.de", "mailto:jo@xn--fa-hia.de"),
            ("mailto:jo@münchen.de", "mailto:jo@xn--mnchen-3ya.de"),
            ("mailto:jo@日本語。jp", "mailto:jo@xn--wgv71a119e.jp"),
            ("mailto:jo@ｅｘａｍｐｌｅ．ｃｏｍ", "mailto:jo@example.com"),
            (
                "mailto:Jö@Bücher.example",
                "mailto:Jö@xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(Cpi::parse(input).unwrap().as_str(), expected, "{input}");
        }
        for input in [
            "mailto:jo@bü_cher.example",
            "mailto:jo@-bücher.example",
            "mailto:jo@bücher.xn--zz.example",
            "mailto:jo@a\u{200D}ü.example",
        ] {
            match Cpi::parse(input) {
                Err(CoreError::InvalidCpi {
                    reason: CpiError::Domain(DomainError::Uts46),
                    ..
                }) => {}
                other => panic!("{input}: {other:?}"),
            }
        }
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
            ("tel:+1 800 FLOWERZZ", CpiError::TelCharacters),
            (
                "tel:+1 415 555 0100 0000 00",
                CpiError::TelTooLong { digits: 17 },
            ),
            (
                "tel:+44 000 20 7946 0958",
                CpiError::TelUnstable {
                    e164: "+4402079460958".into(),
                },
            ),
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
