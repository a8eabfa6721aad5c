//! Base64url without padding, the encoding of every binary field in text forms.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::B64Error;

pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Result<Vec<u8>, B64Error> {
    URL_SAFE_NO_PAD.decode(text).map_err(B64Error::Encoding)
}

pub(crate) fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], B64Error> {
    let bytes = decode(text)?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| B64Error::Length { expected: N, got })
}
