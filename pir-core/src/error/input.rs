//! Why input was refused: CPIs, domains, mapping fields, base64url text, key material.

use crate::identity::{IssuerId, KeyRole};

/// Why a CPI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpiError {
    /// No scheme.
    #[error("expected a `tel:` or `mailto:` URI")]
    NotAUri,
    /// A scheme other than `tel` and `mailto`.
    #[error("scheme must be `tel` or `mailto`")]
    Scheme,
    /// Longer than [`crate::identity::MAX_CPI_LEN`] once normalised.
    #[error("too long")]
    TooLong,
    /// `;ext=` or `;phone-context=`.
    #[error("`tel:` parameters (`;...`) are not supported")]
    TelParameters,
    /// A local number (no `+`).
    #[error("a `tel:` CPI must be a global number starting with `+`")]
    NotGlobal,
    /// libphonenumber cannot parse it.
    #[error("not a phone number: {0}")]
    NotAPhoneNumber(String),
    /// An extension (`x123`).
    #[error("numbers with an extension are not CPIs")]
    Extension,
    /// A number the phone metadata does not know as valid, with other characters than digits
    /// and visual separators after its `+` (letters are read as keypad digits only in numbers
    /// the metadata knows).
    #[error(
        "a number the phone metadata does not know may have only digits and the separators \
         space - . / ( ) after its `+`"
    )]
    TelCharacters,
    /// A number the phone metadata does not know, longer than E.164 allows.
    #[error("{digits} digits: an E.164 number has at most 15, its country code included")]
    TelTooLong {
        /// Digits of the E.164 form, country code included.
        digits: usize,
    },
    /// A number the phone metadata does not know whose E.164 form does not read back as
    /// itself, so it has no stable normalised form (a prefix written after the country code).
    #[error(
        "its E.164 form {e164} reads back as another number; write it as `+`, the country code \
         and the national number without a trunk prefix"
    )]
    TelUnstable {
        /// The E.164 form the number first gave.
        e164: String,
    },
    /// `?subject=` and the like.
    #[error("`mailto:` headers (`?...`) are not supported")]
    MailtoHeaders,
    /// No `@`.
    #[error("an email address needs `@`")]
    NoAt,
    /// Empty or over 64 bytes.
    #[error("the local part must be 1 to 64 bytes")]
    LocalPartLength,
    /// Whitespace, a control character or an angle bracket.
    #[error("the local part has a space, control character or angle bracket")]
    LocalPartChars,
    /// The domain.
    #[error(transparent)]
    Domain(DomainError),
}

/// Why a DNS name (email domain or MSP) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// Empty or over 253 bytes.
    #[error("the domain must be 1 to 253 bytes")]
    Length,
    /// A label with other characters than a-z, 0-9 and `-`, or of the wrong length.
    #[error(
        "domain label {label:?} must be 1 to 63 of a-z, 0-9, `-` (use the A-label form for IDNs)"
    )]
    LabelChars {
        /// The label.
        label: String,
    },
    /// A label that starts or ends with `-`.
    #[error("domain label {label:?} starts or ends with `-`")]
    LabelHyphen {
        /// The label.
        label: String,
    },
    /// An internationalised email domain that UTS-46 processing refuses (a character IDNA
    /// disallows, a bad `xn--` label, a bidi or joiner rule, a label starting or ending with `-`).
    #[error("the domain is not a valid internationalised domain name (UTS-46 refuses it)")]
    Uts46,
}

/// Why a mapping field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// Not a valid domain.
    #[error(transparent)]
    Domain(DomainError),
    /// A domain that is not in its normalised (lower-case) form.
    #[error("must be a lower-case domain name")]
    NotNormalised,
    /// Empty, or longer than the field allows.
    #[error("must be 1 to {max} bytes when present")]
    Length {
        /// Most bytes allowed.
        max: usize,
    },
    /// A control or invisible formatting character.
    #[error("contains a control or invisible formatting character")]
    Invisible,
    /// `not_before` after `not_after`.
    #[error("is after not_after")]
    WindowReversed,
    /// A binary field that is not the right base64.
    #[error(transparent)]
    Base64(B64Error),
    /// Half of a pair that must come together.
    #[error("missing while {other} is given")]
    Unpaired {
        /// The field that is present.
        other: &'static str,
    },
}

/// Why base64url text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum B64Error {
    /// Not base64url without padding.
    #[error("not base64url without padding: {0}")]
    Encoding(base64::DecodeError),
    /// Decodes, to the wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    Length {
        /// Bytes wanted.
        expected: usize,
        /// Bytes decoded.
        got: usize,
    },
}

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A small-order public key, which verifies nothing honestly.
    #[error("weak (small-order) public key")]
    Weak,
    /// Two different keys with the same 64-bit id.
    #[error("two different keys share the id {0}")]
    DuplicateId(IssuerId),
    /// Not base64.
    #[error(transparent)]
    Base64(B64Error),
    /// 32 bytes that are not an Ed25519 point.
    #[error("not an Ed25519 public key")]
    NotEd25519,
    /// A trust file without any key.
    #[error("no public key in trust file")]
    NoPublicKey,
    /// A secret key file without the key.
    #[error("empty key file")]
    Empty,
    /// A file that must hold one public key holds several.
    #[error("this file must hold exactly one public key")]
    SeveralPublic,
    /// A public key encoding that is not canonical (its y coordinate not reduced below
    /// p = 2^255 - 19, or the sign of x = 0 set), which RFC 8032 section 5.1.3 requires a
    /// verifier to refuse.
    #[error("non-canonical Ed25519 public key encoding (RFC 8032 section 5.1.3 refuses it)")]
    NonCanonical,
    /// A public key (SPKI PEM) where a secret key file was expected.
    #[error(
        "this is a public key (SPKI PEM); give the secret key file written by {}",
        .0.keygen()
    )]
    PublicForSecret(KeyRole),
    /// A secret key (PKCS#8 PEM) where a public key or trust file was expected.
    #[error(
        "this is a secret key (PKCS#8 PEM), which must never be handed out; give the public key \
         file (.pub) that {} wrote beside it",
        .0.keygen()
    )]
    SecretForPublic(KeyRole),
    /// A key file of the one-line form (a base64url key a line) that earlier versions wrote.
    #[error(
        "this is a key file of the old one-line form (base64url), which is no longer read \
         because its secret and public files looked alike: key files are now PEM (PKCS#8 for \
         secret keys, SPKI for public keys); make a new key pair with `{} --out \
         FILE` and give verifiers its new .pub (mappings or snapshots signed with the old key \
         must be signed again)",
        .0.keygen()
    )]
    OneLine(KeyRole),
    /// Text that is neither a comment nor part of a PEM block.
    #[error(
        "not a PEM key file: expected a -----BEGIN {}----- block",
        if *.secret { "PRIVATE KEY" } else { "PUBLIC KEY" }
    )]
    NotPem {
        /// A secret key file was expected.
        secret: bool,
    },
    /// A PEM block of another kind (a certificate, an RSA or EC key, ...).
    #[error("a PEM block labelled {0:?}, not an Ed25519 key")]
    OtherPem(String),
    /// A PEM block without its end line.
    #[error("the PEM block starting here has no -----END----- line")]
    Unterminated,
    /// A PEM block whose contents do not decode as the key it is labelled as.
    #[error("a {label} block that does not decode as an Ed25519 key: {detail}")]
    BadPem {
        /// The block's label.
        label: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// A secret key file holding more than one key.
    #[error("more than one key in a secret key file")]
    SeveralSecrets,
    /// Not the DP's OPRF secret key file.
    #[error(
        "not an OPRF secret key file ({0}): expected one -----BEGIN {label}----- block as \
         `pir-server oprf-keygen` writes",
        label = crate::oprf::SECRET_KEY_LABEL
    )]
    NotOprfSecret(&'static str),
}

/// Why the oblivious PRF refused a key, an element, a proof or a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OprfError {
    /// Not a canonical, non-zero ristretto255 scalar.
    #[error("not an OPRF secret key (32 bytes, a canonical non-zero ristretto255 scalar)")]
    SecretKey,
    /// Not a canonical ristretto255 element other than the identity.
    #[error("not an OPRF public key (32 bytes, a canonical ristretto255 element)")]
    PublicKey,
    /// An element of a batch that is not a valid encoding.
    #[error("element {index} of the batch is not a valid ristretto255 element")]
    Element {
        /// Its 0-based position.
        index: usize,
    },
    /// The evaluator's proof does not verify under the DP's OPRF public key.
    #[error("the evaluation's proof does not verify under the DP's OPRF public key")]
    Proof,
    /// An answer with another number of elements than were sent.
    #[error("{got} evaluated element(s) for {expected} blinded")]
    Count {
        /// Elements sent.
        expected: usize,
        /// Elements answered.
        got: usize,
    },
    /// An empty batch.
    #[error("an evaluation needs at least one element")]
    EmptyBatch,
    /// A batch larger than the suite allows (65,535).
    #[error("batch too large")]
    BatchSize,
    /// An input the suite cannot hash (empty or longer than 65,535 bytes).
    #[error("input the OPRF cannot take")]
    Input,
}
