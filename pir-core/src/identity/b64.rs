//! Base64url without padding, the encoding of every binary field in text forms.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("not base64url without padding: {e}"))
}

pub(crate) fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = decode(text)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {len}"))
}
