//! Who says what: CPIs, the signed mapping and its canonical bytes, key roles and the trust
//! store, and the JSON Lines form DPs read and write.
//!
//! ```text
//! issuer key ──sign(ISSUER_SIG_CONTEXT || canonical body)──▶ Mapping ──verify(TrustStore)──▶
//!                                                                       VerifiedMapping
//! ```

mod b64;

pub(crate) use b64::encode as b64_encode;
mod cpi;
mod jsonl;
mod keys;
mod mapping;
mod msp_request;
mod opt_out;

pub use cpi::{Cpi, CpiWarning, CpiWarnings, MAX_CPI_LEN};
pub use jsonl::{DeltaLine, RecordLine};
pub use keys::{
    DpKey, DpKeys, ISSUER_ID_CONTEXT, IssuerId, IssuerKey, KeyRole, MspKey, TrustStore, UserKey,
    decode_public_key,
};
pub use mapping::{
    ISSUER_SIG_CONTEXT, MAPPING_FORMAT_VERSION, MAX_CONTEXT_LEN, MAX_PSI_LEN, Mapping,
    MappingFields, USER_SIG_CONTEXT, UserConsent, VerifiedMapping, canonical_body,
};
pub use msp_request::{
    ENROLLMENT_ID_LEN, MSP_REQUEST_CONTEXT, MspRequest, USER_WITHDRAWAL_CONTEXT, verify_withdrawal,
    withdrawal_bytes,
};
pub use opt_out::{OPT_OUT_FORMAT_VERSION, OPT_OUT_SIG_CONTEXT, OptOut, VerifiedOptOut};

/// Normalises an MSP's domain as a mapping's `msp` field is (`docs/mapping-format.md`, section
/// 1.4): lower-case, no trailing dot, UTS-46 for internationalised names.
pub fn normalise_msp(msp: &str) -> crate::error::Result<String> {
    cpi::normalise_domain(msp)
        .map_err(|r| crate::error::CoreError::field("msp", crate::error::FieldError::Domain(r)))
}
